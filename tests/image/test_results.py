"""engine/image/results.py: results as parallel arrays, boxes inclusive as everywhere in the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from infer_segment_anything_2.engine.image.results import Segmentation
from sam2.utils import amg as meta_amg


@settings(max_examples=60, deadline=None)
@given(masks=arrays(np.bool_, st.tuples(st.integers(0, 4), st.integers(1, 12),
                                        st.integers(1, 12))))
def test_boxes_are_inclusive_as_meta_computes_them(masks):
    seg = Segmentation.from_masks(masks, np.zeros(len(masks)))
    assert seg.boxes.dtype == np.float32 and seg.boxes.shape == (len(masks), 4)
    if len(masks):
        ref = meta_amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()
        np.testing.assert_array_equal(seg.boxes, ref)


def test_one_pixel_box_and_empty_mask():
    masks = np.zeros((2, 5, 7), bool)
    masks[0, 3, 4] = True
    seg = Segmentation.from_masks(masks, [0.5, 0.1])
    np.testing.assert_array_equal(seg.boxes, [[4, 3, 4, 3], [0, 0, 0, 0]])
    assert seg.image_shape == (5, 7) and len(seg) == 2
    np.testing.assert_array_equal(seg.object_index, [0, 0])
    np.testing.assert_array_equal(seg.candidate, [0, 0])


def test_arrays_must_be_parallel():
    masks = np.zeros((2, 5, 7), bool)
    with pytest.raises(ValueError, match="scores has 3 entries for 2 masks"):
        Segmentation(masks, np.zeros(3, np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="stability has 1 entries"):
        Segmentation.from_masks(masks, [0.1, 0.2], stability=np.zeros(1, np.float32))


def test_empty():
    seg = Segmentation.empty(4, 6)
    assert len(seg) == 0 and seg.masks.shape == (0, 4, 6) and seg.boxes.shape == (0, 4)
