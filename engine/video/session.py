"""Video mode's rules: what a frame's prompts, detections and automatic masks do, and what starts
a new video.

A workflow runs the task once per frame and hands it the same prompt parameters on every frame
(and, in Studio, the same graphics), so a prompt cannot mean "on this frame" by being present.
The rules (documented in the README):

* **Objects have ids** 0, 1, 2, ... in the order they start; an id is never reused in a video
  (an object dropped for absence retires its id).
* **Prompts (parameters, graphics) are taken when they appear or change.** Object ``i`` of the
  prompt (point group ``i``, or box ``i``) is one object of the video for the whole video (the
  first prompt objects of a video get ids 0, 1, ...). A changed prompt corrects its object
  (decoded with the object's memory and its tracked mask); an unchanged one is not applied
  again; a removed one leaves its object tracked.
* **Detections are matched, not numbered** (:mod:`engine.video.matching`): each frame's
  detections are matched one to one to the objects by box IoU, the best of the IoU with the
  object's mask box on this frame (its last box seen when it is absent) and with the box of the
  detection it was last matched to or started from, classes agreeing. A matched detection is its
  object (tracked by memory, not re-prompted, unless ``reapply_every`` says so); an unmatched
  one starts a new object from its box, named by its class.
* **Track everything** (``seed_every`` > 0): on frame 0 and every ``seed_every`` frames the
  automatic mode runs on the frame, and each mask not already covered by an object
  (:mod:`engine.video.seeding`) starts a new object from the mask (Meta's ``add_new_mask``).
* **Bounds**: at most ``max_objects`` objects (new ones past it are not started, with one
  warning per video); with ``drop_after`` > 0 an object absent that many frames in a row is
  dropped and its memory freed.
* **A new video starts** (memory cleared, next frame is frame 0, every prompt applied again) when
  the frame size changes, when the model or the precision changes, when ``video_tracking`` was
  off on the previous run, or on :meth:`VideoSession.reset` (``reset_video()`` on the task).
* With no prompt, no detection, no seeding and no object yet the frame has no object and is not
  encoded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .frames import ObjectPrompt, StagedFrame, upsampled_masks
from .matching import Detections, mask_box, match
from .seeding import new_seeds
from .tracker import VideoTracker
from ..image.prompts import Prompt
from ..image.results import Segmentation
from ..model.device import DeviceChoice

logger = logging.getLogger(__name__)

# seeder(image, staged frame) -> the automatic mode's masks on the frame, at its size
Seeder = Callable[[np.ndarray, StagedFrame], Segmentation]


@dataclass(frozen=True)
class VideoOptions:
    """Video mode's parameters (validated by :mod:`engine.parameters`)."""

    reapply_every: int = 0  # matched detections re-applied every N frames (0: never)
    seed_every: int = 0  # automatic masks seed new objects on frame 0 and every N frames
    max_objects: int = 32  # objects of a video at most
    drop_after: int = 0  # frames of absence after which an object is dropped (0: never)
    match_iou: float = 0.3  # box IoU at least this to match a detection to an object


def _prompt_key(prompt: ObjectPrompt) -> bytes:
    coords, labels = prompt
    return np.asarray(coords, np.float32).tobytes() + b"|" + np.asarray(labels, np.int32).tobytes()


@dataclass
class _Video:
    """One video's bookkeeping besides the tracker's memory."""

    slots: Dict[int, int] = field(default_factory=dict)  # prompt object -> object id
    applied: Dict[int, bytes] = field(default_factory=dict)  # prompt object -> prompt applied
    names: Dict[int, str] = field(default_factory=dict)  # object id -> name (every id given)
    next_id: int = 0
    warned_full: bool = False


class VideoSession:
    """One video at a time: a :class:`VideoTracker` plus the rules above.

    Attributes:
        names: the display names of the objects of the last frame, in its object order.
        ids: their object ids.
    """

    def __init__(self, tracker_factory: Callable[..., VideoTracker] = VideoTracker) -> None:
        self.tracker_factory = tracker_factory
        self.tracker: Optional[VideoTracker] = None
        self.video = _Video()
        self.names: List[str] = []
        self.ids = np.zeros(0, np.int64)
        self.videos = 0  # videos started in this session

    def reset(self) -> None:
        """End the video: the next frame starts a new one."""
        self.tracker, self.video, self.names = None, _Video(), []
        self.ids = np.zeros(0, np.int64)

    @property
    def frame_index(self) -> int:
        """Index of the last frame tracked in the current video (-1: none)."""
        return self.tracker.frame_index if self.tracker is not None else -1

    def name_of(self, object_id: int) -> str:
        """The name of an object of this video (also of a dropped one)."""
        return self.video.names.get(object_id, f"object {object_id + 1}")

    def _tracker_for(self, model, choice: DeviceChoice, hw) -> VideoTracker:
        t = self.tracker
        if t is None or t.model is not model or t.choice != choice or (
                t.frame_hw is not None and t.frame_hw != tuple(hw)):
            self.reset()
            self.tracker = self.tracker_factory(model, choice)
            self.videos += 1
            logger.info("infer_segment_anything_2: video tracking starts a new video (%dx%d)",
                        hw[1], hw[0])
        return self.tracker

    def frame(self, model, choice: DeviceChoice, image: np.ndarray, prompt: Prompt,
              names: Sequence[str], detections: Optional[Detections] = None,
              options: VideoOptions = VideoOptions(), mask_threshold: float = 0.0,
              should_stop: Optional[Callable[[], bool]] = None,
              seeder: Optional[Seeder] = None) -> Segmentation:
        """Track the next frame (HWC RGB uint8) with ``prompt``, ``detections`` and seeding.

        Returns one mask per object of the video, in object order (``object_index`` = the
        object's id; :attr:`names` their names), ``scores`` the probability that the object is
        in the frame (sigmoid of SAM 2's object score); an absent object has an empty mask. On
        a stop (:class:`engine.cancel.GenerationCancelled`) nothing changes.
        """
        tracker = self._tracker_for(model, choice, image.shape[:2])
        hw = image.shape[:2]
        v = _Video(dict(self.video.slots), dict(self.video.applied), dict(self.video.names),
                   self.video.next_id, self.video.warned_full)  # committed with the frame
        t = tracker.frame_index + 1
        room = [max(0, options.max_objects - len(tracker.objects))]
        changes: Dict[int, ObjectPrompt] = {}

        def start(name: str) -> Optional[int]:
            if room[0] <= 0:
                if not v.warned_full:
                    logger.warning("infer_segment_anything_2: video_max_objects (%d) reached: "
                                   "new objects are not started in this video",
                                   options.max_objects)
                    v.warned_full = True
                return None
            room[0] -= 1
            oid, v.next_id = v.next_id, v.next_id + 1
            v.names[oid] = name or f"object {oid + 1}"
            return oid

        for i in range(prompt.num_objects):
            obj = prompt.object_prompt(i)
            key = _prompt_key(obj)
            if not len(obj[0]) or v.applied.get(i) == key:
                continue
            name = names[i] if i < len(names) else ""
            if v.slots.get(i) not in tracker.objects:  # new, or its object was dropped
                oid = start(name)
                if oid is None:
                    continue
                v.slots[i] = oid
            v.names[v.slots[i]] = name or v.names[v.slots[i]]
            changes[v.slots[i]] = obj
            v.applied[i] = key
        dets = detections if detections is not None and len(detections) else None
        seeding = seeder is not None and options.seed_every > 0 and t % options.seed_every == 0
        staged = tracker.begin(image, encode=bool(changes or dets or seeding),
                               should_stop=should_stop)
        ids, logits = staged.tracked_logits()
        # the tracked masks at the frame's size, only when detections or seeding look at them
        tracked = upsampled_masks(logits, hw, mask_threshold) if dets is not None or seeding \
            else None
        classes: Dict[int, str] = {}
        detected: Dict[int, np.ndarray] = {}  # object id -> the detection box it matched now
        if dets is not None:
            # the objects: tracked ones (their mask's box, or their last box when absent) and
            # those a prompt starts on this frame (their box; none for points)
            fresh = [i for i in changes if i not in tracker.objects]
            boxes = [mask_box(m) if m.any() else _last_box(tracker, i)
                     for i, m in zip(ids, tracked)] + [_prompt_box(changes[i]) for i in fresh]
            classes_now = [tracker.objects[i].cls for i in ids] + [""] * len(fresh)
            last = [_last_detection_box(tracker, i) for i in ids] + [_NO_BOX] * len(fresh)
            pairs = match(dets, np.stack(boxes) if boxes else np.zeros((0, 4)), classes_now,
                          options.match_iou, np.stack(last) if last else None)
            objects_now = [int(i) for i in ids] + fresh
            reapply = options.reapply_every > 0 and t % options.reapply_every == 0
            for d in range(len(dets)):
                if d in pairs:
                    k = pairs[d]
                    detected[objects_now[k]] = dets.boxes[d]
                    if reapply and k < len(ids) and ids[k] not in changes:
                        changes[ids[k]] = dets.box_prompt(d)
                    continue
                oid = start(dets.classes[d])
                if oid is not None:
                    changes[oid] = dets.box_prompt(d)
                    classes[oid] = dets.classes[d]
                    detected[oid] = dets.boxes[d]
        masks: Dict[int, np.ndarray] = {}
        if seeding:
            covered = tracked.any(axis=0) if len(tracked) else np.zeros(hw, bool)
            for oid, prompt_ in changes.items():
                box = _prompt_box(prompt_)
                if oid not in tracker.objects and np.isfinite(box).all():
                    x1, y1 = np.floor(box[:2]).astype(int)  # started on this frame by a box
                    x2, y2 = np.ceil(box[2:]).astype(int)
                    covered[max(y1, 0):y2, max(x1, 0):x2] = True
            seeds = seeder(image, staged)
            for k in new_seeds(seeds.masks, covered, limit=room[0]):
                masks[start("")] = seeds.masks[k]
        frame = tracker.finish(staged, changes, masks, should_stop)
        for oid, cls in classes.items():
            tracker.objects[oid].cls = cls
        for oid, box in detected.items():
            tracker.objects[oid].detection_box = box
        out = upsampled_masks(frame.logits, hw, mask_threshold)
        for oid, m in zip(frame.ids.tolist(), out):
            if m.any():
                tracker.objects[oid].box = mask_box(m)
        self.video = v
        keep = np.ones(len(frame.ids), bool)
        if options.drop_after > 0:
            gone = [oid for oid, obj in tracker.objects.items()
                    if t - max(obj.last_seen, min(obj.cond)) >= options.drop_after]
            tracker.drop(gone)
            keep = ~np.isin(frame.ids, gone)
        self.ids = frame.ids[keep]
        self.names = [self.name_of(int(i)) for i in self.ids]
        # sigmoid as 0.5 (1 + tanh(x / 2)): no overflow for very negative scores
        presence = 0.5 * (1.0 + np.tanh(frame.object_scores[keep].astype(np.float64) / 2.0))
        return Segmentation.from_masks(out[keep], presence.astype(np.float32),
                                       object_index=self.ids.astype(np.int32))


_NO_BOX = np.full(4, np.nan, np.float32)  # an object with no box (IoU 0 with any box)


def _last_box(tracker: VideoTracker, oid: int) -> np.ndarray:
    box = tracker.objects[oid].box
    return _NO_BOX if box is None else box


def _last_detection_box(tracker: VideoTracker, oid: int) -> np.ndarray:
    box = tracker.objects[oid].detection_box
    return _NO_BOX if box is None else box


def _prompt_box(prompt: ObjectPrompt) -> np.ndarray:
    """A prompt's box (continuous XYXY: its first two points when labelled 2 and 3, as boxes
    are given), NaN for a prompt of points only."""
    coords, labels = prompt
    if len(labels) >= 2 and labels[0] == 2 and labels[1] == 3:
        return np.asarray(coords[:2], np.float32).reshape(4)
    return np.full(4, np.nan, np.float32)
