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


def test_match_scores_the_best_of_the_mask_box_and_the_last_detection_box():
    """The score of (detection, object) is the larger of the detection's IoU with the object's
    mask box and with the box of the detection it last matched (IoU tracker / SORT); classes
    still decide, pairs one to one by decreasing score."""
    dets = Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]],
                               np.float32), ["car", "car", "dog"], np.ones(3, np.float32))
    # object 0: its mask went wrong (a corner blob far away) but it was detection 0's box;
    # object 1: mask box on detection 1, its last detection elsewhere; object 2: a car whose
    # last detection box equals the dog's box
    masks = np.array([[140, 110, 142, 112], [50, 50, 60, 62], [100, 0, 110, 10]], np.float32)
    last = np.array([[0, 0, 10, 10], [0, 100, 10, 110], [100, 0, 110, 10]], np.float32)
    classes = ["car", "car", "car"]
    assert match(dets, masks, classes, 0.3) == {1: 1}  # the mask boxes alone
    assert match(dets, masks, classes, 0.3, last) == {0: 0, 1: 1}  # not the dog
    # no last detection (NaN): the mask box alone; an empty mask (NaN) and a last detection
    nan = np.full(4, np.nan, np.float32)
    assert match(dets, masks, classes, 0.3, np.stack([nan, nan, nan])) == {1: 1}
    assert match(dets, np.stack([nan, masks[1], nan]), classes, 0.3, last) == {0: 0, 1: 1}
    # one to one by the best score: detection 0 overlaps object 0's mask box 1/3 and object 1's
    # last detection box 0.8; detection 1 is only object 1's (6/14): greedy takes the 0.8 pair
    dets = Detections(np.array([[0, 0, 10, 10], [0, 20, 10, 30]], np.float32), ["", ""],
                      np.ones(2, np.float32))
    masks = np.array([[5, 0, 15, 10], [0, 24, 10, 34]], np.float32)  # IoU 1/3 and 6/14
    last = np.array([[np.nan] * 4, [0, 0, 10, 8]], np.float32)  # IoU 0.8 with detection 0
    np.testing.assert_allclose(box_iou(dets.boxes, masks), [[1 / 3, 0], [0, 6 / 14]])
    assert match(dets, masks, ["", ""], 0.3, last) == {0: 1}
    assert match(dets, masks, ["", ""], 0.3) == {1: 1, 0: 0}
