"""Automatic mode: masks for everything in the image.

:func:`generate` returns the masks of Meta's ``SAM2AutomaticMaskGenerator`` for the same weights
and parameters (the tests compare them through ``tests/meta_reference.py``), with less work:

* on the CPU the mask decoder's predicted IoU is computed first and only the candidates passing
  ``pred_iou_thresh`` are upscaled to 256x256 logits (not with ``use_m2m``, where Meta refines
  every candidate and filters on the refined IoU); on other devices (GPUs) every candidate is,
  and the grid is decoded and filtered with few kernels and host waits (:mod:`.on_device`);
* each decoder batch is filtered by predicted IoU *before* anything is upsampled; the stability
  score, the thresholded mask's box and the crop-edge test are computed, as Meta does, on the
  full-resolution logits of the survivors only: on the CPU, small crops upsample them in chunks
  of :data:`UPSAMPLE_CHUNK`, large ones count whole low-resolution cells and, in the cells a
  threshold crosses, runs of pixels along each output row (:func:`engine.automatic.cells.stability_and_boxes`,
  same counts up to float rounding at a threshold; candidates whose logits cross the stability
  thresholds in most cells are upsampled instead, whichever is cheaper); on other devices (GPUs)
  they are always upsampled, in chunks of the decoder's memory budget;
* survivors are kept as their 256x256 low-resolution logits (256 KiB each), never as full-resolution
  masks or run-length encodings; NMS needs only boxes and scores;
* full-resolution masks are made once, at the end, for the masks that survived NMS, directly at the
  original image size (from the logits, also when ``input_size_percent`` < 100)
  (:mod:`engine.automatic.final_masks`);
* the mask decoder runs as :class:`engine.decoder.point_decoder.PointDecoder` (same function, reordered) in
  chunks of :data:`POINT_DECODER_CHUNK` prompts on the CPU (other decoders: :data:`DECODER_CHUNK`),
  filtered per batch of ``points_per_batch`` points; elsewhere in calls of as many prompts as a
  memory budget holds (at least ``points_per_batch``: :func:`.on_device.decode_chunk`); a stop
  request is honoured within one chunk;
* every tensor is made on the model's device; on a GPU the host waits for it twice per crop
  (the two selections of the filters), once per NMS and twice for the final masks, never per
  batch of points or per mask;
* ``min_mask_region_area`` uses OpenCV on the CPU (Meta's ``postprocess_small_regions``
  semantics), not SAM 2's CUDA extension.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import numpy as np
import torch

from . import amg, on_device, stability
from .candidates import Kept as _Kept
from ..cancel import GenerationCancelled, StopCheck, stoppable_encoder
from ..decoder.point_decoder import PointDecoder, supports as fast_decoder_supports
from ..decoder.prompts import point_embeddings
from ..model.device import CPU, DeviceChoice
from .final_masks import final_masks, upsample_chunk
from .params import AutomaticParams, ProgressCallback, count_steps
from ..image.predictor import ImageEmbedding, decode, encode_image, resize_for_input
from ..image.results import Segmentation

logger = logging.getLogger(__name__)

# CPU: prompts decoded at once: bounds decoder memory and the delay of a stop (a multiple of
# POINT_DECODER_CHUNK: batches of points are whole chunks of both)
DECODER_CHUNK = 16
# CPU: prompts per PointDecoder call: its (chunk, 4096, 256) tensors then stay below glibc's mmap
# threshold and in cache (measured per point, 1 thread: 4 -> 59 ms, 8 -> 62, 16 -> 64, 32 -> 67).
# Other devices decode a whole batch of points_per_batch prompts per call (kernels big enough
# to fill a GPU); points_per_batch bounds the memory there.
POINT_DECODER_CHUNK = 4
M2M_LOGIT_CLAMP = 32.0  # low-resolution logits are clamped to +-32 before being fed back (m2m)


class _Run:
    """State of one :func:`generate` call."""

    def __init__(self, model, params: AutomaticParams, choice: DeviceChoice,
                 on_batch: Optional[ProgressCallback], should_stop: Optional[StopCheck],
                 embedding: Optional[ImageEmbedding] = None):
        self.model, self.params, self.choice = model, params, choice
        self.embedding = embedding  # of the whole (resized) image, reused for crop 0
        self.device = choice.device
        self.on_batch = on_batch
        self.should_stop = should_stop or (lambda: False)
        self.total = count_steps(params)
        self.done = 0
        self.fast = fast_decoder_supports(model)
        self.on_cpu = self.device.type == "cpu"
        # other devices: set per crop from the memory budget (on_device.decode_chunk)
        self.point_chunk = POINT_DECODER_CHUNK if self.on_cpu else params.points_per_batch
        self.decoder_chunk = DECODER_CHUNK if self.on_cpu else params.points_per_batch

    def check_stop(self) -> None:
        if self.should_stop():
            raise GenerationCancelled("stopped by request")

    def advance(self, steps: int) -> None:
        """Progress: ``steps`` more batches of ``points_per_batch`` points decoded."""
        for _ in range(steps):
            self.done += 1
            if self.on_batch is not None:
                self.on_batch(self.done, self.total)

    # -- decoding ------------------------------------------------------------------------------
    def _decode_points(self, emb: ImageEmbedding, fast: Optional[PointDecoder],
                       coords: torch.Tensor, iou_thresh: Optional[float] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Three candidates per point: logits ``(3B, 256, 256)`` and IoU ``(3B,)``, float32,
        point-major.

        With ``iou_thresh`` (> 0), only the candidates whose predicted IoU is above it, in the
        same order: :class:`PointDecoder` then upscales only those (the IoU does not depend on
        the upscaling), so the result equals full decoding followed by Meta's IoU filter.
        """
        model = self.model
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        early = iou_thresh is not None and iou_thresh > 0.0
        chunk = self.point_chunk if fast is not None else self.decoder_chunk
        logits, ious = [], []
        for start in range(0, len(coords), chunk):
            self.check_stop()
            c = coords[start:start + chunk, None, :]
            point_labels = labels[start:start + chunk, None]
            if fast is not None:
                sparse = self._sparse(coords[start:start + chunk])
                if early:
                    _, low, iou = fast.decode_above(sparse, iou_thresh)
                    logits.append(low)
                    ious.append(iou)
                    continue
                low, iou = fast(sparse)
            else:
                low, iou = decode(model, emb, c, point_labels, True)
            low, iou = low.flatten(0, 1), iou.flatten(0, 1)
            if early:
                keep = iou > iou_thresh
                low, iou = low[keep], iou[keep]
            logits.append(low)
            ious.append(iou)
        if len(logits) == 1:  # one chunk: no copy
            return logits[0], ious[0]
        return torch.cat(logits), torch.cat(ious)

    def _sparse(self, coords: torch.Tensor) -> torch.Tensor:
        """Sparse prompt embeddings ``(n, 2, C)`` of ``n`` foreground points ``(n, 2)`` in the
        model's input frame (each point with its padding point, as SAM 2's prompt encoder makes
        them; every point is embedded on its own, so any batching gives the same rows)."""
        labels = torch.ones((len(coords), 1), dtype=torch.int, device=self.device)
        sparse, _ = self.model.sam_prompt_encoder(points=(coords[:, None, :], labels),
                                                  boxes=None, masks=None)
        return sparse

    def _refine_m2m(self, emb: ImageEmbedding, coords: torch.Tensor,
                    logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One more decoder pass per candidate, prompted with its point and its own logits."""
        model = self.model
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        mask_in = logits.clamp(-M2M_LOGIT_CLAMP, M2M_LOGIT_CLAMP)[:, None]
        out_logits, out_iou = [], []
        chunk = self.decoder_chunk
        for start in range(0, len(coords), chunk):
            self.check_stop()
            sl = slice(start, start + chunk)
            low, iou = decode(model, emb, coords[sl, None, :], labels[sl, None], False,
                              mask_input=mask_in[sl])
            out_logits.append(low[:, 0])
            out_iou.append(iou[:, 0])
        return torch.cat(out_logits), torch.cat(out_iou)

    # -- filtering -----------------------------------------------------------------------------
    def _filter(self, logits: torch.Tensor, iou: torch.Tensor, crop_box: List[int],
                crop_index: int, image_hw: Tuple[int, int]) -> Optional[_Kept]:
        """Meta's per-batch filters, upsampling only what passes the predicted-IoU filter.

        Stability scores and boxes are counted by cells on the CPU for large crops
        (:data:`engine.automatic.stability.BY_CELLS_MIN_PIXELS`), else from upsampled logits (on a
        GPU always: one pass of large kernels, no per-mask host round trips). The stability and crop-edge filters are
        applied as one boolean selection.
        """
        p = self.params
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        keep = iou > p.pred_iou_thresh if p.pred_iou_thresh > 0.0 else torch.ones_like(
            iou, dtype=torch.bool)
        index = torch.nonzero(keep)[:, 0]
        if self.device.type == "cpu" and crop_hw[0] * crop_hw[1] >= stability.BY_CELLS_MIN_PIXELS:
            stab, boxes = stability.stability_by_cells(logits, index, crop_hw, p)
        else:
            stab, boxes = stability.stability_upsampled(logits, index, crop_hw, p,
                                                        upsample_chunk(self.device, crop_hw))
        ok = ~amg.near_crop_edge(boxes, crop_box, [0, 0, image_hw[1], image_hw[0]])
        if p.stability_score_thresh > 0.0:
            ok &= stab >= p.stability_score_thresh
        ok = torch.nonzero(ok)[:, 0]  # one wait for the device, then plain indexing
        if len(ok) == 0:
            return None
        index = index[ok]
        return _Kept(logits[index].clone(), iou[index].float(), stab[ok], boxes[ok],
                     torch.full((len(index),), crop_index, dtype=torch.int64,
                                device=self.device))

    # -- one crop ------------------------------------------------------------------------------
    def _crop_on_cpu(self, emb: ImageEmbedding, fast: Optional[PointDecoder],
                     points: np.ndarray, scale: torch.Tensor, crop_box: List[int],
                     crop_index: int, image_hw: Tuple[int, int]) -> List[_Kept]:
        """The crop's candidates that pass the filters, one batch of points at a time.

        A batch is ``points_per_batch`` points rounded up to a multiple of :data:`DECODER_CHUNK`
        (itself a multiple of :data:`POINT_DECODER_CHUNK`): each prompt is then decoded with the
        same others whatever ``points_per_batch``, so the results do not depend on it to the bit.
        """
        p, model = self.params, self.model
        parts = []
        step = -(-p.points_per_batch // DECODER_CHUNK) * DECODER_CHUNK
        done = 0
        for start in range(0, len(points), step):
            self.check_stop()
            coords = torch.as_tensor(points[start:start + step],
                                     dtype=torch.float32, device=self.device)
            coords = coords / scale * model.image_size
            # with m2m, Meta refines all candidates and filters on the refined IoU
            logits, iou = self._decode_points(
                emb, fast, coords, None if p.use_m2m else p.pred_iou_thresh)
            if p.use_m2m:
                logits, iou = self._refine_m2m(emb, coords.repeat_interleave(3, dim=0), logits)
            kept = self._filter(logits, iou, crop_box, crop_index, image_hw)
            del logits
            if kept is not None:
                parts.append(kept)
            steps = on_device.steps_done(min(start + step, len(points)), p.points_per_batch)
            self.advance(steps - done)
            done = steps
        return parts

    def _crop_on_device(self, emb: ImageEmbedding, fast: Optional[PointDecoder],
                        points: np.ndarray, scale: torch.Tensor, crop_box: List[int],
                        crop_index: int, image_hw: Tuple[int, int]) -> List[_Kept]:
        """The crop's candidates that pass the filters on a GPU (:mod:`.on_device`): the whole
        grid in as few decoder calls as the memory budget allows, filtered once."""
        p, model = self.params, self.model
        chunk = on_device.decode_chunk(self.device, emb.image_embed, p.points_per_batch,
                                       self.choice.dtype, fast is not None)
        self.point_chunk = self.decoder_chunk = chunk
        coords = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        coords = coords / scale * model.image_size
        # the whole grid's prompts embedded at once (a few kernels, not a few per call)
        sparse = point_embeddings(model.sam_prompt_encoder, coords) if fast is not None else None
        done = [0]

        def decode(start: int, stop: int) -> Tuple[torch.Tensor, torch.Tensor]:
            self.check_stop()
            c = coords[start:stop]
            if sparse is not None:
                low, iou = fast(sparse[start:stop])
                logits, iou = low.flatten(0, 1), iou.flatten(0, 1)
            else:
                logits, iou = self._decode_points(emb, None, c)
            if p.use_m2m:
                logits, iou = self._refine_m2m(emb, c.repeat_interleave(3, dim=0), logits)
            return logits, iou

        def on_chunk(points_done: int) -> None:
            steps = on_device.steps_done(points_done, p.points_per_batch)
            self.advance(steps - done[0])
            done[0] = steps

        return on_device.crop_candidates(decode, len(coords), chunk, p, crop_box, crop_index,
                                         image_hw, on_chunk)

    def process_crop(self, image: np.ndarray, crop_box: List[int], layer: int,
                     crop_index: int) -> Optional[_Kept]:
        from torchvision.ops import batched_nms

        p, model = self.params, self.model
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        self.check_stop()
        if amg.points_per_side_of_layer(p.points_per_side, layer,
                                        p.crop_n_points_downscale_factor) == 0:
            return None
        whole = (crop_index == 0 and self.embedding is not None
                 and self.embedding.input_hw == (ch, cw) and self.embedding.choice == self.choice)
        emb = self.embedding if whole else encode_image(model, crop, device_choice=self.choice)
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats,
                            dtype=self.choice.dtype) if self.fast else None
        n_side = amg.points_per_side_of_layer(p.points_per_side, layer,
                                              p.crop_n_points_downscale_factor)
        points = amg.point_grid(n_side) * np.array([[cw, ch]])
        # Meta's arithmetic (pixels in float32, then / size * 1024): the same coordinates
        scale = torch.tensor([cw, ch], dtype=torch.float32, device=self.device)
        if self.on_cpu:
            parts = self._crop_on_cpu(emb, fast, points, scale, crop_box, crop_index,
                                      image.shape[:2])
        else:
            parts = self._crop_on_device(emb, fast, points, scale, crop_box, crop_index,
                                         image.shape[:2])
        del fast, emb
        if not parts:
            return None
        kept = _Kept.cat(parts)
        order = batched_nms(kept.boxes.float(), kept.iou, torch.zeros_like(kept.boxes[:, 0]),
                            iou_threshold=p.box_nms_thresh)
        kept = kept.select(order)
        kept.boxes = kept.boxes + torch.tensor([[x0, y0, x0, y0]], dtype=torch.int64,
                                               device=kept.boxes.device)
        return kept


def generate(model, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
             device_choice: Optional[DeviceChoice] = None,
             on_batch: Optional[ProgressCallback] = None,
             should_stop: Optional[StopCheck] = None,
             embedding: Optional[ImageEmbedding] = None) -> Segmentation:
    """Masks for the whole image: Meta's automatic mask generator's masks, computed leaner.

    Args:
        model: a built SAM 2 model in eval mode, on ``device_choice.device``.
        image: HWC RGB uint8, original size.
        params: the generator's parameters (``min_mask_region_area`` in original-image pixels).
        scale: ``input_size_percent / 100``: the model sees the image resized by it; masks come
            back at the original size.
        device_choice: device and precision (default: the CPU in float32).
        on_batch: called as ``on_batch(done, total)`` after each batch of ``points_per_batch``
            points (``total = count_steps(params)``).
        should_stop: polled between decoder chunks and encoder blocks; when it returns True the
            run stops and :class:`GenerationCancelled` is raised.
        embedding: the embedding of ``image`` resized by ``scale`` (e.g. the prompt predictor's
            cached one), in the same precision: used for the whole-image crop instead of
            encoding it again.
    Returns:
        a :class:`Segmentation` sorted by decreasing area, with predicted IoU as ``scores`` and
        stability scores.
    """
    from torchvision.ops import batched_nms, box_area

    choice = device_choice or CPU
    run = _Run(model, params, choice, on_batch, should_stop, embedding)
    small = resize_for_input(image, scale)
    model_hw = small.shape[:2]
    out_hw = image.shape[:2]
    crops = amg.crop_boxes(model_hw, params.crop_n_layers, params.crop_overlap_ratio)
    parts = []
    with torch.no_grad(), choice.compute(), stoppable_encoder(model, run.should_stop):
        for index, (box, layer) in enumerate(crops):
            kept = run.process_crop(small, box, layer, index)
            if kept is not None:
                parts.append(kept)
    if not parts:
        return Segmentation.empty(*out_hw)
    kept = _Kept.cat(parts)
    if len(crops) > 1:
        crop_t = torch.tensor([c for c, _ in crops], dtype=torch.int64,
                              device=kept.crop.device)[kept.crop]
        order = batched_nms(kept.boxes.float(), 1 / box_area(crop_t),
                            torch.zeros_like(kept.boxes[:, 0]), iou_threshold=params.crop_nms_thresh)
        kept = kept.select(order)
    run.check_stop()
    return final_masks(kept.logits, kept.crop, kept.iou, kept.stability, [c for c, _ in crops],
                       model_hw, out_hw, params, run.should_stop)
