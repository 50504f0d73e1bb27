"""One track's outputs in the offline propagation: what SAM 2 reads at a frame, and what is kept.

An output is Meta's compact per-frame output of one object (see :mod:`engine.video.memory`):
``maskmem_features`` (bfloat16 ``(1, 64, S/16, S/16)``), ``maskmem_pos_enc`` (shared),
``pred_masks`` (``(1, 1, S/4, S/4)`` float32 logits), ``obj_ptr`` (``(1, 256)``),
``object_score_logits`` (``(1, 1)``), ``S`` the model's input size.

What ``_prepare_memory_conditioned_features`` reads at frame ``t`` (direction ``d``: +1 forward,
-1 reverse, ``H`` the tracker's horizon, ``max(num_maskmem * stride, max_obj_ptrs_in_encoder)``):

* the prompted frames ``select_closest_cond_frames`` picks among all of them; with the model's
  ``max_cond_frames_in_attn = M`` it picks the closest before ``t``, the closest at or after
  ``t``, then the nearest by distance: all of them are among the ``M`` nearest prompted frames
  before ``t`` and the ``M`` nearest at or after it;
* unselected prompted frames and tracked outputs only within ``H - 1`` frames behind ``t``
  (``t - d .. t - (H - 1) d``).

:meth:`TrackStore.view` hands the model exactly those (prompted frames in ascending order, which is
Meta's order when prompts are added in frame order), so Meta's own selection picks the same frames
it would pick among all of them. :meth:`TrackStore.prune` drops what no later frame of this pass
or of the backward pass can read. Pure bookkeeping: no model call here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from .memory import ObjectTrack

OUTPUT_KEYS = ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits")


@dataclass
class TrackStore:
    """The kept outputs of one track.

    Attributes:
        prompted: every frame this track has a prompt on (known in advance, ascending).
        cond: prompted frames' outputs decoded so far and still readable.
        noncond: tracked frames' outputs still readable (forward-pass outputs above
            ``back_from`` are kept for the backward pass, as Meta's reverse pass reads them).
        back_from: the first frame of this track's backward pass (None: no backward pass).
        stopped: its backward pass ended (scored absent).
    """

    prompted: List[int]
    cond: Dict[int, dict] = field(default_factory=dict)
    noncond: Dict[int, dict] = field(default_factory=dict)
    back_from: Optional[int] = None
    stopped: bool = False

    def view(self, t: int, reverse: bool, max_cond: int, horizon: int) -> ObjectTrack:
        """The memory ``track_step`` reads at frame ``t`` (see the module docstring). Memory
        features are upcast to float32 when no object pointer can be read (no kept frame on the
        past side of ``t``): Meta's float32 concatenation with a pointer gives the same values,
        and a bfloat16 memory alone would meet float32 weights."""
        sign = -1 if reverse else 1
        frames = sorted(self.cond)
        before = [f for f in frames if f < t][-max_cond:]
        after = [f for f in frames if f >= t][:max_cond]
        near = {f for f in frames if 0 < (t - f) * sign < horizon}
        cond = {f: self.cond[f] for f in frames if f in near or f in before or f in after}
        recent = {f: o for f, o in sorted(self.noncond.items()) if 0 < (t - f) * sign < horizon}
        if not any((t - f) * sign >= 0 for f in list(cond) + list(recent)):
            cond = {f: dict(o, maskmem_features=o["maskmem_features"].float())
                    for f, o in cond.items()}
        return ObjectTrack(cond=cond, recent=recent)

    def prune(self, t: int, reverse: bool, max_cond: int, horizon: int) -> None:
        """Drop outputs no frame after ``t`` in this pass (nor the backward pass) reads."""
        if reverse:  # later frames are below t; every prompted frame is at or above them
            firsts = set(sorted(self.cond)[:max_cond])
            self.cond = {f: o for f, o in self.cond.items() if f in firsts or f < t + horizon}
            self.noncond = {f: o for f, o in self.noncond.items() if f < t + horizon}
            return
        past = [f for f in sorted(self.cond) if f <= t]
        keep = set(past[-max_cond:]) | {f for f in self.cond if f > t - horizon}
        back = self.back_from is not None and not self.stopped
        if back:  # the backward pass reads the first prompted frames and those near its start
            keep |= set(self.prompted[:max_cond])
            keep |= {f for f in self.cond if f <= self.back_from + horizon}
        self.cond = {f: o for f, o in self.cond.items() if f in keep}
        self.noncond = {f: o for f, o in self.noncond.items() if f > t - horizon or (
            back and self.back_from < f <= self.back_from + horizon)}

    def output(self, t: int) -> Optional[dict]:
        return self.cond.get(t) or self.noncond.get(t)

    def kept(self) -> int:
        return len(self.cond) + len(self.noncond)

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict:
        """Picklable: every tensor copied to the CPU (the shared ``maskmem_pos_enc`` left out)."""
        def cpu(outs):
            return {f: {k: o[k].detach().to("cpu", copy=True) for k in OUTPUT_KEYS}
                    for f, o in outs.items()}
        return {"prompted": list(self.prompted), "cond": cpu(self.cond),
                "noncond": cpu(self.noncond), "back_from": self.back_from,
                "stopped": self.stopped}

    @classmethod
    def from_state(cls, state: dict, device: torch.device, pos_enc: Optional[list]
                   ) -> "TrackStore":
        def back(outs):
            return {f: dict({k: v.to(device) for k, v in o.items()}, maskmem_pos_enc=pos_enc)
                    for f, o in outs.items()}
        return cls(list(state["prompted"]), back(state["cond"]), back(state["noncond"]),
                   state["back_from"], state["stopped"])


def stores_state(stores: Dict[int, TrackStore]) -> Dict[int, dict]:
    return {i: s.state() for i, s in stores.items()}


def first_frames(prompts: Sequence) -> List[int]:
    """Ascending frames of a track's prompts (one prompt per frame)."""
    frames = [p.frame for p in prompts]
    if len(set(frames)) != len(frames):
        raise ValueError(f"two prompts of one track on frame {sorted(frames)}: one per frame")
    return sorted(frames)
