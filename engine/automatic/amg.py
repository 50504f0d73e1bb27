"""Pure helpers of automatic mask generation: point grids, crops, stability, boxes, small regions.

The semantics follow Meta's ``sam2.utils.amg`` (the reference for which masks come out) so that
:func:`engine.automatic.generator.generate` keeps and drops exactly the candidates Meta's generator does:

* point grids: cell centres of an ``n x n`` grid over ``[0, 1]^2``, x varying fastest;
* crops: layer ``i`` cuts the image into ``2^i x 2^i`` overlapping crops;
* boxes: *inclusive* XYXY (``x2`` is the last column of the mask), as Meta's NMS sees them;
* stability: IoU of the mask thresholded at ``t + offset`` and ``t - offset``.

The same stability, boxes and masks counted on the low-resolution grid, without upsampling, are
in :mod:`engine.automatic.cells`. No model, no Ikomia: numpy, torch and OpenCV only.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch

CROP_EDGE_TOLERANCE = 20.0  # pixels: a box this close to an inner crop edge is cut by the crop


def point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 (x, y) cell centres of an ``n x n`` grid in ``[0, 1]^2``, x fastest."""
    half = 1.0 / (2 * n_per_side)
    ticks = np.linspace(half, 1.0 - half, n_per_side)
    ys, xs = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def points_per_side_of_layer(points_per_side: int, layer: int, downscale: int) -> int:
    """Grid size used in crop layer ``layer``: ``points_per_side / downscale^layer`` (floored)."""
    return int(points_per_side / (downscale ** layer))


def crop_boxes(image_hw: Tuple[int, int], n_layers: int,
               overlap_ratio: float) -> List[Tuple[List[int], int]]:
    """The crops to run, as ``([x0, y0, x1, y1], layer)``; the first is the whole image.

    Layer ``i >= 1`` has ``2^i x 2^i`` crops of equal size that overlap by
    ``overlap_ratio * short_side * 2 / 2^i`` pixels, ordered column by column (x outer, y inner).
    """
    h, w = image_hw
    out: List[Tuple[List[int], int]] = [([0, 0, w, h], 0)]
    short = min(h, w)
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + h) / per_side))
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0 in xs:
            for y0 in ys:
                out.append(([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)], layer))
    return out


def count_point_batches(points_per_side: int, points_per_batch: int, crop_n_layers: int,
                        crop_n_points_downscale_factor: int) -> int:
    """How many decoder batches of points a run makes over all crops (independent of image size)."""
    total = 0
    for layer in range(crop_n_layers + 1):
        n = points_per_side_of_layer(points_per_side, layer, crop_n_points_downscale_factor)
        total += (4 ** layer) * math.ceil(n * n / points_per_batch)
    return total


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of ``logits > t + offset`` and ``logits > t - offset`` over the last two dims.

    The first mask is inside the second, so the IoU is a ratio of pixel counts. Both counts are
    integers (exact); an empty wider mask gives NaN, which no threshold keeps.
    """
    inner = (logits > (mask_threshold + offset)).sum(dim=(-2, -1), dtype=torch.int32)
    outer = (logits > (mask_threshold - offset)).sum(dim=(-2, -1), dtype=torch.int32)
    return inner / outer


def near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int],
                   atol: float = CROP_EDGE_TOLERANCE) -> torch.Tensor:
    """Which boxes (crop frame, inclusive) touch an edge of ``crop_box`` that is not an image edge.

    Such masks are probably cut by the crop; another crop (or the whole image) sees them whole.
    """
    x0, y0 = crop_box[0], crop_box[1]
    # the offset, the crop's edges and the image's edges in one copy to the boxes' device
    refs = torch.tensor([[x0, y0, x0, y0], list(crop_box), list(image_box)],
                        dtype=torch.float32, device=boxes.device)
    shifted = boxes.float() + refs[0]
    near = (shifted[:, None, :] - refs[None, 1:]).abs() <= atol  # (K, 2, 4): crop, image
    return (near[:, 0] & ~near[:, 1]).any(dim=1)


def remove_small_regions(mask: np.ndarray, max_area: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``max_area``.

    8-connected components (OpenCV). Holes are the connected background regions, the region
    around the mask included; islands are the mask's own components. When every island is small,
    the largest is kept so the mask does not vanish. Returns the mask and whether it changed.
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', not {mode!r}")
    holes = mode == "holes"
    work = (~mask if holes else mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < max_area
    if not small.any():
        return mask, False
    if holes:
        # keep the mask (label 0 of the background image) plus the small background regions
        keep = np.concatenate([[True], small])
    else:
        keep = np.concatenate([[False], ~small])
        if not keep.any():
            keep[1 + int(np.argmax(sizes))] = True
    return keep[labels], True
