"""The video tracker with the memory attention's exact shortcuts (``engine/video/attention.py``)
against Meta's ``SAM2VideoPredictor`` on the same random weights (objects scored present), at a
128x128 input (the same modules and shortcuts as at 1024, 64 times fewer pixels: the CPU test
stays cheap): one object; two objects batched from frame 0, a third added on frame 1, a
correction on frame 3; logits within 1e-4 in float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import H, W, saved_clip
from conftest import present_checkpoint_path
from infer_segment_anything_2.engine.model.device import CPU
from infer_segment_anything_2.engine.video.attention import ALL
from infer_segment_anything_2.engine.video.tracker import VideoTracker

SIZE = 128
N = 5
BOXES = {0: np.array([20, 35, 70, 85], np.float32),  # the disc on frame 0
         1: np.array([105, 5, 145, 45], np.float32)}  # the square on frame 0
LATE_POINT = (np.array([[40, 60]], np.float32), np.array([1], np.int32))  # object 2, frame 1
FIX = (np.array([[75, 60], [30, 30]], np.float32), np.array([1, 0], np.int32))  # object 0
FIX_FRAME = 3
SCENES = {"one": {0: {0: ("box", BOXES[0])}},
          "many": {0: {0: ("box", BOXES[0]), 1: ("box", BOXES[1])}, 1: {2: ("points", LATE_POINT)},
                   FIX_FRAME: {0: ("points", FIX)}}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip256")
    return folder, saved_clip(folder, N)


@pytest.fixture(scope="module")
def checkpoint():
    return present_checkpoint_path()


@pytest.fixture(scope="module")
def model(checkpoint):
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.loader import load_checkpoint, load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    spec = get_model_spec("sam2.1_hiera_tiny")
    cfg = load_config(spec, True)
    cfg.model.image_size = SIZE
    model = instantiate(cfg.model, _recursive_=True)
    load_checkpoint(model, checkpoint, spec)
    return model.eval()


def _meta(checkpoint, folder, scene) -> tuple:
    """Meta's predictor through the scene, as our streaming tracker sees it: tracking up to
    a frame with new objects (exclusive) or with a correction (inclusive: the frame is tracked,
    then corrected), the prompts, on. Logits by (object, frame), and the logits of corrected
    objects before their correction."""
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", str(checkpoint),
                                           device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    predictor.fill_hole_area = 0
    predictor.add_all_frames_to_correct_as_cond = True
    starts, seen, before = sorted(scene), set(), {}

    def output(obj, t):
        per_obj = state["output_dict_per_obj"][state["obj_id_to_idx"][obj]]
        return per_obj["cond_frame_outputs"].get(t) or per_obj["non_cond_frame_outputs"].get(t)

    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        for k, start in enumerate(starts):
            for obj, (kind, value) in scene[start].items():
                if obj in seen:
                    before[obj, start] = output(obj, start)["pred_masks"][0, 0].clone()
                if kind == "box":
                    predictor.add_new_points_or_box(state, start, obj, box=value)
                else:
                    predictor.add_new_points_or_box(state, start, obj, points=value[0],
                                                    labels=value[1])
                seen.add(obj)
            if k + 1 < len(starts):
                nxt = starts[k + 1]
                end = nxt if all(o in seen for o in scene[nxt]) else nxt - 1
            else:
                end = N - 1
            for _ in predictor.propagate_in_video(state, start,
                                                  max_frame_num_to_track=end - start):
                pass
        logits = {(obj, t): output(obj, t)["pred_masks"][0, 0].clone()
                  for obj in seen for t in range(N) if output(obj, t) is not None}
    return logits, before


def _ours(model, frames, scene, shortcuts=ALL):
    tracker = VideoTracker(model, CPU, num_frames=N, fill_hole_area=0, shortcuts=shortcuts)
    results = []
    with torch.no_grad():
        for t, frame in enumerate(frames):
            prompts = {obj: (v.reshape(2, 2), np.array([2, 3], np.int32)) if kind == "box" else v
                       for obj, (kind, v) in scene.get(t, {}).items()}
            results.append(tracker.track(frame, prompts))
    return tracker, results


@pytest.mark.parametrize("name", list(SCENES))
def test_tracking_with_shortcuts_equals_meta(model, checkpoint, clip, name):
    """Every frame's logits of every object within 1e-4 of Meta's, masks non-empty, and the
    shortcuts in use (memory frames' keys cached); the correction changed its mask."""
    folder, frames = clip
    scene = SCENES[name]
    ref, before = _meta(checkpoint, folder, scene)
    tracker, results = _ours(model, frames, scene)
    for t, frame in enumerate(results):
        for k, obj in enumerate(frame.ids.tolist()):
            assert frame.object_scores[k] > 0
            assert frame.masks(H, W)[k].sum() > 20, (obj, t)
            torch.testing.assert_close(frame.logits[k, 0], ref[obj, t], atol=1e-4, rtol=0,
                                       msg=f"object {obj}, frame {t}")
    assert sorted(ref) == sorted((obj, t) for t, f in enumerate(results) for obj in f.ids)
    track = tracker.objects[0]
    assert any("attn_keys" in o for o in list(track.recent.values()) + list(track.cond.values()))
    if name == "many":  # the comparison on the corrected frame is not vacuous
        moved = (results[FIX_FRAME].logits[0, 0] > 0) != (before[0, FIX_FRAME] > 0)
        assert moved.float().mean() > 0.01
