"""Detections on a video frame: checked, then matched one to one to the tracked objects.

Boxes here are continuous XYXY pixels of the frame (``x2 = x + width``, as a detector's
``x, y, w, h`` box); an object's box from its mask (inclusive XYXY in the engine) is turned into
that form by :func:`mask_box` (last column + 1). Pure numpy, no model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class Detections:
    """A detector's output on one frame.

    Attributes:
        boxes: ``(D, 4)`` float32 continuous XYXY pixels of the frame.
        classes: one class name per detection ("" when the detector gives none).
        confidences: ``(D,)`` float32 detector confidences.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: List[str] = field(default_factory=list)
    confidences: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def box_prompt(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Detection ``i`` as SAM 2's box prompt: two corners labelled 2 and 3."""
        return self.boxes[i].reshape(2, 2).astype(np.float32), np.array([2, 3], np.int32)


def clean_detections(boxes: Sequence[Sequence[float]], classes: Sequence[str],
                     confidences: Sequence[float], hw: Tuple[int, int]
                     ) -> Tuple[Detections, List[str]]:
    """The usable detections and one warning per kind of box left out.

    ``boxes`` are continuous XYXY pixels. Left out: boxes with NaN or infinite values, boxes of
    zero width or height, boxes wholly outside the ``(H, W)`` frame. The others are clipped to
    the frame (corners given in the wrong order are swapped first).
    """
    h, w = hw
    b = np.asarray(boxes, np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    finite = np.isfinite(b).all(axis=1)
    b = np.where(finite[:, None], b, 0.0)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    sized = (x2 > x1) & (y2 > y1)
    inside = (x2 > 0) & (y2 > 0) & (x1 < w) & (y1 < h)
    keep = finite & sized & inside
    warnings = [f"{n} detection(s) {why}: skipped" for n, why in (
        ((~finite).sum(), "with NaN or infinite coordinates"),
        ((finite & ~sized).sum(), "of zero width or height"),
        ((finite & sized & ~inside).sum(), "outside the frame")) if n]
    clipped = np.stack([np.clip(x1, 0, w), np.clip(y1, 0, h), np.clip(x2, 0, w),
                        np.clip(y2, 0, h)], axis=1)[keep].astype(np.float32)
    conf = np.asarray(confidences, np.float32).reshape(-1)
    names = [str(c) for c, k in zip(classes, keep) if k]
    return Detections(clipped, names, conf[keep] if len(conf) == len(keep) else
                      np.ones(int(keep.sum()), np.float32)), warnings


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The continuous XYXY box of a ``(H, W)`` bool mask (NaN when it is empty)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if not len(xs):
        return np.full(4, np.nan, np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of continuous XYXY boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``; 0 where a
    box has NaN (an object never seen)."""
    a = np.asarray(a, np.float64)[:, None]
    b = np.asarray(b, np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def match(detections: Detections, object_boxes: np.ndarray, object_classes: Sequence[str],
          min_iou: float, detection_boxes: Optional[np.ndarray] = None) -> Dict[int, int]:
    """Detection index -> object index, one to one, greedily by decreasing score (the best pair
    first), pairs with a score at least ``min_iou`` (and above 0) only. A pair is allowed only
    when the classes agree or either side has none.

    ``object_boxes``: ``(K, 4)`` each object's box on this frame (its mask's); with
    ``detection_boxes`` (``(K, 4)``, the box of the detection each object was last matched to or
    started from, NaN for none) the score of a pair is the larger of the detection's IoU with
    the two boxes (as IoU trackers and SORT match on the last detection), so that an object
    whose mask does not fit its detection still matches the same box on the next frame.
    """
    if not len(detections) or not len(object_boxes):
        return {}
    iou = box_iou(detections.boxes, object_boxes)
    if detection_boxes is not None:
        iou = np.maximum(iou, box_iou(detections.boxes, detection_boxes))
    for d, dc in enumerate(detections.classes):
        for k, oc in enumerate(object_classes):
            if dc and oc and dc != oc:
                iou[d, k] = 0.0
    pairs: Dict[int, int] = {}
    taken = set()
    order = np.argsort(-iou, axis=None, kind="stable")
    for flat in order:
        d, k = divmod(int(flat), iou.shape[1])
        value = iou[d, k]
        if value <= 0.0 or value < min_iou or math.isnan(value):
            break
        if d not in pairs and k not in taken:
            pairs[d] = k
            taken.add(k)
    return pairs
