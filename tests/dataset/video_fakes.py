"""Stand-ins for the video runner's bookkeeping tests: frames in memory and a scripted
propagation with the real one's interface (``run(resume)``, ``state()``), so the accumulation,
checkpoints and resume are tested exactly and fast; the model's own propagation is tested
through the command line (``test_video_cli.py``)."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from infer_segment_anything_2.engine.video.offline_types import FrameResult, TrackPrompt

H, W = 24, 32


class FakeFrames:
    """``n`` frames of ``H x W`` (frame ``t``'s pixels all ``t``)."""

    def __init__(self, n: int, hw=(H, W)):
        self.n, self.hw = n, tuple(hw)
        self.names = [f"{t:05d}.jpg" for t in range(n)]

    def __len__(self) -> int:
        return self.n

    def iterate(self, indices):
        for t in indices:
            yield t, np.full((*self.hw, 3), t, np.uint8)


class FakePropagation:
    """Forward from the first prompted frame to the end, then backward from it to frame 0 (as
    Meta's demo); a track is present from its first prompt on going forward and everywhere going
    backward. Its mask on frame ``t`` is its first box shifted right by ``t`` pixels (the
    forward pass) or by ``t + 1`` (the backward pass: the later result must win), its logit
    ``track - t / 4`` (so late frames of track 1 are absent). ``crash_after``: raise after that
    many results (a crash), ``resumed``: the state each run started from."""

    def __init__(self, frames, prompts: Dict[int, List[TrackPrompt]], new_tracks=None,
                 direction: str = "both", crash_after: Optional[int] = None):
        self.frames, self.prompts = frames, prompts
        self.direction, self.crash_after = direction, crash_after
        self.first = min((p.frame for ps in prompts.values() for p in ps), default=0)
        self.pos = {"pass": 0, "next": self.first}
        self.resumed: List[Optional[dict]] = []

    def state(self) -> dict:
        return dict(self.pos)

    def _result(self, t: int, reverse: bool) -> FrameResult:
        n, h, w = len(self.frames), *self.frames.hw
        ids = [k for k, ps in sorted(self.prompts.items())
               if reverse or min(p.frame for p in ps) <= t]
        masks = np.zeros((len(ids), h, w), bool)
        for i, k in enumerate(ids):
            x1, y1, x2, y2 = np.asarray(self.prompts[k][0].box, int)
            shift = t + (1 if reverse else 0)
            masks[i, y1:y2, min(w, x1 + shift):min(w, x2 + shift)] = True
        scores = np.array([k - t / 4 for k in ids], np.float32)
        return FrameResult(t, reverse, np.array(ids, np.int64), masks, scores)

    def run(self, resume: Optional[dict] = None):
        self.resumed.append(resume)
        if resume is not None:
            self.pos = dict(resume)
        done = 0
        n = len(self.frames)
        while True:
            if self.pos["pass"] == 0 and self.pos["next"] >= n:
                if self.direction != "both":
                    return
                self.pos = {"pass": 1, "next": self.first}
            if self.pos["pass"] == 1 and self.pos["next"] < 0:
                return
            t, reverse = self.pos["next"], self.pos["pass"] == 1
            self.pos = {"pass": self.pos["pass"], "next": t - 1 if reverse else t + 1}
            if self.crash_after is not None and done == self.crash_after:
                raise RuntimeError("crash drill")
            done += 1
            yield self._result(t, reverse)


def box_prompts(boxes: Dict[int, List[tuple]]) -> Dict[int, List[TrackPrompt]]:
    """``{track: [(frame, (x1, y1, x2, y2)), ...]}`` as TrackPrompts."""
    return {k: [TrackPrompt(frame=f, box=np.asarray(b, np.float32)) for f, b in v]
            for k, v in boxes.items()}
