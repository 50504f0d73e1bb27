"""The memory attention's exact shortcuts (``engine/video/attention.py``) and the memory they read
(``engine/video/conditioning.py``): against Meta's ``memory_attention`` forward and Meta's
``_prepare_memory_conditioned_features`` on random inputs, forward and in reverse, one object
and a batch."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from clips import small_model
from infer_segment_anything_2.engine.video import attention
from infer_segment_anything_2.engine.video.attention import (ALL, NONE, AttentionState,
                                                             MemoryFrame, Shortcuts)
from infer_segment_anything_2.engine.video.conditioning import (conditioned_features,
                                                                shortcuts_applied)
from infer_segment_anything_2.engine.video.memory import ObjectTrack, stacked_memory

SIDE = 8  # feature grid of the random inputs (image_size 128)
EACH = [Shortcuts(values=True, layer0=False, keys=False),
        Shortcuts(values=False, layer0=True, keys=False),
        Shortcuts(values=False, layer0=False, keys=True), NONE, ALL]


@pytest.fixture(scope="module")
def model():
    model = small_model(SIDE * 16)
    _peaky(model)
    return model


def _peaky(model, gain: float = 2.0):
    """Random weights attend almost uniformly; larger query/key weights make the attention
    peaky, so that a wrong key or value shows in the output."""
    for layer in model.memory_attention.layers:
        for attn in (layer.self_attn, layer.cross_attn_image):
            attn.q_proj.weight.data *= gain
            attn.k_proj.weight.data *= gain


def _frame(gen, n, with_pos=None):
    feats = torch.randn(n, 64, SIDE, SIDE, generator=gen).to(torch.bfloat16)
    pos = with_pos if with_pos is not None else [torch.randn(1, 64, SIDE, SIDE, generator=gen)]
    return {"maskmem_features": feats, "maskmem_pos_enc": pos,
            "obj_ptr": torch.randn(n, 256, generator=gen),
            "object_score_logits": torch.ones(n, 1), "pred_masks": torch.zeros(n, 1, 4, 4)}


def test_attention_equals_meta_memory_attention(model):
    """Two objects (the frame's features expanded, as the tracker's), three memory frames at
    different temporal rows, eight pointer tokens: every combination of shortcuts equals Meta's
    ``memory_attention`` forward to 1e-4 (measured about 1e-6)."""
    gen = torch.Generator().manual_seed(1)
    hw, n = SIDE * SIDE, 2
    curr = torch.randn(hw, 1, 256, generator=gen).expand(hw, n, 256)
    curr_pos = torch.randn(hw, 1, 256, generator=gen).expand(hw, n, 256)
    outs = [_frame(gen, n) for _ in range(3)]
    rows = [6, 5, 2]
    ptrs = torch.randn(8, n, 64, generator=gen)
    ptr_pos = torch.randn(8, n, 64, generator=gen)
    memory = torch.cat([o["maskmem_features"].flatten(2).permute(2, 0, 1) for o in outs] + [ptrs])
    memory_pos = torch.cat([o["maskmem_pos_enc"][-1].flatten(2).permute(2, 0, 1).expand(-1, n, -1)
                            + model.maskmem_tpos_enc[r] for o, r in zip(outs, rows)] + [ptr_pos])
    with torch.no_grad():
        ref = model.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory,
                                     memory_pos=memory_pos, num_obj_ptr_tokens=8)
        for shortcuts in EACH:
            sources = [[{} for _ in range(n)] for _ in outs]
            frames = [MemoryFrame(s, o["maskmem_features"].flatten(2).transpose(1, 2),
                                  o["maskmem_pos_enc"][-1].flatten(2).transpose(1, 2).expand(n, -1, -1),
                                  r) for s, o, r in zip(sources, outs, rows)]
            state = AttentionState()
            ours = attention.memory_attention(model, state, curr, curr_pos, frames, ptrs,
                                              ptr_pos, shortcuts)
            torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0, msg=str(shortcuts))
            again = attention.memory_attention(model, state, curr, curr_pos, frames, ptrs,
                                               ptr_pos, shortcuts)  # cached keys read back
            torch.testing.assert_close(again, ref, atol=1e-4, rtol=0, msg=str(shortcuts))
            assert all(("attn_keys" in s) == shortcuts.keys for f in sources for s in f)
    assert (ref[:, 0] - ref[:, 1]).abs().max() > 0.1  # the objects' memories differ


def _video(gen, cond, recent, n=1):
    """Per-object tracks with random memories on these frames (the spatial encoding shared)."""
    pos = [torch.randn(1, 64, SIDE, SIDE, generator=gen)]
    tracks = [ObjectTrack() for _ in range(n)]
    for t in tracks:
        t.cond = {f: _frame(gen, 1, pos) for f in cond}
        t.recent = {f: _frame(gen, 1, pos) for f in recent}
    return tracks


@pytest.mark.parametrize("reverse", [False, True])
def test_conditioned_features_equal_meta(model, reverse):
    """A frame's memory-conditioned features through the shortcuts equal the model's own
    ``_prepare_memory_conditioned_features`` (1e-4), forward (frame 12: prompted frames 0 and
    9, tracked 1..11) and in reverse (frame 3: prompted 0 and 15, tracked 4..14, the pointer of
    frame 0 in the future), for one object and a batch of three."""
    gen = torch.Generator().manual_seed(2)
    frame, cond, recent = (3, [0, 15], range(4, 15)) if reverse else (12, [0, 9], range(1, 12))
    hw = SIDE * SIDE
    for n in (1, 3):
        tracks = _video(gen, cond, recent, n)
        output_dict = stacked_memory(tracks)
        feats = [torch.randn(hw, 1, 256, generator=gen).expand(hw, n, 256)]
        pos = [torch.randn(hw, 1, 256, generator=gen).expand(hw, n, 256)]
        args = dict(frame_idx=frame, current_vision_feats=feats, current_vision_pos_embeds=pos,
                    feat_sizes=[(SIDE, SIDE)], output_dict=output_dict, num_frames=20,
                    track_in_reverse=reverse)
        with torch.no_grad():
            ref = model._prepare_memory_conditioned_features(is_init_cond_frame=False, **args)
            state = AttentionState()
            for _ in range(2):  # keys made, then read back
                ours = conditioned_features(model, state, ALL, **args)
                torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
            with shortcuts_applied(model, state, ALL):
                hooked = model._prepare_memory_conditioned_features(is_init_cond_frame=False,
                                                                    **args)
            torch.testing.assert_close(hooked, ref, atol=1e-4, rtol=0)
        # keys are kept only for the frames read: the prompted ones and the last 6 tracked
        kept = sorted(f for f, o in tracks[0].recent.items() if "attn_keys" in o)
        assert kept == (list(range(4, 10)) if reverse else list(range(6, 12)))
        assert all("attn_keys" in o for o in tracks[0].cond.values())
    assert "_prepare_memory_conditioned_features" not in model.__dict__  # the context undone


def test_a_wrong_shortcut_is_seen(model, monkeypatch):
    """The comparison can fail: the temporal term left out of the cached keys, or the value
    bias left out of the folded projection, moves the output beyond the tolerance."""
    gen = torch.Generator().manual_seed(3)
    tracks = _video(gen, [0], range(1, 7))
    hw = SIDE * SIDE
    args = dict(frame_idx=7, current_vision_feats=[torch.randn(hw, 1, 256, generator=gen)],
                current_vision_pos_embeds=[torch.randn(hw, 1, 256, generator=gen)],
                feat_sizes=[(SIDE, SIDE)], output_dict=stacked_memory(tracks), num_frames=20)
    with torch.no_grad():
        ref = model._prepare_memory_conditioned_features(is_init_cond_frame=False, **args)
        real_get = AttentionState.get

        def broken(self, key, make):
            value = real_get(self, key, make)
            return value * 0 if key[0] in ("tkey", "bov") else value
        monkeypatch.setattr(AttentionState, "get", broken)
        for shortcuts in (Shortcuts(values=False, layer0=False, keys=True),
                          Shortcuts(values=True, layer0=False, keys=False)):
            ours = conditioned_features(model, AttentionState(), shortcuts, **args)
            assert (ours - ref).abs().max() > 1e-3, shortcuts
            for o in tracks[0].cond.values():
                o.pop("attn_keys", None)
            for o in tracks[0].recent.values():
                o.pop("attn_keys", None)


def test_shortcuts_are_flags():
    assert ALL.any() and not NONE.any()
    assert dataclasses.replace(NONE, keys=True).any()


def test_attend_by_blocks_equals_the_softmax():
    """Several query and key blocks (the online softmax rescaled), scores large enough that a
    wrong rescaling shows: equal to ``softmax(q k^T) v`` computed at once."""
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, attention.QUERY_BLOCK + 44, 32, generator=gen)
    k = torch.randn(2, 2 * attention.KEY_BLOCK + 100, 32, generator=gen)
    k[:, -50:] += 2.0  # the row maxima grow in the last block
    v = torch.randn(2, k.shape[1], 8, generator=gen)
    ref = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
    torch.testing.assert_close(attention.attend(q, k, v), ref, atol=1e-5, rtol=0)
