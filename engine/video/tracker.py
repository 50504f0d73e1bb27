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
* an object tracked and not prompted: ``track_step`` with memory, memory encoder included;
* an object tracked and prompted again (a correction): the frame is tracked first, then the
  prompt is decoded with memory and with the tracked logits (clamped to +-32) as the mask input,
  as ``add_new_points_or_box`` on a tracked frame; the frame becomes a conditioning frame (Meta's
  ``add_all_frames_to_correct_as_cond=True``: with Meta's default a later propagation would track
  the corrected frame again and lose the correction).

Frames are prepared as Meta's video loader does (PIL resize to the model's square input, bicubic,
/255, ImageNet mean and std). Memory features are stored in bfloat16 as Meta's predictor stores
them. Small background holes (``fill_hole_area``, 8 pixels of the 256x256 logits, as
``build_sam2_video_predictor``) are filled with cv2's connected components (8-connectivity, as
the CUDA extension Meta's code needs for it and skips when it is absent).

Coordinates: prompts are ``(P, 2)`` XY pixels of the frame, with SAM 2's labels (1 foreground,
0 background, 2 and 3 a box's corners, box first).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..cancel import GenerationCancelled
from ..model.device import DeviceChoice
from ..image.convert import frame_tensor
from ..image.masks import small_holes

FILL_HOLE_AREA = 8  # build_sam2_video_predictor's fill_hole_area
MAX_COND_FRAMES = 64  # prompted frames kept per object: the first one and the latest ones
STREAMING_FRAMES = 1 << 30  # the video's length when unknown: only bounds min(num_frames, 16)
NO_OBJ_SCORE = -1024.0  # SAM 2's logits of an absent object

ObjectPrompt = Tuple[np.ndarray, np.ndarray]  # (P, 2) float32 XY pixels, (P,) int32 labels


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background components (``logits <= 0``, 8-connected) of at most ``max_area`` pixels set to
    0.1, as SAM 2's ``fill_holes_in_mask_scores`` (a component touching the border counts too).

    ``logits``: ``(N, 1, h, w)`` float; returns a tensor of the same shape, dtype and device.
    The components are found on the CPU (:func:`engine.image.masks.small_holes`); one ``(N, h, w)``
    copy each way.
    """
    if max_area <= 0 or logits.numel() == 0:
        return logits
    holes = small_holes((logits <= 0).squeeze(1).cpu().numpy(), max_area)
    if not holes.any():
        return logits
    fill = torch.from_numpy(holes)[:, None].to(logits.device)
    return torch.where(fill, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits)


@dataclass
class ObjectTrack:
    """One object's memory, as ``SAM2Base.track_step`` reads it (``output_dict``).

    ``cond``: prompted frames' outputs by frame index; ``recent``: tracked frames' outputs, the
    last few only. Each output holds ``maskmem_features`` (bfloat16 ``(1, 64, 64, 64)`` at 1024
    input), ``maskmem_pos_enc``, ``pred_masks`` (``(1, 1, 256, 256)`` float32 logits),
    ``obj_ptr`` and ``object_score_logits``.
    """

    cond: Dict[int, dict] = field(default_factory=dict)
    recent: Dict[int, dict] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        return bool(self.cond)

    def output_dict(self) -> dict:
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.recent}


@dataclass
class TrackedFrame:
    """One frame's result for the K objects known so far, in object order.

    Attributes:
        index: the frame's index in the video (0 for the first frame).
        logits: ``(K, 1, 256, 256)`` float32 low-resolution mask logits (``NO_OBJ_SCORE`` where
            the object is absent or not prompted yet), on the model's device.
        object_scores: ``(K,)`` float32 object-presence logits (``-inf`` before its first prompt).
    """

    index: int
    logits: torch.Tensor
    object_scores: np.ndarray

    def masks(self, height: int, width: int, threshold: float = 0.0) -> np.ndarray:
        """``(K, height, width)`` bool masks: the logits upsampled as Meta's predictor does
        (bilinear, ``align_corners=False``) and compared with ``threshold``."""
        if len(self.logits) == 0:
            return np.zeros((0, height, width), bool)
        big = F.interpolate(self.logits.float(), size=(height, width), mode="bilinear",
                            align_corners=False)
        return (big[:, 0] > threshold).cpu().numpy()


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
    """Tracks objects through the frames of one video, one :meth:`track` call per frame.

    Args:
        model: a SAM 2 model (``SAM2Base``), on its device.
        choice: device and precision (autocast) of the computations.
        num_frames: the video's length when known (Meta's offline predictor scales the object
            pointers' temporal encoding by ``min(num_frames, 16)``); None when streaming (16).
        fill_hole_area: holes of at most this many low-resolution pixels are filled (0: off).
        max_cond_frames: prompted frames kept per object (the first and the latest ones).
    """

    def __init__(self, model, choice: DeviceChoice, num_frames: Optional[int] = None,
                 fill_hole_area: int = FILL_HOLE_AREA, max_cond_frames: int = MAX_COND_FRAMES):
        self.model, self.choice = model, choice
        self.num_frames = num_frames or STREAMING_FRAMES
        self.fill_hole_area = fill_hole_area
        self.max_cond_frames = max(1, max_cond_frames)
        stride = max(1, model.memory_temporal_stride_for_eval)
        ptrs = model.max_obj_ptrs_in_encoder if model.use_obj_ptrs_in_encoder else 0
        self.horizon = max(model.num_maskmem * stride, ptrs)  # tracked frames the model can read
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next frame is frame 0 and no object is known."""
        self.objects: List[ObjectTrack] = []
        self.frame_index = -1
        self.frame_hw: Optional[Tuple[int, int]] = None
        self._pos_enc = None  # maskmem_pos_enc: the same for every frame and object

    @torch.no_grad()
    def track(self, image: np.ndarray, prompts: Mapping[int, ObjectPrompt],
              should_stop: Optional[Callable[[], bool]] = None) -> TrackedFrame:
        """Track the next frame: an HWC RGB uint8 ``image`` and the prompts given on it, by object
        index (a new index ``>= len(objects)`` adds objects). Objects keep their index forever;
        one that is absent gets ``NO_OBJ_SCORE`` logits, not a new index.

        ``should_stop`` is polled between objects (the image encoder polls it too when the
        caller wraps this in :func:`engine.cancel.stoppable_encoder`): a stop raises
        :class:`engine.cancel.GenerationCancelled` and leaves the tracker as before the frame.
        """
        h, w = image.shape[:2]
        if self.frame_hw is not None and self.frame_hw != (h, w):
            raise ValueError(f"frame of {w}x{h} in a video of {self.frame_hw[1]}x"
                             f"{self.frame_hw[0]}: reset() starts a new video")
        t = self.frame_index + 1
        objects = self.objects + [ObjectTrack() for _ in range(
            max(prompts, default=-1) + 1 - len(self.objects))]
        prompts = {k: p for k, p in prompts.items() if len(p[0])}
        # the image is encoded only when some object is prompted or tracked on this frame
        feats = (self._features(image) if prompts or any(o.started for o in objects)
                 else None)
        staged = []  # (object, where the output goes, output): committed once the frame is done
        with _video_settings(self.model):
            for k, obj in enumerate(objects):
                if should_stop is not None and should_stop():
                    raise GenerationCancelled("stopped between objects")
                prompt = prompts.get(k)
                if prompt is not None:
                    staged.append((obj, obj.cond, self._prompted(
                        obj, t, feats, self._point_inputs(prompt, h, w))))
                elif obj.started:
                    staged.append((obj, obj.recent, self._step(obj, t, feats, init=False,
                                                               points=None, memory=True)))
                else:
                    staged.append((obj, None, None))
        logits, scores = [], []
        for obj, place, out in staged:
            if place is not None:
                place[t] = out
            self._prune(obj, t)
            logits.append(out["pred_masks"].float() if out else torch.full(
                (1, 1, *self._low_res()), NO_OBJ_SCORE, device=self.choice.device))
            scores.append(float(out["object_score_logits"].float().reshape(-1)[0])
                          if out else -np.inf)
        self.objects, self.frame_index, self.frame_hw = objects, t, (h, w)
        low = (torch.cat(logits) if logits else
               torch.zeros((0, 1, *self._low_res()), device=self.choice.device))
        return TrackedFrame(t, low, np.array(scores, np.float32))

    # -- steps --------------------------------------------------------------------------------
    def _low_res(self) -> Tuple[int, int]:
        side = self.model.image_size // 4
        return side, side

    def _features(self, image: np.ndarray):
        """The frame's backbone features as ``track_step`` takes them (one object's slice)."""
        x = frame_tensor(image, self.model.image_size).to(self.choice.device)
        with self.choice.compute():
            backbone = self.model.forward_image(x)
            _, vision_feats, vision_pos, sizes = self.model._prepare_backbone_features(backbone)
        return vision_feats, vision_pos, sizes

    def _point_inputs(self, prompt: ObjectPrompt, h: int, w: int) -> dict:
        """Pixels to the model's input square, in float32 as Meta's ``add_new_points_or_box``."""
        coords = torch.as_tensor(np.asarray(prompt[0], np.float32)).reshape(1, -1, 2)
        coords = coords / torch.tensor([w, h]) * self.model.image_size
        labels = torch.as_tensor(np.asarray(prompt[1], np.int32)).reshape(1, -1)
        return {"point_coords": coords.to(self.choice.device),
                "point_labels": labels.to(self.choice.device)}

    def _step(self, obj: ObjectTrack, t: int, feats, init: bool, points: Optional[dict],
              memory: bool, prev_logits: Optional[torch.Tensor] = None) -> dict:
        """One ``track_step``; the output in Meta's compact form (holes filled, memory in
        bfloat16)."""
        vision_feats, vision_pos, sizes = feats
        with self.choice.compute():
            out = self.model.track_step(
                frame_idx=t, is_init_cond_frame=init, current_vision_feats=vision_feats,
                current_vision_pos_embeds=vision_pos, feat_sizes=sizes, point_inputs=points,
                mask_inputs=None, output_dict=obj.output_dict(), num_frames=self.num_frames,
                track_in_reverse=False, run_mem_encoder=memory, prev_sam_mask_logits=prev_logits)
        pred = out["pred_masks"]
        if self.fill_hole_area > 0:
            pred = fill_small_holes(pred, self.fill_hole_area)
        features = out["maskmem_features"]
        return {"maskmem_features": None if features is None else features.to(torch.bfloat16),
                "maskmem_pos_enc": self._shared_pos_enc(out["maskmem_pos_enc"]),
                "pred_masks": pred, "obj_ptr": out["obj_ptr"],
                "object_score_logits": out["object_score_logits"]}

    def _prompted(self, obj: ObjectTrack, t: int, feats, points: dict) -> dict:
        """A prompt on frame ``t``: a first prompt, or a correction of a tracked object; the
        output with its memory (the caller stores it as a conditioning frame)."""
        if obj.started:  # tracked first, then corrected with the tracked logits as mask input
            tracked = self._step(obj, t, feats, init=False, points=None, memory=False)
            prev = torch.clamp(tracked["pred_masks"], -32.0, 32.0)
            out = self._step(obj, t, feats, init=False, points=points, memory=False,
                             prev_logits=prev)
        else:
            out = self._step(obj, t, feats, init=True, points=points, memory=False)
        # the prompted frame's memory, as propagate_in_video_preflight encodes it
        size = self.model.image_size
        high_res = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear",
                                 align_corners=False)
        vision_feats, _, sizes = feats
        with self.choice.compute():
            features, pos = self.model._encode_new_memory(
                current_vision_feats=vision_feats, feat_sizes=sizes,
                pred_masks_high_res=high_res, object_score_logits=out["object_score_logits"],
                is_mask_from_pts=True)
        out["maskmem_features"] = features.to(torch.bfloat16)
        out["maskmem_pos_enc"] = self._shared_pos_enc(pos)
        return out

    def _shared_pos_enc(self, pos):
        """One copy of the memory's positional encoding (identical for every frame)."""
        if pos is None:
            return None
        if self._pos_enc is None:
            self._pos_enc = [p[0:1].clone() for p in pos]
        return self._pos_enc

    def _prune(self, obj: ObjectTrack, t: int) -> None:
        """Drop tracked outputs the model can no longer read, and prompted ones over the cap."""
        for f in [f for f in obj.recent if f <= t - self.horizon]:
            del obj.recent[f]
        if len(obj.cond) > self.max_cond_frames:
            frames = sorted(obj.cond)
            for f in frames[1:len(frames) - self.max_cond_frames + 1]:
                del obj.cond[f]
