"""Both modes on a (fake) accelerator: no engine step mixes devices, outputs equal the CPU's, and
the host waits for the device a few times per image.

The fake accelerator (``tests/fake_accelerator.py``) computes on the CPU but refuses any operation
that mixes its tensors with CPU tensors, as CUDA does; the engine takes the path it takes on a
GPU there (the plain decoder formulation, the whole grid per decoder call within a memory budget,
stability from upsampled logits, final masks made on the device).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import iou, make_task, synthetic_image
from fake_accelerator import ACCEL, DeviceMixError, fake_accelerator, model_on_accelerator
from infer_segment_anything_2.engine import session as session_module
from infer_segment_anything_2.engine.automatic.generator import AutomaticParams, generate
from infer_segment_anything_2.engine.model.device import CPU, DeviceChoice
from infer_segment_anything_2.engine.image.predictor import PromptPredictor
from infer_segment_anything_2.engine.image.prompts import parse_prompt

IMAGE = synthetic_image(120, 160, seed=2)
ON_ACCEL = DeviceChoice(ACCEL)


def test_the_harness_refuses_a_device_mix():
    """What the engine used to do (a CPU seed concatenated with device results) fails here."""
    with fake_accelerator():
        on_device = torch.ones(3, device=ACCEL)
        with pytest.raises(DeviceMixError):
            torch.cat([torch.zeros(0), on_device])
        with pytest.raises(DeviceMixError):
            on_device + torch.tensor([1.0, 2.0, 3.0]).cpu()
        with pytest.raises(RuntimeError):
            on_device.numpy()
        assert (on_device + torch.tensor(2.0).cpu()).cpu().tolist() == [3.0, 3.0, 3.0]


def _same_segmentation(ours, ref, score_atol=1e-4, min_iou=0.99):
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=score_atol)
    for a, b in zip(ours.masks, ref.masks):
        assert iou(a, b) > min_iou


def test_prompt_mode_on_the_accelerator(tiny_model):
    cpu = PromptPredictor(tiny_model)
    cpu.set_image(IMAGE)
    prompts = [parse_prompt("[[40,50]]", "", ""), parse_prompt("[[40,50],[100,60]]", "[1,0]", ""),
               parse_prompt("", "", "[[10,10,80,90],[60,20,150,110]]"),
               # objects with their own points, of different lengths (decoded in two sets)
               parse_prompt("[[[40,50],[30,20]],[[100,60]]]", "[[1,0],[1]]",
                            "[[10,10,80,90],[60,20,150,110]]")]
    with fake_accelerator() as mode, torch.no_grad():
        predictor = PromptPredictor(model_on_accelerator(tiny_model))
        predictor.set_image(IMAGE, device_choice=ON_ACCEL)
        assert predictor.embedding.image_embed.device == ACCEL
        for prompt in prompts:
            for multimask in (False, True):
                _same_segmentation(predictor.predict(prompt, multimask),
                                   cpu.predict(prompt, multimask))
    assert mode.transfers > 0


@pytest.mark.parametrize("params", [
    dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
    dict(points_per_side=4, use_m2m=True, pred_iou_thresh=0.0, stability_score_thresh=0.0),
], ids=["every-candidate", "m2m"])
def test_automatic_mode_on_the_accelerator_equals_the_cpu(tiny_model, params):
    """The real decoder on the fake accelerator (GPU path) against the CPU path, float32."""
    params = AutomaticParams(**params, points_per_batch=8)
    ref = generate(tiny_model, IMAGE, params, device_choice=CPU)
    assert len(ref) > 0
    with fake_accelerator() as mode, torch.no_grad():
        ours = generate(model_on_accelerator(tiny_model), IMAGE, params, device_choice=ON_ACCEL)
    _same_segmentation(ours, ref)
    np.testing.assert_allclose(ours.stability, ref.stability, atol=1e-3)
    np.testing.assert_array_equal(ours.boxes, ref.boxes)
    # a few waits per image (data-dependent selections), never one per mask or batch
    assert mode.waits <= 10, dict(mode.sync_kinds)


def test_host_waits_and_ops_do_not_grow_with_the_grid(tiny_model):
    """On the device the whole grid is one decoder call (within the memory budget), every prompt
    is upscaled and the crop's candidates are filtered once: the same operations (kernel
    launches) and host waits for 16 points as for 64, whatever ``points_per_batch``, at most 10
    per image (2 selections, the NMS, the final masks' copies). The decoder's folded attention
    weights are made once per model, in the first run."""
    from infer_segment_anything_2.engine.image.predictor import encode_image

    counts = {}
    with fake_accelerator(), torch.no_grad():
        model = model_on_accelerator(tiny_model)
        emb = encode_image(model, IMAGE, device_choice=ON_ACCEL)
    for per_side in (4, 4, 8):  # the first run makes what the model keeps (folded weights)
        params = AutomaticParams(points_per_side=per_side, points_per_batch=8,
                                 pred_iou_thresh=0.5, stability_score_thresh=0.0)
        with fake_accelerator() as mode, torch.no_grad():
            seg = generate(model, IMAGE, params, device_choice=ON_ACCEL, embedding=emb)
        assert len(seg) > 0
        counts[per_side] = mode.ops, mode.waits
    assert counts[4] == counts[8], counts
    assert counts[4][1] <= 10, counts


def test_automatic_mode_in_bfloat16_on_the_accelerator(tiny_model):
    """The decoder's low-precision branches (explicit casts) on the fake accelerator: every
    candidate kept, the same count as the CPU, predicted IoU within 0.02."""
    params = AutomaticParams(points_per_side=4, points_per_batch=16, pred_iou_thresh=0.0,
                             stability_score_thresh=0.0, box_nms_thresh=1.0)
    ref = generate(tiny_model, IMAGE, params, device_choice=CPU)
    with fake_accelerator(), torch.no_grad():
        ours = generate(model_on_accelerator(tiny_model), IMAGE, params,
                        device_choice=DeviceChoice(ACCEL, torch.bfloat16))
    assert len(ours) == len(ref) == 3 * 16
    assert np.abs(np.sort(ours.scores) - np.sort(ref.scores)).max() < 0.02


@pytest.mark.parametrize("params", [
    dict(points_per_side=6, crop_n_layers=1, points_per_batch=20),
    dict(points_per_side=4, crop_n_layers=1, use_m2m=True, min_mask_region_area=25,
         stability_score_thresh=0.9),
    dict(points_per_side=8, min_mask_region_area=25),
], ids=["crops", "crops-m2m-regions", "regions"])
def test_generator_on_the_accelerator_with_the_standin(standin_model, params):
    """Crops, m2m and small-region removal on the device: the CPU's masks (stand-in decoder)."""
    from meta_reference import assert_same_masks

    image = np.zeros((300, 420, 3), np.uint8)
    params = AutomaticParams(**params)
    ref = generate(standin_model, image, params, device_choice=CPU)
    assert len(ref) > 3
    with fake_accelerator(), torch.no_grad():
        ours = generate(model_on_accelerator(standin_model), image, params,
                        device_choice=ON_ACCEL)
    assert_same_masks(ours, ref)


def test_both_modes_through_the_ikomia_task_on_the_accelerator(tiny_checkpoint, monkeypatch):
    """The whole task, model load included, with ``cuda`` giving the fake accelerator: the same
    label maps as the task on the CPU, one encoding for both modes."""
    monkeypatch.setattr(session_module, "select_device",
                        lambda cuda: ACCEL if cuda else torch.device("cpu"))
    common = dict(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                  points_per_side=4, iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=1.0)
    results = {}
    for cuda in (False, True):
        wf, task = make_task(**common, cuda=cuda)
        with fake_accelerator() if cuda else torch.no_grad():
            wf.run_on(array=IMAGE)
            automatic = task.get_output(1).get_mask().copy()
            assert len(task.get_output(4).get_objects()) == 3 * 16
            task.set_parameters({"input_point": "[[40,50]]"})
            wf.run_on(array=IMAGE)
            prompt = task.get_output(1).get_mask().copy()
        assert next(task.session.model.parameters()).device.type == ("meta" if cuda else "cpu")
        assert task.session.predictor.encode_count == 1
        results[cuda] = automatic, prompt
    assert len(np.unique(results[False][0])) > 3
    for ours, ref in zip(results[True], results[False]):
        assert (ours == ref).mean() > 0.99
