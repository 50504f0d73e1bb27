"""Results as parallel arrays, like supervision's ``Detections``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .masks import mask_boxes


@dataclass
class Segmentation:
    """K masks of one image and their per-mask attributes (index i describes mask i everywhere).

    Attributes:
        masks: ``(K, H, W)`` bool, at the original image size.
        scores: ``(K,)`` float32, the model's predicted IoU.
        boxes: ``(K, 4)`` float32, tight XYXY pixel boxes of the masks, *inclusive* as
            everywhere in the engine (``x2``, ``y2`` are the last column and row of the mask:
            the width is ``x2 - x1 + 1``); zeros for an empty mask.
        stability: ``(K,)`` float32 stability scores, or ``None`` where not computed.
        object_index: ``(K,)`` int32, which prompt object (box) the mask answers; 0 in automatic
            mode and for point-only prompts.
        candidate: ``(K,)`` int32, rank of the mask among its object's candidates (0 = best).
    """

    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    stability: Optional[np.ndarray] = None
    object_index: Optional[np.ndarray] = None
    candidate: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        k = len(self.masks)
        if self.object_index is None:
            self.object_index = np.zeros(k, np.int32)
        if self.candidate is None:
            self.candidate = np.zeros(k, np.int32)
        for name in ("scores", "boxes", "stability", "object_index", "candidate"):
            value = getattr(self, name)
            if value is not None and len(value) != k:
                raise ValueError(f"{name} has {len(value)} entries for {k} masks")

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.masks.shape[1:3])

    @classmethod
    def empty(cls, height: int, width: int) -> "Segmentation":
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.float32),
                   np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: np.ndarray, **extra) -> "Segmentation":
        """Build from masks and scores, computing the boxes."""
        masks = np.asarray(masks, bool)
        return cls(masks, np.asarray(scores, np.float32), mask_boxes(masks), **extra)
