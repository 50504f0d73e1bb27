"""Prompts from the workflow (ikomia_prompts.py, through the real Ikomia runtime): detections from
an upstream detector task, several objects with their own points (parameters and graphics), and
images revisited without encoding them again. Masks are compared with Meta's predictor on the same
random weights."""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import PLUGIN_NAME, iou, make_task, synthetic_image

BOXES = [[40, 30, 200, 150], [150, 100, 300, 220], [180, 20, 310, 120]]  # XYXY
CLASSES = ["truck", "wheel", "wheel"]
CONFIDENCES = [0.9, 0.8, 0.7]


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def fixed_detector(boxes=BOXES, classes=CLASSES, confidences=CONFIDENCES):
    """A ``CObjectDetectionTask`` made in Python that emits fixed boxes, as a YOLO would."""
    from ikomia import core, dataprocess

    names = list(dict.fromkeys(classes))

    class FixedDetector(dataprocess.CObjectDetectionTask):
        def __init__(self):
            dataprocess.CObjectDetectionTask.__init__(self, "fixed_detector")
            self.set_param_object(core.CWorkflowTaskParam())

        def run(self):
            self.begin_task_run()
            self.set_names(names)
            for i, (box, cls, conf) in enumerate(zip(boxes, classes, confidences)):
                self.add_object(i, names.index(cls), conf, *map(float, xywh(box)))
            self.end_task_run()

    return FixedDetector()


def detector_workflow(checkpoint, detector, connect="auto", **params):
    """Workflow: detector, then our task; ``auto``: Ikomia's auto-connection (it also wires the
    detector into the graphics input); ``explicit``: image from the root, detections to input 2."""
    from ikomia.dataprocess.workflow import Workflow

    wf = Workflow()
    wf.add_task(task=detector, auto_connect=True)
    algo = wf.add_task(name=PLUGIN_NAME, auto_connect=(connect == "auto"), public_hub=False,
                       private_hub=False)
    if connect == "explicit":
        wf.connect_tasks(wf.root(), algo, [(0, 0)])
        wf.connect_tasks(detector, algo, [(1, 2)])
    algo.set_parameters({"model_name": "sam2.1_hiera_tiny", "model_weight_file": str(checkpoint),
                         **{k: str(v) for k, v in params.items()}})
    return wf, algo


@pytest.fixture(scope="module")
def meta(meta_tiny_model, image):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(meta_tiny_model)
    predictor.set_image(image)
    return predictor


def meta_one(meta, points=None, labels=None, box=None):
    """Meta's single mask and score for one object."""
    masks, scores, _ = meta.predict(point_coords=None if points is None else np.array(points,
                                                                                      np.float32),
                                    point_labels=None if labels is None else np.array(labels),
                                    box=None if box is None else np.array(box, np.float32),
                                    multimask_output=False)
    return masks[0].astype(bool), float(scores[0])


def instances(algo):
    return algo.get_output(4).get_objects()


# ---------------------------------------------------------------------------------------------
# Detections as prompts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("connect", ["auto", "explicit"])
def test_connected_detector_gives_one_object_per_detection(tiny_checkpoint, image, meta, connect):
    wf, algo = detector_workflow(tiny_checkpoint, fixed_detector(), connect)
    wf.run_on(array=image)
    objects = instances(algo)
    # auto-connection also draws the detections on the graphics input: they are not doubled
    assert [o.label for o in objects] == CLASSES
    assert [o.confidence for o in objects] == pytest.approx(CONFIDENCES)  # the detector's score
    label_out = algo.get_output(1)
    assert label_out.get_class_names() == ["background", "truck", "wheel"]
    label_map = label_out.get_mask()
    for i, (obj, box) in enumerate(zip(objects, BOXES)):
        ref_mask, ref_score = meta_one(meta, box=box)
        assert iou(obj.mask.astype(bool), ref_mask) > 0.999
        assert algo.last_result.scores[i] == pytest.approx(ref_score, rel=1e-4, abs=1e-5)
        assert obj.class_index == ["truck", "wheel"].index(CLASSES[i])
    # the class of the last object painted (object 3, a wheel) is where its mask is
    last = objects[2].mask.astype(bool)
    assert np.all(label_map[last] == 2) and set(np.unique(label_map)) <= {0, 1, 2}


def test_detector_that_finds_nothing_gives_empty_outputs(tiny_checkpoint, image):
    wf, algo = detector_workflow(tiny_checkpoint, fixed_detector([], [], []), "explicit")
    wf.run_on(array=image)
    assert len(instances(algo)) == 0
    assert not algo.get_output(1).get_mask().any()
    assert algo.last_result is not None and len(algo.last_result) == 0
    assert algo.last_automatic_result is None  # not automatic mode
    assert algo.session.predictor is None or algo.session.predictor.encode_count == 0
    assert algo.get_progress_steps() == 1


@pytest.mark.parametrize("video", [False, True])
def test_a_detection_with_a_nan_box_is_skipped_with_a_warning(tiny_checkpoint, image, meta,
                                                              video, caplog):
    """A detector's box with a NaN coordinate, auto-connected (so Ikomia also draws it as a
    rectangle on the graphics input), in image and in video mode: the run succeeds with the
    good boxes, and the bad one is skipped with a warning (it used to fail the run: "graphics
    boxes: entry 0 has a non-finite value nan")."""
    import logging

    boxes = [BOXES[0], [float("nan"), 100, 300, 220], BOXES[2]]
    wf, algo = detector_workflow(tiny_checkpoint, fixed_detector(boxes), "auto",
                                 video_tracking=video)
    with caplog.at_level(logging.WARNING):
        wf.run_on(array=image)
    objects = instances(algo)
    assert [o.label for o in objects] == ["truck", "wheel"]
    assert [o.id for o in objects] == [0, 1]
    if not video:  # the good boxes are the prompts (video mode starts them from their boxes too)
        for obj, box in zip(objects, [BOXES[0], BOXES[2]]):
            assert iou(obj.mask.astype(bool), meta_one(meta, box=box)[0]) > 0.999
        assert [o.confidence for o in objects] == pytest.approx([0.9, 0.7])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NaN or infinite" in m and "skipped" in m for m in warned), warned
    assert not any("graphics" in m for m in warned), warned  # the detector's own rectangle


def test_detections_filled_by_hand_and_points_for_every_detection(tiny_task, image, meta):
    wf, algo = tiny_task
    detections = algo.get_input(2)
    detections.init("my detector", 0)
    for i, (box, cls, conf) in enumerate(zip(BOXES[:2], CLASSES, CONFIDENCES)):
        detections.add_object(i, cls, conf, *map(float, xywh(box)), [255, 0, 0])
    algo.set_parameters({"input_point": "[[120,90]]", "input_point_label": "[0]",
                         "input_box": "[10,150,100,210]"})
    wf.run_on(array=image)
    objects = instances(algo)
    # input_box first, then the detections; the point goes to every box
    assert [o.label for o in objects] == ["object 1", "truck", "wheel"]
    assert algo.get_output(1).get_class_names() == ["background", "object 1", "truck", "wheel"]
    for obj, box in zip(objects, [[10, 150, 100, 210]] + BOXES[:2]):
        ref_mask, _ = meta_one(meta, [[120, 90]], [0], box)
        assert iou(obj.mask.astype(bool), ref_mask) > 0.999
    assert objects[0].confidence == pytest.approx(float(algo.last_result.scores[0]))
    assert objects[1].confidence == pytest.approx(0.9)


def test_unconnected_detection_input_leaves_automatic_mode(tiny_task, image):
    wf, algo = tiny_task
    algo.set_parameters({"points_per_side": "2", "iou_thresh": "0", "stability_score_thresh": "0"})
    wf.run_on(array=image)
    assert not algo.get_input(2).is_data_available()
    assert algo.last_automatic_result is not None and len(algo.last_automatic_result) >= 1


# ---------------------------------------------------------------------------------------------
# Several objects, each with its own points
# ---------------------------------------------------------------------------------------------
def test_point_groups_through_the_task_equal_meta_per_object(tiny_task, image, meta):
    wf, algo = tiny_task
    algo.set_parameters({"input_point": "[[[100,80],[60,50]],[[220,160]]]",
                         "input_point_label": "[[1,0],[1]]", "input_box": ""})
    wf.run_on(array=image)
    objects = instances(algo)
    assert [o.label for o in objects] == ["object 1", "object 2"]
    for obj, (points, labels) in zip(objects, [([[100, 80], [60, 50]], [1, 0]),
                                               ([[220, 160]], [1])]):
        ref_mask, ref_score = meta_one(meta, points, labels)
        assert iou(obj.mask.astype(bool), ref_mask) > 0.999
        assert obj.confidence == pytest.approx(ref_score, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("category, expected", [
    ("object 3", (1, 3)), ("Background 2", (0, 2)), ("bg#4", (0, 4)), (" fg 1 ", (1, 1)),
    ("background", (0, None)), ("0", (0, None)), ("Default", (1, None)), ("dog", (1, None)),
    ("", (1, None)),
])
def test_point_categories_give_label_and_group(category, expected):
    from infer_segment_anything_2.ikomia_prompts import point_category

    assert point_category(category) == expected


def test_point_groups_from_graphics_categories(tiny_task, image, meta):
    from ikomia import core

    wf, algo = tiny_task
    algo.set_parameters({"input_point": "", "input_point_label": "", "input_box": ""})
    items = []
    for (x, y), category in [((100, 80), "object 1"), ((220, 160), "Object 2"),
                             ((60, 50), "background 1"), ((30, 200), "bg 2")]:
        item = core.CGraphicsPoint(core.CPointF(float(x), float(y)))
        item.set_category(category)
        items.append(item)
    algo.get_input(1).set_items(items)
    try:
        wf.run_on(array=image)
    finally:
        algo.get_input(1).set_items([])
    objects = instances(algo)
    assert len(objects) == 2
    for obj, (points, labels) in zip(objects, [([[100, 80], [60, 50]], [1, 0]),
                                               ([[220, 160], [30, 200]], [1, 0])]):
        ref_mask, _ = meta_one(meta, points, labels)
        assert iou(obj.mask.astype(bool), ref_mask) > 0.999


def test_named_rectangles_name_their_objects(tiny_task, image):
    from ikomia import core

    wf, algo = tiny_task
    algo.set_parameters({"input_point": "", "input_point_label": "", "input_box": ""})
    dog, plain = core.CGraphicsRectangle(40.0, 30.0, 160.0, 120.0), core.CGraphicsRectangle(
        150.0, 100.0, 150.0, 120.0)
    dog.set_category("dog")
    algo.get_input(1).set_items([dog, plain])
    try:
        wf.run_on(array=image)
    finally:
        algo.get_input(1).set_items([])
    assert [o.label for o in instances(algo)] == ["dog", "object 2"]


@pytest.mark.parametrize("points, labels, boxes, problem", [
    ("[[[1,2]],[[3,4]],[[5,6]]]", "", "[[0,0,9,9],[1,1,8,8]]",
     "input_point: 3 groups of points for 2 boxes"),
    ("[[[1,2]],[[3,4]]]", "[1,1]", "", "input_point_label: labels shaped as 2 labels in one list"),
])
def test_groups_that_do_not_match_name_the_parameter(tiny_task, image, points, labels, boxes,
                                                     problem):
    wf, algo = tiny_task
    algo.set_parameters({"input_point": points, "input_point_label": labels, "input_box": boxes})
    with pytest.raises(RuntimeError, match=re.escape(problem)) as err:
        wf.run_on(array=image)
    assert "Expected" in str(err.value)
    assert not algo.get_output(4).get_objects()


# ---------------------------------------------------------------------------------------------
# Images revisited
# ---------------------------------------------------------------------------------------------
def test_alternating_images_encode_each_once(tiny_checkpoint):
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         input_point="[[20,20]]")
    truck, groceries = synthetic_image(64, 80, seed=31), synthetic_image(64, 80, seed=32)
    masks = []
    for img in (truck, groceries, truck, groceries):
        wf.run_on(array=img)
        masks.append(algo.get_output(4).get_objects()[0].mask.copy())
    assert algo.session.predictor.encode_count == 2
    np.testing.assert_array_equal(masks[0], masks[2])
    np.testing.assert_array_equal(masks[1], masks[3])
