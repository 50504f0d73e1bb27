"""Mask utilities: pure functions over arrays (no model, no Ikomia)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch


def label_map(masks: np.ndarray, labels: Optional[Sequence[int]] = None,
              order: Optional[Sequence[int]] = None, shape: Optional[Tuple[int, int]] = None,
              max_label: Optional[int] = None) -> np.ndarray:
    """Paint masks into one label image. Labels are assigned, never added, never wrapped.

    Args:
        masks: ``(K, H, W)`` bool.
        labels: label of each mask (default ``1..K``), each >= 1.
        order: painting order; later masks cover earlier ones (default: index order).
        shape: ``(H, W)``, needed when ``K == 0``.
        max_label: masks whose label is above it are left out (the caller's limit, e.g. the
            classes its display can colour); ``None``: none is left out.
    Returns:
        ``(H, W)``, 0 = background, uint8 when every painted label fits (else uint16, int32).
    """
    masks = np.asarray(masks, bool)
    k = len(masks)
    if shape is None:
        shape = masks.shape[1:3]
    labels = np.arange(1, k + 1) if labels is None else np.asarray(labels, np.int64)
    painted = [i for i in (range(k) if order is None else order)
               if max_label is None or labels[i] <= max_label]
    top = max((int(labels[i]) for i in painted), default=0)
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
    out = np.zeros(shape, dtype)
    for i in painted:
        np.putmask(out, masks[i], labels[i])  # no index arrays (16 bytes per pixel set)
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


def small_holes(background: np.ndarray, max_area: int) -> np.ndarray:
    """Pixels of the small components of ``background``: ``(N, h, w)`` bool in, the same shape
    out, True where a pixel's 8-connected component of background has at most ``max_area``
    pixels (components touching the border count too, as in SAM 2's hole filling)."""
    import cv2

    background = np.asarray(background, bool)
    holes = np.zeros(background.shape, bool)
    for i, bg in enumerate(background):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(bg.astype(np.uint8),
                                                               connectivity=8)
        small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] <= max_area)[0] + 1
        if len(small):
            holes[i] = np.isin(labels, small)
    return holes


def boxes_inclusive(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` int64 inclusive XYXY boxes of ``(N, H, W)`` bool masks (right/bottom = the last
    mask column/row, as Meta's ``batched_mask_to_box``); zeros for an empty mask."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    has = cols.any(dim=1)
    x1 = cols.int().argmax(dim=1)
    x2 = w - 1 - cols.flip(1).int().argmax(dim=1)
    y1 = rows.int().argmax(dim=1)
    y2 = h - 1 - rows.flip(1).int().argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.int64)
    return boxes * has[:, None]


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """:func:`boxes_inclusive` of ``(K, H, W)`` numpy bool masks, as ``(K, 4)`` float32."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), not {masks.shape}")
    return boxes_inclusive(torch.from_numpy(masks)).numpy().astype(np.float32)
