"""Ikomia's data formats for users of the plugin's outputs (glue: the engine knows none of them).

:func:`instance_json_to_coco` turns the JSON of the plugin's instance segmentation output
(``CInstanceSegmentationIO.to_json()``: one detection per mask with its box, confidence and a
base64 PNG mask) into COCO annotations.
"""
from __future__ import annotations

import base64
import json
from typing import Dict, List, Union

import numpy as np

from .engine.image.coco import annotation


def instance_json_to_coco(text: Union[str, Dict], compressed: bool = True, image_id: int = 0,
                          category_id: int = 1) -> List[Dict]:
    """COCO annotations from the JSON of the instance segmentation output.

    Args:
        text: ``task.get_output(4).to_json()`` (a string) or the parsed dict.
    Returns:
        one annotation per detection with ``segmentation`` (RLE), ``area``, ``bbox`` (XYWH),
        ``score`` (the detection's ``confidence``, the predicted IoU) and ``label``.
    """
    import cv2

    data = json.loads(text) if isinstance(text, str) else text
    anns = []
    for det in data.get("detections", []):
        png = np.frombuffer(base64.b64decode(det["mask"]), np.uint8)
        mask = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(f"detection {det.get('id')}: the mask is not a PNG image")
        anns.append(annotation(mask > 0, int(det.get("id", len(anns))), det.get("confidence", 0.0),
                                compressed, image_id, category_id,
                                {"label": det.get("label", "")}))
    return anns
