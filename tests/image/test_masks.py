"""engine/image/masks.py: label maps and mask resizing as pure functions."""
from __future__ import annotations

import numpy as np
import pytest

from infer_segment_anything_2.engine.image.masks import label_map, paint_order_large_first, \
    resize_nearest


def _masks():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, :4, :5] = True     # large
    masks[1, 2:6, 3:8] = True   # overlaps 0
    masks[2, 3, 4] = True       # one pixel inside both
    return masks


def test_labels_are_assigned_in_painting_order_never_added():
    masks = _masks()
    out = label_map(masks)
    assert out.dtype == np.uint8 and out.shape == (6, 8)
    assert out[0, 0] == 1 and out[5, 7] == 2 and out[3, 4] == 3  # later masks cover earlier
    assert out[2, 3] == 2  # overlap of 1 and 2 shows the later, not 1 + 2
    reverse = label_map(masks, order=[2, 1, 0])
    assert reverse[3, 4] == 1 and reverse[2, 3] == 1
    assert set(np.unique(out)) == {0, 1, 2, 3}


def test_custom_labels_and_empty_input():
    masks = _masks()
    out = label_map(masks, labels=[7, 7, 9])
    assert set(np.unique(out)) == {0, 7, 9}
    empty = label_map(np.zeros((0, 4, 5), bool), shape=(4, 5))
    assert empty.shape == (4, 5) and not empty.any()


def test_labels_above_the_limit_are_left_out_and_never_wrap():
    masks = np.zeros((300, 2, 300), bool)
    for i in range(300):
        masks[i, :, i] = True
    limited = label_map(masks, max_label=255)
    assert limited.dtype == np.uint8
    assert limited[0, 254] == 255 and (limited[:, 255:] == 0).all()  # 256.. left out, not 0..44
    unlimited = label_map(masks)
    assert unlimited.dtype == np.uint16 and unlimited[1, 299] == 300


def test_paint_order_puts_large_masks_first():
    order = paint_order_large_first(_masks())
    assert list(order) == [0, 1, 2]
    assert list(paint_order_large_first(_masks()[::-1])) == [1, 2, 0]


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_resize_nearest_keeps_the_type(dtype):
    mask = np.zeros((4, 6), dtype)
    mask[1:3, 2:4] = 1
    out = resize_nearest(mask, 8, 12)
    assert out.dtype == mask.dtype and out.shape == (8, 12)
    assert out[2:6, 4:8].all() and out.sum() == 16
    assert resize_nearest(mask, 4, 6) is mask
