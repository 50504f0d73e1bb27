"""The ``precision`` parameter through the Ikomia task: bfloat16 and float16 (the dtypes GPUs run)
against Meta's predictor and generator run under the same ``torch.autocast`` on the same weights.

Masks from random weights are fragile under low precision, so these tests compare what is
stable: the predicted IoU scores (within 0.02 of Meta's under the same autocast; measured below
0.003), the count and the score distribution of automatic masks with every candidate kept, and,
with the stand-in decoder of ``tests/standin.py`` (known discs), the masks themselves.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_task, synthetic_image
from infer_segment_anything_2.engine.automatic.generator import AutomaticParams, generate
from infer_segment_anything_2.engine.model.device import DeviceChoice

sys.path.insert(0, str(Path(__file__).parent))
import standin  # noqa: E402
from meta_reference import generate_with_meta  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
IMAGE = synthetic_image(180, 240, seed=5)
SCORE_TOL = 0.02
KEEP_ALL = dict(iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
PROMPTS = [
    dict(input_point="[[60,80]]"),
    dict(input_point="[[60,80],[170,40]]", input_point_label="[1,0]"),
    dict(input_box="[[20,30,120,150],[110,20,230,170]]"),
    dict(input_box="[20,30,120,150]", input_point="[[70,90]]", multimask_output=True),
]


@pytest.fixture(scope="module", params=list(DTYPES))
def precision(request):
    return request.param


@pytest.fixture(scope="module")
def task(precision, tiny_checkpoint):
    """One task per precision: both modes share its encoding of IMAGE."""
    return make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                     precision=precision, points_per_side=4)


def meta_context(precision):
    """Meta's reference runs under the same autocast as ours; in a process that imported Ikomia,
    also with static OpenMP teams, or PyTorch's bfloat16 CPU kernels return garbage
    (``engine.model.device.static_openmp_teams``): ``DeviceChoice.compute`` gives both."""
    return DeviceChoice(torch.device("cpu"), DTYPES[precision]).compute()


@pytest.fixture(scope="module")
def meta_predictor(precision, meta_tiny_model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(meta_tiny_model)
    with meta_context(precision):
        predictor.set_image(IMAGE)
    return predictor


def _instances(algo):
    objects = algo.get_output(4).get_objects()
    return np.array([o.confidence for o in objects]), objects


def _meta_predict(predictor, precision, prompt):
    """Meta's scores for ``prompt`` (the plugin's parameter strings), ``(objects, candidates)``,
    each object's candidates best first (as the plugin orders them)."""
    def arr(key):
        return np.array(json.loads(prompt[key]), np.float32) if prompt.get(key) else None

    points, boxes = arr("input_point"), arr("input_box")
    labels = arr("input_point_label")
    if points is not None and labels is None:
        labels = np.ones(len(points), np.float32)
    multimask = bool(prompt.get("multimask_output", False))
    with meta_context(precision):
        _, scores, _ = predictor.predict(points, labels, box=boxes, multimask_output=multimask)
    scores = scores.reshape(-1, 3 if multimask else 1)
    return -np.sort(-scores, axis=1)


@pytest.mark.parametrize("prompt", PROMPTS, ids=["point", "points-labels", "two-boxes",
                                                 "box-point-multimask"])
def test_prompt_mode_scores_match_meta_under_the_same_autocast(task, meta_predictor, precision,
                                                               prompt):
    wf, algo = task
    algo.set_parameters({"input_point": "", "input_point_label": "", "input_box": "",
                         "multimask_output": "False", **{k: str(v) for k, v in prompt.items()}})
    wf.run_on(array=IMAGE)
    ours, objects = _instances(algo)
    ref = _meta_predict(meta_predictor, precision, prompt).reshape(-1)
    assert len(ours) == len(ref)
    assert np.abs(ours - ref).max() < SCORE_TOL, (ours, ref)
    assert any(o.mask.any() for o in objects)


def test_automatic_mode_count_and_scores_match_meta(task, precision, meta_tiny_model):
    """Every candidate kept: 3 per grid point on both sides, the same score distribution."""
    wf, algo = task
    algo.set_parameters({"input_point": "", "input_point_label": "", "input_box": "",
                         **KEEP_ALL})
    wf.run_on(array=IMAGE)
    ours, _ = _instances(algo)
    ref = generate_with_meta(meta_tiny_model, IMAGE, AutomaticParams(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
        device_choice=DeviceChoice(torch.device("cpu"), DTYPES[precision]))
    assert len(ours) == len(ref) == 3 * 16
    assert np.abs(np.sort(ours) - np.sort(ref.scores)).max() < SCORE_TOL
    assert algo.session.predictor.encode_count == 1  # shared with prompt mode


SMALL = 256  # input size of the options' models: the options' logic does not depend on it


@pytest.fixture(scope="module")
def small_models(tiny_checkpoint):
    """Ours and Meta's ``build_sam2`` of the tiny checkpoint at a 256x256 input: the same modules
    and weights as at 1024, 16x fewer pixels (each option's test costs ~25x less; in bfloat16 on a
    CPU without native bfloat16 the three took 718 s at 1024)."""
    from sam2.build_sam import build_sam2

    from clips import sized_model

    meta = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", str(tiny_checkpoint), device="cpu",
                      hydra_overrides_extra=[f"++model.image_size={SMALL}"])
    return sized_model(tiny_checkpoint, SMALL).eval(), meta


@pytest.mark.parametrize("params", [
    dict(crop_n_layers=1, points_per_side=4),
    dict(use_m2m=True, points_per_side=4),
    dict(min_mask_region_area=40, points_per_side=4),
], ids=["crops", "m2m", "small-regions"])
def test_automatic_options_in_bfloat16_match_meta(small_models, params):
    """Crops, m2m and small-region removal in bfloat16 with every candidate kept: the same
    count (crops: within 5%, a mask near a crop edge may fall either side of the 20-pixel
    tolerance) and score distribution as Meta's generator under the same autocast. The masks
    at 1024 are those of the tests above; here the models see a 256x256 input."""
    choice = DeviceChoice(torch.device("cpu"), torch.bfloat16)
    params = AutomaticParams(**params, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                             box_nms_thresh=1.0, crop_nms_thresh=1.0)
    ours_model, meta_model = small_models
    assert ours_model.image_size == meta_model.image_size == SMALL
    ours = generate(ours_model, IMAGE, params, device_choice=choice)
    ref = generate_with_meta(meta_model, IMAGE, params, device_choice=choice)
    assert len(ref) > 40
    assert abs(len(ours) - len(ref)) <= 0.05 * len(ref)
    qs = np.linspace(0, 1, 11)
    assert np.abs(np.quantile(ours.scores, qs) - np.quantile(ref.scores, qs)).max() < SCORE_TOL


@pytest.fixture(scope="module")
def standin_model(tiny_checkpoint):
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    model = build_model(get_model_spec("sam2.1_hiera_tiny"), tiny_checkpoint)
    standin.install(model)
    return model


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("params", [
    dict(points_per_side=8),
    dict(points_per_side=4, crop_n_layers=1, use_m2m=True, min_mask_region_area=25,
         stability_score_thresh=0.9),
], ids=["default", "crops-m2m-regions"])
def test_automatic_masks_match_meta_under_autocast_with_the_standin(standin_model, dtype,
                                                                    params):
    from meta_reference import assert_same_masks

    choice = DeviceChoice(torch.device("cpu"), DTYPES[dtype])
    params = AutomaticParams(**params)
    ref = generate_with_meta(standin_model, IMAGE, params, device_choice=choice)
    assert len(ref) > 3
    assert_same_masks(generate(standin_model, IMAGE, params, device_choice=choice), ref)


def test_precision_changes_re_encode_but_never_reload(tiny_checkpoint):
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         input_point="[[60,80]]")
    # auto is float32 on the CPU; back to auto after bfloat16, the float32 embedding is still
    # cached (the last images stay cached, precision in the key)
    runs = [("auto", 1), ("float32", 1), ("bfloat16", 2), ("bfloat16", 2), ("auto", 2)]
    for precision, encodes in runs:
        algo.set_parameters({"precision": precision})
        wf.run_on(array=IMAGE)
        assert algo.session.predictor.encode_count == encodes, precision
        assert algo.session.load_count == 1
    assert algo.get_output(1).get_mask().any()


def test_bad_precision_fails_the_run_naming_the_parameter(tiny_checkpoint):
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         precision="half")
    with pytest.raises(Exception, match="precision: unknown value 'half'"):
        wf.run_on(array=IMAGE)
    algo.set_parameters({"precision": "float32", "input_point": "[[60,80]]"})
    wf.run_on(array=IMAGE)
    assert algo.get_output(1).get_mask().any()
