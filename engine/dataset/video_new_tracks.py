"""New tracks during an offline video annotation: from a detector, or from automatic seeding.

Both classes are the ``new_tracks`` callable of :class:`engine.video.offline.OfflinePropagation`:
``new_tracks(frame_index, image, tracked, embedding=None) -> {new track id: TrackPrompt}``,
called on each frame of the forward pass with the frame (HWC RGB uint8), what the tracks already
there give on it (:class:`engine.video.offline_types.FrameResult`: ``(K,)`` ids, ``(K, H, W)``
bool masks) and ``embedding()``, the frame's image embedding from the propagation's encoding. A
track started on frame ``k`` is tracked forward from ``k``, and backwards from ``k`` after the
forward pass (the propagation's job).

The rules are video mode's (:mod:`engine.video.session`, README "Video tracking"):

* :class:`DetectorTracks`: on frames 0, N, 2N, ... the detector's detections (bad boxes left out
  with a warning, :func:`engine.video.matching.clean_detections`) are matched one to one to the
  tracks (:func:`engine.video.matching.match`: the best of the box IoU with the track's mask box
  on this frame, its last mask box when it is absent, and with the box of the detection it was
  last matched to or started from; classes agreeing); each unmatched detection starts a track
  from its box, its category the detection's class.
* :class:`SeedTracks`: on frames 0, N, 2N, ... each automatic mask less than half covered by the
  tracked masks (and the masks accepted before it, :func:`engine.video.seeding.new_seeds`) starts
  a track from the mask, category ``object``.

Ids are given in order of start from ``first_id``; at most ``max_tracks`` tracks start (one
warning past it). :meth:`state` / :meth:`load_state` are plain Python values (picklable, JSON
too): a run resumed from a checkpoint's state continues exactly as an uninterrupted one.
Boxes are continuous XYXY pixels of the frame (``x2 = x + w``).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..image.predictor import ImageEmbedding

import numpy as np

from ..automatic import AutomaticParams, generate
from ..model.device import DeviceChoice
from ..video.matching import Detections, clean_detections, mask_box, match
from ..video.offline_types import FrameResult, TrackPrompt
from ..video.seeding import new_seeds

logger = logging.getLogger(__name__)

SEED_CATEGORY = "object"  # the category of a track started by automatic seeding

# detect(frame_index, HWC RGB uint8 image) -> the detector's detections on the frame
Detect = Callable[[int, np.ndarray], Detections]
# generate(HWC RGB uint8 image[, embedding]) -> (M, H, W) bool automatic masks, in priority
# order; embedding() gives the frame's ImageEmbedding (handed over only when there is one)
Generate = Callable[..., np.ndarray]
Embedding = Optional[Callable[[], ImageEmbedding]]


def _check(every: int, max_tracks: int, first_id: int) -> None:
    if every < 1:
        raise ValueError(f"every must be at least 1 (got {every})")
    if max_tracks < 0:
        raise ValueError(f"max_tracks must be at least 0 (got {max_tracks})")
    if first_id < 0:
        raise ValueError(f"first_id must be at least 0 (got {first_id})")


class _NewTracks:
    """What both sources share: ids in order of start, categories, the bound, the state."""

    def __init__(self, every: int, max_tracks: int, first_id: int) -> None:
        _check(every, max_tracks, first_id)
        self.every, self.max_tracks = int(every), int(max_tracks)
        self.next_id = int(first_id)
        self.categories: Dict[int, str] = {}  # track id -> category, every track started
        self.warned_full = False

    def _due(self, frame_index: int) -> bool:
        return frame_index % self.every == 0

    def _room(self) -> int:
        return self.max_tracks - len(self.categories)

    def _warn_full(self) -> None:
        if not self.warned_full:
            logger.warning("new tracks: max_tracks (%d) reached: no more tracks start in this "
                           "video", self.max_tracks)
            self.warned_full = True

    def _start(self, category: str) -> Optional[int]:
        """A new track's id (None past ``max_tracks``, warned once)."""
        if self._room() <= 0:
            self._warn_full()
            return None
        tid, self.next_id = self.next_id, self.next_id + 1
        self.categories[tid] = category
        return tid

    def state(self) -> Dict[str, Any]:
        """The bookkeeping as plain Python values (ints, strs, lists of floats)."""
        return {"next_id": self.next_id, "warned_full": self.warned_full,
                "categories": [[tid, c] for tid, c in self.categories.items()]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (of an object built with the same arguments)."""
        self.next_id = int(state["next_id"])
        self.warned_full = bool(state["warned_full"])
        self.categories = {int(tid): str(c) for tid, c in state["categories"]}


class DetectorTracks(_NewTracks):
    """Tracks started by a detector's unmatched detections (the module's rules).

    Args:
        detect: ``detect(frame_index, image) -> Detections`` (boxes continuous XYXY pixels,
            any values: they are checked here).
        every: the detector runs on frames 0, ``every``, 2 ``every``, ...
        match_iou: a detection matches a track with box IoU at least this (video mode's
            ``video_match_iou``).
        max_tracks: tracks started at most.
        first_id: the first track's id.

    Attributes:
        categories: track id -> the class of the detection that started it.
        last_boxes: track id -> ``(4,)`` float32 box of its last detection (the one that
            started it, or the last one matched to it).
        mask_boxes: track id -> ``(4,)`` float32 box of its last non-empty mask on a forward
            frame (video mode's box of an object when it is absent).
    """

    def __init__(self, detect: Detect, every: int, match_iou: float, max_tracks: int,
                 first_id: int = 0) -> None:
        super().__init__(every, max_tracks, first_id)
        self.detect, self.match_iou = detect, float(match_iou)
        self.last_boxes: Dict[int, np.ndarray] = {}
        self.mask_boxes: Dict[int, np.ndarray] = {}

    def __call__(self, frame_index: int, image: np.ndarray, tracked: FrameResult,
                 embedding: Embedding = None) -> Dict[int, TrackPrompt]:
        ids = [int(i) for i in tracked.ids]
        for i, m in zip(ids, tracked.masks):  # every frame: the box of an absent track
            if m.any():
                self.mask_boxes[i] = mask_box(m)
        if not self._due(frame_index):
            return {}
        found = self.detect(frame_index, image)
        dets, problems = clean_detections(found.boxes, found.classes, found.confidences,
                                          image.shape[:2])
        for problem in problems:
            logger.warning("frame %d: %s", frame_index, problem)
        pairs = match(dets, self._boxes(self.mask_boxes, ids),
                      [self.categories.get(i, "") for i in ids], self.match_iou,
                      self._boxes(self.last_boxes, ids))
        started: Dict[int, TrackPrompt] = {}
        for d in range(len(dets)):
            box = dets.boxes[d].copy()
            if d in pairs:
                self.last_boxes[ids[pairs[d]]] = box
                continue
            tid = self._start(dets.classes[d])
            if tid is not None:
                self.last_boxes[tid] = box
                started[tid] = TrackPrompt(frame=frame_index, box=box)
        return started

    @staticmethod
    def _boxes(boxes: Dict[int, np.ndarray], ids: List[int]) -> np.ndarray:
        """``(K, 4)`` float32 boxes of ``ids`` (NaN for a track without one: IoU 0)."""
        nan = np.full(4, np.nan, np.float32)
        return np.array([boxes.get(i, nan) for i in ids], np.float32).reshape(-1, 4)

    def state(self) -> Dict[str, Any]:
        # float32 -> Python float -> float32 is exact: a resumed run matches bit for bit
        return {**super().state(), "last_boxes": _boxes_state(self.last_boxes),
                "mask_boxes": _boxes_state(self.mask_boxes)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.last_boxes = _boxes_of(state["last_boxes"])
        self.mask_boxes = _boxes_of(state["mask_boxes"])


def _boxes_state(boxes: Dict[int, np.ndarray]) -> List:
    return [[tid, [float(v) for v in b]] for tid, b in boxes.items()]


def _boxes_of(state: List) -> Dict[int, np.ndarray]:
    return {int(tid): np.asarray(b, np.float32) for tid, b in state}


class SeedTracks(_NewTracks):
    """Tracks started by automatic masks that nothing tracked covers (the module's rules).

    Args:
        generate: ``generate(image) -> (M, H, W) bool`` masks, in priority order (the automatic
            mode's: largest first); :func:`automatic_masks` makes it from the engine's generator.
        every: seeding runs on frames 0, ``every``, 2 ``every``, ...
        max_tracks: tracks started at most.
        first_id: the first track's id.

    Attributes:
        categories: track id -> ``object``.
    """

    def __init__(self, generate: Generate, every: int, max_tracks: int,
                 first_id: int = 0) -> None:
        super().__init__(every, max_tracks, first_id)
        self.generate = generate

    def __call__(self, frame_index: int, image: np.ndarray, tracked: FrameResult,
                 embedding: Embedding = None) -> Dict[int, TrackPrompt]:
        if not self._due(frame_index):
            return {}
        if self._room() <= 0:  # the generator is not run for nothing
            self._warn_full()
            return {}
        found = self.generate(image) if embedding is None else self.generate(image, embedding)
        masks = np.asarray(found, bool).reshape(-1, *image.shape[:2])
        covered = tracked.masks.any(axis=0) if len(tracked.masks) else None
        started: Dict[int, TrackPrompt] = {}
        # one more seed than there is room for: the bound is then warned about
        for k in new_seeds(masks, covered, limit=self._room() + 1):
            tid = self._start(SEED_CATEGORY)
            if tid is not None:
                started[tid] = TrackPrompt(frame=frame_index, mask=masks[k].copy())
        return started


def automatic_masks(model, params: AutomaticParams, choice: DeviceChoice,
                    scale: float = 1.0) -> Generate:
    """:class:`SeedTracks`' ``generate`` from the engine's automatic mode
    (:func:`engine.automatic.generate`, the task's automatic parameters, e.g.
    ``automatic_params(parse_values(values))``; ``scale``: ``input_size_percent / 100``).

    At ``scale`` 1 the whole frame's crop reads the propagation's embedding of the frame (its
    features as Meta's video loader prepares the frame, as video mode's seeding reads them): no
    second encoding. At another scale, or called without one, the generator encodes the frame
    itself."""

    def masks(image: np.ndarray, embedding: Embedding = None) -> np.ndarray:
        shared = embedding() if embedding is not None and scale == 1.0 else None
        return generate(model, image, params, scale, choice, embedding=shared).masks

    return masks
