"""engine/image/coco.py: COCO run-length encodings against Meta's RLE and pycocotools."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from infer_segment_anything_2.engine.image import coco
from sam2.utils import amg as meta_amg

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
    from pycocotools import mask as mask_utils  # a test requirement: this comparison must run
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


def test_segmentation_to_coco():
    from infer_segment_anything_2.engine.image.results import Segmentation

    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:12, 8:20] = True
    seg = Segmentation.from_masks(masks, [0.9, 0.5], stability=np.array([0.97, 0.1], np.float32))
    a, b = coco.segmentation_to_coco(seg)
    assert a["bbox"] == [8.0, 5.0, 12.0, 7.0] and a["area"] == 84
    assert a["score"] == pytest.approx(0.9) and a["stability_score"] == pytest.approx(0.97)
    assert b["bbox"] == [0.0, 0.0, 0.0, 0.0] and b["area"] == 0
    np.testing.assert_array_equal(coco.rle_to_mask(a["segmentation"]), masks[0])
