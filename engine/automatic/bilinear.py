"""The geometry of bilinear upsampling seen from the low-resolution grid (the CPU's automatic
mode counts on it instead of upsampling).

``F.interpolate(logits, (H, W), mode="bilinear", align_corners=False)`` makes each output pixel
from one *cell* of the low-resolution grid (two source rows, two source columns). This module
gives, per axis, which source indices and weights each output index uses
(:class:`BilinearAxis`), each cell's smallest and largest corner, the pixels of chosen cells, and
the runs of pixels above a threshold along each output row of a cell (:func:`row_runs`), all in
bounded chunks (:data:`PIXEL_BUDGET`). Its users are :mod:`engine.automatic.cells` (stability,
boxes and masks by cells). Pure torch, no model.
"""
from __future__ import annotations

from typing import Iterator, List, Tuple, Union

import torch

# crossed cells' pixels (final masks) or output rows (stability) handled at once: bounds memory
# at any output size
PIXEL_BUDGET = 1 << 21


class BilinearAxis:
    """Source rows (or columns) and weights of ``F.interpolate(mode="bilinear",
    align_corners=False)`` along one axis, computed as PyTorch's CPU kernel does (float32):
    ``src = (dst + 0.5) * in / out - 0.5`` clamped at 0, ``i1 = min(i0 + 1, in - 1)``."""

    def __init__(self, in_size: int, out_size: int, device=None):
        # computed on the CPU on purpose (the CPU kernel's float32 arithmetic, a few thousand
        # values), then moved to ``device``: nothing here meets the model's tensors before that
        scale = torch.tensor(float(in_size), dtype=torch.float32) / out_size
        dst = torch.arange(out_size, dtype=torch.float32)
        src = (scale * (dst + 0.5) - 0.5).clamp(min=0.0)
        self.i0 = src.to(torch.int64).clamp(max=in_size - 1)
        self.i1 = (self.i0 + 1).clamp(max=in_size - 1)
        self.w1 = src - self.i0.to(torch.float32)
        self.w0 = 1.0 - self.w1
        self.src = src  # = i0 + w1, never decreasing
        self.scale = float(scale)
        self.n_in = in_size
        if device is not None:
            for name in ("i0", "i1", "w0", "w1", "src"):
                setattr(self, name, getattr(self, name).to(device))

    def search(self, v: torch.Tensor, right: Union[bool, torch.Tensor]) -> torch.Tensor:
        """``torch.searchsorted(src, v, right=right)`` without a binary search: the index of the
        first output position whose source position is ``>= v`` (``> v`` where ``right``), or
        the output size. ``right`` is a bool or a bool tensor broadcast with ``v`` (float64).

        Estimated from the scale, then corrected against ``src`` itself: the estimate is off by
        at most one where rounding meets an integer; below ``src[0]`` (where ``src`` is clamped
        at 0) every position qualifies.
        """
        n = len(self.src)
        src = self.src.double()
        right = torch.as_tensor(right, device=v.device)
        est = (v.clamp(min=0.0) + 0.5) / self.scale - 0.5
        x = torch.where(right, torch.floor(est) + 1, torch.ceil(est)).clamp(0, n).long()
        x = x.masked_fill_(torch.where(right, v < src[0], v <= src[0]), 0)
        prev = src[(x - 1).clamp(min=0)]
        x -= ((x > 0) & torch.where(right, prev > v, prev >= v)).long()
        cur = src[x.clamp(max=n - 1)]
        return x + ((x < n) & torch.where(right, cur <= v, cur < v)).long()

    def cells(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """For each source index ``j``: how many output indices interpolate from ``j`` and
        ``j + 1`` (``i0 == j``), and the first of them (``i0`` never decreases)."""
        count = torch.bincount(self.i0, minlength=self.n_in)
        return count, torch.cumsum(count, 0) - count



def corner_extremes(patches: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum of each cell's four corners: ``(K, a+1, b+1)`` source values give
    ``(K, a, b)`` cells, cell ``(j, i)`` spanning sources ``(j, j + 1) x (i, i + 1)``."""
    out = []
    for fn in (torch.minimum, torch.maximum):
        two_rows = fn(patches[:, :-1], patches[:, 1:])
        out.append(fn(two_rows[:, :, :-1], two_rows[:, :, 1:]))
    return out[0], out[1]


def with_next(logits: torch.Tensor) -> torch.Tensor:
    """``(K, h+1, w+1)``: the logits with their last row and column repeated (the grid's last
    cells have a single source row or column)."""
    _, h, w = logits.shape
    ry = torch.arange(h + 1, device=logits.device).clamp(max=h - 1)
    rx = torch.arange(w + 1, device=logits.device).clamp(max=w - 1)
    return logits[:, ry][:, :, rx]


def crossed_share(logits: torch.Tensor, thresholds: Tuple[float, ...],
                  every: int = 4) -> torch.Tensor:
    """``(K,)``: an estimate of the share of cells a threshold crosses, summed over
    ``thresholds``, for ``(K, h, w)`` logits (what the row runs will cost next to whole cells),
    from every ``every``-th row of cells (a routing estimate: 1/``every`` of the work)."""
    top = logits[:, 0:-1:every]
    bottom = logits[:, 1::every][:, :top.shape[1]]
    lo, hi = torch.minimum(top, bottom), torch.maximum(top, bottom)
    lo = torch.minimum(lo[..., :-1], lo[..., 1:])
    hi = torch.maximum(hi[..., :-1], hi[..., 1:])
    crossed = sum(((hi > t) ^ (lo > t)).sum(dim=(1, 2)) for t in thresholds)
    return crossed.to(torch.float32) / max(lo.shape[1] * lo.shape[2], 1)


def cell_pixels(logits: torch.Tensor, rows: BilinearAxis, cols: BilinearAxis,
                 kk: torch.Tensor, rr: torch.Tensor, cc: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The upsampled values of all pixels of M cells ``(kk, rr, cc)`` (mask, row, column).

    Returns ``ys (M, br)`` and ``xs (M, bc)`` (output rows and columns, padded to the largest
    cell), ``valid (M, br, bc)`` (False on padding) and the values ``(M, br, bc)``, computed as
    PyTorch's bilinear kernel does: horizontal then vertical, with its float32 weights.
    """
    _, h, w = logits.shape
    dev = logits.device
    r_count, r_start = rows.cells()
    c_count, c_start = cols.cells()
    br, bc = max(int(r_count.max()), 1), max(int(c_count.max()), 1)
    ys = r_start[rr, None] + torch.arange(br, device=dev)  # (M, br)
    xs = c_start[cc, None] + torch.arange(bc, device=dev)  # (M, bc)
    valid = ((ys < (r_start + r_count)[rr, None])[:, :, None]
             & (xs < (c_start + c_count)[cc, None])[:, None, :])
    ys, xs = ys.clamp(max=len(rows.i0) - 1), xs.clamp(max=len(cols.i0) - 1)
    # every pixel of a cell interpolates the same four corners, with its own weights
    r1, c1 = (rr + 1).clamp(max=h - 1), (cc + 1).clamp(max=w - 1)
    corner = [logits[kk, r, c][:, None, None]
              for r, c in ((rr, cc), (rr, c1), (r1, cc), (r1, c1))]
    wx0, wx1 = cols.w0[xs][:, None, :], cols.w1[xs][:, None, :]  # (M, 1, bc)
    top = wx0 * corner[0] + wx1 * corner[1]
    bottom = wx0 * corner[2] + wx1 * corner[3]
    up = rows.w0[ys][:, :, None] * top + rows.w1[ys][:, :, None] * bottom  # (M, br, bc)
    return ys, xs, valid, up


def row_runs(logits: torch.Tensor, rows: BilinearAxis, cols: BilinearAxis,
              kk: torch.Tensor, rr: torch.Tensor, cc: torch.Tensor, t: float
              ) -> Iterator[Tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each output row of M cells ``(kk, rr, cc)``, the run of its pixels above ``t``,
    without interpolating the pixels, :data:`PIXEL_BUDGET` rows at a time.

    Along an output row, inside cell column ``j``, the interpolated value is ``A + B w`` with
    ``w`` the pixel's column weight (PyTorch's ``w1``), and ``w = src - j`` where ``src`` (the
    pixel's source position) never decreases along the row. The pixels above ``t`` are those
    with ``w > (t - A) / B`` (``B > 0``: a run that ends the cell) or ``w < (t - A) / B``
    (``B < 0``: a run that starts it): one search of ``j + (t - A) / B`` in ``src``
    (:meth:`BilinearAxis.search`) per row gives the run, whatever the cell's width. Decided in
    float64: a pixel whose float32 value is within rounding of the threshold may be classified
    differently from PyTorch's kernel.

    Yields, for each chunk ``part`` (a slice of the M cells): ``ys`` ``(m, br)`` (the cells'
    output rows, padded to the tallest cell) and ``first``, ``last`` ``(m, br)``: the output
    columns of the run (``last < first`` when empty, always so on padding rows). Memory is
    bounded by the chunk, whatever M (all the contours of a batch at 8000 pixels).
    """
    _, h, w = logits.shape
    dev = logits.device
    r_count, r_start = rows.cells()
    c_count, c_start = cols.cells()
    br = max(int(r_count.max()), 1)
    for part in chunks(len(cc), br):
        k, r, c = kk[part], rr[part], cc[part]
        ys = r_start[r, None] + torch.arange(br, device=dev)  # (m, br)
        valid = ys < (r_start + r_count)[r, None]
        ys = ys.clamp(max=len(rows.i0) - 1)
        r1, c1 = (r + 1).clamp(max=h - 1), (c + 1).clamp(max=w - 1)
        a, b = logits[k, r, c].double()[:, None], logits[k, r, c1].double()[:, None]
        cd, d = logits[k, r1, c].double()[:, None], logits[k, r1, c1].double()[:, None]
        wy0, wy1 = rows.w0[ys].double(), rows.w1[ys].double()
        base = wy0 * a + wy1 * cd  # value at w = 0
        slope = wy0 * (b - a) + wy1 * (d - cd)
        rising, flat = slope > 0, slope == 0
        start = c_start[c, None]
        end = (c_start + c_count)[c, None]  # one past the cell's last column
        cut = c[:, None] + (t - base) / torch.where(flat, torch.ones_like(slope), slope)
        # rising: pixels from the first with src > cut; falling: pixels before the first with
        # src >= cut
        at_cut = cols.search(cut, rising).clamp(start, end)
        n = torch.where(rising, end - at_cut, at_cut - start)
        n = torch.where(flat, torch.where(base > t, end - start, 0), n)
        n = n.masked_fill_(~valid, 0)
        first = torch.where(rising, end - n, start)
        yield part, ys, first, first + n - 1


def chunks(n_cells: int, per_cell: int) -> List[slice]:
    """Slices of ``n_cells`` cells of ``per_cell`` items each (padded pixels for the masks, output
    rows for the stability), at most :data:`PIXEL_BUDGET` items a slice."""
    step = max(PIXEL_BUDGET // max(per_cell, 1), 1)
    return [slice(i, i + step) for i in range(0, n_cells, step)]


def first_last(hit: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along dim 1 of ``(K, n)`` (``n`` and ``-1`` when none)."""
    idx = torch.arange(hit.shape[1], device=hit.device)
    return (torch.where(hit, idx, hit.shape[1]).amin(dim=1),
            torch.where(hit, idx, -1).amax(dim=1))
