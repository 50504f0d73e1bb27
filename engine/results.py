"""Results as parallel arrays, like supervision's ``Detections``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .masks import masks_to_boxes


@dataclass
class Segmentation:
    """K masks of one image and their per-mask attributes (index i describes mask i everywhere).

    Attributes:
        masks: ``(K, H, W)`` bool, at the original image size.
        scores: ``(K,)`` float32, the model's predicted IoU.
        boxes: ``(K, 4)`` float32, tight XYXY pixel boxes of the masks (x2, y2 exclusive edges:
            ``x2 - x1`` is the width in pixels); zeros for an empty mask.
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
        return cls(masks, np.asarray(scores, np.float32), masks_to_boxes(masks), **extra)

    def select(self, index) -> "Segmentation":
        """The subset (or reordering) given by an index array or boolean mask."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Segmentation(self.masks[index], self.scores[index], self.boxes[index],
                            pick(self.stability), pick(self.object_index), pick(self.candidate))

    def areas(self) -> np.ndarray:
        """``(K,)`` int64 pixel counts."""
        return self.masks.sum(axis=(1, 2))
