"""Automatic mode: our generator against Meta's, streaming, progress, cancel, and the Ikomia task.

Parity runs both generators on one model whose prompt encoder and mask decoder are replaced by the
stand-in of ``tests/standin.py`` (known discs; random weights would give near-useless masks) and
whose image encoder returns zeros (the stand-in ignores the image; this keeps the tests fast).
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import iou, make_task, synthetic_image

sys.path.insert(0, str(Path(__file__).parents[1]))
from meta_reference import assert_same_masks, generate_with_meta  # noqa: E402

from infer_segment_anything_2.engine.automatic.generator import (  # noqa: E402
    AutomaticParams, count_steps, generate)
from infer_segment_anything_2.engine.cancel import GenerationCancelled  # noqa: E402

IMAGE = np.zeros((160, 240, 3), np.uint8)  # content is irrelevant to the stand-in


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: on a shared, oversubscribed 2-core machine two OpenMP
    threads make every small op wait for a descheduled partner (measured 5-10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PARITY_CASES = {
    "single": dict(points_per_side=8),
    "crops": dict(points_per_side=6, crop_n_layers=1, points_per_batch=20),
    "m2m": dict(points_per_side=6, use_m2m=True),
    "small-regions": dict(points_per_side=8, min_mask_region_area=25),
    "all": dict(points_per_side=4, crop_n_layers=1, use_m2m=True, min_mask_region_area=25,
                stability_score_thresh=0.9),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_parity_with_meta(standin_model, case):
    params = AutomaticParams(**PARITY_CASES[case])
    ref = generate_with_meta(standin_model, IMAGE, params)
    ours = generate(standin_model, IMAGE, params)
    assert len(ref) > 3, "the stand-in must give masks to compare"
    assert_same_masks(ours, ref)
    areas = ours.masks.sum(axis=(1, 2))
    assert np.all(areas[:-1] >= areas[1:]), "sorted by decreasing area"
    assert ours.masks.shape[1:] == IMAGE.shape[:2]


def test_parity_cases_exercise_the_filters(standin_model):
    """The stand-in is diverse enough: each filter removes candidates, and small-region removal
    edits masks (otherwise the parity tests would prove little)."""
    base = dict(points_per_side=8)
    none = AutomaticParams(**base, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           box_nms_thresh=1.0)
    n_all = len(generate(standin_model, IMAGE, none))
    assert n_all == 3 * 64  # every candidate of every point
    for name, value in [("pred_iou_thresh", 0.8), ("stability_score_thresh", 0.95),
                        ("box_nms_thresh", 0.7)]:
        kept = generate(standin_model, IMAGE, AutomaticParams(**{**none.__dict__, name: value}))
        assert 0 < len(kept) < n_all, name
    plain = generate(standin_model, IMAGE, AutomaticParams(**base))
    cleaned = generate(standin_model, IMAGE, AutomaticParams(**base, min_mask_region_area=25))
    assert len(plain) == len(cleaned)
    changed = sum(not np.array_equal(a, b) for a, b in zip(plain.masks, cleaned.masks))
    assert changed > 0


def test_parity_with_meta_stability_by_cells(standin_model):
    """Large crops count stability by cells (no full upsampling): same masks as Meta."""
    from infer_segment_anything_2.engine.automatic import stability

    image = np.zeros((600, 800, 3), np.uint8)
    assert 600 * 800 >= stability.BY_CELLS_MIN_PIXELS
    params = AutomaticParams(points_per_side=6)
    assert_same_masks(generate(standin_model, image, params),
                      generate_with_meta(standin_model, image, params))


def test_higher_thresholds_give_subsets(standin_model):
    loose = generate(standin_model, IMAGE, AutomaticParams(points_per_side=8, pred_iou_thresh=0.8,
                                                           box_nms_thresh=1.0))
    strict = generate(standin_model, IMAGE, AutomaticParams(points_per_side=8, pred_iou_thresh=0.9,
                                                            box_nms_thresh=1.0))
    assert 0 < len(strict) < len(loose)
    assert np.all(strict.scores > 0.9)
    for mask in strict.masks:
        assert max(iou(mask, other) for other in loose.masks) == 1.0


def test_scale_brings_masks_back_to_original_size(standin_model):
    """input_size_percent < 100: the model sees a smaller image, so the same candidates pass the
    same filters as in Meta's generator; masks come back at full size from the logits (Meta's
    wrapper resizes small thresholded masks, so small masks differ by their blocky edges)."""
    params = AutomaticParams(points_per_side=6)
    ours = generate(standin_model, IMAGE, params, scale=0.5)
    ref = generate_with_meta(standin_model, IMAGE, params, scale=0.5)
    assert ours.masks.shape[1:] == IMAGE.shape[:2]
    matched = assert_same_masks(ours, ref, min_iou=0.7)
    assert matched.mean() > 0.9


def test_progress_follows_batches(standin_model):
    params = AutomaticParams(points_per_side=6, points_per_batch=10, crop_n_layers=1,
                             crop_n_points_downscale_factor=2)
    calls = []
    generate(standin_model, IMAGE, params, on_batch=lambda done, total: calls.append((done, total)))
    total = count_steps(params)
    assert total == 4 + 4 * 1  # 36 points / 10 per batch; 4 crops of 9 points
    assert calls == [(i + 1, total) for i in range(total)]


def test_points_per_batch_bounds_decoder_calls(standin_model):
    """The decoder never sees more than DECODER_CHUNK prompts at once (batches of points are
    whole decoder chunks), and each point is decoded exactly once."""
    from infer_segment_anything_2.engine.automatic import generator as automatic

    dec = standin_model.standin_decoder
    original = dec.forward
    for ppb, bound in [(5, automatic.DECODER_CHUNK), (100, automatic.DECODER_CHUNK)]:
        seen = []

        def spy(*args, **kwargs):
            seen.append(kwargs["sparse_prompt_embeddings"].shape[0])
            return original(*args, **kwargs)

        dec.forward = spy
        try:
            generate(standin_model, IMAGE, AutomaticParams(points_per_side=7, points_per_batch=ppb))
        finally:
            del dec.forward
        assert sum(seen) == 49
        assert max(seen) <= bound


def test_only_iou_survivors_are_upsampled_in_chunks(standin_model, monkeypatch):
    """Full-resolution logits exist only for candidates that passed the predicted-IoU filter, at
    most UPSAMPLE_CHUNK at a time (Meta's generator upsamples all 3 x points_per_batch)."""
    from infer_segment_anything_2.engine.automatic import final_masks, stability

    sizes = []
    interpolate = stability.F.interpolate

    def spy(x, *args, **kwargs):
        out = interpolate(x, *args, **kwargs)
        sizes.append(out.shape[0])
        return out

    monkeypatch.setattr(stability.F, "interpolate", spy)
    monkeypatch.setattr(stability, "BY_CELLS_MIN_PIXELS", 10 ** 9)  # the upsampling path
    big = np.zeros((1200, 1800, 3), np.uint8)
    seg = generate(standin_model, big, AutomaticParams(points_per_side=8, pred_iou_thresh=0.999))
    assert len(seg) == 0 and sizes == []
    seg = generate(standin_model, big, AutomaticParams(points_per_side=8, points_per_batch=64))
    assert len(seg) > 0
    assert max(sizes) <= final_masks.UPSAMPLE_CHUNK
    # candidates upsampled for the filters (< all 192) plus the final masks
    assert len(seg) < sum(sizes) < 3 * 64 + len(seg)


def test_should_stop_cancels_within_one_chunk(standin_model):
    dec = standin_model.standin_decoder
    before = dec.calls
    params = AutomaticParams(points_per_side=16, points_per_batch=64)
    batches = []

    def on_batch(done, total):
        batches.append(done)

    with pytest.raises(GenerationCancelled):
        generate(standin_model, IMAGE, params, on_batch=on_batch,
                 should_stop=lambda: dec.calls - before >= 2)
    assert dec.calls - before == 2  # stopped before a third decoder chunk
    assert batches == []


def test_should_stop_interrupts_the_image_encoder(tiny_model):
    """A stop request during image encoding is honoured between two encoder blocks."""
    blocks = []
    handle = tiny_model.image_encoder.trunk.blocks[0].register_forward_hook(
        lambda *a: blocks.append(1))
    try:
        t0 = time.monotonic()
        with pytest.raises(GenerationCancelled):
            generate(tiny_model, synthetic_image(64, 64), AutomaticParams(points_per_side=2),
                     should_stop=lambda: len(blocks) > 0)
        assert time.monotonic() - t0 < 60
    finally:
        handle.remove()
    assert len(blocks) == 1


def test_random_weights_run_and_agree_with_meta(tiny_model):
    """The real decoder path (PointDecoder) on random weights: runs, and keeps what Meta keeps."""
    img = synthetic_image(96, 128)
    params = AutomaticParams(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ours = generate(tiny_model, img, params)
    ref = generate_with_meta(tiny_model, img, params)
    assert len(ours) == len(ref) > 0
    assert_same_masks(ours, ref, min_iou=0.98)


# ---------------------------------------------------------------------------------------------
# Through Ikomia
# ---------------------------------------------------------------------------------------------
def test_workflow_automatic_mode(tiny_checkpoint, image_path, monkeypatch):
    """End to end through the Workflow on random weights with permissive thresholds: label map,
    instance output with confidence, last_automatic_result with stability, progress steps."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side=4, points_per_batch=6, iou_thresh=0.0,
                         stability_score_thresh=0.0)
    assert task.get_progress_steps() == 3 + 1
    steps = []
    original = type(task).emit_step_progress
    monkeypatch.setattr(type(task), "emit_step_progress",
                        lambda self: (steps.append(1), original(self))[1])
    wf.run_on(path=str(image_path))
    seg = task.last_automatic_result
    assert seg is not None and len(seg) > 0 and seg.stability is not None
    assert len(steps) == 3 + 1
    inst = task.get_output(4)
    assert inst.get_object_count() == len(seg)
    confidences = sorted(o.confidence for o in inst.get_objects())
    np.testing.assert_allclose(confidences, sorted(seg.scores), atol=1e-6)
    label = task.get_output(1).get_mask()
    assert label.shape == seg.image_shape and label.max() >= 1


def test_workflow_stop_then_next_run_works(tiny_checkpoint, image_path):
    """wf.stop() from another thread during an automatic run: the run ends quickly with no
    outputs; the next run works."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side=32, points_per_batch=64, input_point="[[5,5]]")
    wf.run_on(array=synthetic_image(64, 64, seed=9))  # the model is loaded: stop hits the run
    task.set_parameters({"input_point": ""})
    stopped_at = {}

    def stop_later():
        time.sleep(3.0)
        stopped_at["t"] = time.monotonic()
        wf.stop()

    thread = threading.Thread(target=stop_later)
    thread.start()
    t0 = time.monotonic()
    try:  # Ikomia may report the stop as an error of the workflow; the task itself ends cleanly
        wf.run_on(path=str(image_path))
    except RuntimeError as exc:
        assert "Stop" in str(exc) or "stop" in str(exc)
    ended = time.monotonic()
    thread.join()
    assert "t" in stopped_at, "the run ended before the stop request"
    assert ended - stopped_at["t"] < 10.0
    assert ended - t0 < 60.0
    assert task.get_output(4).get_object_count() == 0
    label = task.get_output(1).get_mask()
    assert label is None or label.size == 0 or label.max() == 0
    assert task.last_automatic_result is None

    task.set_parameters({"points_per_side": "2", "iou_thresh": "0", "stability_score_thresh": "0"})
    wf.run_on(path=str(image_path))  # the very next run works
    assert task.last_automatic_result is not None
    assert task.get_output(4).get_object_count() == len(task.last_automatic_result) > 0


def test_random_weights_early_iou_filter_agrees_with_meta(tiny_model):
    """The real decoder upscales only candidates above pred_iou_thresh: with a threshold that
    keeps some candidates and drops others, the masks are still Meta's."""
    img = synthetic_image(96, 128)
    loose = AutomaticParams(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                            box_nms_thresh=1.0)
    everything = generate(tiny_model, img, loose)
    thresh = float(np.median(everything.scores))
    params = AutomaticParams(points_per_side=3, pred_iou_thresh=thresh,
                             stability_score_thresh=0.0)
    ours = generate(tiny_model, img, params)
    ref = generate_with_meta(tiny_model, img, params)
    assert 0 < len(ref) < len(everything)
    assert len(ours) == len(ref)
    assert_same_masks(ours, ref, min_iou=0.98)
    np.testing.assert_allclose(np.sort(ours.scores), np.sort(ref.scores), atol=1e-5)


@pytest.mark.parametrize("route", ["cells", "routed"])
def test_the_path_users_run_agrees_with_meta(tiny_model, monkeypatch, route):
    """End to end on the path a CPU user runs: the real decoder (PointDecoder, upscaling only
    the candidates above iou_thresh, here the median of the predicted IoUs) and stability,
    boxes and final masks counted by cells (an image above 400x400): Meta's masks and scores.
    Random weights' logits are noisy, so the routing sends them to the upsampling: ``cells``
    forces the counting by cells for all of them, ``routed`` leaves the routing alone."""
    from infer_segment_anything_2.engine.automatic import cells, stability
    from infer_segment_anything_2.engine.decoder import point_decoder as decoder

    if route == "cells":
        monkeypatch.setattr(stability, "CROSSED_SHARE_PER_COLUMN", float("inf"))

    img = synthetic_image(480, 640, seed=4)
    assert 480 * 640 >= stability.BY_CELLS_MIN_PIXELS
    # random weights give logits near 0: a small stability offset makes the stability counts
    # (and their filter) matter
    loose = AutomaticParams(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                            stability_score_offset=0.05, box_nms_thresh=1.0)
    everything = generate(tiny_model, img, loose)
    params = AutomaticParams(points_per_side=4, pred_iou_thresh=float(np.median(everything.scores)),
                             stability_score_thresh=float(np.median(everything.stability)),
                             stability_score_offset=0.05, box_nms_thresh=1.0)
    used = {"cells": 0, "decode_above": 0}
    for module, name, key in ((cells, "stability_and_boxes", "cells"),
                              (decoder.PointDecoder, "decode_above", "decode_above")):
        original = getattr(module, name)

        def spy(*args, _original=original, _key=key, **kwargs):
            used[_key] += len(args[0]) if _key == "cells" else 1  # candidates counted / calls
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    ours = generate(tiny_model, img, params)
    assert used["decode_above"] > 0 and (used["cells"] > 0) == (route == "cells")
    ref = generate_with_meta(tiny_model, img, params)
    assert 5 < len(ref) < 3 * 16 // 2  # the median thresholds keep some candidates, not all
    assert 0.3 < ref.stability.min() < 1.0
    assert len(ours) == len(ref)
    assert_same_masks(ours, ref, min_iou=0.98)
