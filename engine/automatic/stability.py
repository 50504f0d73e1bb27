"""Stability scores and boxes of the candidates that pass the IoU filter, as Meta's generator
computes them on the upsampled logits: either by upsampling (:func:`stability_upsampled`, a GPU's
path and small crops') or by counting on the low-resolution grid (:func:`stability_by_cells`,
large crops on the CPU). Both give Meta's values up to float rounding at a threshold."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from . import amg, bilinear, cells
from .final_masks import UPSAMPLE_CHUNK
from .params import AutomaticParams
from ..image.masks import boxes_inclusive

# crops of at least this many pixels get their stability scores by cells
# (cells.stability_and_boxes) rather than from fully upsampled logits. Counting cells costs about
# the same at any size (its work is on the 256x256 grid); upsampling grows with the crop. They
# break even near 400x400 with 2 threads (320x400 with 1); upsampling is 5x faster at 128x128 and
# cells 3x faster at 600x900 (benchmarks/bench_stability.py)
BY_CELLS_MIN_PIXELS = 400 * 400
CELL_CHUNK = 32  # candidates whose stability is counted by cells at once (<= 8 MiB per tensor)
# counting the stability by cells costs the cells its two thresholds cross (each costs its
# output rows, ~ crop height / 256, in row runs); upsampling costs the crop's pixels: they break
# even when the crossed share of the cells (summed over both thresholds) is about this times the
# crop width (measured at 1200x1800 with 2 threads, per candidate: 17.5 ms by cells against
# 11 ms upsampled with a share of 1.19, 0.4 against 11 ms with 0.006)
CROSSED_SHARE_PER_COLUMN = 4.1e-4

def stability_upsampled(logits: torch.Tensor, index: torch.Tensor, crop_hw: Tuple[int, int],
                        params: AutomaticParams, chunk: int = UPSAMPLE_CHUNK
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stability and inclusive box ``(K,)``, ``(K, 4)`` of ``logits[index]`` bilinearly upsampled
    to ``crop_hw`` (as Meta's generator does), ``chunk`` candidates at a time, on the logits'
    device."""
    p = params
    dev = logits.device
    stabs = [torch.zeros(0, device=dev)]
    boxes = [torch.zeros((0, 4), dtype=torch.int64, device=dev)]
    for start in range(0, len(index), chunk):
        idx = index[start:start + chunk]
        up = F.interpolate(logits[idx][:, None], crop_hw, mode="bilinear",
                           align_corners=False)[:, 0]
        stabs.append(amg.stability_score(up, p.mask_threshold, p.stability_score_offset))
        boxes.append(boxes_inclusive(up > p.mask_threshold))
    return torch.cat(stabs), torch.cat(boxes)


def stability_by_cells(logits: torch.Tensor, index: torch.Tensor, crop_hw: Tuple[int, int],
                       params: AutomaticParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """As :func:`stability_upsampled`, counted on the low-resolution grid
    (:func:`engine.automatic.cells.stability_and_boxes`), :data:`CELL_CHUNK` candidates at a time.

    Counting costs what the stability thresholds cross (the box, band by band, costs little):
    smooth logits (a trained model's, away from its masks' edges) cross few cells, noisy ones
    near the thresholds most of them. Candidates crossing more than
    :data:`CROSSED_SHARE_PER_COLUMN` x the crop's width of the cells are upsampled instead
    (:func:`stability_upsampled`), whichever is cheaper; both are exact to float rounding.
    """
    p = params
    sub = logits[index]
    thresholds = (p.mask_threshold + p.stability_score_offset,
                  p.mask_threshold - p.stability_score_offset)
    noisy = bilinear.crossed_share(sub, thresholds) > CROSSED_SHARE_PER_COLUMN * crop_hw[1]
    smooth = torch.nonzero(~noisy)[:, 0]
    rows = bilinear.BilinearAxis(logits.shape[-2], crop_hw[0], logits.device)
    cols = bilinear.BilinearAxis(logits.shape[-1], crop_hw[1], logits.device)
    stab, boxes = cells.stability_and_boxes(sub[smooth], rows, cols, p.mask_threshold,
                                            p.stability_score_offset, chunk=CELL_CHUNK)
    if len(smooth) == len(index):
        return stab, boxes
    rough = torch.nonzero(noisy)[:, 0]
    out_stab = torch.empty(len(index), dtype=stab.dtype, device=logits.device)
    out_boxes = torch.empty((len(index), 4), dtype=boxes.dtype, device=logits.device)
    out_stab[smooth], out_boxes[smooth] = stab, boxes
    out_stab[rough], out_boxes[rough] = stability_upsampled(logits, index[rough], crop_hw, p)
    return out_stab, out_boxes
