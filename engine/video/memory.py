"""Each object's memory as SAM 2's ``track_step`` reads it, and batches of objects whose memories
line up (the same frames in their memory), which one ``track_step`` can run together.

An output is Meta's compact per-frame output of one object: ``maskmem_features`` (bfloat16
``(1, 64, 64, 64)`` at 1024 input), ``maskmem_pos_enc`` (shared by every frame and object),
``pred_masks`` (``(1, 1, 256, 256)`` float32 logits, holes filled), ``obj_ptr`` (``(1, 256)``)
and ``object_score_logits`` (``(1, 1)``); once the memory attention has read it, also
``attn_keys`` (its keys per layer, :mod:`.attention`'s cache, dropped when no longer read).
Pure bookkeeping over tensors: no model call here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

STACKED = ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits")


@dataclass
class ObjectTrack:
    """One object of the video.

    Attributes:
        cond: prompted frames' outputs by frame index (Meta's conditioning frames).
        recent: tracked frames' outputs, the last few only (those the model can still read).
        last_seen: the last frame index where the object was present (object score > 0).
        box: its last mask's box seen, continuous XYXY pixels of the frame (None before it is
            seen).
        detection_box: the box of the detection it was last matched to or started from,
            continuous XYXY pixels (None when no detection was ever matched to it).
        name: its display name; ``cls``: its class when it came from a detection ("" if not).
    """

    cond: Dict[int, dict] = field(default_factory=dict)
    recent: Dict[int, dict] = field(default_factory=dict)
    last_seen: int = -1
    box: Optional[np.ndarray] = None
    detection_box: Optional[np.ndarray] = None
    name: str = ""
    cls: str = ""

    def output_dict(self) -> dict:
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.recent}

    def memory_key(self) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """The frames in this object's memory: objects with the same key can be tracked in one
        batch (``track_step`` reads the same frames for each of them)."""
        return tuple(sorted(self.cond)), tuple(sorted(self.recent))

    def prune(self, t: int, horizon: int, max_cond: int) -> None:
        """Drop tracked outputs the model can no longer read at frames after ``t``, and
        prompted ones over ``max_cond`` (the first prompted frame is always kept)."""
        for f in [f for f in self.recent if f <= t - horizon]:
            del self.recent[f]
        if len(self.cond) > max_cond:
            frames = sorted(self.cond)
            for f in frames[1:len(frames) - max_cond + 1]:
                del self.cond[f]


def batches(ids: Sequence[int], objects: Dict[int, ObjectTrack], size: int) -> List[List[int]]:
    """``ids`` grouped by memory key (first appearance order), in groups of at most ``size``."""
    groups: Dict[tuple, List[int]] = {}
    for i in ids:
        groups.setdefault(objects[i].memory_key(), []).append(i)
    return [g[s:s + size] for g in groups.values() for s in range(0, len(g), max(1, size))]


def stacked_memory(tracks: Sequence[ObjectTrack]) -> dict:
    """One ``output_dict`` for a batch of objects with the same memory key: each frame's
    outputs concatenated along the batch, the shared positional encoding expanded (a view), and
    the per-object outputs as ``sources`` (where :mod:`.conditioning` keeps a frame's keys)."""
    if len(tracks) == 1:
        return tracks[0].output_dict()
    n = len(tracks)

    def stack(outs: Sequence[dict]) -> dict:
        first = outs[0]
        out = {k: torch.cat([o[k] for o in outs]) for k in STACKED if first.get(k) is not None}
        pos = first.get("maskmem_pos_enc")
        out["maskmem_pos_enc"] = None if pos is None else [p.expand(n, *p.shape[1:]) for p in pos]
        out["sources"] = list(outs)
        return out

    return {key: {f: stack([getattr(t, attr)[f] for t in tracks]) for f in getattr(tracks[0], attr)}
            for key, attr in (("cond_frame_outputs", "cond"), ("non_cond_frame_outputs", "recent"))}


def unstack(out: dict, n: int) -> List[dict]:
    """A batched output's per-object outputs, in batch order. Tensors are copied out of the
    batch, so that an object's memory is freed with it, whatever its batch neighbours do."""
    if n == 1:
        return [out]
    return [{k: (v[i:i + 1].clone() if isinstance(v, torch.Tensor) else v)
             for k, v in out.items()} for i in range(n)]
