"""Pure helpers of automatic mode against Meta's ``sam2.utils.amg``; COCO RLE against Meta's RLE and
(when installed) pycocotools. The reordered decoder is tested in ``test_decoder.py``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from infer_segment_anything_2.engine import amg, coco
from sam2.utils import amg as meta_amg


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_point_grid_equals_meta(n):
    np.testing.assert_array_equal(amg.point_grid(n), meta_amg.build_point_grid(n))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), layers=st.integers(0, 3),
       overlap=st.floats(0, 0.99, allow_subnormal=False))
def test_crop_boxes_equal_meta(h, w, layers, overlap):
    ours = amg.crop_boxes((h, w), layers, overlap)
    boxes, layer_idx = meta_amg.generate_crop_boxes((h, w), layers, overlap)
    assert [b for b, _ in ours] == boxes
    assert [l for _, l in ours] == layer_idx


@settings(max_examples=30, deadline=None)
@given(pps=st.integers(1, 64), ppb=st.integers(1, 200), layers=st.integers(0, 3),
       down=st.integers(1, 4))
def test_count_point_batches(pps, ppb, layers, down):
    if pps // (down ** layers) == 0:  # Meta's grids divide by zero; we skip such a layer
        deepest = amg.count_point_batches(pps, ppb, layers - 1, down) if layers else 0
        assert amg.count_point_batches(pps, ppb, layers, down) == deepest
        return
    grids = meta_amg.build_all_layer_point_grids(pps, layers, down)
    expected = sum((4 ** i) * -(-len(g) // ppb) for i, g in enumerate(grids))
    assert amg.count_point_batches(pps, ppb, layers, down) == expected


def test_stability_equals_meta():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 37, 53, generator=gen) * 3
    logits[5] = -10  # empty: NaN in both
    for t, off in [(0.0, 1.0), (0.5, 0.25), (-1.0, 2.0)]:
        ours = amg.stability_score(logits, t, off)
        ref = meta_amg.calculate_stability_score(logits, t, off)
        torch.testing.assert_close(ours, ref, equal_nan=True, rtol=0, atol=0)


def _varied_logits():
    """Discs of the stand-in (smooth, several slopes), noise, all-negative and all-positive."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
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
    axis = amg.BilinearAxis(n_in, n_out)
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
    """amg.stability_and_boxes == stability and box of F.interpolate'd logits (float rounding at a
    threshold aside), upsampling and downsampling."""
    import torch.nn.functional as F

    logits = _varied_logits()
    rows, cols = amg.BilinearAxis(256, out_hw[0]), amg.BilinearAxis(256, out_hw[1])
    up = F.interpolate(logits[:, None], out_hw, mode="bilinear", align_corners=False)[:, 0]
    for t, off in [(0.0, 1.0), (0.4, 0.0), (-1.0, 2.5)]:
        ref_s = amg.stability_score(up, t, off)
        ref_b = amg.boxes_inclusive(up > t)
        for chunk in (slice(0, None), slice(3, 4)):  # the batch does not change the answer
            s, b = amg.stability_and_boxes(logits[chunk], rows, cols, t, off)
            assert torch.equal(b, ref_b[chunk]), (t, off)
            assert torch.equal(torch.isnan(s), torch.isnan(ref_s[chunk]))
            assert (s - ref_s[chunk]).abs().nan_to_num(0.0).max() <= 2e-6, (t, off)
    assert amg.stability_and_boxes(logits[:0], rows, cols, 0.0, 1.0)[1].shape == (0, 4)


@pytest.mark.parametrize("out_hw", OUT_SIZES)
def test_masks_by_cells_equal_full_upsampling(out_hw):
    """amg.upsampled_masks == F.interpolate(...) > t, except pixels within float rounding of t."""
    import torch.nn.functional as F

    logits = _varied_logits()
    rows, cols = amg.BilinearAxis(256, out_hw[0]), amg.BilinearAxis(256, out_hw[1])
    up = F.interpolate(logits[:, None], out_hw, mode="bilinear", align_corners=False)[:, 0]
    for t in (0.0, 0.4, -1.0):
        masks = amg.upsampled_masks(logits, rows, cols, t)
        ref = (up > t).numpy()
        assert masks.shape == ref.shape and masks.dtype == bool
        diff = masks != ref
        assert diff.sum() <= 3, (t, diff.sum())
        assert (np.abs(up.numpy()[diff] - t) < 1e-6).all()
        # the discs are non-trivial: some pixels in, some out
        assert 0 < masks[:24].sum() < masks[:24].size


@settings(max_examples=60, deadline=None)
@given(masks=arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 12),
                                        st.integers(1, 12))))
def test_boxes_inclusive_equal_meta(masks):
    t = torch.from_numpy(masks)
    assert torch.equal(amg.boxes_inclusive(t), meta_amg.batched_mask_to_box(t))


def test_near_crop_edge_equals_meta():
    gen = torch.Generator().manual_seed(1)
    boxes = torch.randint(0, 300, (200, 4), generator=gen)
    boxes[:, 2:] = boxes[:, :2] + torch.randint(0, 200, (200, 2), generator=gen)
    for crop in ([0, 0, 500, 400], [100, 50, 400, 400], [0, 120, 260, 400]):
        ours = amg.near_crop_edge(boxes, crop, [0, 0, 500, 400])
        assert torch.equal(ours, meta_amg.is_box_near_crop_edge(boxes, crop, [0, 0, 500, 400]))


@settings(max_examples=80, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 20), st.integers(1, 20))),
       area=st.integers(0, 40), mode=st.sampled_from(["holes", "islands"]))
def test_remove_small_regions_equals_meta(mask, area, mode):
    ours, changed = amg.remove_small_regions(mask, area, mode)
    ref, ref_changed = meta_amg.remove_small_regions(mask, area, mode)
    assert changed == ref_changed
    np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------------------------
# COCO RLE
# ---------------------------------------------------------------------------------------------
mask_strategy = arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30)),
                       elements=st.booleans())


@settings(max_examples=100, deadline=None)
@given(mask=mask_strategy)
def test_uncompressed_rle_equals_meta(mask):
    ours = coco.mask_to_rle(mask)
    ref = meta_amg.mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0]
    assert ours == ref
    np.testing.assert_array_equal(coco.rle_to_mask(ours), meta_amg.rle_to_mask(ref))


@settings(max_examples=100, deadline=None)
@given(mask=mask_strategy)
def test_compressed_rle_round_trip(mask):
    rle = coco.mask_to_coco_rle(mask)
    assert isinstance(rle["counts"], str) and json.loads(json.dumps(rle)) == rle
    assert coco.decode_counts(rle["counts"]) == coco.mask_to_rle(mask)["counts"]
    np.testing.assert_array_equal(coco.rle_to_mask(rle), mask)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 10 ** 7), min_size=0, max_size=12))
def test_compressed_counts_round_trip(counts):
    assert coco.decode_counts(coco.encode_counts(counts)) == counts


def test_compressed_rle_equals_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (64, 48), (300, 200)]:
        for density in (0.0, 0.05, 0.5, 0.97, 1.0):
            mask = rng.random(shape) < density
            ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            ours = coco.mask_to_coco_rle(mask)
            assert ours["counts"] == ref["counts"].decode("ascii")
            assert ours["size"] == list(ref["size"])
            # also Meta's route: uncompressed RLE -> pycocotools frPyObjects
            via_meta = meta_amg.coco_encode_rle(coco.mask_to_rle(mask))
            assert via_meta["counts"] == ours["counts"]


def test_instance_json_to_coco():
    """The instance output's JSON (Ikomia's format: base64 PNG masks) to COCO annotations."""
    import base64

    import cv2

    mask = np.zeros((30, 40), bool)
    mask[5:12, 8:20] = True
    ok, png = cv2.imencode(".png", mask.astype(np.uint8))
    assert ok
    text = json.dumps({"detections": [{"id": 3, "label": "mask", "confidence": 0.91,
                                       "box": {"x": 8, "y": 5, "width": 12, "height": 7},
                                       "mask": base64.b64encode(png.tobytes()).decode()}]})
    (ann,) = coco.instance_json_to_coco(text)
    assert ann["id"] == 3 and ann["area"] == int(mask.sum())
    assert ann["bbox"] == [8.0, 5.0, 12.0, 7.0]
    assert ann["score"] == pytest.approx(0.91)
    np.testing.assert_array_equal(coco.rle_to_mask(ann["segmentation"]), mask)


def test_cells_in_small_chunks_give_the_same_answer(monkeypatch):
    """Crossed cells are handled PIXEL_BUDGET pixels at a time (memory bound at 8000 px and
    beyond): a tiny budget, many chunks, the same stability, boxes and masks."""
    logits = _varied_logits()[20:]
    rows, cols = amg.BilinearAxis(256, 700), amg.BilinearAxis(256, 900)
    s_ref, b_ref = amg.stability_and_boxes(logits, rows, cols, 0.0, 1.0)
    m_ref = amg.upsampled_masks(logits, rows, cols, 0.0)
    original = amg._chunks
    slices = []

    def recorded(n_cells, per_cell):
        slices.append(original(n_cells, per_cell))
        return slices[-1]

    def chunks_taken(fn):
        """The answer of ``fn()`` and the number of chunks it went through."""
        slices.clear()
        out = fn()
        return out, sum(len(x) for x in slices)

    monkeypatch.setattr(amg, "_chunks", recorded)
    _, stab_default = chunks_taken(lambda: amg.stability_and_boxes(logits, rows, cols, 0.0, 1.0))
    _, masks_default = chunks_taken(lambda: amg.upsampled_masks(logits, rows, cols, 0.0))
    monkeypatch.setattr(amg, "PIXEL_BUDGET", 4096)
    (s, b), stab_small = chunks_taken(lambda: amg.stability_and_boxes(logits, rows, cols, 0.0,
                                                                       1.0))
    masks, masks_small = chunks_taken(lambda: amg.upsampled_masks(logits, rows, cols, 0.0))
    # both paths split further under the small budget
    assert stab_small >= stab_default + 10 and masks_small >= masks_default + 10
    assert torch.equal(b, b_ref)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0, equal_nan=True)
    assert np.array_equal(masks, m_ref)
