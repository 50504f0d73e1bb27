"""What an offline video annotation is given and what it gives, frame by frame.

Shared by the offline propagation (:mod:`engine.video.offline`), the video readers and writers
of :mod:`engine.dataset` and the command line. Pure types: no model, no I/O.

Coordinates: boxes are continuous XYXY pixels of the frame (``x2 = x + w``, as a detector's or a
MOT file's ``x, y, w, h`` box); points are XY pixels; masks are ``(H, W)`` bool of the frame.
Frames are indexed from 0 (MOT files count from 1: their readers convert).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Protocol, Sequence, Tuple

import numpy as np

DIRECTIONS = ("both", "forward")


@dataclass(frozen=True)
class TrackPrompt:
    """One prompt of one track on one frame: a box, points, or a mask (Meta's
    ``add_new_points_or_box`` / ``add_new_mask``).

    Attributes:
        frame: the frame's index in the video, from 0.
        box: ``(4,)`` float32 continuous XYXY pixels, or None.
        points: ``(P, 2)`` float32 XY pixels, or None; ``labels``: ``(P,)`` int32 (1 foreground,
            0 background), with ``points``.
        mask: ``(H, W)`` bool of the frame, or None (then a box or points).
    """

    frame: int
    box: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise ValueError(f"prompt frame {self.frame}: frames are indexed from 0")
        if self.mask is None and self.box is None and self.points is None:
            raise ValueError("a prompt needs a box, points or a mask")
        if (self.points is None) != (self.labels is None):
            raise ValueError("points and labels go together")

    def as_points(self) -> Tuple[np.ndarray, np.ndarray]:
        """SAM 2's point form: ``(P, 2)`` float32 XY pixels and ``(P,)`` int32 labels, the box
        first as two corners labelled 2 and 3 (as Meta's ``add_new_points_or_box``)."""
        coords, labels = [], []
        if self.box is not None:
            coords.append(np.asarray(self.box, np.float32).reshape(2, 2))
            labels.append(np.array([2, 3], np.int32))
        if self.points is not None:
            coords.append(np.asarray(self.points, np.float32).reshape(-1, 2))
            labels.append(np.asarray(self.labels, np.int32).reshape(-1))
        if not coords:
            return np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
        return np.concatenate(coords), np.concatenate(labels)


class FrameSource(Protocol):
    """A video's frames, decoded as they are needed (never the whole video in memory).

    ``len()`` is the number of frames, ``hw`` their ``(height, width)``, ``names`` one name per
    frame (a frame folder's file names; ``000000.jpg``-style for a video file).
    :meth:`iterate` yields ``(index, HWC RGB uint8 image)`` for contiguous indices, ascending or
    descending (a descending run is decoded in ascending blocks and handed out reversed).
    """

    hw: Tuple[int, int]
    names: Sequence[str]

    def __len__(self) -> int: ...

    def iterate(self, indices: Sequence[int]) -> Iterator[Tuple[int, np.ndarray]]: ...


@dataclass
class FrameResult:
    """The tracked objects of one frame, in one direction.

    Attributes:
        index: the frame's index.
        reverse: True when it comes from a backward pass.
        ids: ``(K,)`` int64 track ids.
        masks: ``(K, H, W)`` bool masks at the frame's size (logits upsampled as Meta's
            predictor does, bilinear, compared with the mask threshold).
        scores: ``(K,)`` float32 object-presence logits (> 0: present).
        logits: ``(K, 1, h, w)`` float32 low-resolution mask logits (SAM 2's ``S/4`` grid), or
            None.
    """

    index: int
    reverse: bool
    ids: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    logits: Optional[np.ndarray] = None
