"""engine/automatic/amg.py: the pure helpers of automatic mode against Meta's ``sam2.utils.amg``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from infer_segment_anything_2.engine.automatic import amg
from infer_segment_anything_2.engine.image.masks import boxes_inclusive
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


@settings(max_examples=60, deadline=None)
@given(masks=arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 12),
                                        st.integers(1, 12))))
def test_boxes_inclusive_equal_meta(masks):
    t = torch.from_numpy(masks)
    assert torch.equal(boxes_inclusive(t), meta_amg.batched_mask_to_box(t))


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
