"""Automatic mode's last step: full-size masks of the candidates that survived NMS.

The candidates are kept as 256x256 low-resolution logits until here; only the survivors are
upsampled to the output image, once, and thresholded:

* on the CPU by cells (:func:`engine.automatic.cells.upsampled_masks`: only the cells a threshold crosses
  are interpolated), then sorted by area in place;
* on other devices (GPUs) with ``F.interpolate`` in chunks of at most :data:`UPSAMPLE_BYTES`,
  once, into one device tensor whose areas, boxes and order by decreasing area are computed
  there: two copies to the host in all (:func:`masks_on_device`).

``min_mask_region_area`` then edits the masks on the CPU (OpenCV), as Meta's
``postprocess_small_regions`` does.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import amg, bilinear, cells
from ..cancel import GenerationCancelled, StopCheck
from ..image.masks import boxes_inclusive
from ..image.results import Segmentation

UPSAMPLE_CHUNK = 8  # CPU: candidates upsampled to full resolution at once (8 x H x W float32)
# other devices: candidates upsampled at once so that their float32 logits stay within this
UPSAMPLE_BYTES = 256 << 20
# other devices: final masks made on the device and copied to the host at once up to this size
MASK_BYTES = 2 << 30


def upsample_chunk(device: torch.device, hw: Tuple[int, int]) -> int:
    """Candidates upsampled to ``hw`` at once on ``device``: :data:`UPSAMPLE_CHUNK` on the CPU,
    else as many as :data:`UPSAMPLE_BYTES` of float32 logits hold."""
    if device.type == "cpu":
        return UPSAMPLE_CHUNK
    return max(1, UPSAMPLE_BYTES // (4 * hw[0] * hw[1]))


def crop_region(crop_box: Sequence[int], model_hw: Tuple[int, int],
                out_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """A crop of the model's input image, in pixels of the output image (rounded)."""
    (h, w), (oh, ow) = model_hw, out_hw
    x0, y0, x1, y1 = crop_box
    return (int(round(x0 * ow / w)), int(round(y0 * oh / h)), int(round(x1 * ow / w)),
            int(round(y1 * oh / h)))


def _check(should_stop: Optional[StopCheck]) -> None:
    if should_stop is not None and should_stop():
        raise GenerationCancelled("stopped by request")


def masks_by_cells(logits: torch.Tensor, crop_index: torch.Tensor, crops: Sequence[List[int]],
                   model_hw: Tuple[int, int], out_hw: Tuple[int, int], mask_threshold: float,
                   should_stop: Optional[StopCheck] = None) -> np.ndarray:
    """``(K, H, W)`` bool masks at ``out_hw`` from CPU low-resolution logits of crops of the image.

    Each mask's logits are bilinearly upsampled onto its crop's region of the output image and
    thresholded (:func:`engine.automatic.cells.upsampled_masks`: the same masks up to pixels within float
    rounding of the threshold); outside the crop the mask is empty. At the model's own size this
    is what Meta's generator does; at another size (``input_size_percent`` < 100) the logits are
    upsampled straight to the original size instead of resizing a thresholded small mask.
    """
    oh, ow = out_hw
    out = np.zeros((len(logits), oh, ow), bool)
    for c in torch.unique(crop_index).tolist():
        rx0, ry0, rx1, ry1 = crop_region(crops[c], model_hw, out_hw)
        index = torch.nonzero(crop_index == c)[:, 0]
        rows = bilinear.BilinearAxis(logits.shape[-2], ry1 - ry0)
        cols = bilinear.BilinearAxis(logits.shape[-1], rx1 - rx0)
        for start in range(0, len(index), UPSAMPLE_CHUNK):
            _check(should_stop)
            idx = index[start:start + UPSAMPLE_CHUNK]
            out[idx.numpy(), ry0:ry1, rx0:rx1] = cells.upsampled_masks(
                logits[idx].float(), rows, cols, mask_threshold)
    return out


def masks_on_device(logits: torch.Tensor, crop_index: torch.Tensor, crops: Sequence[List[int]],
                    model_hw: Tuple[int, int], out_hw: Tuple[int, int], mask_threshold: float,
                    should_stop: Optional[StopCheck] = None,
                    values: Sequence[torch.Tensor] = ()
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[np.ndarray]]:
    """As :func:`masks_by_cells` with ``F.interpolate`` on the logits' device, sorted by
    decreasing area (ties in input order).

    All masks are made in one pass of chunks of :data:`UPSAMPLE_BYTES` of logits into one
    ``(K, H, W)`` device tensor, their areas and boxes computed on it at once, sorted there and
    brought to the host in one copy, their order and boxes in another (one more, for the crop of
    each mask, with several crops). When the masks exceed :data:`MASK_BYTES`, each chunk is
    copied to the host as it is made and the host sorts them in place.

    Returns:
        masks ``(K, H, W)`` bool, ``order`` ``(K,)`` (mask i is input ``order[i]``), boxes
        ``(K, 4)`` float32 inclusive XYXY (zeros for an empty mask) and ``values`` (``(K,)``
        device tensors, e.g. scores) as float32 arrays in the masks' order, in the same copy.
    """
    oh, ow = out_hw
    dev = logits.device
    k = len(logits)
    # which crop each mask comes from, on the host (a copy only with several crops)
    crop_of = np.zeros(k, np.int64) if len(crops) == 1 else crop_index.cpu().numpy()
    on_device = k * oh * ow <= MASK_BYTES
    masks = torch.zeros((k, oh, ow), dtype=torch.bool, device=dev) if on_device else None
    host = None if on_device else np.zeros((k, oh, ow), bool)
    areas = torch.zeros(k, dtype=torch.int64, device=dev)
    boxes = torch.zeros((k, 4), dtype=torch.int64, device=dev)
    for c in np.unique(crop_of).tolist():
        rx0, ry0, rx1, ry1 = crop_region(crops[c], model_hw, out_hw)
        positions = np.flatnonzero(crop_of == c)
        step = upsample_chunk(dev, (ry1 - ry0, rx1 - rx0))
        shift = torch.tensor([rx0, ry0, rx0, ry0], dtype=torch.int64, device=dev)
        for start in range(0, len(positions), step):
            _check(should_stop)
            pos = positions[start:start + step]
            idx = (slice(start, start + len(pos)) if len(pos) == k else
                   torch.as_tensor(pos, dtype=torch.int64, device=dev))
            mask = F.interpolate(logits[idx][:, None].float(), (ry1 - ry0, rx1 - rx0),
                                 mode="bilinear", align_corners=False)[:, 0] > mask_threshold
            areas[idx] = mask.sum(dim=(1, 2), dtype=torch.int64)
            boxes[idx] = (boxes_inclusive(mask) + shift) * mask.flatten(1).any(dim=1)[:, None]
            if on_device:
                masks[idx, ry0:ry1, rx0:rx1] = mask
            else:
                host[pos, ry0:ry1, rx0:rx1] = mask.cpu().numpy()
    order = torch.argsort(-areas, stable=True)
    # order, boxes and values in one copy: order and boxes are exact in float32 (below 2**24)
    info = torch.cat([order[:, None].float(), boxes[order].float()] +
                     [v[order].float()[:, None] for v in values], dim=1).cpu().numpy()
    order_np = info[:, 0].astype(np.int64)
    ordered = [info[:, 5 + i] for i in range(len(values))]
    if on_device:
        return masks[order].cpu().numpy(), order_np, info[:, 1:5], ordered
    _permute_rows(host, order_np)
    return host, order_np, info[:, 1:5], ordered


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
        boxes[i] = boxes_inclusive(torch.from_numpy(masks[i])[None])[0]
    keep = batched_nms(boxes.float(), torch.from_numpy(unchanged),
                       torch.zeros(len(masks), dtype=torch.int64), iou_threshold=nms_thresh)
    keep = np.sort(keep.numpy())
    for j, k in enumerate(keep):  # compact in place (keep is increasing, so k >= j)
        if j != k:
            masks[j] = masks[k]
    return masks[:len(keep)], keep


def final_masks(logits: torch.Tensor, crop_index: torch.Tensor, iou: torch.Tensor,
                stability: torch.Tensor, crops: Sequence[List[int]], model_hw: Tuple[int, int],
                out_hw: Tuple[int, int], params, should_stop: Optional[StopCheck] = None
                ) -> Segmentation:
    """The :class:`Segmentation` of K surviving candidates, sorted by decreasing area.

    Args:
        logits: ``(K, 256, 256)`` low-resolution logits; ``crop_index``, ``iou``, ``stability``:
            ``(K,)`` each, on the same device.
        crops: crop boxes in the model's input frame (``model_hw``); ``out_hw``: output size.
        params: ``mask_threshold``, ``min_mask_region_area``, ``box_nms_thresh`` and
            ``crop_nms_thresh`` (an ``AutomaticParams``).
    """
    boxes = None
    if logits.device.type == "cpu":
        iou_np, stab_np = iou.float().numpy(), stability.float().numpy()
        masks = masks_by_cells(logits, crop_index, crops, model_hw, out_hw,
                               params.mask_threshold, should_stop)
    else:
        masks, _, boxes, (iou_np, stab_np) = masks_on_device(
            logits, crop_index, crops, model_hw, out_hw, params.mask_threshold, should_stop,
            values=(iou, stability))
    if params.min_mask_region_area > 0:
        masks, index = remove_small_regions(masks, params.min_mask_region_area,
                                            max(params.box_nms_thresh, params.crop_nms_thresh))
        iou_np, stab_np, boxes = iou_np[index], stab_np[index], None
    if boxes is not None:
        return Segmentation(masks, iou_np, boxes, stab_np)
    order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
    _permute_rows(masks, order)
    return Segmentation.from_masks(masks, iou_np[order], stability=stab_np[order])


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
