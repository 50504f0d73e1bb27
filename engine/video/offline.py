"""Offline video propagation: every frame of a video, tracks given in advance and found on the way,
forward then backward, equal to Meta's ``SAM2VideoPredictor`` with memory bounded.

Semantics (Meta's, :mod:`sam2.sam2_video_predictor`):

* prompts known in advance (``prompts``: track id -> :class:`TrackPrompt` s) are decoded as
  ``add_new_points_or_box`` / ``add_new_mask`` on a video not yet tracked: without memory, their
  memory encoded from the (hole-filled) logits upsampled and binarised
  (``propagate_in_video_preflight``);
* the forward pass runs from the earliest prompted frame ``s`` (over all tracks; 0 without
  prompts) to the last frame, every track on every frame (a track whose first prompt is later is
  tracked before it with the memory of its later prompted frames, as Meta); a prompted frame's
  result is its prompt's output;
* the reverse pass (``direction="both"``, ``s > 0``) runs from ``s`` down to 0 with
  ``track_in_reverse`` (memories of frames ``t+1..t+6``, pointers of ``t+1..t+15``, signed temporal
  encodings), reading the forward pass's outputs above ``s`` as Meta's reverse reads them and
  overwriting the forward results of ``s`` (a consumer keeps the last result per track and frame);
* ``new_tracks`` is called on each forward frame after it is tracked, with a callable that gives
  the frame's image embedding from the propagation's own encoding of it (encoded on the first call
  if no track needed it, then shared: automatic seeding reads the frame's features as video
  mode's seeding does, and no frame is encoded twice); each new track is decoded
  on that frame without memory (Meta's add on an untracked object) and tracked from the next frame
  on. With ``direction="both"``, a track started on frame ``k > 0`` is then tracked backwards from
  ``k - 1`` (reverse, its memories as Meta's reverse reads them) until SAM 2 scores it absent
  (object score <= 0; that frame is yielded, absent, and its backward pass stops: Meta's reverse
  has no stop, it would run to frame 0). Meta's reverse pass and every backward pass run together
  in one descending sweep (each frame decoded and encoded once; frames where no track is tracked
  are skipped);
* objects are independent (Meta's batch of one); objects whose memories hold the same frames run
  as one batch (:class:`VideoTracker`'s steps, exact).

Where Meta has no bound (our choices):

* prompted frames attended: at most ``max_cond_frames`` (:data:`MAX_COND_FRAMES`, 4) per track
  and frame, chosen by Meta's own ``select_closest_cond_frames`` (the nearest before, the nearest
  at or after, then by distance; an unselected one among the last frames is read as a tracked
  frame, as Meta). Meta attends every prompted frame (``max_cond_frames_in_attn=-1``), which on a
  MOT track prompted on every frame makes each frame attend thousands of memories; 4 keeps the
  nearest evidence on both sides and costs at most 10 memory frames per step (6 tracked + 4
  prompted). A track with at most ``max_cond_frames`` prompted frames gets exactly Meta's result.
* look-ahead: a prompt on frame ``f`` is decoded when the forward pass reaches ``f - lookahead``
  (frames are decoded ``lookahead`` ahead; a prompted frame's backbone is kept until the pass
  reaches it, so every frame is encoded once). Equal to Meta when each track's prompted frames
  that a frame would select lie within ``lookahead`` frames after it (always, with prompts
  ``lookahead`` apart or closer, or a single prompted frame ahead of the start).

Bounded memory: per track only the outputs SAM 2 can read later (:mod:`.offline_memory`): at most
``2 * max_cond_frames`` prompted frames plus those within the horizon (16 frames) of the frame
and of the backward start, and tracked outputs within the horizon (and above the backward start);
frame images ``lookahead`` ahead and backbones of prompted frames among them.

Identities relied on: a batch of objects with the same memory frames gives each object the output
of a batch of one (:class:`VideoTracker`); bfloat16 memories upcast to float32 are Meta's
float32 promotion (exact); a frame's backbone is a deterministic function of its pixels, so a
resumed run (:meth:`OfflinePropagation.state`) that encodes a frame again yields the same bits.
"""
from __future__ import annotations

import contextlib
from collections import deque
from typing import Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from . import memory
from .frames import StagedFrame, mask_input, points_input, upsampled_masks
from .offline_memory import TrackStore, first_frames, stores_state
from .offline_types import DIRECTIONS, FrameResult, FrameSource, TrackPrompt
from .tracker import FILL_HOLE_AREA, OBJECT_BATCH, VideoTracker, _compact, _video_settings
from ..image.predictor import ImageEmbedding, embedding_from_features
from ..model.device import DeviceChoice

MAX_COND_FRAMES = 4  # prompted frames a track attends per frame (see the module docstring)
LOOKAHEAD = 16  # frames decoded ahead of the forward pass: prompts seen this early
STATE_VERSION = 1
# new_tracks(frame index, HWC RGB uint8 image, its tracked result, embedding) -> {id: prompt};
# embedding() -> the frame's ImageEmbedding (engine.image.predictor), from the propagation's encoding
NewTracks = Callable[[int, np.ndarray, FrameResult, Callable[[], ImageEmbedding]],
                     Mapping[int, TrackPrompt]]


class OfflinePropagation:
    """Tracks prompted objects through a whole video (see the module docstring).

    Args:
        model: SAM 2 (``SAM2Base``) on ``choice.device``; frames: the video (:class:`FrameSource`).
        prompts: track id -> its prompts known in advance (one per frame).
        direction: ``"both"`` (forward, then the reverse and backward passes) or ``"forward"``.
        new_tracks: called on each forward frame ``(index, HWC RGB uint8 image, its tracked
            result, embedding)`` (``embedding()``: the frame's :class:`ImageEmbedding` from this
            propagation's encoding); returns new track ids -> a prompt on that frame.
        mask_threshold: masks are the upsampled logits above it.
        max_cond_frames: prompted frames attended per track and frame (>= 2).
        lookahead: frames decoded ahead (prompts are decoded that early).
        fill_hole_area, batch: as :class:`VideoTracker`.
    """

    def __init__(self, model, choice: DeviceChoice, frames: FrameSource,
                 prompts: Mapping[int, Sequence[TrackPrompt]], direction: str = "both",
                 new_tracks: Optional[NewTracks] = None, mask_threshold: float = 0.0,
                 max_cond_frames: int = MAX_COND_FRAMES, lookahead: int = LOOKAHEAD,
                 fill_hole_area: int = FILL_HOLE_AREA, batch: int = OBJECT_BATCH):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: one of {DIRECTIONS}")
        if max_cond_frames < 2:
            raise ValueError(f"max_cond_frames {max_cond_frames}: at least 2 (Meta's selection)")
        n = len(frames)
        for i, ps in prompts.items():
            for p in ps:
                if p.frame >= n:
                    raise ValueError(f"track {i}: prompt on frame {p.frame} of a {n}-frame video")
        self.frames, self.direction, self.new_tracks = frames, direction, new_tracks
        self.threshold, self.max_cond, self.lookahead = mask_threshold, max_cond_frames, \
            max(0, lookahead)
        self.steps = VideoTracker(model, choice, num_frames=n, fill_hole_area=fill_hole_area,
                                  batch=batch)
        self.model, self.device = model, choice.device
        self.horizon = self.steps.horizon
        self.prompts: Dict[int, Dict[int, TrackPrompt]] = {
            i: {p.frame: p for p in ps} for i, ps in prompts.items() if len(ps)}
        self.by_frame: Dict[int, List[int]] = {}
        for i, ps in self.prompts.items():
            for f in ps:
                self.by_frame.setdefault(f, []).append(i)
        self.start = min(self.by_frame, default=0)
        back = direction == "both" and self.start > 0
        self.stores: Dict[int, TrackStore] = {
            i: TrackStore(first_frames(list(ps.values())), back_from=self.start if back else None)
            for i, ps in self.prompts.items()}
        self.phase, self.next, self.decoded_upto = "forward", self.start, self.start - 1
        self.encodings = 0  # frames encoded by the image encoder (tests count them)
        self._ahead: Dict[int, dict] = {}  # backbones of prompted frames decoded ahead

    # -- public -------------------------------------------------------------------------------
    def run(self, resume: Optional[dict] = None) -> Iterator[FrameResult]:
        """Every frame's results, one :class:`FrameResult` per frame and pass (forward frames
        ascending, then the backward sweep descending). ``resume``: a :meth:`state` taken
        between two results; the run continues with the result that followed it."""
        if resume is not None:
            self._load(resume)
        if self.phase == "forward":
            yield from self._forward()
            self.phase, self.next = "backward", self._sweep_top()
        if self.phase == "backward" and self.direction == "both":
            yield from self._backward()
        self.phase = "done"

    def state(self) -> dict:
        """Picklable progress (CPU tensors): valid between two yielded results."""
        pos = self.steps._pos_enc
        return {"version": STATE_VERSION, "frames": len(self.frames), "start": self.start,
                "phase": self.phase, "next": self.next,
                "decoded_upto": self.decoded_upto, "stores": stores_state(self.stores),
                "pos_enc": None if pos is None else [p.cpu().clone() for p in pos]}

    def kept_outputs(self) -> int:
        """Outputs kept over all tracks (bounded: see the module docstring)."""
        return sum(s.kept() for s in self.stores.values())

    def kept_backbones(self) -> int:
        return len(self._ahead)

    # -- passes -------------------------------------------------------------------------------
    def _forward(self) -> Iterator[FrameResult]:
        n = len(self.frames)
        source = iter(self.frames.iterate(range(self.next, n)))
        window: Deque[Tuple[int, np.ndarray]] = deque()
        for t in range(self.next, n):
            while (not window or window[-1][0] < min(n - 1, t + self.lookahead)):
                f, image = next(source)
                window.append((f, image))
                if f > self.decoded_upto:
                    self._decode_prompts(f, image)
                    self.decoded_upto = f
            f, image = window.popleft()
            assert f == t, (f, t)
            backbone = self._ahead.pop(t, None)
            ids = list(self.stores)
            if backbone is None and any(t not in self.stores[i].cond for i in ids):
                backbone = self._backbone(image)
            outs = self._track(t, image, backbone, ids, reverse=False)
            result = self._result(t, False, ids, outs)
            if self.new_tracks is not None:
                held = {"backbone": backbone}

                def embedding(image=image, held=held) -> ImageEmbedding:
                    if held["backbone"] is None:
                        held["backbone"] = self._backbone(image)
                    return self._embedding(held["backbone"], image.shape[:2])
                added = dict(self.new_tracks(t, image, result, embedding))
                backbone = held["backbone"]
                if added:
                    if backbone is None:
                        backbone = self._backbone(image)
                    self._start_tracks(t, image, backbone, added)
                    ids = list(self.stores)
                    outs.update({i: self.stores[i].cond[t] for i in added})
                    result = self._result(t, False, ids, outs)
            for s in self.stores.values():
                s.prune(t, False, self.max_cond, self.horizon)
            self.next = t + 1
            yield result

    def _backward(self) -> Iterator[FrameResult]:
        """One descending sweep: runs of frames where some backward pass is on."""
        while self.next >= 0:
            for t, image in self.frames.iterate(range(self.next, -1, -1)):
                ids = self._active(t)
                if not ids:  # every pass still on starts lower: skip to the highest
                    self.next = self._sweep_top()
                    break
                backbone = None
                if any(t not in self.stores[i].cond for i in ids):
                    backbone = self._backbone(image)
                outs = self._track(t, image, backbone, ids, reverse=True)
                for i in ids:  # a track found on the way stops where it is scored absent
                    if i not in self.prompts and float(outs[i]["object_score_logits"]) <= 0:
                        self.stores[i].stopped = True
                for s in self.stores.values():
                    s.prune(t, True, self.max_cond, self.horizon)
                self.next = t - 1
                yield self._result(t, True, ids, outs)
            else:
                self.next = -1

    # -- steps --------------------------------------------------------------------------------
    def _track(self, t: int, image: np.ndarray, backbone: Optional[dict], ids: List[int],
               reverse: bool) -> Dict[int, dict]:
        """Each track's output on frame ``t``: its prompt's output on a prompted frame, else one
        ``track_step`` with its memory (batched by memory frames) and its memory encoded."""
        outs = {i: self.stores[i].cond[t] for i in ids if t in self.stores[i].cond}
        todo = [i for i in ids if i not in outs]
        if not todo:
            return outs
        staged = StagedFrame(t, self.frames.hw, backbone, {}, image)
        views = {i: self.stores[i].view(t, reverse, self.max_cond, self.horizon) for i in todo}
        with self._settings():
            for part in memory.batches(todo, views, self.steps.batch):
                res = self.steps._step(staged, [views[i] for i in part], init=False,
                                       reverse=reverse)
                self.steps._encode(staged, res, None, prompted=False)
                for i, out in zip(part, res):
                    outs[i] = self.stores[i].noncond[t] = _compact(out)
        return outs

    def _decode_prompts(self, f: int, image: np.ndarray) -> None:
        """The prompts known on frame ``f``, decoded without memory, their memories encoded."""
        ids = self.by_frame.get(f, [])
        if not ids:
            return
        backbone = self._backbone(image)
        self._ahead[f] = backbone
        self._start_prompts(f, image, backbone, {i: self.prompts[i][f] for i in ids})

    def _start_tracks(self, t: int, image: np.ndarray, backbone: dict,
                      added: Mapping[int, TrackPrompt]) -> None:
        for i, p in added.items():
            if i in self.stores:
                raise ValueError(f"new track {i} on frame {t}: the id is already a track")
            if p.frame != t:
                raise ValueError(f"new track {i}: its prompt is on frame {p.frame}, not {t}")
            back = t - 1 if self.direction == "both" and t > 0 else None
            self.stores[i] = TrackStore([t], back_from=back)
        self._start_prompts(t, image, backbone, added)

    def _start_prompts(self, f: int, image: np.ndarray, backbone: dict,
                       prompts: Mapping[int, TrackPrompt]) -> None:
        """Meta's add on untracked objects (no memory; masks, then points grouped by their
        count), and their memories encoded as prompted frames'."""
        staged = StagedFrame(f, self.frames.hw, backbone, {}, image)
        size = self.model.image_size
        masks = [i for i, p in prompts.items() if p.mask is not None]
        points = {i: prompts[i].as_points() for i in prompts if i not in masks}
        groups = [(masks, None)] + [([i for i in points if len(points[i][0]) == c], c)
                                    for c in dict.fromkeys(len(p[0]) for p in points.values())]
        parts = [(ids[s:s + self.steps.batch], count) for ids, count in groups
                 for s in range(0, len(ids), self.steps.batch)]
        with self._settings():
            for part, count in parts:
                tracks = [memory.ObjectTrack() for _ in part]
                if count is None:
                    res = self.steps._step(staged, tracks, init=True, mask_inputs=mask_input(
                        [prompts[i].mask for i in part], size, self.device))
                else:
                    res = self.steps._step(staged, tracks, init=True, points=points_input(
                        [points[i] for i in part], self.frames.hw, size, self.device))
                self.steps._encode(staged, res, None, prompted=True)
                for i, out in zip(part, res):
                    self.stores[i].cond[f] = _compact(out)

    def _backbone(self, image: np.ndarray) -> dict:
        self.encodings += 1
        with torch.no_grad():
            return self.steps._backbone(image)

    def _embedding(self, backbone: dict, hw: Tuple[int, int]) -> ImageEmbedding:
        """The automatic mode's embedding of a frame from its backbone output (the frame seen
        whole at the model's input, as video mode's seeding reads it)."""
        with torch.no_grad():
            _, feats, _, _ = self.model._prepare_backbone_features(backbone)
        return embedding_from_features(self.model, feats, hw, hw, self.steps.choice)

    # -- bookkeeping --------------------------------------------------------------------------
    def _active(self, t: int) -> List[int]:
        """Tracks of the backward sweep on frame ``t``: Meta's reverse pass (tracks known in
        advance, frames up to the start) and the backward passes not stopped."""
        return [i for i, s in self.stores.items()
                if s.back_from is not None and s.back_from >= t and not s.stopped]

    def _sweep_top(self) -> int:
        """The highest frame where a backward pass not stopped starts; -1 when none."""
        return max((s.back_from for s in self.stores.values()
                    if s.back_from is not None and not s.stopped), default=-1)

    def _result(self, t: int, reverse: bool, ids: List[int], outs: Dict[int, dict]
                ) -> FrameResult:
        h, w = self.frames.hw
        if not ids:
            return FrameResult(t, reverse, np.zeros(0, np.int64), np.zeros((0, h, w), bool),
                               np.zeros(0, np.float32), np.zeros((0, 1, 1, 1), np.float32))
        logits = torch.cat([outs[i]["pred_masks"] for i in ids]).float()
        scores = torch.cat([outs[i]["object_score_logits"].float().reshape(1) for i in ids])
        return FrameResult(t, reverse, np.array(ids, np.int64),
                           upsampled_masks(logits, (h, w), self.threshold),
                           scores.cpu().numpy(), logits.cpu().numpy())

    @contextlib.contextmanager
    def _settings(self):
        """The video predictor's settings, at most ``max_cond`` prompted frames attended, no
        gradients: around each frame's model calls (never across a yield)."""
        old = self.model.max_cond_frames_in_attn
        self.model.max_cond_frames_in_attn = self.max_cond
        try:
            with _video_settings(self.model), torch.no_grad():
                yield
        finally:
            self.model.max_cond_frames_in_attn = old

    def _load(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')}: expected {STATE_VERSION}")
        if (state["frames"], state["start"]) != (len(self.frames), self.start):
            raise ValueError("state of another video or other prompts (frames, first prompt "
                             f"{state['frames']}, {state['start']}; here {len(self.frames)}, "
                             f"{self.start})")
        pos = state["pos_enc"]
        if pos is not None:
            self.steps._pos_enc = [p.to(self.device) for p in pos]
        pos = self.steps._pos_enc
        self.stores = {i: TrackStore.from_state(s, self.device, pos)
                       for i, s in state["stores"].items()}
        self.phase, self.next, self.decoded_upto = state["phase"], state["next"], \
            state["decoded_upto"]
        self._ahead = {}
