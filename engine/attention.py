"""Attention pieces of the reordered mask decoder (:mod:`engine.decoder`): projections by head,
the image tokens before the last layer norm, the CPU's folded final attention, softmaxes.

Shapes: ``B`` prompts, ``H`` heads, ``T`` prompt tokens, ``N`` = 4096 image tokens, ``C`` = 256
channels, ``d`` = channels per head.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

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


def final_attention_folded(attn, q_in: torch.Tensor, image: "ImageTokens") -> torch.Tensor:
    """``attn(q=q_in, k=keys + pe, v=keys)`` with ``keys = norm(x)`` never written (float32
    on the CPU: the folded scores subtract two large terms, which lower precision spoils).

    With ``keys = (x - m) r g + b`` (``m``, ``r`` each pixel's mean and inverse deviation),
    a query's scores are ``r ((w g) . x - m (w . g)) + w . pe`` (plus a constant) and its
    attention-weighted keys ``g ((p r) x - (p r) . m) + b``, so the normalised ``(B, N, C)``
    tokens are never written for prompts that the IoU filter drops.
    """
    x, mean, rstd = image.x, image.mean, image.rstd
    g, beta = image.norm.weight, image.norm.bias
    h = attn.num_heads
    bsz, t, _ = q_in.shape
    n, c = x.shape[1], x.shape[2]
    d = attn.internal_dim // h
    qh = heads(linear(q_in, attn.q_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
    wk = attn.k_proj.weight.reshape(h, d, c)
    folded = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(bsz, h * t, c)
    fg = folded * g
    scores = torch.bmm(fg, x.transpose(1, 2))  # (B, H*T, N)
    scores = scores.sub_(fg.sum(dim=-1, keepdim=True) * mean[:, None, :]).mul_(
        rstd[:, None, :])
    # w . b and the key projection's bias are constant over the pixels: the softmax ignores
    # them
    scores.view(bsz * h * t, n).addmm_(folded.reshape(bsz * h * t, c), image.pe[0].t())
    probs = torch.softmax(scores, dim=-1).mul_(rstd[:, None, :])
    mixed = torch.bmm(probs, x).sub_((probs @ mean[:, :, None]))  # (B, H*T, C)
    mixed = (mixed * g + beta).reshape(bsz, h, t, c)
    wv = attn.v_proj.weight.reshape(h, d, c)
    out = torch.einsum("bhtc,hdc->bhtd", mixed, wv) + attn.v_proj.bias.reshape(1, h, 1, d)
    return linear(merge(out), attn.out_proj)


class ImageTokens:
    """The decoder's image tokens ``x`` ``(B, N, C)`` float32 before the last layer norm
    ``norm``.

    In the exact formulation, each pixel's mean and inverse standard deviation ``(B, N)`` (as
    ``norm`` computes them) serve the folded final attention; otherwise ``norm(x)`` is computed
    once and kept, with its products-dtype copies for the final attention.
    """

    def __init__(self, x: torch.Tensor, norm: torch.nn.LayerNorm, pe: torch.Tensor,
                 dtype: torch.dtype, exact: bool,
                 stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 keys: Optional[torch.Tensor] = None):
        self.x, self.norm, self.pe, self.dtype, self.exact = x, norm, pe, dtype, exact
        self._keys, self._keys_low, self._kp_low = keys, None, None
        if exact and stats is None:
            # E[x^2] - E[x]^2 from two fast reductions (torch.var_mean is 10x slower on CPU);
            # float32 keeps the digits here (tests/test_decoder.py compares with the model)
            mean = x.mean(dim=-1)
            square = torch.linalg.vector_norm(x, dim=-1).square_().div_(x.shape[-1])
            stats = mean, torch.rsqrt((square - mean * mean).clamp_(min=0.0) + norm.eps)
        self.mean, self.rstd = stats if stats is not None else (None, None)

    def select(self, index: torch.Tensor) -> "ImageTokens":
        stats = None if self.mean is None else (self.mean[index], self.rstd[index])
        keys = None if self._keys is None else self._keys[index]
        return ImageTokens(self.x[index], self.norm, self.pe, self.dtype, self.exact, stats, keys)

    def keys(self) -> torch.Tensor:
        """The normalised image tokens ``norm(x)`` (float32; computed once)."""
        if self._keys is None:
            self._keys = self.norm(self.x)
        return self._keys

    def keys_low(self) -> torch.Tensor:
        """:meth:`keys` in the products' dtype (computed once)."""
        if self._keys_low is None:
            self._keys_low = self.keys().to(self.dtype)
        return self._keys_low

    def kp_low(self) -> torch.Tensor:
        """``keys + pe`` in the products' dtype (computed once)."""
        if self._kp_low is None:
            self._kp_low = (self.keys() + self.pe).to(self.dtype)
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
