"""Automatic mode: masks for everything in the image.

:func:`generate` is our generator; :func:`generate_with_meta` wraps Meta's
``SAM2AutomaticMaskGenerator`` and stays as the reference for tests and benchmarks.

Both return the same masks for the same weights and parameters. Ours gets there with less work:

* the mask decoder's predicted IoU is computed first and only the candidates passing
  ``pred_iou_thresh`` are upscaled to 256x256 logits (not with ``use_m2m``, where Meta refines
  every candidate and filters on the refined IoU);
* each decoder batch is filtered by predicted IoU *before* anything is upsampled; the stability
  score, the thresholded mask's box and the crop-edge test are computed, as Meta does, on the
  full-resolution logits of the survivors only: small crops upsample them in chunks of
  :data:`UPSAMPLE_CHUNK`; large ones count whole low-resolution cells and, in the cells a
  threshold crosses, runs of pixels along each output row (:func:`engine.amg.stability_and_boxes`,
  same counts up to float rounding at a threshold);
* survivors are kept as their 256x256 low-resolution logits (256 KiB each), never as full-resolution
  masks or run-length encodings; NMS needs only boxes and scores;
* full-resolution masks are made once, at the end, for the masks that survived NMS, directly at the
  original image size (from the logits, also when ``input_size_percent`` < 100), by cells as
  well (:func:`engine.amg.upsampled_masks`);
* the mask decoder runs as :class:`engine.decoder.PointDecoder` (same function, reordered) in
  chunks of :data:`POINT_DECODER_CHUNK` prompts (other decoders: :data:`DECODER_CHUNK`), so
  memory is bounded by ``points_per_batch`` and a stop request is honoured within one chunk;
* ``min_mask_region_area`` uses OpenCV on the CPU (Meta's ``postprocess_small_regions``
  semantics), not SAM 2's CUDA extension.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, asdict
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import amg
from .decoder import PointDecoder, supports as fast_decoder_supports
from .loader import DeviceChoice, select_device
from .masks import resize_nearest
from .predictor import ImageEmbedding, decode, encode_image, resize_for_input
from .results import Segmentation

logger = logging.getLogger(__name__)

UPSAMPLE_CHUNK = 8  # candidates upsampled to full resolution at once (8 x H x W float32)
# crops of at least this many pixels get their stability scores by cells
# (amg.stability_and_boxes) rather than from fully upsampled logits. Counting cells costs about
# the same at any size (its work is on the 256x256 grid); upsampling grows with the crop. They
# break even near 400x400 with 2 threads (320x400 with 1); upsampling is 5x faster at 128x128 and
# cells 3x faster at 600x900 (benchmarks/bench_stability.py)
BY_CELLS_MIN_PIXELS = 400 * 400
CELL_CHUNK = 32  # candidates whose stability is counted by cells at once (<= 8 MiB per tensor)
DECODER_CHUNK = 16  # prompts decoded at once: bounds decoder memory and the delay of a stop
# prompts per PointDecoder call: its (chunk, 4096, 256) tensors then stay below glibc's mmap
# threshold and in cache (measured per point, 1 thread: 4 -> 59 ms, 8 -> 62, 16 -> 64, 32 -> 67)
POINT_DECODER_CHUNK = 4
M2M_LOGIT_CLAMP = 32.0  # low-resolution logits are clamped to +-32 before being fed back (m2m)

ProgressCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


class GenerationCancelled(RuntimeError):
    """Raised by :func:`generate` when ``should_stop()`` became true; nothing is returned."""


@dataclass(frozen=True)
class AutomaticParams:
    """The generator's parameters (names as Meta's ``SAM2AutomaticMaskGenerator``)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    use_m2m: bool = False


def generate_with_meta(model, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
                       device_choice: Optional[DeviceChoice] = None) -> Segmentation:
    """Masks for the whole image through Meta's ``SAM2AutomaticMaskGenerator`` (the reference).

    ``min_mask_region_area``: the installed SAM 2 generator does not call its own
    ``postprocess_small_regions``; it hands the value to ``SAM2ImagePredictor`` as
    ``max_hole_area``/``max_sprinkle_area``, which edit the 256x256 logits through SAM 2's CUDA
    extension and are skipped with a warning without it (on CPU). The reference therefore runs
    the generator with it off and then applies Meta's ``postprocess_small_regions`` to the result,
    as SAM 1's generator did; the area is converted from original-image pixels to pixels of the
    image the model saw.

    Args:
        image: HWC RGB uint8, original size.
        scale: ``input_size_percent / 100``; masks are brought back to the original size.
    Returns:
        a :class:`Segmentation` sorted by decreasing area, with stability scores.
    """
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.utils.amg import MaskData, rle_to_mask

    choice = device_choice or select_device(False)
    kwargs = asdict(params)
    min_area = kwargs.pop("min_mask_region_area")
    generator = SAM2AutomaticMaskGenerator(model, multimask_output=True, min_mask_region_area=0,
                                           output_mode="uncompressed_rle", **kwargs)
    small = resize_for_input(image, scale)
    with torch.no_grad(), choice.autocast():
        records = generator.generate(small)
    h, w = image.shape[:2]
    if not records:
        return Segmentation.empty(h, w)
    rles = [r["segmentation"] for r in records]
    iou = np.array([r["predicted_iou"] for r in records], np.float32)
    stability = np.array([r["stability_score"] for r in records], np.float32)
    if min_area > 0:
        area = min_area * (small.shape[0] * small.shape[1]) / float(h * w)
        xywh = torch.tensor([r["bbox"] for r in records], dtype=torch.float32)
        data = MaskData(rles=rles, boxes=torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                        iou_preds=torch.from_numpy(iou), stability_score=torch.from_numpy(stability))
        data = SAM2AutomaticMaskGenerator.postprocess_small_regions(
            data, area, max(params.box_nms_thresh, params.crop_nms_thresh))
        rles, iou, stability = data["rles"], data["iou_preds"].numpy(), \
            data["stability_score"].numpy()
    small_masks = [rle_to_mask(r) for r in rles]
    order = np.argsort([-int(m.sum()) for m in small_masks], kind="stable")
    masks = np.stack([resize_nearest(small_masks[i], h, w) for i in order])
    return Segmentation.from_masks(masks, iou[order], stability=stability[order])


def count_steps(params: AutomaticParams) -> int:
    """Decoder batches of points a run makes (over all crops): ``on_batch`` is called this often."""
    return amg.count_point_batches(params.points_per_side, params.points_per_batch,
                                   params.crop_n_layers, params.crop_n_points_downscale_factor)


@dataclass
class _Kept:
    """Candidates that passed the filters of one crop (or of all crops after merging)."""

    logits: torch.Tensor      # (n, 256, 256) float32 low-resolution logits
    iou: torch.Tensor         # (n,) predicted IoU
    stability: torch.Tensor   # (n,) float32
    boxes: torch.Tensor       # (n, 4) int64 inclusive XYXY, image frame (of the model input)
    crop: torch.Tensor        # (n,) int64 index into the crop list

    @classmethod
    def cat(cls, parts: Sequence["_Kept"]) -> "_Kept":
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in
                     ("logits", "iou", "stability", "boxes", "crop")))

    def select(self, index: torch.Tensor) -> "_Kept":
        return _Kept(self.logits[index], self.iou[index], self.stability[index],
                     self.boxes[index], self.crop[index])

    def __len__(self) -> int:
        return len(self.iou)


@contextlib.contextmanager
def stoppable_encoder(model, should_stop: Optional[StopCheck]) -> Iterator[None]:
    """Within this context, a stop request interrupts ``model``'s image encoder between two of
    its trunk blocks by raising :class:`GenerationCancelled` (no-op when ``should_stop`` is None).
    """
    if should_stop is None:
        yield
        return

    def check(_module, _inputs):
        if should_stop():
            raise GenerationCancelled("stopped during image encoding")

    blocks = getattr(getattr(getattr(model, "image_encoder", None), "trunk", None), "blocks", None)
    handles = [b.register_forward_pre_hook(check) for b in (blocks or [])]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def stability_upsampled(logits: torch.Tensor, index: torch.Tensor, crop_hw: Tuple[int, int],
                        params: AutomaticParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stability and inclusive box ``(K,)``, ``(K, 4)`` of ``logits[index]`` bilinearly upsampled
    to ``crop_hw`` (as Meta's generator does), :data:`UPSAMPLE_CHUNK` candidates at a time."""
    p = params
    stabs, boxes = [torch.zeros(0)], [torch.zeros((0, 4), dtype=torch.int64)]
    for start in range(0, len(index), UPSAMPLE_CHUNK):
        idx = index[start:start + UPSAMPLE_CHUNK]
        up = F.interpolate(logits[idx][:, None], crop_hw, mode="bilinear",
                           align_corners=False)[:, 0]
        stabs.append(amg.stability_score(up, p.mask_threshold, p.stability_score_offset))
        boxes.append(amg.boxes_inclusive(up > p.mask_threshold))
    return torch.cat(stabs), torch.cat(boxes)


def stability_by_cells(logits: torch.Tensor, index: torch.Tensor, crop_hw: Tuple[int, int],
                       params: AutomaticParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """As :func:`stability_upsampled`, counted on the low-resolution grid
    (:func:`engine.amg.stability_and_boxes`), :data:`CELL_CHUNK` candidates at a time."""
    rows = amg.BilinearAxis(logits.shape[-2], crop_hw[0], logits.device)
    cols = amg.BilinearAxis(logits.shape[-1], crop_hw[1], logits.device)
    return amg.stability_and_boxes(logits[index], rows, cols, params.mask_threshold,
                                   params.stability_score_offset, chunk=CELL_CHUNK)


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

    def check_stop(self) -> None:
        if self.should_stop():
            raise GenerationCancelled("stopped by request")

    # -- decoding ------------------------------------------------------------------------------
    def _decode_points(self, emb: ImageEmbedding, fast: Optional[PointDecoder],
                       coords: torch.Tensor, iou_thresh: Optional[float] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Three candidates per point: logits ``(3B, 256, 256)`` and IoU ``(3B,)``, point-major.

        With ``iou_thresh`` (> 0), only the candidates whose predicted IoU is above it, in the
        same order: :class:`PointDecoder` then upscales only those (the IoU does not depend on
        the upscaling), so the result equals full decoding followed by Meta's IoU filter.
        """
        model = self.model
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        early = iou_thresh is not None and iou_thresh > 0.0
        chunk = POINT_DECODER_CHUNK if fast is not None else DECODER_CHUNK
        logits, ious = [], []
        for start in range(0, len(coords), chunk):
            self.check_stop()
            c = coords[start:start + chunk, None, :]
            point_labels = labels[start:start + chunk, None]
            if fast is not None:
                sparse, _ = model.sam_prompt_encoder(points=(c, point_labels), boxes=None,
                                                     masks=None)
                if early:
                    _, low, iou = fast.decode_above(sparse, iou_thresh)
                    logits.append(low.float())
                    ious.append(iou)
                    continue
                low, iou = fast(sparse)
            else:
                low, iou = decode(model, emb, c, point_labels, True, self.choice)
            low, iou = low.flatten(0, 1).float(), iou.flatten(0, 1)
            if early:
                keep = iou > iou_thresh
                low, iou = low[keep], iou[keep]
            logits.append(low)
            ious.append(iou)
        return torch.cat(logits), torch.cat(ious)

    def _refine_m2m(self, emb: ImageEmbedding, coords: torch.Tensor,
                    logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One more decoder pass per candidate, prompted with its point and its own logits."""
        model = self.model
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        mask_in = logits.clamp(-M2M_LOGIT_CLAMP, M2M_LOGIT_CLAMP)[:, None]
        out_logits, out_iou = [], []
        for start in range(0, len(coords), DECODER_CHUNK):
            self.check_stop()
            sl = slice(start, start + DECODER_CHUNK)
            low, iou = decode(model, emb, coords[sl, None, :], labels[sl, None], False,
                              self.choice, mask_input=mask_in[sl])
            out_logits.append(low[:, 0])
            out_iou.append(iou[:, 0])
        return torch.cat(out_logits), torch.cat(out_iou)

    # -- filtering -----------------------------------------------------------------------------
    def _filter(self, logits: torch.Tensor, iou: torch.Tensor, crop_box: List[int],
                crop_index: int, image_hw: Tuple[int, int]) -> Optional[_Kept]:
        """Meta's per-batch filters, upsampling only what passes the predicted-IoU filter."""
        p = self.params
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        keep = iou > p.pred_iou_thresh if p.pred_iou_thresh > 0.0 else torch.ones_like(
            iou, dtype=torch.bool)
        index = torch.nonzero(keep)[:, 0]
        by_cells = crop_hw[0] * crop_hw[1] >= BY_CELLS_MIN_PIXELS
        stability = stability_by_cells if by_cells else stability_upsampled
        stab, boxes = stability(logits, index, crop_hw, p)
        if p.stability_score_thresh > 0.0:
            ok = stab >= p.stability_score_thresh
            index, stab, boxes = index[ok], stab[ok], boxes[ok]
        ok = ~amg.near_crop_edge(boxes, crop_box, [0, 0, image_hw[1], image_hw[0]])
        index, stab, boxes = index[ok], stab[ok], boxes[ok]
        if len(index) == 0:
            return None
        return _Kept(logits[index].clone(), iou[index], stab, boxes,
                     torch.full((len(index),), crop_index, dtype=torch.int64))

    # -- one crop ------------------------------------------------------------------------------
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
        whole = crop_index == 0 and self.embedding is not None and \
            self.embedding.input_hw == (ch, cw)
        emb = self.embedding if whole else encode_image(model, crop, device_choice=self.choice)
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats) if self.fast else None
        n_side = amg.points_per_side_of_layer(p.points_per_side, layer,
                                              p.crop_n_points_downscale_factor)
        points = amg.point_grid(n_side) * np.array([[cw, ch]])
        parts = []
        for start in range(0, len(points), p.points_per_batch):
            self.check_stop()
            pts = torch.as_tensor(points[start:start + p.points_per_batch], dtype=torch.float32,
                                  device=self.device)
            coords = pts.clone()
            coords[:, 0] = coords[:, 0] / cw
            coords[:, 1] = coords[:, 1] / ch
            coords = coords * model.image_size
            # with m2m, Meta refines all candidates and filters on the refined IoU
            logits, iou = self._decode_points(
                emb, fast, coords, None if p.use_m2m else p.pred_iou_thresh)
            if p.use_m2m:
                logits, iou = self._refine_m2m(emb, coords.repeat_interleave(3, dim=0), logits)
            kept = self._filter(logits, iou, crop_box, crop_index, image.shape[:2])
            del logits
            if kept is not None:
                parts.append(kept)
            self.done += 1
            if self.on_batch is not None:
                self.on_batch(self.done, self.total)
        del fast, emb
        if not parts:
            return None
        kept = _Kept.cat(parts)
        order = batched_nms(kept.boxes.float(), kept.iou, torch.zeros_like(kept.boxes[:, 0]),
                            iou_threshold=p.box_nms_thresh)
        kept = kept.select(order)
        kept.boxes = kept.boxes + torch.tensor([[x0, y0, x0, y0]], dtype=torch.int64)
        return kept


def _crop_region(crop_box: Sequence[int], model_hw: Tuple[int, int],
                 out_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """A crop of the model's input image, in pixels of the output image (rounded)."""
    (h, w), (oh, ow) = model_hw, out_hw
    x0, y0, x1, y1 = crop_box
    return (int(round(x0 * ow / w)), int(round(y0 * oh / h)), int(round(x1 * ow / w)),
            int(round(y1 * oh / h)))


def full_masks(logits: torch.Tensor, crop_index: torch.Tensor, crops: Sequence[List[int]],
               model_hw: Tuple[int, int], out_hw: Tuple[int, int], mask_threshold: float,
               should_stop: Optional[StopCheck] = None) -> np.ndarray:
    """``(K, H, W)`` bool masks at ``out_hw`` from low-resolution logits of crops of the image.

    Each mask's logits are bilinearly upsampled onto its crop's region of the output image and
    thresholded (:func:`engine.amg.upsampled_masks`: only the pixels of low-resolution cells the
    threshold crosses are interpolated; the same masks up to pixels within float rounding of the
    threshold); outside the crop the mask is empty. At the model's own size this is what Meta's
    generator does; at another size (``input_size_percent`` < 100) the logits are upsampled
    straight to the original size instead of resizing a thresholded small mask.
    """
    oh, ow = out_hw
    out = np.zeros((len(logits), oh, ow), bool)
    for c in torch.unique(crop_index).tolist():
        rx0, ry0, rx1, ry1 = _crop_region(crops[c], model_hw, out_hw)
        index = torch.nonzero(crop_index == c)[:, 0]
        rows = amg.BilinearAxis(logits.shape[-2], ry1 - ry0)
        cols = amg.BilinearAxis(logits.shape[-1], rx1 - rx0)
        for start in range(0, len(index), UPSAMPLE_CHUNK):
            if should_stop is not None and should_stop():
                raise GenerationCancelled("stopped by request")
            idx = index[start:start + UPSAMPLE_CHUNK]
            out[idx.numpy(), ry0:ry1, rx0:rx1] = amg.upsampled_masks(
                logits[idx].float().cpu(), rows, cols, mask_threshold)
    return out


def remove_small_regions(masks: np.ndarray, min_area: int,
                         nms_thresh: float) -> Tuple[np.ndarray, np.ndarray]:
    """Fill holes and drop islands below ``min_area`` pixels, then drop new duplicates.

    As Meta's ``postprocess_small_regions``: every mask loses its small holes then its small
    islands; box NMS at ``nms_thresh`` then prefers masks that did not change. ``masks`` is edited
    in place (no second copy of all masks).

    Returns:
        the kept masks (a view of ``masks``) and their indices into the input, increasing.
    """
    from torchvision.ops import batched_nms

    if len(masks) == 0:
        return masks, np.zeros(0, np.int64)
    unchanged = np.empty(len(masks), np.float32)
    boxes = torch.zeros((len(masks), 4), dtype=torch.int64)
    for i in range(len(masks)):
        m, holes = amg.remove_small_regions(masks[i], min_area, "holes")
        m, islands = amg.remove_small_regions(m, min_area, "islands")
        if holes or islands:
            masks[i] = m
        unchanged[i] = float(not (holes or islands))
        boxes[i] = amg.boxes_inclusive(torch.from_numpy(masks[i])[None])[0]
    keep = batched_nms(boxes.float(), torch.from_numpy(unchanged),
                       torch.zeros(len(masks), dtype=torch.int64), iou_threshold=nms_thresh)
    keep = np.sort(keep.numpy())
    for j, k in enumerate(keep):  # compact in place (keep is increasing, so k >= j)
        if j != k:
            masks[j] = masks[k]
    return masks[:len(keep)], keep


def generate(model, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
             device_choice: Optional[DeviceChoice] = None,
             on_batch: Optional[ProgressCallback] = None,
             should_stop: Optional[StopCheck] = None,
             embedding: Optional[ImageEmbedding] = None) -> Segmentation:
    """Masks for the whole image: Meta's automatic mask generator's masks, computed leaner.

    Args:
        model: a built SAM 2 model in eval mode.
        image: HWC RGB uint8, original size.
        params: the generator's parameters (``min_mask_region_area`` in original-image pixels).
        scale: ``input_size_percent / 100``: the model sees the image resized by it; masks come
            back at the original size.
        on_batch: called as ``on_batch(done, total)`` after each batch of ``points_per_batch``
            points (``total = count_steps(params)``).
        should_stop: polled between decoder chunks and encoder blocks; when it returns True the
            run stops and :class:`GenerationCancelled` is raised.
        embedding: the embedding of ``image`` resized by ``scale`` (e.g. the prompt predictor's
            cached one): used for the whole-image crop instead of encoding it again.
    Returns:
        a :class:`Segmentation` sorted by decreasing area, with predicted IoU as ``scores`` and
        stability scores.
    """
    from torchvision.ops import batched_nms, box_area

    choice = device_choice or select_device(False)
    run = _Run(model, params, choice, on_batch, should_stop, embedding)
    small = resize_for_input(image, scale)
    model_hw = small.shape[:2]
    out_hw = image.shape[:2]
    crops = amg.crop_boxes(model_hw, params.crop_n_layers, params.crop_overlap_ratio)
    parts = []
    with torch.no_grad(), choice.autocast(), stoppable_encoder(model, run.should_stop):
        for index, (box, layer) in enumerate(crops):
            kept = run.process_crop(small, box, layer, index)
            if kept is not None:
                parts.append(kept)
    if not parts:
        return Segmentation.empty(*out_hw)
    kept = _Kept.cat(parts)
    if len(crops) > 1:
        crop_t = torch.tensor([c for c, _ in crops], dtype=torch.int64)[kept.crop]
        order = batched_nms(kept.boxes.float(), 1 / box_area(crop_t),
                            torch.zeros_like(kept.boxes[:, 0]), iou_threshold=params.crop_nms_thresh)
        kept = kept.select(order)
    run.check_stop()
    masks = full_masks(kept.logits, kept.crop, [c for c, _ in crops], model_hw, out_hw,
                       params.mask_threshold, run.should_stop)
    iou = kept.iou.float().cpu().numpy()
    stability = kept.stability.float().cpu().numpy()
    del kept
    if params.min_mask_region_area > 0:
        masks, index = remove_small_regions(masks, params.min_mask_region_area,
                                            max(params.box_nms_thresh, params.crop_nms_thresh))
        iou, stability = iou[index], stability[index]
    order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
    _permute_rows(masks, order)
    return Segmentation.from_masks(masks, iou[order], stability=stability[order])


def _permute_rows(array: np.ndarray, order: np.ndarray) -> None:
    """``array[:] = array[order]`` in place, with one spare row instead of a full copy."""
    done = np.zeros(len(order), bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        spare = array[start].copy()
        i = start
        while True:
            done[i] = True
            j = order[i]
            if j == start:
                array[i] = spare
                break
            array[i] = array[j]
            i = j
