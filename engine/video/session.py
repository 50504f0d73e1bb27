"""Video mode's rules: what a frame's prompt does, and what starts a new video.

A workflow runs the task once per frame and hands it the same prompt parameters on every frame
(and, in Studio, the same graphics), so a prompt cannot mean "on this frame" by being present.
The rules (documented in the README):

* **Prompts are taken when they appear or change.** Object ``i`` of the prompt (the prompt's own
  numbering: point group ``i``, or box ``i``) is object ``i`` of the video for the whole video.
  On a frame where object ``i``'s prompt (its points, labels and box) differs from the one last
  applied to it, or is new, it is applied on that frame: it starts the object (no memory yet) or
  corrects it (decoded with the object's memory and its tracked mask). An unchanged prompt is not
  applied again; a prompt removed leaves the object tracked.
* **A new video starts** (memory cleared, next frame is frame 0, every prompt applied again) when
  the frame size changes, when the model or the precision changes, when ``video_tracking`` was
  off on the previous run, or on :meth:`VideoSession.reset` (``reset_video()`` on the task).
* With no prompt and no object yet the frame has no object (video mode never falls back to the
  automatic mode).
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..model.device import DeviceChoice
from ..image.prompts import Prompt
from ..image.results import Segmentation
from .tracker import ObjectPrompt, TrackedFrame, VideoTracker

logger = logging.getLogger(__name__)


def _prompt_key(prompt: ObjectPrompt) -> bytes:
    coords, labels = prompt
    return np.asarray(coords, np.float32).tobytes() + b"|" + np.asarray(labels, np.int32).tobytes()


class VideoSession:
    """One video at a time: a :class:`VideoTracker` plus the prompts already applied.

    Attributes:
        names: one display name per object of the video, in object order (a name given when the
            object's prompt is applied replaces the previous one).
    """

    def __init__(self) -> None:
        self.tracker: Optional[VideoTracker] = None
        self.applied: List[bytes] = []
        self.names: List[str] = []
        self.videos = 0  # videos started in this session

    def reset(self) -> None:
        """End the video: the next frame starts a new one."""
        self.tracker, self.applied, self.names = None, [], []

    @property
    def frame_index(self) -> int:
        """Index of the last frame tracked in the current video (-1: none)."""
        return self.tracker.frame_index if self.tracker is not None else -1

    def _tracker_for(self, model, choice: DeviceChoice, hw) -> VideoTracker:
        t = self.tracker
        if t is None or t.model is not model or t.choice != choice or (
                t.frame_hw is not None and t.frame_hw != tuple(hw)):
            self.reset()
            self.tracker = VideoTracker(model, choice)
            self.videos += 1
            logger.info("infer_segment_anything_2: video tracking starts a new video (%dx%d)",
                        hw[1], hw[0])
        return self.tracker

    def frame(self, model, choice: DeviceChoice, image: np.ndarray, prompt: Prompt,
              names: Sequence[str], mask_threshold: float = 0.0,
              should_stop: Optional[Callable[[], bool]] = None) -> Segmentation:
        """Track the next frame (HWC RGB uint8) with ``prompt`` in force on it.

        Returns one mask per object of the video, in object order (``object_index`` = object
        number - 1), ``scores`` the probability that the object is in the frame (sigmoid of SAM
        2's object score; 0 before its first prompt); an absent object has an empty mask. On a
        stop (:class:`engine.cancel.GenerationCancelled`) nothing changes.
        """
        tracker = self._tracker_for(model, choice, image.shape[:2])
        new: Dict[int, ObjectPrompt] = {}
        keys = list(self.applied)
        for i in range(prompt.num_objects):
            obj = prompt.object_prompt(i)
            key = _prompt_key(obj)
            if i >= len(keys) or keys[i] != key:
                new[i] = obj
                if i < len(keys):
                    keys[i] = key
                else:
                    keys.append(key)
        result = tracker.track(image, new, should_stop)
        self.applied = keys
        for i in new:
            name = names[i] if i < len(names) else f"object {i + 1}"
            if i < len(self.names):
                self.names[i] = name
            else:
                self.names.append(name)
        return _segmentation(result, image.shape[:2], mask_threshold)


def _segmentation(frame: TrackedFrame, hw, threshold: float) -> Segmentation:
    masks = frame.masks(*hw, threshold)
    # sigmoid as 0.5 (1 + tanh(x / 2)): no overflow for very negative scores, 0 for -inf
    presence = 0.5 * (1.0 + np.tanh(frame.object_scores.astype(np.float64) / 2.0))
    return Segmentation.from_masks(masks, presence.astype(np.float32),
                                   object_index=np.arange(len(masks), dtype=np.int32))
