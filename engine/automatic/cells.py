"""Stability scores, boxes and masks of *bilinearly upsampled* low-resolution logits, counted on
the low-resolution grid instead of upsampling (the CPU's automatic mode).

Each output pixel of ``F.interpolate(logits, (H, W), mode="bilinear", align_corners=False)``
interpolates inside one cell of the low-resolution grid (two source rows, two source columns), so
its value lies between the smallest and the largest of the cell's four corners: a cell whose
corners are all above a threshold gives whole blocks of pixels above it, one with none above it
whole blocks below, and only the cells a threshold crosses need their pixels looked at. The
counts equal those of the full upsampling, up to pixels within float rounding of a threshold
(``tests/automatic/test_cells.py``). Boxes are inclusive XYXY, as in :mod:`engine.automatic.amg`.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import bilinear
from .bilinear import BilinearAxis


def upsampled_masks(logits: torch.Tensor, rows: BilinearAxis, cols: BilinearAxis,
                    mask_threshold: float) -> np.ndarray:
    """``F.interpolate(logits, (H, W), mode="bilinear") > mask_threshold`` as ``(K, H, W)``
    bool, without interpolating every pixel.

    Cells of the low-resolution grid whose four corners are all above the threshold give whole
    blocks of True, cells with none above it blocks of False (the blocks are the cells' output
    rows x columns, laid out by repeating); only the pixels of the cells the threshold crosses
    are interpolated, as in :func:`stability_and_boxes`. The same masks as the full upsampling,
    up to values within float rounding of the threshold.
    """
    c_count, _ = cols.cells()
    cmin, cmax = bilinear.corner_extremes(bilinear.with_next(logits))
    full = cmin > mask_threshold
    crossed = (cmax > mask_threshold) ^ full
    del cmin, cmax
    # columns by repeating, then whole rows by taking (contiguous copies)
    masks = np.take(full.numpy().repeat(c_count.numpy(), axis=2), rows.i0.numpy(), axis=1)
    cells = torch.nonzero(crossed)
    cell_pixels = max(int(rows.cells()[0].max()), 1) * max(int(cols.cells()[0].max()), 1)
    for part in bilinear.chunks(len(cells), cell_pixels):
        kk, rr, cc = cells[part, 0], cells[part, 1], cells[part, 2]
        ys, xs, valid, up = bilinear.cell_pixels(logits, rows, cols, kk, rr, cc)
        shape = up.shape
        k_all = kk[:, None, None].expand(shape)[valid]
        y_all = ys[:, :, None].expand(shape)[valid]
        x_all = xs[:, None, :].expand(shape)[valid]
        masks[k_all.numpy(), y_all.numpy(), x_all.numpy()] = (up > mask_threshold)[valid].numpy()
    return masks


def stability_and_boxes(logits: torch.Tensor, rows: BilinearAxis, cols: BilinearAxis,
                        mask_threshold: float, offset: float, chunk: int = 32
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stability scores and inclusive boxes of low-resolution masks' *upsampled* logits, without
    upsampling them.

    Each output pixel of the bilinear upsampling interpolates inside one cell of the
    low-resolution grid (source rows ``i0, i1`` and columns ``i0, i1``), so its value lies
    between the minimum and the maximum of the cell's four corners. A cell whose minimum is
    above a threshold has all its output pixels above it; a cell whose maximum is not above it,
    none. Those pixels are counted by cell; in the cells a threshold crosses (the masks'
    contours) the pixels above it are counted by runs along each output row (:func:`engine.automatic.bilinear.row_runs`).
    Cells are only examined inside each mask's window (the rows and columns with a value above
    the lowest threshold); masks of similar window size are processed together, ``chunk`` at a
    time. Counts are the same as on the full upsampled logits, up to values within float
    rounding of a threshold.

    Args:
        logits: ``(K, h, w)`` float32 low-resolution logits.
        rows, cols: the upsampling's axes (``h -> H``, ``w -> W``).
    Returns:
        ``stability`` ``(K,)`` float32 (NaN when nothing exceeds ``t - offset``) and ``(K, 4)``
        int64 inclusive XYXY boxes of ``upsampled > mask_threshold`` (zeros when empty).
    """
    k_n, h, w = logits.shape
    dev = logits.device
    stability = torch.full((k_n,), float("nan"), device=dev)
    boxes = torch.zeros((k_n, 4), dtype=torch.int64, device=dev)
    if k_n == 0:
        return stability, boxes
    thresholds = (mask_threshold + offset, mask_threshold - offset, mask_threshold)
    floor = min(thresholds)
    first_y, last_y = bilinear.first_last(logits.amax(dim=2) > floor)
    first_x, last_x = bilinear.first_last(logits.amax(dim=1) > floor)
    # cell j interpolates source rows j and j + 1: cells from the row before the first active one
    y0, x0 = (first_y - 1).clamp(min=0), (first_x - 1).clamp(min=0)
    height, width = last_y + 1 - y0, last_x + 1 - x0
    some = torch.nonzero(last_y >= 0)[:, 0]
    if len(some) == 0:
        return stability, boxes
    order = some[torch.argsort((height * width)[some], stable=True)]
    for start in range(0, len(order), chunk):
        idx = order[start:start + chunk]
        a, b = int(height[idx].max()), int(width[idx].max())
        oy, ox = y0[idx].clamp(max=h - a), x0[idx].clamp(max=w - b)
        patches = torch.stack([_window(logits[i], y, x, a + 1, b + 1) for i, y, x in
                               zip(idx.tolist(), oy.tolist(), ox.tolist())])  # (G, a+1, b+1)
        s, bx = _stability_in_windows(logits, patches, idx, oy, ox, rows, cols, thresholds)
        stability[idx] = s
        boxes[idx] = bx
    return stability, boxes


def _window(grid: torch.Tensor, y: int, x: int, height: int, width: int) -> torch.Tensor:
    """``grid[y:y + height, x:x + width]`` of a ``(h, w)`` grid (a view); where the window passes
    the grid's last row or column (whose cells have a single source row or column), that row or
    column is repeated."""
    win = grid[y:y + height, x:x + width]
    short_y, short_x = height - win.shape[0], width - win.shape[1]
    if short_y or short_x:
        return F.pad(win[None], (0, short_x, 0, short_y), mode="replicate")[0]
    return win


def _stability_in_windows(logits: torch.Tensor, patches: torch.Tensor, idx: torch.Tensor,
                          oy: torch.Tensor, ox: torch.Tensor, rows: BilinearAxis,
                          cols: BilinearAxis, thresholds: Tuple[float, float, float]
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`stability_and_boxes` for masks ``idx`` whose cells outside the windows starting at
    ``(oy, ox)`` are below every threshold; ``patches`` are their windows' source values."""
    dev = logits.device
    g_n, a, b = patches.shape[0], patches.shape[1] - 1, patches.shape[2] - 1
    r_count, r_start = rows.cells()
    c_count, c_start = cols.cells()
    gr = oy[:, None] + torch.arange(a, device=dev)  # (G, a) global cell rows
    gc = ox[:, None] + torch.arange(b, device=dev)  # (G, b)
    cmin, cmax = bilinear.corner_extremes(patches)  # (G, a, b)
    full = [cmin > t for t in thresholds]
    crossed = [(cmax > t) ^ f for t, f in zip(thresholds, full)]  # cmin <= t < cmax
    rc, cc_ = r_count[gr], c_count[gc]
    if bool((rc == 0).any()) or bool((cc_ == 0).any()):  # downsampling: cells without pixels
        has = (rc > 0)[:, :, None] & (cc_ > 0)[:, None, :]
        full = [f & has for f in full]
        crossed = [c & has for c in crossed]
        cmin = cmin.masked_fill(~has, float("-inf"))
    del cmax
    # pixels of whole cells: a row's sum is at most the output width (exact in float32), the
    # total at most H x W (exact in float64)
    c_w, r_w = cc_.to(torch.float32)[:, :, None], rc.to(torch.float64)
    counts = [(torch.bmm(f.to(torch.float32), c_w)[:, :, 0].double() * r_w).sum(dim=1)
              .round().to(torch.int64) for f in full[:2]]

    # pixels of the crossed cells, by runs along their output rows; each threshold only in the
    # cells it crosses
    def runs(j: int):
        """``(g, ys, first, last)`` by chunks of crossed cells; ``g``: each cell's mask."""
        g, lr, lc = torch.nonzero(crossed[j]).unbind(1)  # mask (local), cell row and column
        for part, ys, first, last in bilinear.row_runs(logits, rows, cols, idx[g], gr[g, lr],
                                                gc[g, lc], thresholds[j]):
            yield g[part], ys, first, last

    for j in range(2):
        for g, _, first, last in runs(j):
            counts[j] = counts[j].index_add(0, g, (last - first + 1).clamp(min=0).sum(dim=1))
    stability = counts[0].to(torch.float32) / counts[1].to(torch.float32)

    # boxes of `> mask_threshold`: whole cells above it, then the crossed cells' pixels
    big = torch.iinfo(torch.int64).max
    first_r, last_r = bilinear.first_last(cmin.amax(dim=2) > thresholds[2])
    first_c, last_c = bilinear.first_last(cmin.amax(dim=1) > thresholds[2])
    has_full = last_r >= 0
    ar = torch.arange(g_n, device=dev)
    fr = gr[ar, first_r.clamp(max=a - 1)]
    lr_ = gr[ar, last_r.clamp(min=0)]
    fc = gc[ar, first_c.clamp(max=b - 1)]
    lc_ = gc[ar, last_c.clamp(min=0)]
    y_lo = torch.where(has_full, r_start[fr], big)
    y_hi = torch.where(has_full, r_start[lr_] + r_count[lr_] - 1, -1)
    x_lo = torch.where(has_full, c_start[fc], big)
    x_hi = torch.where(has_full, c_start[lc_] + c_count[lc_] - 1, -1)
    full_box = (first_r, last_r.where(has_full, -1), first_c, last_c.where(has_full, -1))
    y_lo, y_hi, x_lo, x_hi = _boxes_by_bands(logits, rows, cols, idx, gr, gc, crossed[2],
                                             thresholds[2], full_box, (y_lo, y_hi, x_lo, x_hi))
    boxes = torch.stack([x_lo, y_lo, x_hi, y_hi], dim=1)
    return stability, torch.where((y_hi >= 0)[:, None], boxes, torch.zeros_like(boxes))


def _boxes_by_bands(logits: torch.Tensor, rows: BilinearAxis, cols: BilinearAxis,
                    idx: torch.Tensor, gr: torch.Tensor, gc: torch.Tensor,
                    crossed: torch.Tensor, t: float, full_box, box):
    """The box of ``upsampled > t`` from the whole cells' box, looking at crossed cells band by
    band from the outside in: only their pixels can extend it.

    Cell rows (and columns) cover disjoint, ordered ranges of output rows (columns), so the top
    of the box is in the first cell row from the top, before the whole cells' first row, whose
    crossed cells have a pixel above ``t`` (the top of the whole cells otherwise); likewise for
    the other sides. Each pass evaluates one band per unresolved side of each mask (one is
    usually enough), instead of every crossed cell (most cells of noisy logits, such as random
    weights').

    Args:
        crossed: ``(G, a, b)`` local cells ``t`` crosses; ``gr``, ``gc``: their global rows and
            columns; ``full_box``: local first and last rows and columns of whole cells above
            ``t`` (``a``/``b`` and -1 when none); ``box``: the whole cells' ``y_lo, y_hi, x_lo,
            x_hi`` (output pixels), updated and returned.
    """
    dev = crossed.device
    g_n, a, b = crossed.shape
    big = torch.iinfo(torch.int64).max
    y_lo, y_hi, x_lo, x_hi = (v.clone() for v in box)
    first_r, last_r, first_c, last_c = full_box
    row_has, col_has = crossed.any(dim=2), crossed.any(dim=1)  # (G, a), (G, b)
    ra, cb = torch.arange(a, device=dev), torch.arange(b, device=dev)
    # next band to look at on each side (scan positions), and which sides are still open
    top, bottom = torch.zeros(g_n, dtype=torch.int64, device=dev), first_r.new_full((g_n,), a - 1)
    left, right = torch.zeros_like(top), first_r.new_full((g_n,), b - 1)
    while True:
        t_line = bilinear.first_last(row_has & (ra >= top[:, None]) & (ra < first_r[:, None]))[0]
        b_line = bilinear.first_last(row_has & (ra <= bottom[:, None]) & (ra > last_r[:, None]))[1]
        l_line = bilinear.first_last(col_has & (cb >= left[:, None]) & (cb < first_c[:, None]))[0]
        r_line = bilinear.first_last(col_has & (cb <= right[:, None]) & (cb > last_c[:, None]))[1]
        open_t, open_b, open_l, open_r = t_line < a, b_line >= 0, l_line < b, r_line >= 0
        if not bool((open_t | open_b | open_l | open_r).any()):
            break
        sel = torch.zeros_like(crossed)
        for is_open, line, on_rows in ((open_t, t_line, True), (open_b, b_line, True),
                                       (open_l, l_line, False), (open_r, r_line, False)):
            g = torch.nonzero(is_open)[:, 0]
            if on_rows:
                sel[g, line[g]] |= crossed[g, line[g]]
            else:
                sel[g, :, line[g]] |= crossed[g, :, line[g]]
        g, lr, lc = torch.nonzero(sel).unbind(1)
        found = {k: torch.full((g_n,), v, dtype=torch.int64, device=dev)
                 for k, v in (("t", big), ("b", -1), ("l", big), ("r", -1))}
        for part, ys, first, last in bilinear.row_runs(logits, rows, cols, idx[g], gr[g, lr],
                                                gc[g, lc], t):
            gp, lrp, lcp = g[part], lr[part], lc[part]
            hit = last >= first  # (m, br)
            for key, is_open, line, on, values, red in (
                    ("t", open_t, t_line, lrp, torch.where(hit, ys, big).amin(1), "amin"),
                    ("b", open_b, b_line, lrp, torch.where(hit, ys, -1).amax(1), "amax"),
                    ("l", open_l, l_line, lcp, torch.where(hit, first, big).amin(1), "amin"),
                    ("r", open_r, r_line, lcp, torch.where(hit, last, -1).amax(1), "amax")):
                mine = is_open[gp] & (on == line[gp])  # this cell lies in that side's band
                fill = big if red == "amin" else -1
                found[key] = found[key].scatter_reduce(0, gp, torch.where(mine, values, fill),
                                                       red)
        hit_t, hit_b = found["t"] < big, found["b"] >= 0
        hit_l, hit_r = found["l"] < big, found["r"] >= 0
        y_lo = torch.where(hit_t, torch.minimum(y_lo, found["t"]), y_lo)
        y_hi = torch.where(hit_b, torch.maximum(y_hi, found["b"]), y_hi)
        x_lo = torch.where(hit_l, torch.minimum(x_lo, found["l"]), x_lo)
        x_hi = torch.where(hit_r, torch.maximum(x_hi, found["r"]), x_hi)
        # a side with a hit is closed (its scan ends past the band); otherwise the next band
        top = torch.where(open_t, torch.where(hit_t, a, t_line + 1), a)
        bottom = torch.where(open_b, torch.where(hit_b, -1, b_line - 1), -1)
        left = torch.where(open_l, torch.where(hit_l, b, l_line + 1), b)
        right = torch.where(open_r, torch.where(hit_r, -1, r_line - 1), -1)
    return y_lo, y_hi, x_lo, x_hi
