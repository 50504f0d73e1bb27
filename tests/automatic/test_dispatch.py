"""GPU throughput, measured without a GPU: results that do not depend on ``points_per_batch``,
and the CPU proxy of ``tests/dispatch_counter.py`` (operations and host waits per image on the
fake accelerator), ours against Meta's generator."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_image

sys.path.insert(0, str(Path(__file__).parents[1]))
import standin  # noqa: E402
from dispatch_counter import (accelerator_model, count_meta, count_ours, iou_quantile,  # noqa: E402
                              one_thread, warm_up)
from fake_accelerator import ACCEL, fake_accelerator  # noqa: E402

from infer_segment_anything_2.engine.automatic import AutomaticParams, generate  # noqa: E402
from infer_segment_anything_2.engine.model.device import CPU, DeviceChoice  # noqa: E402

IMAGE = np.zeros((160, 240, 3), np.uint8)  # content is irrelevant to the stand-in


@pytest.fixture(scope="module", autouse=True)
def threads():
    with one_thread():  # the shared 2-core machine: see dispatch_counter.one_thread
        yield


def _assert_identical(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.stability, b.stability)
    np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize("where", ["cpu", "accelerator"])
def test_results_do_not_depend_on_points_per_batch(tiny_model, where):
    """The real decoder (random weights, every candidate kept): the same masks, scores,
    stability, boxes and order to the bit for any ``points_per_batch``, on the CPU path (its
    decoder chunks do not move with the batches) and on the GPU path (where it is only a lower
    bound of the prompts per decoder call)."""
    from infer_segment_anything_2.engine.image.predictor import encode_image

    image = synthetic_image(96, 128)
    on_accel = where == "accelerator"
    choice = DeviceChoice(ACCEL) if on_accel else CPU
    model = accelerator_model(tiny_model) if on_accel else tiny_model
    context = fake_accelerator if on_accel else torch.no_grad
    with context(), torch.no_grad():
        emb = encode_image(model, image, device_choice=choice)
    runs = []
    for ppb in (1, 7, 64, 1024):
        params = AutomaticParams(points_per_side=4, points_per_batch=ppb, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=1.0)
        with context(), torch.no_grad():
            runs.append(generate(model, image, params, device_choice=choice, embedding=emb))
        assert runs[-1] is not None and emb.choice == choice
    assert len(runs[0]) == 3 * 16
    for other in runs[1:]:
        _assert_identical(runs[0], other)


def test_progress_on_the_device_follows_points_per_batch(standin_model):
    """One decoder call for the whole grid still reports one step per batch of points."""
    from infer_segment_anything_2.engine.automatic import count_steps

    params = AutomaticParams(points_per_side=6, points_per_batch=10)
    calls = []
    with fake_accelerator(), torch.no_grad():
        generate(accelerator_model(standin_model), IMAGE, params,
                 device_choice=DeviceChoice(ACCEL),
                 on_batch=lambda done, total: calls.append((done, total)))
    total = count_steps(params)
    assert calls == [(i + 1, total) for i in range(total)]


def test_host_waits_and_operations_against_meta(tiny_model):
    """Random weights, the IoU filter at the median IoU and the stability filter off (most
    prompts have a candidate that passes): at most 10 host waits per image, and outside the
    image encoder at most a tenth of the operations of Meta's generator, which decodes
    ``points_per_batch`` points per call (here 6x6 points, 4 per batch: 9 batches, as 32x32
    points make 16 of Meta's default 64). The image encoder returns zeros (the stand-in's: the
    real one is the same model code in both, and slow here); the decoder is the real one."""
    import copy

    cpu_model = copy.deepcopy(tiny_model)
    cpu_model.image_encoder = standin.StandInImageEncoder()
    image = synthetic_image(96, 128)
    median = iou_quantile(cpu_model, image, 6, 0.5)
    params = AutomaticParams(points_per_side=6, points_per_batch=4, pred_iou_thresh=median,
                             stability_score_thresh=0.0)
    model = accelerator_model(cpu_model)
    warm_up(model, image)  # what the model makes once (not per image) is not counted
    ours = count_ours(model, image, params)
    meta = count_meta(model, image, params)
    assert ours.masks == meta.masks > 0
    assert ours.waits <= 10, ours.kinds
    assert meta.waits > 3 * ours.waits
    assert ours.generator_ops * 10 <= meta.generator_ops, (ours, meta)


def test_coco_annotations_of_all_masks_at_once_equal_one_at_a_time():
    """``segmentation_to_coco`` finds the runs, areas and boxes of all masks at once: the same
    annotations as ``annotation`` of each mask (random masks, one starting with a set pixel, an
    empty one, a full one), compressed and not."""
    from infer_segment_anything_2.engine.image import coco
    from infer_segment_anything_2.engine.image.results import Segmentation

    rng = np.random.default_rng(0)
    masks = rng.random((6, 13, 17)) < np.linspace(0.05, 0.9, 6)[:, None, None]
    masks[1, 0, 0], masks[2], masks[3] = True, False, True
    seg = Segmentation.from_masks(masks, rng.random(6).astype(np.float32),
                                  stability=rng.random(6).astype(np.float32))
    for compressed in (True, False):
        expected = [coco.annotation(m, i, seg.scores[i], compressed,
                                    extra={"stability_score": float(seg.stability[i])})
                    for i, m in enumerate(masks)]
        assert coco.segmentation_to_coco(seg, compressed) == expected
    assert [coco.mask_to_rle(m) for m in masks] == coco.masks_to_rle(masks)
