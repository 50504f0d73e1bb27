"""A frame's memory-conditioned features (``SAM2Base._prepare_memory_conditioned_features``)
through :mod:`.attention`'s exact shortcuts, and the context that puts them in place of the
model's own for the calls of ``track_step`` inside it.

The memories read are Meta's, in Meta's order (the same selection, forward or in reverse):
the selected prompted frames (temporal row ``num_maskmem - 1``), then the last
``num_maskmem - 1`` tracked frames (every ``memory_temporal_stride_for_eval``-th, the last one
always), then the object pointers of the selected prompted frames (only those not in the future
of the direction of tracking) and of the last ``max_obj_ptrs_in_encoder - 1`` frames, with their
temporal encoding of the signed distance (sign flipped in reverse). Initial conditioning frames
(no memory) and configurations :func:`attention.supported` refuses run Meta's own code.

An output dict of a batch of objects may carry ``sources``: the per-object output dicts it was
stacked from (:func:`engine.video.memory.stacked_memory`), where each frame's cached keys are
kept; a dict without it is its own source. Cached keys of outputs not read on a call are
dropped, so that they live only while the frame is in the window the model reads.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List

import torch

from .attention import AttentionState, MemoryFrame, Shortcuts, memory_attention, supported


@contextlib.contextmanager
def shortcuts_applied(model, state: AttentionState, shortcuts: Shortcuts) -> Iterator[None]:
    """Within: the model's memory-conditioned features (``track_step``'s, in any direction)
    come from :func:`conditioned_features` with ``shortcuts`` (Meta's own when none is on or
    the model is not :func:`supported`). Undone on exit."""
    if not shortcuts.any() or not supported(model):
        yield
        return
    name = "_prepare_memory_conditioned_features"
    before = model.__dict__.get(name)
    original = getattr(model, name)

    def prepare(frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
                feat_sizes, output_dict, num_frames, track_in_reverse=False):
        if is_init_cond_frame or model.num_maskmem == 0:
            return original(frame_idx, is_init_cond_frame, current_vision_feats,
                            current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                            track_in_reverse)
        return conditioned_features(model, state, shortcuts, frame_idx, current_vision_feats,
                                    current_vision_pos_embeds, feat_sizes, output_dict,
                                    num_frames, track_in_reverse)

    object.__setattr__(model, name, prepare)
    try:
        yield
    finally:
        if before is None:
            object.__delattr__(model, name)
        else:
            object.__setattr__(model, name, before)


def conditioned_features(model, state: AttentionState, shortcuts: Shortcuts, frame_idx: int,
                         current_vision_feats: List[torch.Tensor],
                         current_vision_pos_embeds: List[torch.Tensor], feat_sizes,
                         output_dict: dict, num_frames: int,
                         track_in_reverse: bool = False) -> torch.Tensor:
    """Meta's ``_prepare_memory_conditioned_features`` for a frame with memory: the frame's top
    features ``(HW, B, C)`` fused with the memories, ``(B, C, H, W)``."""
    from sam2.modeling.sam2_utils import get_1d_sine_pe, select_closest_cond_frames

    curr, curr_pos = current_vision_feats[-1], current_vision_pos_embeds[-1]
    n_batch, c = curr.shape[1], model.hidden_dim
    h, w = feat_sizes[-1]
    device = curr.device
    sign = -1 if track_in_reverse else 1
    cond_outputs = output_dict["cond_frame_outputs"]
    assert len(cond_outputs) > 0
    selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs,
                                                      model.max_cond_frames_in_attn)
    t_pos_and_prevs = [(0, out) for out in selected.values()]
    stride = model.memory_temporal_stride_for_eval
    for t_pos in range(1, model.num_maskmem):
        t_rel = model.num_maskmem - t_pos
        if t_rel == 1:  # the frame just before (after, in reverse), whatever the stride
            prev_idx = frame_idx + t_rel if track_in_reverse else frame_idx - t_rel
        elif not track_in_reverse:
            prev_idx = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev_idx = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        out = output_dict["non_cond_frame_outputs"].get(prev_idx, unselected.get(prev_idx))
        t_pos_and_prevs.append((t_pos, out))
    frames = []
    for t_pos, prev in t_pos_and_prevs:
        if prev is None:
            continue
        feats = prev["maskmem_features"].to(device, non_blocking=True)
        pos = prev["maskmem_pos_enc"][-1].to(device)
        frames.append(MemoryFrame(prev.get("sources") or [prev],
                                  feats.flatten(2).transpose(1, 2),
                                  pos.flatten(2).transpose(1, 2).expand(n_batch, -1, -1),
                                  model.num_maskmem - t_pos - 1))
    ptrs = ptr_pos = None
    if model.use_obj_ptrs_in_encoder:
        max_ptrs = min(num_frames, model.max_obj_ptrs_in_encoder)
        if not model.training and model.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = {t: out for t, out in selected.items()
                        if (t >= frame_idx if track_in_reverse else t <= frame_idx)}
        else:
            ptr_cond = selected
        pos_and_ptrs = [((frame_idx - t) * sign if model.use_signed_tpos_enc_to_obj_ptrs
                         else abs(frame_idx - t), out["obj_ptr"]) for t, out in ptr_cond.items()]
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if track_in_reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            out = output_dict["non_cond_frame_outputs"].get(t, unselected.get(t, None))
            if out is not None:
                pos_and_ptrs.append((t_diff, out["obj_ptr"]))
        if pos_and_ptrs:
            pos_list, ptrs_list = zip(*pos_and_ptrs)
            ptrs = torch.stack(ptrs_list, dim=0)
            if model.add_tpos_enc_to_obj_ptrs:
                tpos_dim = c if model.proj_tpos_enc_in_obj_ptrs else model.mem_dim
                obj_pos = torch.tensor(pos_list).to(device=device, non_blocking=True)
                obj_pos = get_1d_sine_pe(obj_pos / (max_ptrs - 1), dim=tpos_dim)
                ptr_pos = model.obj_ptr_tpos_proj(obj_pos).unsqueeze(1).expand(
                    -1, n_batch, model.mem_dim)
            else:
                ptr_pos = ptrs.new_zeros(len(pos_list), n_batch, model.mem_dim)
            if model.mem_dim < c:  # a pointer split into C // mem_dim tokens
                ptrs = ptrs.reshape(-1, n_batch, c // model.mem_dim, model.mem_dim)
                ptrs = ptrs.permute(0, 2, 1, 3).flatten(0, 1)
                ptr_pos = ptr_pos.repeat_interleave(c // model.mem_dim, dim=0)
    _drop_unread_keys(output_dict, frames)
    out = memory_attention(model, state, curr, curr_pos, frames, ptrs, ptr_pos, shortcuts)
    return out.permute(1, 2, 0).reshape(n_batch, c, h, w)


def _drop_unread_keys(output_dict: dict, frames: List[MemoryFrame]) -> None:
    """Cached keys live only while their frame is read: drop those of the outputs not read."""
    read = {id(s) for f in frames for s in f.sources}
    for outputs in output_dict.values():
        for out in outputs.values():
            for source in out.get("sources") or [out]:
                if id(source) not in read:
                    source.pop("attn_keys", None)
