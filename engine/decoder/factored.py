"""Image tokens kept as factors (:class:`FactoredTokens`) and the products that read them: the
pieces of :mod:`engine.decoder.lowrank`.

Shapes: ``B`` prompts, ``H`` heads, ``T`` prompt tokens (``K = H*T`` attention rows), ``N`` =
4096 pixels, ``C`` = 256 channels, ``d`` channels per head. Everything is float32 (see
:mod:`engine.decoder.lowrank`).
"""
from __future__ import annotations

from typing import Tuple

import torch


def head_mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w`` for ``a`` ``(B, H, T, k)`` and a per-image ``w`` ``(H, k, N)``: ``(B, H, T, N)``.

    ``torch.matmul`` would broadcast ``w`` by copying it once per prompt (2 MiB each): one
    product per prompt over the heads instead."""
    out = a.new_empty(a.shape[:3] + w.shape[-1:])
    for b in range(a.shape[0]):
        torch.bmm(a[b], w, out=out[b])
    return out


def head_mm_add(out: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out += a @ w`` in place, shapes as :func:`head_mm` (``out`` contiguous)."""
    for b in range(a.shape[0]):
        out[b].baddbmm_(a[b], w)
    return out


def vec(p: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``p^T values`` for ``p`` ``(B, K, N)`` and ``values`` ``(B, K)``: ``(B, N)``."""
    return torch.bmm(values.unsqueeze(1), p).squeeze(1)


def dot_rows(left: torch.Tensor, m: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Pixel by pixel ``left[:, n] . (M right[:, n])`` for ``left`` ``(B, K1, N)``, ``M``
    ``(B, K1, K2)``, ``right`` ``(B, K2, N)``: ``(B, N)`` (the product's fresh output is
    reused: allocating another costs more than the multiplication)."""
    return torch.bmm(m, right).mul_(left).sum(dim=1)


def add_factor(s: torch.Tensor, qh: torch.Tensor, wg: torch.Tensor, v: torch.Tensor,
               p: torch.Tensor, g_dot: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Scores of tokens held as ``... + P V - m g`` (before their layer norm's scale): in place
    ``s += (qh W G V^T) P^T - (qh . W g) m^T``.

    ``s`` ``(B, H*T', N)``; queries ``qh`` ``(B, H, T', d)``; ``wg`` ``(H, d, C)`` a projection
    by head with the gain folded in; ``v`` ``(B, K, C)``; ``p`` ``(B, K, N)``; ``g_dot``
    ``(H, d)`` = ``W g``; ``m`` ``(B, N)`` the pixels' means.
    """
    bsz, h, t, _ = qh.shape
    small = qh @ torch.einsum("hdc,bkc->bhdk", wg, v)  # (B, H, T', K)
    s.baddbmm_(small.reshape(bsz, h * t, -1), p)
    c = (qh * g_dot[:, None]).sum(-1).reshape(bsz, h * t, 1)
    return s.baddbmm_(c, m.unsqueeze(1), alpha=-1.0)


def read_factor(out: torch.Tensor, w: torch.Tensor, p: torch.Tensor, v: torch.Tensor,
                wg: torch.Tensor, m: torch.Tensor, g_dot: torch.Tensor) -> torch.Tensor:
    """The values read through attention weights ``w`` ``(B, H*T', N)`` from tokens held as
    ``... + P V - m g``: in place ``out += (w P^T) (V G W^T) - (w m) (W g)`` by head, ``out``
    ``(B, H, T', d)`` (other arguments as :func:`add_factor`)."""
    bsz, h, t, _ = out.shape
    small = torch.bmm(w, p.transpose(1, 2)).reshape(bsz, h, t, -1)
    out += small @ torch.einsum("bkc,hdc->bhkd", v, wg)
    out -= torch.bmm(w, m.unsqueeze(2)).reshape(bsz, h, t, 1) * g_dot[:, None]
    return out


class FactoredTokens:
    """A batch's image tokens after the decoder's second layer, ``x2 = LN_a(x1) + P2 V2`` with
    ``x1 = x0 + P V``, kept as factors (takes the place of
    :class:`engine.decoder.attention.ImageTokens` in the CPU's formulation).

    Attributes: ``p``, ``p2`` ``(B, K, N)`` the two image-to-token attentions' weights (pixels
    last); ``v``, ``v2`` ``(B, K, C)`` their token values through the output projection;
    ``m1``, ``r1``, ``m2``, ``r2`` ``(B, N)`` each pixel's mean and inverse deviation of ``x1``
    and ``x2``; ``layers``: the image's :class:`engine.decoder.lowrank.FactoredLayers`.
    """

    layers: "object"
    p: torch.Tensor
    v: torch.Tensor
    p2: torch.Tensor
    v2: torch.Tensor
    m1: torch.Tensor
    r1: torch.Tensor
    m2: torch.Tensor
    r2: torch.Tensor

    FIELDS = ("p", "v", "p2", "v2", "m1", "r1", "m2", "r2")

    def __init__(self, layers, **fields: torch.Tensor):
        self.layers = layers
        for name in self.FIELDS:
            setattr(self, name, fields[name])

    def __len__(self) -> int:
        return self.p.shape[0]

    def select(self, index: torch.Tensor) -> "FactoredTokens":
        """The prompts ``index`` (a ``(B',)`` index tensor)."""
        return FactoredTokens(self.layers, **{n: getattr(self, n)[index] for n in self.FIELDS})

    def conv1(self, start: int, stop: int) -> torch.Tensor:
        """The upscaling's first convolution of ``LN_f(x2)`` for prompts ``[start, stop)``:
        ``(b, N, 4 c1)`` as ``Upscaler.first`` gives it, without writing the tokens.

        ``LN_f(x2) W1 = r2 (r1 (x0 U_a + P V U_a - m1 k1) + k2 + P2 V2 U_f - m2 k3) + beta_f W1``
        with ``U_a = G_a G_f W1``, ``U_f = G_f W1``, ``k1, k2, k3 = g_a g_f W1, beta_a g_f W1,
        g_f W1`` (``G`` = diag(g), layer norms' gains ``g`` and biases ``beta``): one product of
        rank ``2 K + 3`` instead of ``C``, and no ``(N, C)`` tokens written."""
        lay = self.layers
        sl = slice(start, stop)
        p, p2, m1, r1, m2, r2 = (self.p[sl], self.p2[sl], self.m1[sl], self.r1[sl],
                                 self.m2[sl], self.r2[sl])
        left = torch.cat([p * r1[:, None], p2,
                          torch.stack([-(r1 * m1), torch.ones_like(r1), -m2], dim=1)], dim=1)
        right = torch.cat([self.v[sl] @ lay.u_a, self.v2[sl] @ lay.u_f,
                           lay.u_k.expand(len(p), -1, -1)], dim=1)
        out = lay.x0w * r1[:, :, None]
        out.baddbmm_(left.transpose(1, 2), right)
        return out.mul_(r2[:, :, None]).add_(lay.c0)


def stats1(lay, probs0: torch.Tensor, v0: torch.Tensor, v: torch.Tensor
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and inverse deviation ``(B, N)`` of ``x1 = x0 + P V`` pixel by pixel:
    ``|x1|^2 = |x0|^2 + 2 P (V x0) + P (V V^T) P^T``, with ``V x0`` read by head through
    ``lay.y0`` (the output projection applied to ``x0``).

    ``probs0`` ``(B, H, T, N)``: layer 0's image-to-token weights (``P`` = their ``(B, K, N)``
    view); ``v0`` ``(B, H, T, d)`` the token values by head; ``v`` ``(B, K, C)`` the same
    through the output projection."""
    p = probs0.reshape(len(probs0), -1, probs0.shape[-1])
    mean = lay.x0.mean(-1) + vec(p, v.mean(-1))
    cross = head_mm(v0, lay.y0).mul_(probs0).sum(dim=(1, 2))
    square = lay.s0 + 2.0 * cross + dot_rows(p, v @ v.transpose(1, 2), p)
    var = (square / lay.c - mean * mean).clamp_(min=0.0)
    return mean, torch.rsqrt(var + lay.norm_a.eps)


def stats2(lay, probs0: torch.Tensor, v0: torch.Tensor, probs2: torch.Tensor,
           v2h: torch.Tensor, tok: FactoredTokens) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and inverse deviation ``(B, N)`` of ``x2 = r1 u + beta_a + P2 V2`` pixel by pixel,
    ``u = (x1 - m1) g_a`` (``g_a``, ``beta_a``: ``LN_a``'s gain and bias): ``|x2|^2`` expanded
    into the same per-image and per-prompt pieces as :func:`stats1`. ``probs2``, ``v2h``: the
    second image-to-token attention's weights and values by head."""
    p, v, m1, r1, p2, v2 = tok.p, tok.v, tok.m1, tok.r1, tok.p2, tok.v2
    ga, ba, c = lay.ga, lay.ba, lay.c
    g2, gb = ga * ga, ga * ba
    u_sum = lay.x0g + vec(p, v @ ga) - m1 * ga.sum()
    mean = r1 * u_sum / c + ba.mean() + vec(p2, v2.mean(-1))
    # |u|^2 = sum g^2 x1^2 - 2 m1 sum g^2 x1 + m1^2 sum g^2
    x1g2x1 = (lay.s0g2 + 2.0 * head_mm(v0, lay.y2).mul_(probs0).sum(dim=(1, 2))
              + dot_rows(p, (v * g2) @ v.transpose(1, 2), p))
    x1g2 = lay.x0g2 + vec(p, v @ g2)
    uu = x1g2x1 - 2.0 * m1 * x1g2 + m1 * m1 * g2.sum()
    ub = lay.x0gb + vec(p, v @ gb) - m1 * gb.sum()
    # u . P2 V2 = P2 (V2 G x1) - m1 P2 (V2 g); the output bias in V2 (bias / heads per row,
    # rows of a head summing to one) gives x0 . (g b_o)
    u_pv = (head_mm(v2h, lay.y3).mul_(probs2).sum(dim=(1, 2)) + lay.x0gbo
            + dot_rows(p2, (v2 * ga) @ v.transpose(1, 2), p) - m1 * vec(p2, v2 @ ga))
    pv2 = dot_rows(p2, v2 @ v2.transpose(1, 2), p2)
    square = (r1 * r1 * uu + (ba * ba).sum() + pv2 + 2.0 * r1 * ub + 2.0 * r1 * u_pv
              + 2.0 * vec(p2, v2 @ ba))
    var = (square / c - mean * mean).clamp_(min=0.0)
    return mean, torch.rsqrt(var + lay.norm_f.eps)
