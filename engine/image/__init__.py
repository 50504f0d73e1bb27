"""Images and prompts: one image, the prompts on it, and the masks SAM 2 gives for them.

Entry points: :func:`parse_prompt` / :func:`make_prompt` (prompts into a small
:class:`Prompt` dataclass), :func:`to_rgb_uint8` (any image to the model's RGB uint8),
:class:`PromptPredictor` (prompt mode with the embedding cache) and :func:`encode_image` /
:func:`decode` (the steps it shares with the automatic mode), :class:`Segmentation` (results as
parallel arrays), mask utilities (:func:`label_map`, :func:`mask_boxes`, ...) and COCO RLE
(:func:`segmentation_to_coco`).

May import: :mod:`engine.model`, :mod:`engine.parameters`.
"""
from .coco import mask_to_coco_rle, rle_to_mask, segmentation_to_coco
from .convert import frame_tensor, to_rgb_uint8
from .masks import (boxes_inclusive, label_map, mask_boxes, paint_order_large_first,
                    resize_nearest, small_holes)
from .predictor import ImageEmbedding, PromptPredictor, decode, encode_image, resize_for_input
from .prompts import Prompt, PromptError, make_prompt, normalize_boxes, parse_prompt
from .results import Segmentation

__all__ = ["mask_to_coco_rle", "rle_to_mask", "segmentation_to_coco", "frame_tensor",
           "to_rgb_uint8", "boxes_inclusive", "label_map", "mask_boxes",
           "paint_order_large_first", "resize_nearest", "small_holes", "ImageEmbedding",
           "PromptPredictor", "decode", "encode_image", "resize_for_input", "Prompt",
           "PromptError", "make_prompt", "normalize_boxes", "parse_prompt", "Segmentation"]
