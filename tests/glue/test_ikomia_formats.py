"""ikomia_formats.py: COCO annotations from the Ikomia instance output's JSON."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from conftest import make_task, synthetic_image
from infer_segment_anything_2.engine.image import coco
from infer_segment_anything_2.ikomia_formats import instance_json_to_coco


def test_instance_json_to_coco():
    """The instance output's JSON (Ikomia's format: base64 PNG masks) to COCO annotations."""
    import cv2

    mask = np.zeros((30, 40), bool)
    mask[5:12, 8:20] = True
    ok, png = cv2.imencode(".png", mask.astype(np.uint8))
    assert ok
    text = json.dumps({"detections": [{"id": 3, "label": "mask", "confidence": 0.91,
                                       "box": {"x": 8, "y": 5, "width": 12, "height": 7},
                                       "mask": base64.b64encode(png.tobytes()).decode()}]})
    (ann,) = instance_json_to_coco(text)
    assert ann["id"] == 3 and ann["area"] == int(mask.sum())
    assert ann["bbox"] == [8.0, 5.0, 12.0, 7.0]
    assert ann["score"] == pytest.approx(0.91)
    np.testing.assert_array_equal(coco.rle_to_mask(ann["segmentation"]), mask)


def test_the_task_output_converts_to_the_same_coco_as_the_result(tiny_checkpoint):
    """Through the real Ikomia output: its JSON gives the masks, boxes and scores of
    ``last_automatic_result``."""
    image = synthetic_image(120, 160, seed=2)
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side=4, iou_thresh=0.0, stability_score_thresh=0.0,
                         box_nms_thresh=1.0)
    wf.run_on(array=image)
    seg = algo.last_automatic_result
    assert len(seg) > 1
    ours = instance_json_to_coco(algo.get_output(4).to_json())
    ref = coco.segmentation_to_coco(seg)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a["segmentation"] == b["segmentation"] and a["bbox"] == b["bbox"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    x1, y1, x2, y2 = seg.boxes[0]  # inclusive
    assert ours[0]["bbox"] == [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def test_a_detection_without_a_png_mask_is_an_error():
    text = json.dumps({"detections": [{"id": 1, "confidence": 0.5,
                                       "mask": base64.b64encode(b"not a png").decode()}]})
    with pytest.raises(ValueError, match="detection 1: the mask is not a PNG image"):
        instance_json_to_coco(text)
