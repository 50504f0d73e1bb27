"""Attention between a prompt's few tokens and the image tokens, projections folded into
matrices made once per attention module (the formulation GPUs and low precisions use).

SAM 2's ``Attention`` projects queries, keys and values to ``H`` heads of ``d`` channels, and
the output back. When one side has only ``T`` ~ 8 tokens, the image side (``N`` = 4096 tokens)
need not be projected at all: each head's scores are the image tokens times ``C``-wide vectors
made from the few tokens, and each head's output is a mix of the image tokens (or of the few
tokens' values) through one product. Folding the per-head projections into
``(H * C, C)`` matrices, computed once and kept, makes each side a single ``linear`` on the few
tokens: with the rows of the few-token side ordered token-major (``(T, H)``), every reshape
between the products is a view and no head is split or merged by a copy.

* :func:`token_to_image`: ``attn(q=tokens, k=image + pe, v=image)`` in 5 kernels (linear,
  scores, softmax, mix, linear) instead of 11;
* :func:`image_to_token`: ``residual + attn(q=image + pe, k=tokens, v=tokens)`` in 5 (linear,
  scores with their bias, softmax over each head's tokens, linear, accumulation) instead of 13.

Scale, biases and the output projection are folded exactly; the key projection's bias of
:func:`token_to_image` is dropped (it adds one constant to a query's scores, which the softmax
over the image ignores). Float rounding changes, nothing else (``tests/decoder``).

Shapes: ``B`` prompts, ``T`` few tokens, ``N`` image tokens, ``C`` channels (the attention's
``embedding_dim``), ``H`` heads of ``d = internal_dim / H`` channels. Weights are folded in
float32; the image-side products run in ``dtype`` with float32 softmaxes, as
:mod:`engine.decoder.point_decoder` describes.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from .attention import softmax32
from .cache import per_model


def _by_head(attn) -> Tuple[int, int, float]:
    h = attn.num_heads
    d = attn.internal_dim // h
    return h, d, 1.0 / math.sqrt(d)


def folds(attn) -> Dict[str, torch.Tensor]:
    """The folded matrices of SAM 2 ``Attention`` module ``attn``, made once per model
    (:func:`engine.decoder.cache.per_model`), float32 on its device.

    ``q_fold`` ``(H*C, C)``, ``q_fold_b`` ``(H*C,)``: a query token to its per-head vectors
    against the image tokens; ``mix_out`` ``(C, H*C)``, ``mix_out_b``: per-head mixes of image
    tokens to the output. ``k_fold`` ``(H*(C+1), C)``, ``k_fold_b``: a key token to its per-head
    vectors against image queries, each followed by its score bias; ``v_out`` ``(H*C, C)``,
    ``v_out_b``: a value token to its per-head contribution to the output (the output bias
    split evenly over the heads, whose weights sum to one per pixel).
    """
    params = (attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias,
              attn.v_proj.weight, attn.v_proj.bias, attn.out_proj.weight, attn.out_proj.bias)
    return per_model(attn, "folds", params, lambda: _make_folds(attn, params))


def _make_folds(attn, params) -> Dict[str, torch.Tensor]:
    h, d, scale = _by_head(attn)
    wq, bq, wk, bk, wv, bv, wo, bo = (p.float() for p in params)
    c_in = wq.shape[1]
    wq_h, wk_h, wv_h = (w.reshape(h, d, c_in) for w in (wq, wk, wv))
    bq_h, bk_h, bv_h = (b.reshape(h, d) for b in (bq, bk, bv))
    wo_h = wo.reshape(wo.shape[0], h, d).transpose(0, 1)  # (H, C, d)
    # token-to-image: scores_h = (Wq_h t + bq_h) . (Wk_h x) * scale = x . q_fold_h(t)
    q_fold = torch.bmm(wk_h.transpose(1, 2), wq_h) * scale  # (H, C, C): Wk_h^T Wq_h
    q_fold_b = torch.bmm(wk_h.transpose(1, 2), bq_h[:, :, None])[:, :, 0] * scale
    mix_out = torch.bmm(wo_h, wv_h)  # (H, C, C): Wo_h Wv_h
    mix_out_b = wo @ bv + bo
    # image-to-token: scores_h = (Wq_h x + bq_h) . (Wk_h t + bk_h) * scale
    #                          = x . [Wq_h^T (Wk_h t + bk_h)] + bq_h . (Wk_h t + bk_h)
    k_vec = torch.bmm(wq_h.transpose(1, 2), wk_h)  # (H, C, C_in)
    k_vec_b = torch.bmm(wq_h.transpose(1, 2), bk_h[:, :, None])[:, :, 0]
    k_bias = torch.bmm(bq_h[:, None, :], wk_h)  # (H, 1, C_in)
    k_bias_b = (bq_h * bk_h).sum(1, keepdim=True)  # (H, 1)
    k_fold = torch.cat([k_vec, k_bias], dim=1) * scale  # (H, C+1, C_in)
    k_fold_b = torch.cat([k_vec_b, k_bias_b], dim=1) * scale
    v_out = torch.bmm(wo_h, wv_h)  # (H, C, C_in): Wo_h Wv_h
    v_out_b = torch.bmm(wo_h, bv_h[:, :, None])[:, :, 0] + bo / h
    return {
        "q_fold": q_fold.reshape(-1, c_in), "q_fold_b": q_fold_b.reshape(-1),
        "mix_out": mix_out.transpose(0, 1).reshape(wo.shape[0], -1),
        "mix_out_b": mix_out_b,
        "k_fold": k_fold.reshape(-1, c_in), "k_fold_b": k_fold_b.reshape(-1),
        "v_out": v_out.reshape(-1, c_in), "v_out_b": v_out_b.reshape(-1),
    }


def token_to_image(attn, q_in: torch.Tensor, keys: torch.Tensor, kp: torch.Tensor
                   ) -> torch.Tensor:
    """``attn(q=q_in, k=kp, v=keys)``: ``q_in`` ``(B, T, C)`` float32, ``keys`` and ``kp``
    ``(B or 1, N, C)`` in the products' dtype -> ``(B, T, C)`` float32."""
    f = folds(attn)
    h = attn.num_heads
    bsz, t, c = q_in.shape
    dtype = keys.dtype
    vec = F.linear(q_in, f["q_fold"], f["q_fold_b"]).view(bsz, t * h, c)  # rows (t, h)
    probs = softmax32(torch.matmul(vec.to(dtype), kp.transpose(1, 2)), -1)  # (B, T*H, N)
    mixed = torch.matmul(probs.to(dtype), keys).float().view(bsz, t, h * c)
    return F.linear(mixed, f["mix_out"], f["mix_out_b"])


def image_to_token(attn, kp: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor,
                   residual: torch.Tensor) -> torch.Tensor:
    """``residual + attn(q=kp, k=k_in, v=v_in)``, written into ``residual`` ``(B, N, C)``
    float32 (returned): ``kp`` ``(B, N, C)`` in the products' dtype, ``k_in`` and ``v_in``
    ``(B, T, C)`` float32. Each pixel's softmax runs over a head's T tokens."""
    f = folds(attn)
    h = attn.num_heads
    bsz, t, c = v_in.shape
    n = kp.shape[1]
    dtype = kp.dtype
    ext = F.linear(k_in, f["k_fold"], f["k_fold_b"]).view(bsz, t * h, c + 1)  # rows (t, h)
    scores = torch.baddbmm(ext[..., c:].to(dtype), ext[..., :c].to(dtype),
                           kp.transpose(1, 2))  # (B, T*H, N)
    probs = softmax32(scores.view(bsz, t, h, n), 1)
    values = F.linear(v_in, f["v_out"], f["v_out_b"]).view(bsz, t * h, c)
    flat = probs.view(bsz, t * h, n).to(dtype).transpose(1, 2)  # (B, N, T*H)
    if dtype == residual.dtype:  # accumulated in place: no (B, N, C) temporary
        return residual.baddbmm_(flat, values)
    return residual.add_(torch.bmm(flat, values.to(dtype)))
