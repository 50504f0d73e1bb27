"""engine/automatic/cells.py: stability, boxes and masks counted on the low-resolution grid against the
full bilinear upsampling they stand for."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infer_segment_anything_2.engine.automatic import amg, bilinear, cells
from infer_segment_anything_2.engine.image.masks import boxes_inclusive


def _varied_logits():
    """Discs of the stand-in (smooth, several slopes), noise, all-negative and all-positive."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import standin

    gen = torch.Generator().manual_seed(5)
    discs, _ = standin.disc_logits(torch.rand(8, 2, generator=gen) * 1024)
    return torch.cat([discs.flatten(0, 1).float(), torch.randn(4, 256, 256, generator=gen) * 3,
                      torch.full((1, 256, 256), -4.0), torch.full((1, 256, 256), 4.0)])


OUT_SIZES = [(700, 900), (1200, 1800), (300, 257), (256, 256), (90, 1000), (5, 3000), (1, 1)]


@pytest.mark.parametrize("n_in, n_out", [(256, 1800), (256, 700), (171, 1200), (256, 257),
                                         (256, 256), (256, 90), (256, 1), (64, 8000)])
def test_axis_search_equals_searchsorted(n_in, n_out):
    """BilinearAxis.search: the same index as a binary search of the source positions, for
    values at, just beside and between them, in the clamped start (src = 0) and beyond the
    ends, with the side chosen per value."""
    axis = bilinear.BilinearAxis(n_in, n_out)
    src = axis.src.double()
    gen = torch.Generator().manual_seed(n_out)
    values = torch.cat([torch.rand(20000, generator=gen, dtype=torch.float64) * (n_in + 2) - 1,
                        src, src + 1e-9, src - 1e-9, torch.tensor([0.0, -1e300, 1e300],
                                                                  dtype=torch.float64)])
    if n_out >= 4 * n_in:
        assert (src == 0).sum() > 1  # the clamped start is exercised
    for right in (False, True):
        assert torch.equal(axis.search(values, right), torch.searchsorted(src, values,
                                                                          right=right))
    side = torch.rand(len(values), generator=gen) > 0.5
    expected = torch.where(side, torch.searchsorted(src, values, right=True),
                           torch.searchsorted(src, values))
    assert torch.equal(axis.search(values, side), expected)


@pytest.mark.parametrize("out_hw", OUT_SIZES)
def test_stability_by_cells_equals_full_upsampling(out_hw):
    """cells.stability_and_boxes == stability and box of F.interpolate'd logits (float rounding at a
    threshold aside), upsampling and downsampling."""
    logits = _varied_logits()
    rows, cols = bilinear.BilinearAxis(256, out_hw[0]), bilinear.BilinearAxis(256, out_hw[1])
    up = F.interpolate(logits[:, None], out_hw, mode="bilinear", align_corners=False)[:, 0]
    for t, off in [(0.0, 1.0), (0.4, 0.0), (-1.0, 2.5)]:
        ref_s = amg.stability_score(up, t, off)
        ref_b = boxes_inclusive(up > t)
        for chunk in (slice(0, None), slice(3, 4)):  # the batch does not change the answer
            s, b = cells.stability_and_boxes(logits[chunk], rows, cols, t, off)
            assert torch.equal(b, ref_b[chunk]), (t, off)
            assert torch.equal(torch.isnan(s), torch.isnan(ref_s[chunk]))
            assert (s - ref_s[chunk]).abs().nan_to_num(0.0).max() <= 2e-6, (t, off)
    assert cells.stability_and_boxes(logits[:0], rows, cols, 0.0, 1.0)[1].shape == (0, 4)


@pytest.mark.parametrize("out_hw", OUT_SIZES)
def test_masks_by_cells_equal_full_upsampling(out_hw):
    """cells.upsampled_masks == F.interpolate(...) > t, except pixels within float rounding of t."""
    logits = _varied_logits()
    rows, cols = bilinear.BilinearAxis(256, out_hw[0]), bilinear.BilinearAxis(256, out_hw[1])
    up = F.interpolate(logits[:, None], out_hw, mode="bilinear", align_corners=False)[:, 0]
    for t in (0.0, 0.4, -1.0):
        masks = cells.upsampled_masks(logits, rows, cols, t)
        ref = (up > t).numpy()
        assert masks.shape == ref.shape and masks.dtype == bool
        diff = masks != ref
        assert diff.sum() <= 3, (t, diff.sum())
        assert (np.abs(up.numpy()[diff] - t) < 1e-6).all()
        # the discs are non-trivial: some pixels in, some out
        assert 0 < masks[:24].sum() < masks[:24].size



def test_cells_in_small_chunks_give_the_same_answer(monkeypatch):
    """Crossed cells are handled PIXEL_BUDGET pixels at a time (memory bound at 8000 px and
    beyond): a tiny budget, many chunks, the same stability, boxes and masks."""
    logits = _varied_logits()[20:]
    rows, cols = bilinear.BilinearAxis(256, 700), bilinear.BilinearAxis(256, 900)
    s_ref, b_ref = cells.stability_and_boxes(logits, rows, cols, 0.0, 1.0)
    m_ref = cells.upsampled_masks(logits, rows, cols, 0.0)
    original = bilinear.chunks
    slices = []

    def recorded(n_cells, per_cell):
        slices.append(original(n_cells, per_cell))
        return slices[-1]

    def chunks_taken(fn):
        """The answer of ``fn()`` and the number of chunks it went through."""
        slices.clear()
        out = fn()
        return out, sum(len(x) for x in slices)

    monkeypatch.setattr(bilinear, "chunks", recorded)
    _, stab_default = chunks_taken(lambda: cells.stability_and_boxes(logits, rows, cols, 0.0, 1.0))
    _, masks_default = chunks_taken(lambda: cells.upsampled_masks(logits, rows, cols, 0.0))
    monkeypatch.setattr(bilinear, "PIXEL_BUDGET", 4096)
    (s, b), stab_small = chunks_taken(lambda: cells.stability_and_boxes(logits, rows, cols, 0.0,
                                                                       1.0))
    masks, masks_small = chunks_taken(lambda: cells.upsampled_masks(logits, rows, cols, 0.0))
    # both paths split further under the small budget
    assert stab_small >= stab_default + 10 and masks_small >= masks_default + 10
    assert torch.equal(b, b_ref)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0, equal_nan=True)
    assert np.array_equal(masks, m_ref)


def test_noisy_candidates_are_upsampled_smooth_ones_counted(monkeypatch):
    """Counting costs what the stability thresholds cross: noisy logits crossing them
    everywhere go to the upsampling, smooth ones (discs) to the cells; the answers are those of
    the upsampling for all of them."""
    from infer_segment_anything_2.engine.automatic import AutomaticParams, stability

    gen = torch.Generator().manual_seed(2)
    logits = _varied_logits()
    noise = torch.randn(6, 256, 256, generator=gen) * 2  # crosses +-1 in most cells
    mixed = torch.cat([logits[:10], noise, logits[10:16]])
    index = torch.arange(len(mixed))
    params = AutomaticParams()
    counted = []
    original = cells.stability_and_boxes

    def spy(sub, *args, **kwargs):
        counted.append(len(sub))
        return original(sub, *args, **kwargs)

    monkeypatch.setattr(cells, "stability_and_boxes", spy)
    hw = (1200, 1800)
    stab, boxes = stability.stability_by_cells(mixed, index, hw, params)
    ref_stab, ref_boxes = stability.stability_upsampled(mixed, index, hw, params)
    assert counted == [len(mixed) - 6]
    assert torch.equal(boxes, ref_boxes)
    assert torch.equal(torch.isnan(stab), torch.isnan(ref_stab))
    assert (stab - ref_stab).abs().nan_to_num(0.0).max() <= 2e-6
    share = bilinear.crossed_share(mixed, (1.0, -1.0))
    assert (share[10:16] > 0.5).all() and (share[:10] < 0.05).all()


def test_box_bands_skip_crossed_cells_without_a_pixel_above():
    """A corner just above the threshold makes its cells crossed, but no output pixel of them
    gets above it: the band scan must look further in (more than one pass) and still find the
    box of the full upsampling."""
    logits = torch.full((3, 256, 256), -20.0)
    for k, (r, c) in enumerate([(10, 12), (200, 240), (128, 3)]):
        logits[k, r, c] = 0.01  # spikes: crossed cells, no output pixel above 0
        logits[k, 100:140, 90:170] = 5.0  # the real mask, further in
    logits[2, 250, 250] = 0.01
    for out_hw in [(300, 420), (1200, 1800), (257, 255)]:
        rows, cols = bilinear.BilinearAxis(256, out_hw[0]), bilinear.BilinearAxis(256, out_hw[1])
        up = F.interpolate(logits[:, None], out_hw, mode="bilinear", align_corners=False)[:, 0]
        _, boxes = cells.stability_and_boxes(logits, rows, cols, 0.0, 1.0)
        assert torch.equal(boxes, boxes_inclusive(up > 0.0)), out_hw
