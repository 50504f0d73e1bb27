"""Mask utilities: pure functions over arrays (no model, no Ikomia)."""
from __future__ import annotations

import logging
from typing import Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of boolean masks.

    Args:
        masks: ``(K, H, W)`` bool.
    Returns:
        ``(K, 4)`` float32 XYXY with exclusive right/bottom edges (a single pixel at (x, y) gives
        ``[x, y, x+1, y+1]``); an empty mask gives ``[0, 0, 0, 0]``.
    """
    masks = np.asarray(masks, bool)
    k = len(masks)
    boxes = np.zeros((k, 4), np.float32)
    if k == 0:
        return boxes
    cols = masks.any(axis=1)  # (K, W)
    rows = masks.any(axis=2)  # (K, H)
    has = cols.any(axis=1)
    w, h = cols.shape[1], rows.shape[1]
    x1 = np.argmax(cols, axis=1)
    x2 = w - np.argmax(cols[:, ::-1], axis=1)
    y1 = np.argmax(rows, axis=1)
    y2 = h - np.argmax(rows[:, ::-1], axis=1)
    boxes[:] = np.stack([x1, y1, x2, y2], axis=1)
    boxes[~has] = 0
    return boxes


MAX_LABEL = 255  # label maps are uint8: Ikomia colours 256 classes (0 = background)


def label_map(masks: np.ndarray, labels: Optional[Sequence[int]] = None,
              order: Optional[Sequence[int]] = None,
              shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Paint masks into one uint8 label image. Labels are assigned, never added, never wrapped.

    Args:
        masks: ``(K, H, W)`` bool.
        labels: label of each mask (default ``1..K``), each >= 1.
        order: painting order; later masks cover earlier ones (default: index order).
        shape: ``(H, W)``, needed when ``K == 0``.
    Returns:
        ``(H, W)`` uint8, 0 = background. Masks whose label is above 255 are left out, with a
        warning (callers keep every mask in their instance output).
    """
    masks = np.asarray(masks, bool)
    k = len(masks)
    if shape is None:
        shape = masks.shape[1:3]
    labels = np.arange(1, k + 1) if labels is None else np.asarray(labels, np.int64)
    out = np.zeros(shape, np.uint8)
    dropped = 0
    for i in (range(k) if order is None else order):
        if labels[i] > MAX_LABEL:
            dropped += 1
            continue
        out[masks[i]] = labels[i]
    if dropped:
        logger.warning("%d of %d masks are not in the label map: it holds at most %d labels "
                       "(every mask is in the instance segmentation output)", dropped, k, MAX_LABEL)
    return out


def paint_order_large_first(masks: np.ndarray) -> np.ndarray:
    """Indices sorting masks by decreasing area, so smaller masks are painted over larger ones."""
    areas = np.asarray(masks, bool).sum(axis=(1, 2))
    return np.argsort(-areas, kind="stable")


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask / label image to ``(height, width)``."""
    import cv2

    if mask.shape[:2] == (height, width):
        return mask
    src = mask.astype(np.uint8) if mask.dtype == bool else mask
    out = cv2.resize(src, (width, height), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool) if mask.dtype == bool else out
