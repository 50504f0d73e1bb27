"""Video tracking engine (``engine/video/tracker.py``): parity with Meta's ``SAM2VideoPredictor`` on the
same random weights, hole filling, frame preparation, bounded memory, stops, the accelerator."""
from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from clips import H, W, clip_frame, saved_clip, sized_model, small_model
from infer_segment_anything_2.engine.cancel import GenerationCancelled
from infer_segment_anything_2.engine.model.device import CPU, DeviceChoice
from infer_segment_anything_2.engine.image.convert import frame_tensor
from infer_segment_anything_2.engine.video.frames import fill_small_holes
from infer_segment_anything_2.engine.video.tracker import VideoTracker

N = 6  # frames of the parity clip
BOX = np.array([20, 35, 70, 85], np.float32)  # XYXY around the disc on frame 0
FIX_POINTS = np.array([[75, 60], [30, 30]], np.float32)  # correction on frame 3: fg, bg
FIX_LABELS = np.array([1, 0], np.int32)
FIX_FRAME = 3
# The parity tests' input size, Meta's and ours alike: the same modules, weights and code paths
# as at 1024, 16x fewer pixels (frames are prepared as Meta's loader at 1024 in their own test).
SIZE = 256


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return sized_model(tiny_checkpoint, SIZE)


@pytest.fixture(scope="module")
def present_model(present_checkpoint):
    return sized_model(present_checkpoint, SIZE)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The clip saved as JPEG for Meta's loader, and read back (PIL, as Meta's loader reads) as
    the very pixels our tracker gets."""
    folder = tmp_path_factory.mktemp("clip")
    return folder, saved_clip(folder, N)


def meta_video_predictor(checkpoint):
    """Meta's video predictor on our checkpoint, holes not filled (Meta's filling needs the CUDA
    extension; ours is tested on its own) and corrected frames kept as conditioning frames."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", str(checkpoint),
                                           device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    predictor.fill_hole_area = 0
    predictor.add_all_frames_to_correct_as_cond = True
    return predictor


def _meta_outputs(state, obj_idx):
    outs = state["output_dict_per_obj"][obj_idx]
    return {t: outs["cond_frame_outputs"].get(t) or outs["non_cond_frame_outputs"].get(t)
            for t in range(N)}


@pytest.fixture(scope="module")
def meta_run(tiny_checkpoint, clip):
    """Meta, as a user corrects a track: box on frame 0 for object 1, a point on frame 1 for
    object 2; propagate to frame 3; a correction (fg + bg point) of object 1 on frame 3; propagate
    on. Returns each frame's low-resolution logits and object scores per object, and object 1's
    logits on frame 3 before the correction."""
    folder, _ = clip
    predictor = meta_video_predictor(tiny_checkpoint)
    logits, scores = {}, {}
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        predictor.add_new_points_or_box(state, 0, 1, box=BOX)
        for t, _, _ in predictor.propagate_in_video(state, 0, max_frame_num_to_track=0):
            pass
        predictor.add_new_points_or_box(state, 1, 2, points=np.array([[130, 25]], np.float32),
                                        labels=np.array([1], np.int32))

        def collect(upto):
            for obj in (0, 1):
                for t, out in _meta_outputs(state, obj).items():
                    if out is not None and t <= upto:
                        logits[obj, t] = out["pred_masks"][0, 0].clone()
                        scores[obj, t] = float(out["object_score_logits"])
        for _ in predictor.propagate_in_video(state, 1, max_frame_num_to_track=FIX_FRAME - 1):
            pass
        collect(FIX_FRAME)
        before = logits[0, FIX_FRAME]
        predictor.add_new_points_or_box(state, FIX_FRAME, 1, points=FIX_POINTS, labels=FIX_LABELS)
        for _ in predictor.propagate_in_video(state, FIX_FRAME):
            pass
        collect(N)
    return logits, scores, before


def _ours(model, frames, choice=CPU, num_frames=N, **kw):
    tracker = VideoTracker(model, choice, num_frames=num_frames, fill_hole_area=0, **kw)
    results = []
    for t, frame in enumerate(frames):
        prompts = {}
        if t == 0:
            prompts[0] = (BOX.reshape(2, 2), np.array([2, 3], np.int32))
        if t == 1:
            prompts[1] = (np.array([[130, 25]], np.float32), np.array([1], np.int32))
        if t == FIX_FRAME:
            prompts[0] = (FIX_POINTS, FIX_LABELS)
        results.append(tracker.track(frame, prompts))
    return tracker, results


def test_tracking_equals_meta_video_predictor(tiny_model, clip, meta_run):
    """Two objects, the second added on frame 1, a correction on frame 3: every frame's logits
    and object scores equal Meta's (measured: identical, difference 0.0)."""
    logits, scores, before = meta_run
    _, results = _ours(tiny_model, clip[1])
    for t, frame in enumerate(results):
        assert frame.index == t
        assert len(frame.logits) == (1 if t == 0 else 2)
        for obj in range(len(frame.logits)):
            ref = logits[obj, t]
            assert torch.allclose(frame.logits[obj, 0], ref, atol=1e-4), (obj, t)
            assert abs(frame.object_scores[obj] - scores[obj, t]) < 1e-4
    # the correction changed object 1's mask on frame 3 (the comparison above is not vacuous)
    fixed = results[FIX_FRAME].logits[0, 0]
    assert ((fixed > 0) != (before > 0)).float().mean() > 0.01


def test_masks_are_the_logits_upsampled_as_meta(tiny_model, clip):
    _, results = _ours(tiny_model, clip[1][:1])
    frame = results[0]
    big = torch.nn.functional.interpolate(frame.logits, size=(H, W), mode="bilinear",
                                          align_corners=False)
    assert np.array_equal(frame.masks(H, W), (big[:, 0] > 0).numpy())
    assert np.array_equal(frame.masks(H, W, threshold=0.2), (big[:, 0] > 0.2).numpy())


def test_frames_are_prepared_as_meta_video_loader(tmp_path):
    from PIL import Image
    from sam2.utils.misc import load_video_frames

    for t in range(2):
        Image.fromarray(clip_frame(t)).save(tmp_path / f"{t:05d}.jpg", quality=95)
    ref, _, _ = load_video_frames(str(tmp_path), 1024, offload_video_to_cpu=True)
    ours = frame_tensor(np.array(Image.open(tmp_path / "00001.jpg").convert("RGB")), 1024)
    assert ours.dtype == torch.float32 and ours.shape == (1, 3, 1024, 1024)
    assert torch.equal(ours[0], ref[1])


def _reference_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Holes by a plain flood fill (8-connectivity) over the background: the definition."""
    out = logits.copy()
    bg = logits <= 0
    seen = np.zeros_like(bg)
    h, w = bg.shape
    for y in range(h):
        for x in range(w):
            if bg[y, x] and not seen[y, x]:
                stack, comp = [(y, x)], []
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    comp.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and bg[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                stack.append((ny, nx))
                if len(comp) <= max_area:
                    for cy, cx in comp:
                        out[cy, cx] = 0.1
    return out


def test_fill_small_holes_matches_the_definition():
    rng = np.random.default_rng(3)
    logits = rng.normal(0.3, 1.0, (2, 1, 40, 40)).astype(np.float32)
    logits[0, 0, 10:13, 10:13] = -5  # a 3x3 hole (9 pixels: kept at max_area 8)
    logits[0, 0, 20, 20] = -5
    for area in (1, 8, 30):
        ours = fill_small_holes(torch.from_numpy(logits), area).numpy()
        for i in range(2):
            np.testing.assert_array_equal(ours[i, 0], _reference_fill(logits[i, 0], area))
    filled = fill_small_holes(torch.from_numpy(logits), 8).numpy()
    assert (filled[0, 0, 10:13, 10:13] == -5).all()  # 9 > 8 pixels: not a small hole
    unchanged = torch.from_numpy(logits)
    assert fill_small_holes(unchanged, 0) is unchanged  # 0: filling off


def _state_bytes(tracker: VideoTracker) -> int:
    total, seen = 0, set()
    for obj in tracker.objects.values():
        for outputs in (obj.cond, obj.recent):
            for out in outputs.values():
                for value in out.values():
                    for x in (value if isinstance(value, list) else [value]):
                        if isinstance(x, torch.Tensor) and id(x) not in seen:
                            seen.add(id(x))
                            total += x.numel() * x.element_size()
    return total


def test_memory_is_constant_over_2000_frames():
    """2,000 frames (small input size): the kept outputs are the prompted frame plus the last
    16 tracked ones, their bytes stop growing, and the process's peak memory does not grow
    (the image encoder a stand-in of the same output shapes: the tracker's memory is the
    subject)."""
    model = small_model(standin_encoder=True)
    tracker = VideoTracker(model, CPU)
    frame = np.zeros((48, 64, 3), np.uint8)
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    sizes, peaks = {}, {}
    with torch.no_grad():
        for t in range(2000):
            frame[:] = 50
            frame[10:30, t % 40:t % 40 + 20] = 220
            result = tracker.track(frame, {0: box} if t == 0 else {})
            assert result.index == t and len(result.logits) == 1
            if t in (100, 1999):
                sizes[t] = _state_bytes(tracker)
                peaks[t] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    obj = tracker.objects[0]
    assert list(obj.cond) == [0]
    assert sorted(obj.recent) == list(range(1984, 2000))
    assert sizes[1999] == sizes[100]
    assert peaks[1999] - peaks[100] < 20 * 1024  # KiB


def test_prompted_frames_are_capped_first_kept():
    model = small_model()
    tracker = VideoTracker(model, CPU, max_cond_frames=3)
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    with torch.no_grad():
        for t in range(6):
            tracker.track(clip_frame(t, 48, 64), {0: box})
    assert sorted(tracker.objects[0].cond) == [0, 4, 5]


def test_stop_leaves_the_video_as_it_was():
    model = small_model()
    tracker = VideoTracker(model, CPU)
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    with torch.no_grad():
        tracker.track(clip_frame(0, 48, 64), {0: box})
        calls = iter([False, True])  # object 1 done, stop before object 2
        with pytest.raises(GenerationCancelled):
            tracker.track(clip_frame(1, 48, 64), {1: box}, should_stop=lambda: next(calls))
        assert tracker.frame_index == 0 and len(tracker.objects) == 1
        assert list(tracker.objects[0].recent) == []
        again = tracker.track(clip_frame(1, 48, 64), {})
    assert again.index == 1 and list(tracker.objects[0].recent) == [1]


def test_objects_are_known_by_their_ids_from_their_first_prompt():
    """Ids are the caller's: an object exists from its first prompt, new ones come after the
    known ones, and a dropped object is forgotten (its memory freed)."""
    model = small_model()
    tracker = VideoTracker(model, CPU)
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    with torch.no_grad():
        frame = tracker.track(clip_frame(0, 48, 64), {7: box})
        assert frame.ids.tolist() == [7] and len(frame.logits) == 1
        frame = tracker.track(clip_frame(1, 48, 64), {3: box})
        assert frame.ids.tolist() == [7, 3]
        tracker.drop([7])
        frame = tracker.track(clip_frame(2, 48, 64))
    assert frame.ids.tolist() == [3] and list(tracker.objects) == [3]


def test_a_frame_of_another_size_is_refused():
    tracker = VideoTracker(small_model(), CPU)
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    with torch.no_grad():
        tracker.track(clip_frame(0, 48, 64), {0: box})
        with pytest.raises(ValueError, match="reset"):
            tracker.track(clip_frame(1, 50, 64), {})
        tracker.reset()
        assert tracker.track(clip_frame(1, 50, 64), {0: box}).index == 0


def test_bfloat16_tracking_equals_meta_under_the_same_autocast(tiny_checkpoint, tiny_model, clip):
    """GPU's dtype path on the CPU: bfloat16 autocast on both sides, box on frame 0, two more
    frames: object scores agree (masks of random weights are fragile in low precision)."""
    folder, frames = clip
    predictor = meta_video_predictor(tiny_checkpoint)
    choice = DeviceChoice.make(torch.device("cpu"), "bfloat16")
    with torch.inference_mode(), choice.compute():
        state = predictor.init_state(str(folder))
        predictor.add_new_points_or_box(state, 0, 1, box=BOX)
        for _ in predictor.propagate_in_video(state, 0, max_frame_num_to_track=2):
            pass
    ref = _meta_outputs(state, 0)
    tracker = VideoTracker(tiny_model, choice, num_frames=N, fill_hole_area=0)
    for t in range(3):
        frame = tracker.track(frames[t], {0: (BOX.reshape(2, 2), np.array([2, 3], np.int32))}
                              if t == 0 else {})
        assert abs(frame.object_scores[0] - float(ref[t]["object_score_logits"])) < 0.02
        assert frame.logits.dtype == torch.float32
        assert tracker.objects[0].output_dict()["cond_frame_outputs"][0][
            "maskmem_features"].dtype == torch.bfloat16


def test_tracking_on_the_accelerator_equals_the_cpu():
    """Every tensor on the model's device (a fake accelerator refuses CPU/device mixes)."""
    from fake_accelerator import ACCEL, fake_accelerator, model_on_accelerator

    model = small_model()
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    frames = [clip_frame(t, 48, 64) for t in range(3)]
    with torch.no_grad():
        cpu = VideoTracker(model, CPU)
        ref = [cpu.track(f, {0: box} if t == 0 else {}) for t, f in enumerate(frames)]
    with fake_accelerator(), torch.no_grad():
        tracker = VideoTracker(model_on_accelerator(model), DeviceChoice.make(ACCEL, "float32"))
        for t, f in enumerate(frames):
            out = tracker.track(f, {0: box} if t == 0 else {})
            assert out.logits.device == ACCEL
            np.testing.assert_allclose(out.logits.cpu().numpy(), ref[t].logits.numpy(), atol=1e-5)
            np.testing.assert_array_equal(out.masks(48, 64), ref[t].masks(48, 64))


def test_no_object_no_encoding(monkeypatch):
    """A frame with no prompt and no object yet is not encoded (video mode before the first
    prompt costs nothing); the frame still counts."""
    model = small_model()
    tracker = VideoTracker(model, CPU)
    encoded = []
    backbone = VideoTracker._backbone
    monkeypatch.setattr(VideoTracker, "_backbone",
                        lambda self, image: encoded.append(1) or backbone(self, image))
    box = (np.array([[10, 10], [30, 30]], np.float32), np.array([2, 3], np.int32))
    with torch.no_grad():
        empty = tracker.track(clip_frame(0, 48, 64), {})
        assert len(empty.logits) == 0 and encoded == []
        assert tracker.track(clip_frame(1, 48, 64), {0: box}).index == 1
    assert encoded == [1]


LATE = 2  # the frame where two objects join the one tracked from frame 0
LATE_BOX = np.array([105, 15, 145, 55], np.float32)  # around the square on frame 2


def _late_mask() -> np.ndarray:
    """A mask given on frame ``LATE``: the disc's right half (frame pixels)."""
    mask = np.zeros((H, W), bool)
    mask[35:85, 60:90] = True
    return mask


@pytest.fixture(scope="module")
def meta_late_run(present_checkpoint, clip):
    """Meta: a box on frame 0 for object 1, propagation to frame LATE - 1, then object 2 by a
    box and object 3 by a mask on frame LATE (Meta's add_new_points_or_box / add_new_mask on a
    video already tracking), propagation to the end."""
    folder, _ = clip
    predictor = meta_video_predictor(present_checkpoint)
    logits = {}
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        predictor.add_new_points_or_box(state, 0, 1, box=BOX)
        for _ in predictor.propagate_in_video(state, 0, max_frame_num_to_track=LATE - 1):
            pass
        predictor.add_new_points_or_box(state, LATE, 2, box=LATE_BOX)
        predictor.add_new_mask(state, LATE, 3, _late_mask())
        for _ in predictor.propagate_in_video(state, LATE):
            pass
        for obj in range(3):
            for t, out in _meta_outputs(state, obj).items():
                if out is not None:
                    logits[obj, t] = out["pred_masks"][0, 0].clone()
    return logits


def _late_ours(model, frames, **kw):
    tracker = VideoTracker(model, CPU, num_frames=N, fill_hole_area=0, **kw)
    results = []
    box = (BOX.reshape(2, 2), np.array([2, 3], np.int32))
    late = (LATE_BOX.reshape(2, 2), np.array([2, 3], np.int32))
    for t, frame in enumerate(frames):
        results.append(tracker.track(frame, {0: box} if t == 0 else {1: late} if t == LATE
                                     else {}, {2: _late_mask()} if t == LATE else {}))
    return results


def test_objects_added_later_by_box_and_mask_equal_meta(present_model, clip, meta_late_run):
    """Objects joining on frame 2 by a box and by a mask, beside one tracked from frame 0,
    every frame's logits equal Meta's (1e-4), with non-empty masks (objects scored present)."""
    results = _late_ours(present_model, clip[1])
    for t, frame in enumerate(results):
        assert frame.ids.tolist() == ([0] if t < LATE else [0, 1, 2])
        assert (frame.object_scores > 0).all()
        masks = frame.masks(H, W)
        assert all(m.sum() > 20 for m in masks), (t, [m.sum() for m in masks])
        for obj in range(len(frame.ids)):
            torch.testing.assert_close(frame.logits[obj, 0], meta_late_run[obj, t], atol=1e-4,
                                       rtol=0)
    # the mask-started object is the given mask on its first frame
    first = results[LATE].masks(H, W)[2]
    assert (first & _late_mask()).sum() / (first | _late_mask()).sum() > 0.9


def test_batched_objects_equal_one_at_a_time(present_model, clip):
    """Objects whose memories line up run as one batch (fewer model calls); each object's
    results are those of a batch of one."""
    calls = {}
    track_step = type(present_model).track_step

    def counted(self, *args, **kwargs):
        calls[key] = calls.get(key, 0) + 1
        return track_step(self, *args, **kwargs)

    results = {}
    for key, batch in (("one", 1), ("batched", 16)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(present_model), "track_step", counted)
            results[key] = _late_ours(present_model, clip[1][:LATE + 2], batch=batch)
    assert calls["batched"] < calls["one"]
    for one, batched in zip(results["one"], results["batched"]):
        assert one.ids.tolist() == batched.ids.tolist()
        torch.testing.assert_close(batched.logits, one.logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(batched.object_scores, one.object_scores, atol=1e-4)
