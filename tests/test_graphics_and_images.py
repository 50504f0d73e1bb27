"""Prompts drawn in Studio (graphics input 1) and images as users have them."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import iou, make_task
from infer_segment_anything_2.engine.predictor import PromptPredictor
from infer_segment_anything_2.engine.prompts import make_prompt, parse_prompt


@pytest.fixture(scope="module")
def task(tiny_checkpoint):
    return make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint)


@pytest.fixture(scope="module")
def reference(tiny_model, image):
    predictor = PromptPredictor(tiny_model)
    predictor.set_image(image)
    return predictor


def run_with_graphics(task, image, items, **params):
    wf, algo = task
    base = {"input_point": "", "input_point_label": "", "input_box": "",
            "multimask_output": "False"}
    base.update(params)
    algo.set_parameters(base)
    algo.get_input(1).set_items(items)
    wf.run_on(array=image)
    return algo


def instance_masks(algo):
    return [obj.mask.astype(bool) for obj in algo.get_output(4).get_objects()]


def test_points_use_the_point_position_not_the_bounding_rect(task, image, reference):
    from ikomia import core

    items = [core.CGraphicsPoint(core.CPointF(100.0, 80.0))]
    algo = run_with_graphics(task, image, items)
    ref = reference.predict(make_prompt([[100.0, 80.0]]))
    assert iou(instance_masks(algo)[0], ref.masks[0]) > 0.999


def test_background_category_makes_a_negative_point(task, image, reference):
    from ikomia import core

    fg = core.CGraphicsPoint(core.CPointF(100.0, 80.0))
    bg = core.CGraphicsPoint(core.CPointF(220.0, 160.0))
    bg.set_category("Background")
    algo = run_with_graphics(task, image, [fg, bg])
    ref = reference.predict(make_prompt([[100, 80], [220, 160]], [1, 0]))
    assert iou(instance_masks(algo)[0], ref.masks[0]) > 0.999
    wrong = reference.predict(make_prompt([[100, 80], [220, 160]], [1, 1]))
    assert ref.scores[0] != pytest.approx(wrong.scores[0])


def test_rectangle_polygon_and_ellipse_become_boxes(task, image, reference):
    from ikomia import core

    rect = core.CGraphicsRectangle(40.0, 30.0, 160.0, 120.0)
    poly = core.CGraphicsPolygon([core.CPointF(150, 100), core.CPointF(300, 130),
                                  core.CPointF(220, 220)])
    ellipse = core.CGraphicsEllipse(10.0, 150.0, 90.0, 60.0)
    algo = run_with_graphics(task, image, [rect, poly, ellipse])
    ref = reference.predict(make_prompt(boxes=[[40, 30, 200, 150], [150, 100, 300, 220],
                                               [10, 150, 100, 210]]))
    masks = instance_masks(algo)
    assert len(masks) == 3
    for ours, theirs in zip(masks, ref.masks):
        assert iou(ours, theirs) > 0.999
    assert set(np.unique(algo.get_output(1).get_mask())) <= {0, 1, 2, 3}


def test_graphics_and_parameters_are_combined(task, image, reference):
    from ikomia import core

    rect = core.CGraphicsRectangle(40.0, 30.0, 160.0, 120.0)
    algo = run_with_graphics(task, image, [rect], input_point="[[100,80]]",
                             input_box="[150,100,300,220]")
    ref = reference.predict(parse_prompt("[[100,80]]", "", "[[40,30,200,150],[150,100,300,220]]"))
    masks = instance_masks(algo)
    assert len(masks) == 2
    for ours, theirs in zip(masks, ref.masks):
        assert iou(ours, theirs) > 0.999


@pytest.mark.parametrize("kind", ["gray", "gray1", "rgba", "uint16", "float01"])
def test_image_types_give_masks_of_the_input_size(task, image, kind):
    wf, algo = task
    gray = image.mean(axis=2).astype(np.uint8)
    variants = {
        "gray": gray,
        "gray1": gray[:, :, None],
        "rgba": np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]),
        "uint16": image.astype(np.uint16) * 257,
        "float01": image.astype(np.float32) / 255.0,
    }
    algo.get_input(1).clear_data()
    algo.set_parameters({"input_point": "[[100,80]]", "input_box": ""})
    wf.run_on(array=variants[kind])
    mask = algo.get_output(1).get_mask()
    assert mask.shape == image.shape[:2]
    assert algo.get_output(4).get_object_count() == 1


def test_conversions_reproduce_the_rgb_mask(tiny_model, image):
    from infer_segment_anything_2.engine.images import to_rgb_uint8

    predictor = PromptPredictor(tiny_model)
    predictor.set_image(to_rgb_uint8(image.astype(np.uint16) * 257))
    a = predictor.predict(parse_prompt("[[100,80]]")).masks[0]
    predictor.set_image(to_rgb_uint8(image.astype(np.float64) / 255.0))
    b = predictor.predict(parse_prompt("[[100,80]]")).masks[0]
    predictor.set_image(image)
    c = predictor.predict(parse_prompt("[[100,80]]")).masks[0]
    assert predictor.encode_count == 1  # all three are the same pixels: one encoding
    assert iou(a, c) == 1.0 and iou(b, c) == 1.0


def test_very_small_image(task):
    wf, algo = task
    tiny = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    algo.get_input(1).clear_data()
    algo.set_parameters({"input_point": "[[8,8]]", "input_box": "[2,2,12,12]",
                         "input_size_percent": "100"})
    wf.run_on(array=tiny)
    assert algo.get_output(1).get_mask().shape == (16, 16)
    algo.set_parameters({"input_size_percent": "10"})  # 1x1 encoder input, still 16x16 masks
    wf.run_on(array=tiny)
    assert algo.get_output(1).get_mask().shape == (16, 16)


def test_one_pixel_image_and_empty_images(task):
    wf, algo = task
    algo.get_input(1).clear_data()
    algo.set_parameters({"input_point": "[[0,0]]", "input_box": "", "input_size_percent": "100"})
    wf.run_on(array=np.full((1, 1, 3), 128, np.uint8))
    assert algo.get_output(1).get_mask().shape == (1, 1)
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8)):
        with pytest.raises(RuntimeError, match=r"image: got an array of shape"):
            wf.run_on(array=empty)
        assert not algo.get_output(1).is_data_available()


def test_very_large_image_in_automatic_mode_stays_within_memory(task):
    """8000 x 8000 (64 MP) in automatic mode: the model sees 1024 x 1024, masks come back at full
    size, and the process grows by far less than the 3 GB that full-size float candidates of one
    point batch would take."""
    from test_long_run import rss_bytes

    wf, algo = task
    algo.get_input(1).clear_data()
    algo.set_parameters({"input_point": "", "input_box": "", "points_per_side": "4",
                         "points_per_batch": "16", "iou_thresh": "0.0",
                         "stability_score_thresh": "0.0"})
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[2000:6000, 1000:5000] = (200, 60, 40)
    before = rss_bytes()
    wf.run_on(array=big)
    grown = rss_bytes() - before
    assert algo.get_output(1).get_mask().shape == (8000, 8000)
    count = algo.get_output(4).get_object_count()
    # the masks the run returns are full size by contract (K x 64 MB); beyond them, < 2 GB
    assert grown < count * 2 * 64e6 + 2e9, f"grew {grown / 1e9:.1f} GB for {count} masks"
