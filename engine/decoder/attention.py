"""Attention pieces of the reordered mask decoder (:mod:`engine.decoder.point_decoder`):
projections by head, the image tokens before the last layer norm (GPU / low-precision
formulation), softmaxes.

Shapes: ``B`` prompts, ``H`` heads, ``T`` prompt tokens, ``N`` = 4096 image tokens, ``C`` = 256
channels, ``d`` = channels per head.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` without the module call."""
    return F.linear(x, layer.weight, layer.bias)


def heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, N, H*d)`` -> ``(B, H, N, d)``."""
    b, n, c = x.shape
    return x.reshape(b, n, n_heads, c // n_heads).transpose(1, 2)


def merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, N, d)`` -> ``(B, N, H*d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class ImageTokens:
    """The decoder's image tokens ``x`` ``(B, N, C)`` float32 before the last layer norm
    ``norm`` (the formulation GPUs and low precisions use): ``norm(x)`` is computed once and
    kept instead of ``x``, with its products-dtype copies for the final attention."""

    def __init__(self, x: torch.Tensor, norm: torch.nn.LayerNorm, pe: torch.Tensor,
                 dtype: torch.dtype, keys: Optional[torch.Tensor] = None):
        self.norm, self.pe, self.dtype = norm, pe, dtype
        self.x = None if keys is not None else x
        self._keys, self._keys_low, self._kp_low = keys, None, None

    def select(self, index: torch.Tensor) -> "ImageTokens":
        if self._keys is not None:
            return ImageTokens(None, self.norm, self.pe, self.dtype, self._keys[index])
        return ImageTokens(self.x[index], self.norm, self.pe, self.dtype)

    def keys(self) -> torch.Tensor:
        """The normalised image tokens ``norm(x)`` (float32; computed once, then ``x`` is
        dropped: nothing else reads it, and a batch's memory is counted in such tensors)."""
        if self._keys is None:
            self._keys = self.norm(self.x)
            self.x = None
        return self._keys

    def keys_low(self) -> torch.Tensor:
        """:meth:`keys` in the products' dtype (computed once)."""
        if self._keys_low is None:
            self._keys_low = self.keys().to(self.dtype)
        return self._keys_low

    def kp_low(self) -> torch.Tensor:
        """``keys + pe`` in the products' dtype (computed once)."""
        if self._kp_low is None:
            keys = self.keys()
            # summed in float32 and rounded once as it is written (no float32 temporary)
            self._kp_low = torch.add(keys, self.pe, out=torch.empty_like(keys, dtype=self.dtype))
        return self._kp_low


def softmax32(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """``softmax`` in float32 of scores in any dtype (a low-precision softmax would round the
    probabilities; passing ``dtype`` costs 10% on float32 input on a CPU, so only when needed)."""
    if scores.dtype == torch.float32:
        return torch.softmax(scores, dim=dim)
    return torch.softmax(scores, dim=dim, dtype=torch.float32)


def softmax_tokens(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 2 of ``(B, H, T, N)`` float32 scores (each pixel's weights over a head's
    T tokens), in place: ``exp(x - max) / sum`` as ``torch.softmax``, vectorised over N (CPU,
    float32 only: in place, in lower precision, it would round every intermediate)."""
    scores = scores.sub_(scores.amax(dim=2, keepdim=True)).exp_()
    return scores.div_(scores.sum(dim=2, keepdim=True))
