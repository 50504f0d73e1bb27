"""Video tracking: SAM 2's memory, streamed one frame per call.

Meta's ``SAM2VideoPredictor`` is offline (it loads every frame, then propagates). Here each call of
:meth:`VideoTracker.track` is the next frame of one video, the form in which Ikomia runs a
workflow on a video. The model's own modules do the work (``SAM2Base.track_step`` and
``_encode_new_memory``); this module only keeps, per object, the outputs the model reads back:

* every prompted frame's output ("conditioning" frames), as Meta's predictor keeps them;
* the latest tracked frames' outputs, pruned to those the model can still read (memories of the
  last ``num_maskmem - 1`` frames, object pointers of the last ``max_obj_ptrs_in_encoder - 1``),
  so memory stays constant on a long video.

A frame follows Meta's steps exactly (same order, same inputs):

* an object prompted for the first time: ``track_step`` as an initial conditioning frame (no
  memory), then its memory encoded from the (hole-filled) low-resolution logits upsampled to the
  model's input size, binarised (``is_mask_from_pts``), as ``propagate_in_video_preflight``;
* an object tracked and not prompted: ``track_step`` with memory, then the memory encoder on the
  model's own high-resolution mask (as ``track_step`` with ``run_mem_encoder=True``); objects
  whose memories line up (the same frames in memory) run as one batch
  (:data:`OBJECT_BATCH` at most), as Meta's predictor ran all objects before it went to one
  object at a time; each object's results are those of a batch of one;
* an object started from a mask (``masks``): Meta's ``add_new_mask`` (the mask resized to the
  model's input, antialiased, cut at 0.5, used as the output), its memory as a prompted frame's;
* an object tracked and prompted again (a correction): the frame is tracked first, then the
  prompt is decoded with memory and with the tracked logits (clamped to +-32) as the mask input,
  as ``add_new_points_or_box`` on a tracked frame; the frame becomes a conditioning frame (Meta's
  ``add_all_frames_to_correct_as_cond=True``: with Meta's default a later propagation would track
  the corrected frame again and lose the correction).

``track_step``'s memory attention runs with :mod:`engine.video.attention`'s exact shortcuts
(:mod:`engine.video.conditioning` in place of the model's own for the call; ``shortcuts``
chooses them, every caller of :meth:`VideoTracker._step` gets them, forward or in reverse).

Frames are prepared as Meta's video loader does (PIL resize to the model's square input, bicubic,
/255, ImageNet mean and std). Memory features are stored in bfloat16 as Meta's predictor stores
them. Small background holes (``fill_hole_area``, 8 pixels of the 256x256 logits, as
``build_sam2_video_predictor``) are filled with cv2's connected components (8-connectivity, as
the CUDA extension Meta's code needs for it and skips when it is absent).

Objects have ids (ints chosen by the caller, kept for the whole video, never reused by the
:class:`engine.video.session.VideoSession`); a frame is :meth:`VideoTracker.begin` (encode, track
the known objects) then :meth:`VideoTracker.finish` (apply prompts and masks, start new
objects, encode the memories, commit), so that the caller can look at the tracked masks before
it decides what to apply; :meth:`VideoTracker.track` does both.

Coordinates: prompts are ``(P, 2)`` XY pixels of the frame, with SAM 2's labels (1 foreground,
0 background, 2 and 3 a box's corners, box first); masks are ``(H, W)`` bool of the frame.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import memory
from .attention import ALL, AttentionState, Shortcuts
from .conditioning import shortcuts_applied
from .frames import (ObjectPrompt, StagedFrame, TrackedFrame, fill_small_holes, mask_input,
                     points_input)
from .memory import ObjectTrack
from ..cancel import GenerationCancelled
from ..image.convert import frame_tensor
from ..model.device import DeviceChoice

FILL_HOLE_AREA = 8  # build_sam2_video_predictor's fill_hole_area
MAX_COND_FRAMES = 64  # prompted frames kept per object: the first one and the latest ones
STREAMING_FRAMES = 1 << 30  # the video's length when unknown: only bounds min(num_frames, 16)
NO_OBJ_SCORE = -1024.0  # SAM 2's logits of an absent object
# tracked objects run through memory attention, the decoder and the memory encoder at once:
# bounds the batch's transient memory (a 1024x1024 float32 mask per object, 4 MiB)
OBJECT_BATCH = 16



@contextlib.contextmanager
def _video_settings(model):
    """``build_sam2_video_predictor``'s setting for the memory of prompted frames (binarised
    masks), for the duration of a frame; the image modes never read it."""
    old = model.binarize_mask_from_pts_for_mem_enc
    model.binarize_mask_from_pts_for_mem_enc = True
    try:
        yield
    finally:
        model.binarize_mask_from_pts_for_mem_enc = old


class VideoTracker:
    """Tracks objects through the frames of one video, one frame per :meth:`track` call (or
    :meth:`begin` + :meth:`finish`).

    Args:
        model: a SAM 2 model (``SAM2Base``), on its device.
        choice: device and precision (autocast) of the computations.
        num_frames: the video's length when known (Meta's offline predictor scales the object
            pointers' temporal encoding by ``min(num_frames, 16)``); None when streaming (16).
        fill_hole_area: holes of at most this many low-resolution pixels are filled (0: off).
        max_cond_frames: prompted frames kept per object (the first and the latest ones).
        batch: objects run through the model at once (1: one at a time, as Meta's predictor).
        shortcuts: the memory attention's exact shortcuts (:mod:`engine.video.attention`).
    """

    def __init__(self, model, choice: DeviceChoice, num_frames: Optional[int] = None,
                 fill_hole_area: int = FILL_HOLE_AREA, max_cond_frames: int = MAX_COND_FRAMES,
                 batch: int = OBJECT_BATCH, shortcuts: Shortcuts = ALL):
        self.model, self.choice, self.shortcuts = model, choice, shortcuts
        self.num_frames = num_frames or STREAMING_FRAMES
        self.fill_hole_area = fill_hole_area
        self.max_cond_frames = max(1, max_cond_frames)
        self.batch = max(1, batch)
        stride = max(1, model.memory_temporal_stride_for_eval)
        ptrs = model.max_obj_ptrs_in_encoder if model.use_obj_ptrs_in_encoder else 0
        self.horizon = max(model.num_maskmem * stride, ptrs)  # tracked frames the model can read
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next frame is frame 0 and no object is known."""
        self.objects: Dict[int, ObjectTrack] = {}
        self.frame_index = -1
        self.frame_hw: Optional[Tuple[int, int]] = None
        self._pos_enc = None  # maskmem_pos_enc: the same for every frame and object
        self._attention = AttentionState()  # what the shortcuts derive from the weights

    def drop(self, ids: Iterable[int]) -> None:
        """Forget these objects (their memory is freed)."""
        for i in ids:
            self.objects.pop(i, None)

    @torch.no_grad()
    def track(self, image: np.ndarray, prompts: Mapping[int, ObjectPrompt] = {},
              masks: Mapping[int, np.ndarray] = {},
              should_stop: Optional[Callable[[], bool]] = None) -> TrackedFrame:
        """The next frame (HWC RGB uint8) with the prompts and masks given on it, by object id
        (an unknown id starts an object). See :meth:`begin` and :meth:`finish`."""
        prompts = {k: p for k, p in prompts.items() if len(p[0])}
        staged = self.begin(image, encode=bool(prompts or masks), should_stop=should_stop)
        return self.finish(staged, prompts, masks, should_stop)

    @torch.no_grad()
    def begin(self, image: np.ndarray, encode: bool = False,
              should_stop: Optional[Callable[[], bool]] = None) -> StagedFrame:
        """Encode the frame (when an object is known, or ``encode``) and track every known
        object with its memory, in batches of objects whose memories line up. Nothing is
        committed: a stop (``should_stop`` polled between batches, :class:`GenerationCancelled`)
        leaves the tracker as it was."""
        h, w = image.shape[:2]
        if self.frame_hw is not None and self.frame_hw != (h, w):
            raise ValueError(f"frame of {w}x{h} in a video of {self.frame_hw[1]}x"
                             f"{self.frame_hw[0]}: reset() starts a new video")
        t = self.frame_index + 1
        backbone = self._backbone(image) if self.objects or encode else None
        staged = StagedFrame(t, (h, w), backbone, {}, image)
        with _video_settings(self.model):
            for ids in memory.batches(list(self.objects), self.objects, self.batch):
                _check(should_stop)
                outs = self._step(staged, [self.objects[i] for i in ids], init=False)
                staged.tracked.update(zip(ids, outs))
        return staged

    @torch.no_grad()
    def finish(self, staged: StagedFrame, prompts: Mapping[int, ObjectPrompt] = {},
               masks: Mapping[int, np.ndarray] = {},
               should_stop: Optional[Callable[[], bool]] = None) -> TrackedFrame:
        """Apply ``prompts`` (a known id: a correction; a new id: a new object from the prompt
        alone) and ``masks`` (a new id: a new object from the mask), encode every object's
        memory of this frame and commit it. New objects come after the known ones, in the
        order given (prompts, then masks)."""
        if staged.backbone is None and (prompts or masks):
            staged.backbone = self._backbone(staged.image)
        tracks = dict(self.objects)
        cond: Dict[int, dict] = {}  # outputs that become prompted frames
        with _video_settings(self.model):
            for i, prompt in prompts.items():
                if i in self.objects:  # tracked first (begin), then corrected
                    _check(should_stop)
                    prev = torch.clamp(staged.tracked[i]["pred_masks"], -32.0, 32.0)
                    cond[i] = self._step(staged, [tracks[i]], init=False,
                                         points=points_input([prompt], staged.hw, self.model.image_size,
                                                             self.choice.device),
                                         prev=prev)[0]
            new_points = [i for i in prompts if i not in self.objects]
            for count in dict.fromkeys(len(prompts[i][0]) for i in new_points):
                same = [i for i in new_points if len(prompts[i][0]) == count]
                for s in range(0, len(same), self.batch):
                    _check(should_stop)
                    part = same[s:s + self.batch]
                    tracks.update({i: ObjectTrack() for i in part})
                    outs = self._step(staged, [tracks[i] for i in part], init=True,
                                      points=points_input([prompts[i] for i in part], staged.hw,
                                                         self.model.image_size,
                                                         self.choice.device))
                    cond.update(zip(part, outs))
            new_masks = [i for i in masks if i not in tracks]
            for s in range(0, len(new_masks), self.batch):
                _check(should_stop)
                part = new_masks[s:s + self.batch]
                tracks.update({i: ObjectTrack() for i in part})
                outs = self._step(staged, [tracks[i] for i in part], init=True,
                                  mask_inputs=mask_input([masks[i] for i in part],
                                                         self.model.image_size,
                                                         self.choice.device))
                cond.update(zip(part, outs))
            plain = [i for i in staged.tracked if i not in cond]
            self._encode(staged, [cond[i] for i in cond], should_stop, prompted=True)
            self._encode(staged, [staged.tracked[i] for i in plain], should_stop, prompted=False)
        return self._commit(staged, tracks, cond, plain)

    # -- steps --------------------------------------------------------------------------------
    def _commit(self, staged: StagedFrame, tracks: Dict[int, ObjectTrack], cond: Dict[int, dict],
                plain: List[int]) -> TrackedFrame:
        t = staged.index
        for i, out in cond.items():
            tracks[i].cond[t] = _compact(out)
        for i in plain:
            tracks[i].recent[t] = _compact(staged.tracked[i])
        for obj in tracks.values():
            obj.prune(t, self.horizon, self.max_cond_frames)
        self.objects, self.frame_index, self.frame_hw = tracks, t, staged.hw
        ids = list(tracks)
        outs = [cond.get(i) or staged.tracked[i] for i in ids]
        if not outs:
            return TrackedFrame(t, np.zeros(0, np.int64), torch.zeros(
                (0, 1, *self._low_res()), device=self.choice.device), np.zeros(0, np.float32))
        scores = torch.cat([o["object_score_logits"].float().reshape(1) for o in outs])
        scores = scores.cpu().numpy()  # one wait for the device per frame
        for i, s in zip(ids, scores):
            if s > 0:
                tracks[i].last_seen = t
        logits = torch.cat([o["pred_masks"].float() for o in outs])
        return TrackedFrame(t, np.array(ids, np.int64), logits, scores)

    def _low_res(self) -> Tuple[int, int]:
        side = self.model.image_size // 4
        return side, side

    def _backbone(self, image: np.ndarray) -> dict:
        """The frame's backbone output (batch of one), as Meta's video predictor computes it."""
        x = frame_tensor(image, self.model.image_size).to(self.choice.device)
        with self.choice.compute():
            return self.model.forward_image(x)

    def features(self, staged: StagedFrame, n: int) -> tuple:
        """The frame's features for a batch of ``n`` objects (expanded views, as Meta's
        ``_get_image_feature``)."""
        if n not in staged.feature_cache:
            b = staged.backbone
            expanded = {"backbone_fpn": [f.expand(n, -1, -1, -1) for f in b["backbone_fpn"]],
                        "vision_pos_enc": [p.expand(n, -1, -1, -1) for p in b["vision_pos_enc"]]}
            _, feats, pos, sizes = self.model._prepare_backbone_features(expanded)
            staged.feature_cache[n] = (feats, pos, sizes)
        return staged.feature_cache[n]

    def _step(self, staged: StagedFrame, tracks: List[ObjectTrack], init: bool,
              points: Optional[dict] = None, mask_inputs: Optional[torch.Tensor] = None,
              prev: Optional[torch.Tensor] = None, reverse: bool = False) -> List[dict]:
        """One ``track_step`` for a batch of objects (no memory encoder) at frame
        ``staged.index``; each object's output with its hole-filled logits and the model's
        high-resolution mask. ``reverse``: tracking in reverse time order (Meta's
        ``track_in_reverse``: memories read from the following frames), for the offline
        propagation."""
        feats, pos, sizes = self.features(staged, len(tracks))
        with self.choice.compute(), shortcuts_applied(self.model, self._attention,
                                                      self.shortcuts):
            out = self.model.track_step(
                frame_idx=staged.index, is_init_cond_frame=init, current_vision_feats=feats,
                current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=points,
                mask_inputs=mask_inputs, output_dict=memory.stacked_memory(tracks),
                num_frames=self.num_frames, track_in_reverse=reverse, run_mem_encoder=False,
                prev_sam_mask_logits=prev)
        pred = out["pred_masks"]
        if self.fill_hole_area > 0:
            pred = fill_small_holes(pred, self.fill_hole_area)
        return memory.unstack({"pred_masks": pred, "high_res": out["pred_masks_high_res"],
                               "obj_ptr": out["obj_ptr"],
                               "object_score_logits": out["object_score_logits"]}, len(tracks))

    def _encode(self, staged: StagedFrame, outs: List[dict],
                should_stop: Optional[Callable[[], bool]], prompted: bool) -> None:
        """The memory of this frame for each output, in batches: a prompted frame's from its
        (hole-filled) logits upsampled and binarised, as ``propagate_in_video_preflight``; a
        tracked frame's from the model's own high-resolution mask, as ``track_step``."""
        size = self.model.image_size
        for s in range(0, len(outs), self.batch):
            _check(should_stop)
            part = outs[s:s + self.batch]
            if prompted:
                high_res = F.interpolate(torch.cat([o["pred_masks"] for o in part]),
                                         size=(size, size), mode="bilinear",
                                         align_corners=False)
            else:
                high_res = torch.cat([o["high_res"] for o in part])
            feats, _, sizes = self.features(staged, len(part))
            scores = torch.cat([o["object_score_logits"] for o in part])
            with self.choice.compute():
                features, pos = self.model._encode_new_memory(
                    current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=high_res,
                    object_score_logits=scores, is_mask_from_pts=prompted)
            features = features.to(torch.bfloat16)  # stored as Meta's predictor stores it
            pos = self._shared_pos_enc(pos)
            for k, out in enumerate(part):
                out["maskmem_features"] = features[k:k + 1].clone() if len(part) > 1 \
                    else features
                out["maskmem_pos_enc"] = pos

    def _shared_pos_enc(self, pos):
        """One copy of the memory's positional encoding (identical for every frame)."""
        if pos is None:
            return None
        if self._pos_enc is None:
            self._pos_enc = [p[0:1].clone() for p in pos]
        return self._pos_enc


def _compact(out: dict) -> dict:
    """What is kept of an output (Meta's compact form, without the high-resolution mask)."""
    return {k: out[k] for k in ("maskmem_features", "maskmem_pos_enc", "pred_masks", "obj_ptr",
                                "object_score_logits")}


def _check(should_stop: Optional[Callable[[], bool]]) -> None:
    if should_stop is not None and should_stop():
        raise GenerationCancelled("stopped between objects")
