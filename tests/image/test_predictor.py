"""Prompt mode in the engine equals Meta's SAM2ImagePredictor on the same random weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import iou
from infer_segment_anything_2.engine.image.predictor import PromptPredictor
from infer_segment_anything_2.engine.image.prompts import parse_prompt


@pytest.fixture(scope="module")
def ours(tiny_model, image):
    predictor = PromptPredictor(tiny_model)
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def meta(meta_tiny_model, image):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(meta_tiny_model)
    predictor.set_image(image)
    return predictor


def meta_predict(meta, points=None, labels=None, boxes=None, multimask=False):
    """Meta's masks as (B, C, H, W) with candidates sorted by Meta's own scores, best first."""
    masks, scores, _ = meta.predict(point_coords=points, point_labels=labels, box=boxes,
                                    multimask_output=multimask)
    if masks.ndim == 3:
        masks, scores = masks[None], scores[None]
    order = np.argsort(-scores, axis=1, kind="stable")
    return (np.take_along_axis(masks, order[:, :, None, None], 1).astype(bool),
            np.take_along_axis(scores, order, 1))


def assert_same(seg, ref_masks, ref_scores):
    b, c = ref_scores.shape
    assert len(seg) == b * c
    ours_masks = seg.masks.reshape(b, c, *seg.masks.shape[1:])
    np.testing.assert_allclose(seg.scores.reshape(b, c), ref_scores, rtol=1e-4, atol=1e-5)
    for i in range(b):
        for j in range(c):
            assert iou(ours_masks[i, j], ref_masks[i, j]) > 0.999, (i, j)
    assert list(seg.object_index) == [i for i in range(b) for _ in range(c)]
    assert list(seg.candidate) == list(range(c)) * b


POINTS = np.array([[100, 80], [220, 160]], np.float32)
BOXES = np.array([[40, 30, 200, 150], [150, 100, 300, 220]], np.float32)


def test_one_point_flat_and_nested_formats(ours, meta):
    ref = meta_predict(meta, POINTS[:1], np.array([1]))
    flat = ours.predict(parse_prompt("[100,80]"))
    nested = ours.predict(parse_prompt("[[100, 80]]"))
    assert_same(flat, *ref)
    assert_same(nested, *ref)
    assert flat.masks.any(), "random weights still give a non-empty mask here"


def test_two_points_with_labels(ours, meta):
    ref = meta_predict(meta, POINTS, np.array([1, 0]))
    assert_same(ours.predict(parse_prompt("[[100,80],[220,160]]", "[1,0]")), *ref)


def test_labels_default_to_foreground(ours, meta):
    ref = meta_predict(meta, POINTS, np.array([1, 1]))
    assert_same(ours.predict(parse_prompt("[[100,80],[220,160]]")), *ref)


def test_one_box(ours, meta):
    ref = meta_predict(meta, boxes=BOXES[0])
    assert_same(ours.predict(parse_prompt(input_box="[40,30,200,150]")), *ref)


def test_two_boxes(ours, meta):
    ref = meta_predict(meta, boxes=BOXES)
    seg = ours.predict(parse_prompt(input_box="[[40,30,200,150],[150,100,300,220]]"))
    assert_same(seg, *ref)


def test_one_box_with_two_labelled_points(ours, meta):
    ref = meta_predict(meta, POINTS, np.array([1, 0]), BOXES[0])
    seg = ours.predict(parse_prompt("[[100,80],[220,160]]", "[1,0]", "[40,30,200,150]"))
    assert_same(seg, *ref)


def test_several_boxes_each_with_the_same_points(ours, meta):
    pts = np.repeat(POINTS[None], 2, axis=0)
    ref = meta_predict(meta, pts, np.array([[1, 0], [1, 0]]), BOXES)
    seg = ours.predict(parse_prompt("[[100,80],[220,160]]", "[1,0]",
                                    "[[40,30,200,150],[150,100,300,220]]"))
    assert_same(seg, *ref)


def test_multimask_candidates_sorted_best_first(ours, meta):
    ref = meta_predict(meta, POINTS[:1], np.array([1]), multimask=True)
    seg = ours.predict(parse_prompt("[[100,80]]"), multimask=True)
    assert_same(seg, *ref)
    assert np.all(np.diff(seg.scores) <= 0)
    raw_masks, raw_scores, _ = meta.predict(POINTS[:1], np.array([1]), multimask_output=True)
    assert seg.scores[0] == pytest.approx(raw_scores.max(), rel=1e-5)


def test_multimask_with_several_boxes(ours, meta):
    ref = meta_predict(meta, boxes=BOXES, multimask=True)
    seg = ours.predict(parse_prompt(input_box="[[40,30,200,150],[150,100,300,220]]"),
                       multimask=True)
    assert_same(seg, *ref)


@pytest.mark.parametrize("threshold", [-2.0, 1.5])
def test_mask_threshold(tiny_model, meta_tiny_model, image, threshold, ours):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    meta = SAM2ImagePredictor(meta_tiny_model, mask_threshold=threshold)
    meta.set_image(image)
    ref = meta_predict(meta, POINTS[:1], np.array([1]))
    seg = ours.predict(parse_prompt("[[100,80]]"), mask_threshold=threshold)
    assert_same(seg, *ref)
    base = ours.predict(parse_prompt("[[100,80]]"))
    if threshold < 0:
        assert seg.masks.sum() >= base.masks.sum()
    else:
        assert seg.masks.sum() <= base.masks.sum()


def test_embedding_is_cached_until_the_image_or_size_changes(tiny_model, image):
    predictor = PromptPredictor(tiny_model)
    assert predictor.set_image(image) is True
    assert predictor.set_image(image.copy()) is False  # same content, another array
    assert predictor.encode_count == 1
    assert predictor.set_image(image, scale=0.5) is True
    other = image.copy()
    other[0, 0, 0] ^= 1
    assert predictor.set_image(other, scale=0.5) is True
    assert predictor.encode_count == 3


def test_reduced_input_size_gives_original_size_masks_from_logits(tiny_model, image):
    predictor = PromptPredictor(tiny_model)
    predictor.set_image(image, scale=0.5)
    assert predictor.embedding.input_hw == (120, 160)
    seg = predictor.predict(parse_prompt("[[100,80]]", "", "[40,30,200,150]"))
    assert seg.masks.shape == (1, 240, 320)
    # Upscaling the logits then thresholding gives smooth edges at full resolution: the mask is
    # not a nearest-neighbour blow-up of a half-resolution mask (which has only 2x2 blocks).
    m = seg.masks[0]
    assert 0 < m.sum() < m.size, "the check needs a mask with an edge"
    blocky = np.array_equal(m, np.repeat(np.repeat(m[::2, ::2], 2, 0), 2, 1))
    assert not blocky


def test_predict_before_set_image_is_an_error(tiny_model):
    with pytest.raises(RuntimeError, match="set_image"):
        PromptPredictor(tiny_model).predict(parse_prompt("[[1,1]]"))


def test_our_loader_matches_meta_build(tiny_model, meta_tiny_model):
    ours_sd, meta_sd = tiny_model.state_dict(), meta_tiny_model.state_dict()
    assert ours_sd.keys() == meta_sd.keys()
    assert all(torch.equal(ours_sd[k], meta_sd[k]) for k in ours_sd)
    assert tiny_model.sam_mask_decoder.dynamic_multimask_via_stability is True


# ---------------------------------------------------------------------------------------------
# Several objects with their own points
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("multimask", [False, True])
def test_point_groups_equal_meta_for_each_object_alone(ours, meta, multimask):
    """Groups of different sizes, each object with its own box: every object's masks and scores
    are Meta's ``predict`` for that object alone (no padding point added to the shorter group)."""
    prompt = parse_prompt("[[[100,80],[60,50]],[[220,160]],[[250,60],[280,90],[200,40]]]",
                          "[[1,0],[1],[1,1,0]]",
                          "[[40,30,200,150],[150,100,300,220],[180,20,310,120]]")
    seg = ours.predict(prompt, multimask)
    groups = [([[100, 80], [60, 50]], [1, 0]), ([[220, 160]], [1]),
              ([[250, 60], [280, 90], [200, 40]], [1, 1, 0])]
    boxes = [[40, 30, 200, 150], [150, 100, 300, 220], [180, 20, 310, 120]]
    c = 3 if multimask else 1
    assert len(seg) == 3 * c
    for i, ((points, labels), box) in enumerate(zip(groups, boxes)):
        ref_masks, ref_scores = meta_predict(meta, np.array(points, np.float32), np.array(labels),
                                             np.array(box, np.float32), multimask)
        pick = seg.object_index == i
        np.testing.assert_allclose(seg.scores[pick], ref_scores[0], rtol=1e-4, atol=1e-5)
        for ours_mask, ref_mask in zip(seg.masks[pick], ref_masks[0]):
            assert iou(ours_mask, ref_mask) > 0.999, i


def test_point_groups_without_boxes_equal_meta(ours, meta):
    seg = ours.predict(parse_prompt("[[[100,80]],[[220,160],[30,200]]]", "[[1],[1,0]]"))
    for i, (points, labels) in enumerate([([[100, 80]], [1]), ([[220, 160], [30, 200]], [1, 0])]):
        ref_masks, ref_scores = meta_predict(meta, np.array(points, np.float32), np.array(labels))
        assert seg.scores[i] == pytest.approx(ref_scores[0, 0], rel=1e-4, abs=1e-5)
        assert iou(seg.masks[i], ref_masks[0, 0]) > 0.999
    assert list(seg.object_index) == [0, 1]


# ---------------------------------------------------------------------------------------------
# Images revisited
# ---------------------------------------------------------------------------------------------
def test_revisited_images_are_not_encoded_again_until_evicted(tiny_model):
    from conftest import synthetic_image
    from infer_segment_anything_2.engine.image.predictor import CACHED_IMAGES

    predictor = PromptPredictor(tiny_model)
    images = [synthetic_image(48, 64, seed=100 + i) for i in range(CACHED_IMAGES + 1)]
    prompt = parse_prompt("[[20,20]]")
    first = None
    for img in images[:3]:
        assert predictor.set_image(img) is True
        first = first or predictor.predict(prompt)
    # truck, groceries, truck: the third run is answered by the cache, with the same masks
    assert predictor.set_image(images[0]) is False and predictor.encode_count == 3
    np.testing.assert_array_equal(predictor.predict(prompt).masks, first.masks)
    assert predictor.set_image(images[2]) is False
    for img in images[3:]:  # 6 more: 9 images seen, image 1 is the least recently used
        predictor.set_image(img)
    assert predictor.cached_images == CACHED_IMAGES and predictor.encode_count == 9
    assert predictor.set_image(images[0]) is False  # used recently: kept
    assert predictor.set_image(images[1]) is True  # the oldest: evicted, encoded again
    predictor.reset()
    assert predictor.cached_images == 0 and predictor.embedding is None
