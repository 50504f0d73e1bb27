"""A scripted world for the video session's rules: objects with known boxes on each frame, a
detector that lists them in a shuffled order, and a tracker that follows them perfectly.

The rules of :class:`engine.video.session.VideoSession` (matching, new objects, ids, names,
seeding, bounds, drops) are then tested exactly, apart from the model (whose tracking is tested
against Meta's in ``test_tracker.py``).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch

from infer_segment_anything_2.engine.image.results import Segmentation
from infer_segment_anything_2.engine.video.frames import StagedFrame, TrackedFrame
from infer_segment_anything_2.engine.video.matching import Detections, box_iou
from infer_segment_anything_2.engine.video.memory import ObjectTrack

H, W = 120, 160


class World:
    """Named objects, each a box per frame (continuous XYXY) or None when out of view."""

    def __init__(self, paths: Dict[str, List[Optional[List[float]]]]):
        self.paths = paths

    def boxes(self, t: int) -> Dict[str, np.ndarray]:
        return {name: np.asarray(path[t], np.float32) for name, path in self.paths.items()
                if t < len(path) and path[t] is not None}

    def detections(self, t: int, seed: int = 0, classes: bool = True) -> Detections:
        """What a detector sees on frame ``t``: every object in view, in a shuffled order; its
        class is the object's name up to a digit ("car2" -> "car")."""
        seen = self.boxes(t)
        order = np.random.default_rng(seed + t).permutation(len(seen))
        names = [list(seen)[i] for i in order]
        return Detections(np.stack([seen[n] for n in names]).reshape(-1, 4),
                          [n.rstrip("0123456789") if classes else "" for n in names],
                          np.full(len(names), 0.9, np.float32))

    def mask(self, name: str, t: int) -> np.ndarray:
        box = self.boxes(t).get(name)
        out = np.zeros((H, W), bool)
        if box is not None:
            x1, y1, x2, y2 = box.astype(int)
            out[y1:y2, x1:x2] = True
        return out


def box_logits(mask: np.ndarray) -> torch.Tensor:
    """``(1, 1, 256, 256)`` logits whose upsampling to the frame is ``mask`` (+-10)."""
    small = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].float(),
                                            size=(256, 256), mode="nearest")
    return small * 20.0 - 10.0


class PerfectTracker:
    """The tracker's interface (``begin``, ``finish``, ``drop``, ``objects``), following the
    world: an object is the world object its start box (or mask) overlaps most; ``lost`` lists
    (name, frame) pairs where the tracker misses an object that is in view."""

    def __init__(self, world: World, model=None, choice=None, lost=()):
        self.world, self.lost = world, set(lost)
        self.model, self.choice = model, choice
        self.objects: Dict[int, ObjectTrack] = {}
        self.follows: Dict[int, str] = {}
        self.frame_index, self.frame_hw = -1, None
        self.started: List[tuple] = []  # (frame, id, "box" or "mask")

    def _logits(self, oid: int, t: int) -> torch.Tensor:
        name = self.follows[oid]
        if (name, t) in self.lost:
            return torch.full((1, 1, 256, 256), -1024.0)
        return box_logits(self.world.mask(name, t))

    def begin(self, image, encode=False, should_stop=None) -> StagedFrame:
        t = self.frame_index + 1
        tracked = {i: {"pred_masks": self._logits(i, t)} for i in self.objects}
        return StagedFrame(t, image.shape[:2], {} if (self.objects or encode) else None,
                           tracked, image)

    def _closest(self, box: np.ndarray, t: int) -> str:
        seen = self.world.boxes(t)
        iou = box_iou(box[None], np.stack(list(seen.values())))[0]
        return list(seen)[int(np.argmax(iou))]

    def finish(self, staged, prompts={}, masks={}, should_stop=None) -> TrackedFrame:
        t = staged.index
        for oid, (coords, labels) in prompts.items():
            if oid not in self.objects:
                self.objects[oid] = ObjectTrack(cond={t: {}})
                self.follows[oid] = self._closest(coords.reshape(-1)[:4], t)
                self.started.append((t, oid, "box"))
        for oid, mask in masks.items():
            ys, xs = np.nonzero(mask)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            self.objects[oid] = ObjectTrack(cond={t: {}})
            self.follows[oid] = self._closest(box, t)
            self.started.append((t, oid, "mask"))
        ids = list(self.objects)
        logits = torch.cat([self._logits(i, t) for i in ids]) if ids else torch.zeros(
            (0, 1, 256, 256))
        scores = np.array([10.0 if (logits[k] > 0).any() else -10.0 for k in range(len(ids))],
                          np.float32)
        for i, s in zip(ids, scores):
            if s > 0:
                self.objects[i].last_seen = t
        self.frame_index, self.frame_hw = t, staged.hw
        return TrackedFrame(t, np.array(ids, np.int64), logits, scores)

    def drop(self, ids) -> None:
        for i in ids:
            self.objects.pop(i, None)


def seeder_of(world: World):
    """Automatic mode as a stand-in: every object in view, largest first, plus each one's top
    half (a part, which must not become an object of its own)."""
    def seed(image, staged) -> Segmentation:
        t = staged.index
        masks = []
        for name in sorted(world.boxes(t), key=lambda n: -world.mask(n, t).sum()):
            whole = world.mask(name, t)
            top = whole.copy()
            rows = np.flatnonzero(whole.any(axis=1))
            top[rows[len(rows) // 2]:] = False
            masks += [whole, top]
        masks = np.stack(masks) if masks else np.zeros((0, H, W), bool)
        return Segmentation.from_masks(masks, np.ones(len(masks), np.float32))
    return seed
