"""What a video frame holds while it is tracked, and how its prompts become model inputs.

Coordinates: prompts are ``(P, 2)`` XY pixels of the frame with SAM 2's labels; masks are
``(H, W)`` bool of the frame; logits are the model's ``(1, 256, 256)`` low-resolution grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..image.masks import small_holes

ObjectPrompt = Tuple[np.ndarray, np.ndarray]  # (P, 2) float32 XY pixels, (P,) int32 labels


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background components (``logits <= 0``, 8-connected) of at most ``max_area`` pixels set to
    0.1, as SAM 2's ``fill_holes_in_mask_scores`` (a component touching the border counts too).

    ``logits``: ``(N, 1, h, w)`` float; returns a tensor of the same shape, dtype and device.
    The components are found on the CPU (:func:`engine.image.masks.small_holes`); one ``(N, h, w)``
    copy each way.
    """
    if max_area <= 0 or logits.numel() == 0:
        return logits
    holes = small_holes((logits <= 0).squeeze(1).cpu().numpy(), max_area)
    if not holes.any():
        return logits
    fill = torch.from_numpy(holes)[:, None].to(logits.device)
    return torch.where(fill, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits)


@dataclass
class TrackedFrame:
    """One frame's result for the K objects of the video, in object order.

    Attributes:
        index: the frame's index in the video (0 for the first frame).
        ids: ``(K,)`` int64 object ids.
        logits: ``(K, 1, 256, 256)`` float32 low-resolution mask logits (``NO_OBJ_SCORE`` where
            the object is absent), on the model's device.
        object_scores: ``(K,)`` float32 object-presence logits.
    """

    index: int
    ids: np.ndarray
    logits: torch.Tensor
    object_scores: np.ndarray

    def masks(self, height: int, width: int, threshold: float = 0.0) -> np.ndarray:
        """``(K, height, width)`` bool masks: the logits upsampled as Meta's predictor does
        (bilinear, ``align_corners=False``) and compared with ``threshold``."""
        return upsampled_masks(self.logits, (height, width), threshold)


@dataclass
class StagedFrame:
    """A frame between :meth:`VideoTracker.begin` and :meth:`VideoTracker.finish`: its
    features and the known objects' tracked outputs, nothing committed yet.

    ``tracked`` holds, per object id, the output of ``track_step`` with memory (``pred_masks``
    hole-filled; ``high_res``: the model's own ``(1, 1, S, S)`` mask for the memory encoder).
    """

    index: int
    hw: Tuple[int, int]
    backbone: Optional[dict]
    tracked: Dict[int, dict]
    image: np.ndarray
    feature_cache: Dict[int, tuple] = field(default_factory=dict)  # batch size -> features

    def tracked_logits(self) -> Tuple[List[int], torch.Tensor]:
        """The tracked objects' ids and ``(K, 1, 256, 256)`` logits (hole-filled)."""
        ids = list(self.tracked)
        if not ids:
            return ids, torch.zeros((0, 1, 256, 256))
        return ids, torch.cat([self.tracked[i]["pred_masks"] for i in ids]).float()


def upsampled_masks(logits: torch.Tensor, hw: Tuple[int, int], threshold: float = 0.0
                    ) -> np.ndarray:
    """``(K, H, W)`` bool masks of ``(K, 1, h, w)`` logits: upsampled as Meta's video predictor
    does (bilinear, ``align_corners=False``) and compared with ``threshold``."""
    if len(logits) == 0:
        return np.zeros((0, *hw), bool)
    big = F.interpolate(logits.float(), size=tuple(hw), mode="bilinear", align_corners=False)
    return (big[:, 0] > threshold).cpu().numpy()


def points_input(prompts: Sequence[ObjectPrompt], hw: Tuple[int, int], size: int,
                 device: torch.device) -> dict:
    """Pixels to the model's ``size`` input square, in float32 as Meta's
    ``add_new_points_or_box``; one row per object (equal point counts)."""
    h, w = hw
    coords = torch.as_tensor(np.stack([np.asarray(p[0], np.float32) for p in prompts]))
    coords = coords / torch.tensor([w, h]) * size
    labels = torch.as_tensor(np.stack([np.asarray(p[1], np.int32) for p in prompts]))
    return {"point_coords": coords.to(device), "point_labels": labels.to(device)}


def mask_input(masks: Sequence[np.ndarray], size: int, device: torch.device) -> torch.Tensor:
    """``(N, 1, size, size)`` float masks as Meta's ``add_new_mask`` makes them: resized to the
    model's input (bilinear, antialiased) and cut at 0.5."""
    x = torch.as_tensor(np.stack([np.asarray(m, bool) for m in masks]))[:, None]
    x = x.float().to(device)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
        x = (x >= 0.5).float()
    return x
