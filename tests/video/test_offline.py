"""Offline propagation (``engine/video/offline.py``): equal to Meta's ``SAM2VideoPredictor``
(forward, then reverse from the earliest prompt, on the same random weights at input 128), tracks
found on the way tracked backwards until scored absent, resumable state, bounded memory."""
from __future__ import annotations

import io
import resource

import numpy as np
import pytest
import torch

from clips import H, W, clip_frame, small_model
from conftest import present_checkpoint_path
from infer_segment_anything_2.engine.model.device import CPU
from infer_segment_anything_2.engine.video.offline import OfflinePropagation
from infer_segment_anything_2.engine.video.offline_types import TrackPrompt

N = 12
SIZE = 128  # the model's input (Hydra override): 64x fewer pixels than 1024


def disc_box(t):
    x = int(W * 0.28) + 6 * t
    return np.array([x - 26, H // 2 - 26, x + 26, H // 2 + 26], np.float32)


def square_box(t):
    return np.array([W - 52, 8 + 5 * t, W - 18, 42 + 5 * t], np.float32)


class Frames:
    """A :class:`FrameSource` over a list of frames, counting the frames handed out."""

    def __init__(self, frames):
        self.frames, self.hw = frames, frames[0].shape[:2]
        self.names = [f"{t:05d}.jpg" for t in range(len(frames))]
        self.decoded = 0

    def __len__(self):
        return len(self.frames)

    def iterate(self, indices):
        for t in indices:
            self.decoded += 1
            yield t, self.frames[t]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """JPEG frames for Meta's loader, read back (PIL) as the pixels ours get."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("offline-clip")
    frames = []
    for t in range(N):
        Image.fromarray(clip_frame(t)).save(folder / f"{t:05d}.jpg", quality=95)
        frames.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    return folder, frames


@pytest.fixture(scope="module")
def model():
    """SAM 2.1 tiny at input 128, random weights scored present, through the plugin's loader."""
    from clips import present_small_model

    return cache_backbones(present_small_model(SIZE))


def cache_backbones(model):
    """``model.forward_image`` memoised by its input's bytes: a deterministic function of the
    pixels and the weights, computed once per frame for the module's many runs (the CPU here is
    slow; encoding counts are tested on a model without the cache)."""
    cache, forward = {}, model.forward_image

    def forward_image(x):
        key = x.cpu().numpy().tobytes()
        if key not in cache:
            cache[key] = forward(x)
        return cache[key]

    model.forward_image = forward_image
    return model


@pytest.fixture(scope="module")
def meta_predictor():
    """Meta's video predictor on the same checkpoint at the same input size, holes not filled
    (Meta's filling needs the CUDA extension)."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", str(present_checkpoint_path()), device="cpu",
        hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    predictor.fill_hole_area = 0
    return cache_backbones(predictor)


def meta_final(predictor, clip, prompts, reverse=True):
    """Meta's final low-resolution logits and scores per (object, frame): every prompt added
    (in frame order), ``propagate_in_video`` forward, then reverse, from the earliest prompt.
    The stored bfloat16 memories are upcast to float32 before the memory attention, as the notes
    say (float32 on the CPU fails on a frame that attends only a later prompted frame; the upcast
    is the values the float32 promotion gives elsewhere)."""
    original = type(predictor)._prepare_memory_conditioned_features.__get__(predictor)

    def upcast(*args, output_dict, **kwargs):
        up = {k: {t: dict(o, maskmem_features=o["maskmem_features"].float())
                  for t, o in v.items()} for k, v in output_dict.items()}
        return original(*args, output_dict=up, **kwargs)

    predictor._prepare_memory_conditioned_features = upcast
    with torch.inference_mode():
        state = predictor.init_state(str(clip[0]))
        for obj, ps in prompts.items():
            for p in sorted(ps, key=lambda p: p.frame):
                predictor.add_new_points_or_box(state, p.frame, obj, box=p.box)
        for _ in predictor.propagate_in_video(state):
            pass
        if reverse:
            for _ in predictor.propagate_in_video(state, reverse=True):
                pass
    out = {}
    for obj_id in prompts:
        outs = state["output_dict_per_obj"][predictor._obj_id_to_idx(state, obj_id)]
        for t in range(N):
            o = outs["cond_frame_outputs"].get(t) or outs["non_cond_frame_outputs"].get(t)
            if o is not None:
                out[obj_id, t] = (o["pred_masks"][0, 0].float().clone(),
                                  float(o["object_score_logits"]))
    return out


def final(results):
    """The last result per (track, frame), as a consumer keeps them."""
    out = {}
    for r in results:
        for k, i in enumerate(r.ids):
            out[int(i), r.index] = (torch.from_numpy(r.logits[k, 0]), float(r.scores[k]),
                                    r.masks[k])
    return out


def assert_equal_meta(ours, ref):
    assert set(ours) == set(ref)
    for key, (logits, score) in ref.items():
        assert torch.allclose(ours[key][0], logits, atol=1e-4), (key, float(
            (ours[key][0] - logits).abs().max()))
        assert abs(ours[key][1] - score) < 1e-4, key
        assert ours[key][2].any(), key  # non-empty masks: the comparison means something


def propagate(model, frames, prompts, **kw):
    p = OfflinePropagation(model, CPU, Frames(frames), prompts, fill_hole_area=0, **kw)
    return p, list(p.run())


TWO_TRACKS = {1: [TrackPrompt(0, box=disc_box(0)), TrackPrompt(9, box=disc_box(9))],
              2: [TrackPrompt(5, box=square_box(5))]}


def test_equals_meta_forward_with_a_later_prompted_track(model, clip, meta_predictor):
    """A on frames 0 and 9, B on 5: B's frames 0-4 are tracked forward with the memory of its
    future prompt, as Meta; every final logit equals Meta's."""
    _, results = propagate(model, clip[1], TWO_TRACKS)
    assert [r.index for r in results] == list(range(N)) and not any(r.reverse for r in results)
    assert_equal_meta(final(results), meta_final(meta_predictor, clip, TWO_TRACKS))


def test_start_after_frame_0_equals_meta_reverse(model, clip, meta_predictor):
    prompts = {1: [TrackPrompt(3, box=disc_box(3))], 2: [TrackPrompt(6, box=square_box(6))]}
    _, results = propagate(model, clip[1], prompts)
    assert [(r.index, r.reverse) for r in results] == \
        [(t, False) for t in range(3, N)] + [(t, True) for t in range(3, -1, -1)]
    assert_equal_meta(final(results), meta_final(meta_predictor, clip, prompts))


def test_forward_only_equals_meta_forward(model, clip, meta_predictor):
    prompts = {1: [TrackPrompt(3, box=disc_box(3))], 2: [TrackPrompt(4, box=square_box(4))]}
    _, results = propagate(model, clip[1], prompts, direction="forward")
    assert [r.index for r in results] == list(range(3, N))
    assert_equal_meta(final(results), meta_final(meta_predictor, clip, prompts, reverse=False))


def _absent_on(model, frame):
    """SAM 2 scores every object absent on ``frame`` of a reverse step (the decoder's object
    score lowered by 100 there), a case the test controls."""
    on = {"flag": False}
    step = model.track_step

    def track_step(*args, **kwargs):
        on["flag"] = kwargs["frame_idx"] == frame and kwargs["track_in_reverse"]
        try:
            return step(*args, **kwargs)
        finally:
            on["flag"] = False

    def hook(module, inputs, output):
        if on["flag"]:
            return (*output[:3], output[3] - 100.0)
        return output

    handle = model.sam_mask_decoder.register_forward_hook(hook)
    model.track_step = track_step
    return handle


def seed_square(t, image, result, embedding):
    assert image.shape == (H, W, 3) and result.index == t
    return {7: TrackPrompt(6, box=square_box(6))} if t == 6 else {}


def test_new_track_is_tracked_backwards_as_meta_reverse(model, clip, meta_predictor):
    """A track found on frame 6 has masks on frames 5..0 from the backward pass, equal to Meta's
    reverse from frame 6 of that object alone (objects are independent)."""
    prompts = {1: [TrackPrompt(0, box=disc_box(0))]}
    _, results = propagate(model, clip[1], prompts, new_tracks=seed_square)
    back = [r.index for r in results if r.reverse]
    assert back == list(range(5, -1, -1))
    ours = final(results)
    ref = meta_final(meta_predictor, clip, {7: [TrackPrompt(6, box=square_box(6))]})
    assert_equal_meta({k: v for k, v in ours.items() if k[0] == 7}, ref)


def test_backward_pass_stops_where_scored_absent(model, clip):
    handle = _absent_on(model, 3)
    try:
        _, results = propagate(model, clip[1], {1: [TrackPrompt(0, box=disc_box(0))]},
                               new_tracks=seed_square)
    finally:
        handle.remove()
        del model.track_step
    back = [r for r in results if r.reverse]
    assert [r.index for r in back] == [5, 4, 3]  # frame 3 yielded (absent), then stopped
    assert all(r.masks[0].any() and r.scores[0] > 0 for r in back[:2])
    assert back[2].scores[0] <= 0 and not back[2].masks[0].any()


def _save_load(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("cut", [5, 10])  # after forward frame 7; in the backward sweep
def test_resume_yields_the_same_results(model, clip, cut):
    prompts = {1: [TrackPrompt(2, box=disc_box(2)), TrackPrompt(9, box=disc_box(9))]}
    kw = dict(new_tracks=seed_square, lookahead=2)
    _, whole = propagate(model, clip[1], prompts, **kw)
    first = OfflinePropagation(model, CPU, Frames(clip[1]), prompts, fill_hole_area=0, **kw)
    run = first.run()
    head = [next(run) for _ in range(cut + 1)]
    state = _save_load(first.state())
    run.close()
    again = OfflinePropagation(model, CPU, Frames(clip[1]), prompts, fill_hole_area=0, **kw)
    tail = list(again.run(resume=state))
    assert len(head) + len(tail) == len(whole)
    for a, b in zip(head + tail, whole):
        assert (a.index, a.reverse) == (b.index, b.reverse)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.masks, b.masks)
        assert np.array_equal(a.logits, b.logits) and np.array_equal(a.scores, b.scores)
        assert a.masks.any()


def test_memory_is_bounded_with_a_prompt_on_every_frame():
    """MOT-like tracks, a box on every frame from frame 6 (then Meta's reverse pass 6..0) and a
    track found on frame 50 (tracked backwards to 0): kept outputs stop growing, backbones are
    those of the look-ahead, and every frame is encoded exactly once per sweep (stand-in image
    encoder of the real shapes, tiny model at input 64)."""
    import standin

    n, start, found, lookahead = 100, 6, 50, 4
    model = small_model()
    standin.install(model)
    encoded = []
    model.image_encoder.register_forward_hook(lambda *_: encoded.append(1))
    frame = np.full((48, 64, 3), 90, np.uint8)

    class Repeat(Frames):
        def __init__(self):
            self.frames, self.hw, self.names, self.decoded = None, (48, 64), [""] * n, 0

        def __len__(self):
            return n

        def iterate(self, indices):
            for t in indices:
                self.decoded += 1
                yield t, frame

    box = np.array([10, 10, 30, 30], np.float32)
    prompts = {i: [TrackPrompt(t, box=box + i) for t in range(start, n)] for i in (1, 2)}
    seed = lambda t, image, result, embedding: {9: TrackPrompt(t, box=box)} if t == found else {}
    source = Repeat()
    p = OfflinePropagation(model, CPU, source, prompts, new_tracks=seed, lookahead=lookahead)
    kept, backbones, count = {}, 0, 0
    for r in p.run():
        count += 1
        assert r.masks.any(axis=(1, 2)).all()
        kept[r.index, r.reverse] = p.kept_outputs()
        backbones = max(backbones, p.kept_backbones())
    sweeps = (n - start) + found  # forward 6..99, then one descending sweep 49..0
    assert count == sweeps and len(encoded) == p.encodings == sweeps == source.decoded
    assert backbones <= lookahead
    assert kept[85, False] == kept[94, False]  # constant along the forward pass (look-ahead full)
    assert kept[30, True] == kept[12, True]  # and along the backward sweep
    horizon, m = p.horizon, p.max_cond
    assert max(kept.values()) <= 3 * (2 * m + 3 * horizon + lookahead)
