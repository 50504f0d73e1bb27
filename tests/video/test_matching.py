"""Detections on a video frame (``engine/video/matching.py``): checked, then matched one to one."""
from __future__ import annotations

import numpy as np

from infer_segment_anything_2.engine.video.matching import (Detections, box_iou,
                                                            clean_detections, mask_box, match)


def test_bad_boxes_are_skipped_with_a_warning_and_the_rest_clipped():
    boxes = [[10, 10, 50, 40], [np.nan, 0, 5, 5], [20, 20, 20, 40], [200, 10, 260, 30],
             [-10, 90, 30, 130], [60, 50, 40, 30], [0, 0, np.inf, 4]]
    dets, warnings = clean_detections(boxes, list("abcdefg"), [0.9] * 7, (100, 160))
    assert dets.classes == ["a", "e", "f"]
    np.testing.assert_array_equal(dets.boxes, [[10, 10, 50, 40], [0, 90, 30, 100],
                                               [40, 30, 60, 50]])
    assert warnings == ["2 detection(s) with NaN or infinite coordinates: skipped",
                        "1 detection(s) of zero width or height: skipped",
                        "1 detection(s) outside the frame: skipped"]
    empty, none = clean_detections([], [], [], (100, 160))
    assert len(empty) == 0 and none == []


def test_box_iou_and_mask_box():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [np.nan] * 4], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 0.0]])
    mask = np.zeros((20, 30), bool)
    mask[3:7, 10:12] = True
    np.testing.assert_array_equal(mask_box(mask), [10, 3, 12, 7])  # continuous: last + 1
    assert np.isnan(mask_box(np.zeros((4, 4), bool))).all()


def test_match_is_one_to_one_greedy_by_iou_with_agreeing_classes():
    dets = Detections(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60],
                                [80, 80, 90, 90]], np.float32), ["car", "car", "dog", "cat"],
                      np.ones(4, np.float32))
    objects = np.array([[1, 0, 11, 10], [50, 50, 60, 61], [80, 80, 90, 90]], np.float32)
    # detection 1 overlaps object 0 most; detection 0 then has no free object; the cat's box
    # equals object 2's but object 2 is a dog: no pair
    assert match(dets, objects, ["car", "dog", "dog"], 0.3) == {1: 0, 2: 1}
    assert match(dets, objects, ["", "", ""], 0.3) == {1: 0, 2: 1, 3: 2}
    assert match(dets, objects, ["", "", ""], 0.99) == {1: 0, 3: 2}
    assert match(dets, np.zeros((0, 4), np.float32), [], 0.3) == {}
