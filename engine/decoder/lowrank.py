"""The decoder's second two-way layer and final attention in factored ("low-rank") form: the
CPU's float32 formulation of :mod:`engine.decoder.point_decoder`.

After the first layer, a prompt's image tokens are ``x1 = x0 + P V``: ``x0`` ``(N, C)`` is the
same for every prompt (the image embedding plus the dense embedding and a bias), ``P`` ``(N, K)``
the image-to-token attention weights (``K`` = heads x tokens = 8 x 8 for a point) and ``V``
``(K, C)`` the token values through the output projection. After the second layer they are
``x2 = LN_a(x1) + P2 V2``, in the same form. Every product of the second layer and of the final
attention with those tokens then splits into

* per-image products with ``x0``, computed once (``x0 G W^T`` for each projection ``W`` met
  later, ``G`` a layer norm's gain), which leave ``(T x d) @ (d x N)`` products per prompt and
  head (``d`` = 16 channels per head instead of C = 256);
* products with ``P`` / ``P2`` against ``(K, K)`` matrices (64-wide instead of 256-wide);
* rank-one terms for the layer norms' means and biases.

Each pixel's mean and variance (for ``LN_a`` and the last layer norm) come from the same pieces
(:func:`engine.decoder.factored.stats1`, :func:`engine.decoder.factored.stats2`), and the
upscaling's first convolution reads the factors directly
(:meth:`engine.decoder.factored.FactoredTokens.conv1`): the ``(N, C)`` per-prompt tokens are
never written. Per prompt this halves the decoder's products
(``benchmarks/bench_floors.py``).

The variances are ``E[x^2] - E[x]^2`` from sums of terms: float32 on purpose (lower precision
would lose them to cancellation), which is why only the exact (CPU, float32) formulation uses
this; outputs equal the model's decoder to float32 rounding (``tests/decoder/test_lowrank.py``).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from .attention import heads, linear, merge, softmax_tokens
from .factored import (FactoredTokens, add_factor, head_mm, head_mm_add, read_factor, stats1,
                       stats2)


def _by_head(layer: torch.nn.Linear, n_heads: int) -> torch.Tensor:
    """A projection's weight ``(H*d, C)`` as ``(H, d, C)``."""
    return layer.weight.reshape(n_heads, -1, layer.weight.shape[-1])


def _rows(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(H, d, C)`` weights applied to each row of ``x`` ``(N, C)``: ``(H, d, N)``."""
    return torch.einsum("hdc,nc->hdn", weights, x).contiguous()


def _scaled_queries(attn, x: torch.Tensor, proj: torch.nn.Linear) -> torch.Tensor:
    """``proj(x)`` by head ``(B, H, T, d)``, times the attention's scale."""
    h = attn.num_heads
    return heads(linear(x, proj), h) * (1.0 / math.sqrt(attn.internal_dim // h))


class FactoredLayers:
    """The per-image products of SAM 2's two-layer ``TwoWayTransformer`` for one image, and the
    per-prompt computation of its second layer and final attention from them.

    Args:
        t: the decoder's transformer (two layers, ``decoder.supports``).
        x0: ``(1, N, C)`` float32 first-layer image tokens plus its image-to-token output bias.
        pe: ``(1, N, C)`` positional encoding of the image tokens.
        w1: ``(C, 4 c1)`` the upscaling's first convolution as a matrix, ``f1`` ``(1, N, 4 c1)``
            its bias and high-resolution features (``engine.decoder.upscaling.Upscaler``).
    """

    def __init__(self, t, x0: torch.Tensor, pe: torch.Tensor, w1: torch.Tensor,
                 f1: torch.Tensor):
        first, self.second = t.layers
        self.final = fin = t.final_attn_token_to_image
        x0, pe = x0[0], pe[0]
        self.x0, self.c = x0, x0.shape[-1]
        self.norm_a, self.norm_f = na, nf = first.norm4, self.second.norm4
        self.ga, self.ba = ga, ba = na.weight, na.bias
        gf = nf.weight
        a, b = self.second.cross_attn_token_to_image, self.second.cross_attn_image_to_token
        # layer 1, token-to-image attention: keys LN_a(x1) + pe, values LN_a(x1)
        wk, wv = _by_head(a.k_proj, a.num_heads), _by_head(a.v_proj, a.num_heads)
        self.a_k0, self.a_pe = _rows(wk * ga, x0), _rows(wk, ba + pe)
        self.a_kg, self.a_kga = wk @ ga, wk * ga
        self.a_v0 = _rows(wv * ga, x0).transpose(1, 2).contiguous()  # (H, N, d)
        self.a_vg, self.a_vga = wv @ ga, wv * ga
        self.a_vb = wv @ ba + a.v_proj.bias.reshape(a.num_heads, -1)
        # layer 1, image-to-token attention: queries LN_a(x1) + pe (the query bias is kept:
        # the softmax runs over the tokens, where it is not a constant)
        wq = _by_head(b.q_proj, b.num_heads)
        self.b_q0 = _rows(wq * ga, x0)
        self.b_pe = _rows(wq, ba + pe) + b.q_proj.bias.reshape(b.num_heads, -1, 1)
        self.b_qg, self.b_qga = wq @ ga, wq * ga
        # statistics: x0 against both image-to-token attentions' output directions, by head
        a0 = first.cross_attn_image_to_token
        wo0 = a0.out_proj.weight.reshape(self.c, a0.num_heads, -1).permute(1, 2, 0)
        wo1 = b.out_proj.weight.reshape(self.c, b.num_heads, -1).permute(1, 2, 0)
        self.y0, self.y2, self.y3 = _rows(wo0, x0), _rows(wo0 * ga * ga, x0), _rows(wo1 * ga, x0)
        self.s0, self.s0g2 = (x0 * x0).sum(-1), (x0 * x0 * ga * ga).sum(-1)
        self.x0g, self.x0g2, self.x0gb = x0 @ ga, x0 @ (ga * ga), x0 @ (ga * ba)
        self.x0gbo = x0 @ (ga * b.out_proj.bias)
        # final attention: keys LN_f(x2) + pe, values LN_f(x2)
        wk, wv = _by_head(fin.k_proj, fin.num_heads), _by_head(fin.v_proj, fin.num_heads)
        gfa = gf * ga
        self.f_k0, self.f_pe = _rows(wk * gfa, x0), _rows(wk, pe)
        self.f_k = (wk @ gfa, wk @ (gf * ba), wk @ gf)
        self.f_kgfa, self.f_kgf = wk * gfa, wk * gf
        self.f_v0 = _rows(wv * gfa, x0).transpose(1, 2).contiguous()
        self.f_v = (wv @ gfa, wv @ (gf * ba), wv @ gf)
        self.f_vgfa, self.f_vgf = wv * gfa, wv * gf
        self.f_vb = wv @ nf.bias + fin.v_proj.bias.reshape(fin.num_heads, -1)
        # the upscaling's first convolution of LN_f(x2): W1 with both gains folded in
        self.u_a, self.u_f = gfa[:, None] * w1, gf[:, None] * w1
        self.x0w = x0 @ self.u_a  # (N, 4 c1)
        self.u_k = torch.stack([gfa @ w1, (ba * gf) @ w1, gf @ w1])  # (3, 4 c1)
        self.c0 = f1[0] + nf.bias @ w1

    def _scores(self, qh: torch.Tensor, k0: torch.Tensor, pe: torch.Tensor, wg: torch.Tensor,
                g_dot: torch.Tensor, p: torch.Tensor, v: torch.Tensor, m1: torch.Tensor,
                r1: torch.Tensor) -> torch.Tensor:
        """``qh . W (LN_a(x1)[n] + pe[n])`` ``(B, H*T', N)`` for queries ``qh``
        ``(B, H, T', d)``: ``k0`` = ``W G x0``, ``pe`` = ``W (beta + pe)`` by head
        ``(H, d, N)``, ``wg`` = ``W G``, ``g_dot`` = ``W g``."""
        bsz, h, t, _ = qh.shape
        s = head_mm(qh, k0).reshape(bsz, h * t, -1)
        add_factor(s, qh, wg, v, p, g_dot, m1).mul_(r1[:, None])
        return head_mm_add(s.view(bsz, h, t, -1), qh, pe).view(bsz, h * t, -1)

    def layer1(self, q: torch.Tensor, tokens: torch.Tensor, probs0: torch.Tensor,
               v0: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, FactoredTokens]:
        """The second layer for B prompts.

        Args:
            q: ``(B, T, C)`` the first layer's output tokens; ``tokens`` ``(B, T, C)`` the
                prompt tokens (their positional encoding).
            probs0: ``(B, H, T, N)`` the first layer's image-to-token weights, ``v0``
                ``(B, H, T, d)`` its token values by head, ``v`` ``(B, K, C)`` through the
                output projection (``x1 = x0 + probs0^T v``).

        Returns:
            the output tokens ``(B, T, C)`` and the image tokens as :class:`FactoredTokens`.
        """
        layer = self.second
        bsz, t = q.shape[:2]
        p = probs0.reshape(bsz, -1, probs0.shape[-1])  # (B, K, N)
        m1, r1 = stats1(self, probs0, v0, v)
        qp = q + tokens
        q = layer.norm1(q + layer.self_attn(q=qp, k=qp, v=q))
        # token-to-image attention against LN_a(x1)
        a = layer.cross_attn_token_to_image
        qh = _scaled_queries(a, q + tokens, a.q_proj)
        scores = self._scores(qh, self.a_k0, self.a_pe, self.a_kga, self.a_kg, p, v, m1, r1)
        pr = torch.softmax(scores, dim=-1).mul_(r1[:, None])  # LN_a(x1)'s rows carry r1
        out = head_mm(pr.reshape(bsz, a.num_heads, t, -1), self.a_v0)
        read_factor(out, pr, p, v, self.a_vga, m1, self.a_vg).add_(self.a_vb[:, None])
        q = layer.norm2(q + linear(merge(out), a.out_proj))
        q = layer.norm3(q + layer.mlp(q))
        # image-to-token attention: queries LN_a(x1) + pe, keys and values the tokens
        b = layer.cross_attn_image_to_token
        h = b.num_heads
        kh = _scaled_queries(b, q + tokens, b.k_proj)
        v2h = heads(linear(q, b.v_proj), h)
        scores = self._scores(kh, self.b_q0, self.b_pe, self.b_qga, self.b_qg, p, v, m1, r1)
        probs2 = softmax_tokens(scores.reshape(bsz, h, t, -1))
        wo = b.out_proj.weight.reshape(self.c, h, -1)
        v2 = (torch.einsum("bhtd,chd->bhtc", v2h, wo) + b.out_proj.bias / h
              ).reshape(bsz, h * t, self.c)
        image = FactoredTokens(self, p=p, v=v, p2=probs2.reshape(bsz, h * t, -1), v2=v2,
                               m1=m1, r1=r1, m2=None, r2=None)
        image.m2, image.r2 = stats2(self, probs0, v0, probs2, v2h, image)
        return q, image

    def final_attention(self, q_in: torch.Tensor, img: FactoredTokens) -> torch.Tensor:
        """The final token-to-image attention ``attn(q=q_in, k=LN_f(x2) + pe, v=LN_f(x2))``
        for queries ``q_in`` ``(B, T', C)``: ``(B, T', C)``.

        ``LN_f(x2) = r2 (x2 - m2) g_f + beta_f`` with ``x2 = r1 (x1 - m1) g_a + beta_a +
        P2 V2``: the scores and the values read expand into the factors' terms."""
        attn = self.final
        qh = _scaled_queries(attn, q_in, attn.q_proj)
        bsz, h, t, _ = qh.shape
        k1, k2, k3 = self.f_k
        s = head_mm(qh, self.f_k0).reshape(bsz, h * t, -1)
        add_factor(s, qh, self.f_kgfa, img.v, img.p, k1, img.m1).mul_(img.r1[:, None])
        s.add_((qh * k2[:, None]).sum(-1).reshape(bsz, h * t, 1))
        add_factor(s, qh, self.f_kgf, img.v2, img.p2, k3, img.m2).mul_(img.r2[:, None])
        head_mm_add(s.view(bsz, h, t, -1), qh, self.f_pe)
        w2 = torch.softmax(s, dim=-1).mul_(img.r2[:, None])
        w12 = w2 * img.r1[:, None]
        v1, v2, v3 = self.f_v
        out = head_mm(w12.reshape(bsz, h, t, -1), self.f_v0)
        read_factor(out, w12, img.p, img.v, self.f_vgfa, img.m1, v1)
        out += w2.sum(-1).reshape(bsz, h, t, 1) * v2[:, None]
        read_factor(out, w2, img.p2, img.v2, self.f_vgf, img.m2, v3)
        out += self.f_vb[:, None]
        return linear(merge(out), attn.out_proj)
