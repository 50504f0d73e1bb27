"""Automatic mode on a GPU (any device but the CPU): few, large kernels and few host waits.

A GPU is fast at large batched kernels and slow whenever the host waits for it (each wait drains
the queue of launched kernels, and the GPU then idles while the host launches the next ones). So
on such a device a crop's candidates are made without any data-dependent shape until its filters
are applied once:

* the grid's prompts are embedded at once, then decoded in as few calls as memory allows:
  :func:`decode_chunk` prompts per call, ``max(points_per_batch, what`` :func:`decode_budget`
  ``holds)`` at :func:`bytes_per_prompt` each (the whole 32x32 grid on a GPU with 25 GiB free in
  float32, 22 GiB in bfloat16), so ``points_per_batch`` is a lower bound there, not the batch;
  a call is about 85 kernels (``tests/automatic/test_on_device.py``);
* every prompt of a call is upscaled, as Meta's generator does (no selection by predicted IoU,
  which would make the host wait for the count of the prompts that pass); the candidates' logits
  and IoU stay on the device until the crop's candidates are all made (or
  :data:`PENDING_BYTES` of them are), then are filtered at once: one selection by predicted IoU,
  the stability scores and boxes of those in large upsampling chunks, one selection by the
  stability and crop-edge filters: two host waits per crop, whatever the number of points.

The results do not depend on ``points_per_batch`` as long as the grid's calls are the budget's
(``tests/automatic/test_dispatch.py``). The CPU keeps its own tuned path
(:mod:`engine.automatic.generator`).
"""
from __future__ import annotations

import math
from typing import Callable, List, Tuple

import torch

from . import amg, stability
from .candidates import Kept

# bytes the decoder may use per call on a device whose free memory is unknown (not CUDA)
DECODE_BYTES = 4 << 30
# on CUDA: the share of the free memory the decoder may use per call
DECODE_SHARE_OF_FREE = 0.5
# A prompt's share of a decoder call's peak memory, in (N, C) float32 image-token tensors (4 MiB
# each at 64x64x256), measured on the fake accelerator (tests/automatic/test_on_device.py checks
# that it bounds the measured peak with less than 10% to spare). PointDecoder in float32: the
# upscaling's normalised first convolution (1) and second convolution (2), plus its few small
# tensors; in bfloat16 / float16: the second layer's float32 residual stream, its products-dtype
# keys and keys plus positional encoding, the attention's scores and weights (2.65 measured). The
# model's own decoder (other decoders) repeats the image per prompt and keeps more of its
# intermediates (7.02 measured in float32).
TOKEN_COPIES = {torch.float32: 3.05, torch.bfloat16: 2.75, torch.float16: 2.75}
MODEL_DECODER_TOKEN_COPIES = 7.5
# candidates' low-resolution logits kept on the device before a crop's filters must run
PENDING_BYTES = 2 << 30


def decode_budget(device: torch.device) -> int:
    """Bytes one decoder call may use on ``device``: a share of CUDA's free memory, else
    :data:`DECODE_BYTES`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * DECODE_SHARE_OF_FREE)
    return DECODE_BYTES


def bytes_per_prompt(image_embed: torch.Tensor, dtype: torch.dtype = torch.float32,
                     point_decoder: bool = True) -> int:
    """Memory one point prompt costs a batched decoder call (``image_embed`` is
    ``(1, C, h, w)``; ``dtype``: the products' dtype of :class:`engine.decoder.PointDecoder`,
    ``point_decoder`` False for the model's own decoder): :data:`TOKEN_COPIES` float32 copies of
    its ``(h*w, C)`` image tokens."""
    _, c, h, w = image_embed.shape
    copies = TOKEN_COPIES.get(dtype, TOKEN_COPIES[torch.float32]) if point_decoder \
        else MODEL_DECODER_TOKEN_COPIES
    return int(copies * h * w * c * 4)


def upsample_chunk(device: torch.device, hw: Tuple[int, int]) -> int:
    """Candidates upsampled to ``hw`` at once for their stability and boxes: as many as the
    decoder's budget holds at 8 bytes per pixel (float32 logits, two thresholded masks)."""
    return max(1, decode_budget(device) // (8 * hw[0] * hw[1]))


def decode_chunk(device: torch.device, image_embed: torch.Tensor, points_per_batch: int,
                 dtype: torch.dtype = torch.float32, point_decoder: bool = True) -> int:
    """Prompts per decoder call on a GPU: ``points_per_batch`` or as many as the budget holds
    (:func:`bytes_per_prompt` of ``dtype`` and the decoder)."""
    per_prompt = bytes_per_prompt(image_embed, dtype, point_decoder)
    return max(points_per_batch, decode_budget(device) // per_prompt)


def crop_candidates(decode: Callable[[int, int], Tuple[torch.Tensor, torch.Tensor]],
                    n: int, chunk: int, params, crop_box: List[int],
                    crop_index: int, image_hw: Tuple[int, int],
                    on_chunk: Callable[[int], None]) -> List[Kept]:
    """The candidates of one crop's grid that pass Meta's filters, in point-major order.

    Args:
        decode: ``(start, stop)`` -> every candidate of the grid's points ``start:stop``: their
            low-resolution logits ``(3b, 256, 256)`` and predicted IoU ``(3b,)``, float32,
            point-major (refined when ``use_m2m``).
        n: points in the crop's grid; ``chunk``: points per ``decode`` call.
        on_chunk: called with the number of points decoded so far, after each call (progress and
            stop requests).
    """
    parts: List[Kept] = []
    pending: List[Tuple[torch.Tensor, torch.Tensor]] = []
    pending_bytes = 0
    for start in range(0, n, chunk):
        logits, iou = decode(start, min(start + chunk, n))
        pending.append((logits, iou))
        pending_bytes += logits.numel() * logits.element_size()
        on_chunk(min(start + chunk, n))
        if pending_bytes >= PENDING_BYTES:
            parts += _filtered(pending, params, crop_box, crop_index, image_hw)
            pending, pending_bytes = [], 0
    if pending:
        parts += _filtered(pending, params, crop_box, crop_index, image_hw)
    return parts


def _filtered(pending: List[Tuple[torch.Tensor, torch.Tensor]], params, crop_box: List[int],
              crop_index: int, image_hw: Tuple[int, int]) -> List[Kept]:
    """Meta's per-batch filters on all pending candidates at once: two host waits."""
    p = params
    logits = pending[0][0] if len(pending) == 1 else torch.cat([lo for lo, _ in pending])
    iou = pending[0][1] if len(pending) == 1 else torch.cat([i for _, i in pending])
    pending.clear()
    dev = logits.device
    x0, y0, x1, y1 = crop_box
    crop_hw = (y1 - y0, x1 - x0)
    if p.pred_iou_thresh > 0.0:
        index = torch.nonzero(iou > p.pred_iou_thresh)[:, 0]  # host wait 1
    else:
        index = torch.arange(len(iou), device=dev)
    stab, boxes = stability.stability_upsampled(logits, index, crop_hw, p,
                                                upsample_chunk(dev, crop_hw))
    ok = ~amg.near_crop_edge(boxes, crop_box, [0, 0, image_hw[1], image_hw[0]])
    if p.stability_score_thresh > 0.0:
        ok &= stab >= p.stability_score_thresh
    ok = torch.nonzero(ok)[:, 0]  # host wait 2
    if len(ok) == 0:
        return []
    index = index[ok]
    return [Kept(logits[index], iou[index].float(), stab[ok], boxes[ok],
                 torch.full((len(index),), crop_index, dtype=torch.int64, device=dev))]


def steps_done(points_done: int, points_per_batch: int) -> int:
    """Progress steps (batches of ``points_per_batch`` points) covered by ``points_done``."""
    return math.ceil(points_done / points_per_batch)
