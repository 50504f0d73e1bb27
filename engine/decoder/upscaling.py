"""SAM 2's mask upscaling (two stride-2 transposed convolutions) as matrix products.

``ConvTranspose2d(k=2, s=2)`` maps each input pixel to a 2x2 block of output pixels: it is a
``(C_in, 4 * C_out)`` matrix. Keeping every output in the layout "input pixel, then its 2x2 block,
then channels" lets the high-resolution features and the bias be added inside the matrix product,
the channel LayerNorm run as a fused ``layer_norm`` over the last dim, and the 32-channel result
be projected on the hypernetwork vectors before the pixels are put back in raster order (3
channels instead of 32 to reorder). Same function as the decoder's ``output_upscaling`` followed
by its hypernetwork product, to float rounding.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F

# Prompts upscaled together on a CPU (benchmarks/bench_floors.py; 2 threads, 32 MiB L3: 4 at
# once cost 1.5x more per prompt than 1 or 2, measured before the factored decoder).
CPU_CHUNK = 1


class Upscaler:
    """``hyper @ output_upscaling(keys)`` for one image's high-resolution features.

    Args:
        upscaling: the decoder's ``output_upscaling`` (checked by ``decoder.supports``).
        feat_s0: ``(1, c2, 4h, 4w)`` and ``feat_s1``: ``(1, c1, 2h, 2w)`` high-resolution maps.
        hw: ``(h, w)`` of the image tokens (64 x 64).
        dtype: dtype of the products and the activations (float32, bfloat16 or float16); the
            layer norm's statistics are float32 inside ``F.layer_norm`` whatever the dtype.
        per_prompt: one product per prompt in a Python loop for the second convolution (1.3x
            faster on a CPU than one batched product of a broadcast matrix); else one batched
            product (GPUs).
        chunk: prompts upscaled together (None: all of a call). On a CPU, :data:`CPU_CHUNK`:
            a prompt's intermediates (4 MiB of first-convolution output, 8 MiB of
            second-convolution output) then stay nearer the caches between the steps.
    """

    def __init__(self, upscaling, feat_s0: torch.Tensor, feat_s1: torch.Tensor, hw,
                 dtype: torch.dtype = torch.float32, per_prompt: bool = True,
                 chunk: Optional[int] = None):
        dc1, ln1, self.act1, dc2, self.act2 = upscaling
        h, w = self.hw = tuple(hw)
        c1, c2 = self.c1, self.c2 = dc1.out_channels, dc2.out_channels
        self.dtype, self.per_prompt, self.eps, self.chunk = dtype, per_prompt, ln1.eps, chunk
        # W1[c, (i, j, o)] = dc1.weight[c, o, i, j]
        self.w1 = dc1.weight.permute(0, 2, 3, 1).reshape(dc1.in_channels, 4 * c1).to(dtype)
        # feat_s1[0, o, 2y+i, 2x+j] -> F1[(y, x), (i, j, o)], plus the bias (added in float32)
        f1 = feat_s1[0].float().reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0)
        self.f1 = (f1 + dc1.bias).reshape(1, h * w, 4 * c1).to(dtype)
        self.w2 = dc2.weight.permute(0, 2, 3, 1).reshape(dc2.in_channels, 4 * c2).to(dtype)
        # feat_s0[0, o, 4y+2i+k, 4x+2j+l] -> F2[(y, x, i, j), (k, l, o)], plus the bias
        f2 = feat_s0[0].float().reshape(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0)
        self.f2 = (f2 + dc2.bias).reshape(1, h * w * 4, 4 * c2).to(dtype)
        self.ln_w, self.ln_b = ln1.weight.to(dtype), ln1.bias.to(dtype)

    def __call__(self, keys, hyper: torch.Tensor, prompt: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mask logits ``(B, M, 4h, 4w)`` float32 of image tokens ``keys`` ``(B, h*w, C)`` and
        hypernetwork vectors ``hyper`` ``(B, M, c2)``.

        ``keys`` may instead be an object that gives the first convolution's output itself
        (``len(keys)`` prompts, ``keys.conv1(start, stop)``: ``(b, h*w, 4*c1)`` float32, bias
        and high-resolution features included, pixels then 2x2 blocks then channels, as
        :meth:`first` returns it): the decoder's factored image tokens, which never write the
        ``(B, h*w, C)`` tokens.

        With ``prompt`` and ``mask`` (``(K,)`` each, ``prompt`` non-decreasing), only those K
        (prompt, mask) pairs are put back in raster order: ``(K, 4h, 4w)``.
        """
        conv1 = (lambda a, b: self.first(keys[a:b])) if torch.is_tensor(keys) else keys.conv1
        bsz = len(keys)
        if self.chunk is None or bsz <= self.chunk:
            return self._upscale(conv1(0, bsz), hyper, prompt, mask)
        parts = []
        for start in range(0, bsz, self.chunk):
            stop = start + self.chunk
            if prompt is None:
                parts.append(self._upscale(conv1(start, stop), hyper[start:stop]))
                continue
            pick = (prompt >= start) & (prompt < stop)
            if bool(pick.any()):  # chunks are used on the CPU only: no device sync
                parts.append(self._upscale(conv1(start, stop), hyper[start:stop],
                                           prompt[pick] - start, mask[pick]))
        return torch.cat(parts)

    def from_first(self, first: List[torch.Tensor], hyper: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` from the first convolution's output (:meth:`first`), given in a
        one-element list that is emptied: the output is then freed as soon as it is normalised
        (the caller keeps no reference), which lowers the peak memory of a batch by a quarter."""
        return self._upscale(first.pop(), hyper)

    def first(self, keys: torch.Tensor) -> torch.Tensor:
        """The first convolution of image tokens ``(B, h*w, C)``: ``(B, h*w, 4*c1)`` (input
        pixel, its 2x2 block, channels), high-resolution features and bias added."""
        return torch.baddbmm(self.f1, keys.to(self.dtype), self.w1.expand(len(keys), -1, -1))

    def _upscale(self, up: torch.Tensor, hyper: torch.Tensor,
                 prompt: Optional[torch.Tensor] = None,
                 mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`__call__` for one chunk of prompts, from the first convolution's output."""
        bsz, n, _ = up.shape
        h, w = self.hw
        up = F.layer_norm(up.reshape(bsz, n * 4, self.c1), (self.c1,), self.ln_w, self.ln_b,
                          self.eps)
        up = _activate(self.act1, up)
        if self.per_prompt:
            up2 = up.new_empty((bsz, 4 * n, 4 * self.c2))
            for b in range(bsz):
                torch.addmm(self.f2[0], up[b], self.w2, out=up2[b])
        else:
            up2 = torch.baddbmm(self.f2, up, self.w2.expand(bsz, -1, -1))
        up = _activate(self.act2, up2)  # (B, 4N, 4*c2)
        m = hyper.shape[1]
        out = torch.bmm(up.reshape(bsz, n * 16, self.c2),
                        hyper.to(self.dtype).transpose(1, 2))  # (B, 16N, M)
        # rows are (y, x, i, j, k, l): pixel (4y + 2i + k, 4x + 2j + l)
        if prompt is not None:
            out = out[prompt, :, mask]  # (K, 16N)
            out = out.reshape(len(prompt), h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
            return out.reshape(len(prompt), 4 * h, 4 * w).float()
        out = out.reshape(bsz, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return out.reshape(bsz, m, 4 * h, 4 * w).float()


def _activate(act: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``, in place when ``act`` is a plain ``nn.GELU`` (the upscaling's activations):
    on the CPU, writing a new output of this size costs as much as the GELU itself."""
    if type(act) is torch.nn.GELU:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)
