"""SAM 2's mask decoder for point prompts, restructured to cost less per prompt.

Automatic mode decodes ~1000 single-point prompts against one image embedding. Meta's decoder
repeats the image embedding per prompt and runs every projection on all 64x64 image tokens for
every prompt. :class:`PointDecoder` computes the same function with the same weights, reordered:

* **once per image**: the first two-way attention layer's image-side projections (keys and values
  of the token-to-image attention, queries of the image-to-token attention). With point prompts and
  no mask input the dense prompt embedding is the same learnt vector for every prompt, so the first
  layer's image tokens do not depend on the prompt.
* **per prompt, few tokens**: a prompt has only ~7 tokens (object score, IoU, 4 mask tokens, the
  point and its padding). Attention between 7 tokens and 4096 image tokens is rewritten so that the
  4096-token side is multiplied by ``heads x tokens`` vectors instead of being projected:
  ``softmax((W_q t) . (W_k x)) (W_v x) = softmax(x . (W_k^T W_q t)) x W_v^T`` (rows of the attention
  sum to one, so the value bias passes through), and the output projection is folded into the token
  values for image-to-token attention. This divides those matmuls' cost by about 2.3.

* the attention scale is applied to the few-token side, and output-projection biases are folded
  into the residual sum (image-to-token rows of each head sum to one, so ``bias / heads`` is added
  to each token value); the image-side tensors are kept contiguous (a transposed layout makes
  every ``(B, 4096, C)`` result strided and each layer norm copy it).
* :meth:`PointDecoder.decode_above` computes the predicted IoU from the transformer alone and
  upscales only the prompts that have a candidate above the threshold.

Only the order of floating-point operations changes: outputs equal the model's own decoder to
float32 rounding (see ``tests/test_amg.py::test_point_decoder_matches_model_decoder``). Everything
else (self-attention, MLPs, layer norms, upscaling convolutions, hypernetworks, IoU head) calls the
model's own modules.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, N, H*d)`` -> ``(B, H, N, d)``."""
    b, n, c = x.shape
    return x.reshape(b, n, n_heads, c // n_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, N, d)`` -> ``(B, N, H*d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def supports(model) -> bool:
    """True when ``model``'s decoder has the structure :class:`PointDecoder` reorders."""
    try:
        from sam2.modeling.sam.mask_decoder import MaskDecoder
        from sam2.modeling.sam.transformer import Attention, TwoWayTransformer
    except ImportError:  # pragma: no cover - sam2 is a requirement
        return False
    dec = getattr(model, "sam_mask_decoder", None)
    if type(dec) is not MaskDecoder or type(dec.transformer) is not TwoWayTransformer:
        return False
    t = dec.transformer
    attns = [t.final_attn_token_to_image] + [a for layer in t.layers for a in (
        layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)]
    return (len(t.layers) >= 1 and t.layers[0].skip_first_layer_pe
            and all(type(a) is Attention for a in attns) and dec.use_high_res_features)


class PointDecoder:
    """Mask decoder for batches of point prompts (no mask input) on one image.

    Args:
        model: a SAM 2 model (``SAM2Base``); :func:`supports` must be True.
        image_embed: ``(1, C, 64, 64)`` image embedding (``ImageEmbedding.image_embed``).
        high_res_feats: the two high-resolution feature maps.
    """

    def __init__(self, model, image_embed: torch.Tensor, high_res_feats: List[torch.Tensor]):
        self.dec = dec = model.sam_mask_decoder
        self.t = t = dec.transformer
        pe = model.sam_prompt_encoder.get_dense_pe()
        no_mask = model.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        self.hw = image_embed.shape[-2:]
        # (1, N, C), contiguous: results of broadcast ops take their inputs' memory layout, and
        # a transposed layout here would make every (B, N, C) tensor below strided (copies)
        keys0 = (image_embed + no_mask).flatten(2).transpose(1, 2).contiguous()
        self.pe = pe.flatten(2).transpose(1, 2).contiguous()
        first = t.layers[0]
        kp0 = keys0 + self.pe
        a = first.cross_attn_token_to_image
        self.k0 = _heads(_linear(kp0, a.k_proj), a.num_heads)
        self.v0 = _heads(_linear(keys0, a.v_proj), a.num_heads)
        b = first.cross_attn_image_to_token
        # (1, H, d, N): image-to-token scores are computed tokens-first, (B, H, T, N)
        self.qi0_t = _heads(_linear(kp0, b.q_proj), b.num_heads).transpose(2, 3).contiguous()
        # layer 0's image tokens plus the bias of its image-to-token output projection
        self.keys0b = keys0 + b.out_proj.bias
        self._prepare_upscaling(*high_res_feats)
        s = 1 if dec.pred_obj_scores else 0
        self.s = s
        parts = ([dec.obj_score_token.weight] if s else []) + [dec.iou_token.weight,
                                                               dec.mask_tokens.weight]
        self.out_tokens = torch.cat(parts, dim=0)

    # -- upscaling ---------------------------------------------------------------------------
    def _prepare_upscaling(self, feat_s0: torch.Tensor, feat_s1: torch.Tensor) -> None:
        """The two stride-2 transposed convolutions as matrix products in a pixel-blocked layout.

        ``ConvTranspose2d(k=2, s=2)`` maps each input pixel to a 2x2 block of output pixels: it is
        a ``(C_in, 4 * C_out)`` matrix. Keeping every output in the layout "input pixel, then its
        2x2 block, then channels" lets the high-resolution features and the bias be added inside
        the matrix product, the channel LayerNorm run as a fused ``layer_norm`` over the last dim,
        and the 32-channel result be projected on the 3 hypernetwork vectors before the pixels
        are put back in raster order (3 channels instead of 32 to reorder).
        """
        dc1, ln1, _, dc2, _ = self.dec.output_upscaling
        h, w = self.hw
        c1, c2 = dc1.out_channels, dc2.out_channels
        # W1[c, (i, j, o)] = dc1.weight[c, o, i, j]
        self.w1 = dc1.weight.permute(0, 2, 3, 1).reshape(dc1.in_channels, 4 * c1)
        # feat_s1[0, o, 2y+i, 2x+j] -> F1[(y, x), (i, j, o)], plus the bias
        f1 = feat_s1[0].reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0)
        self.f1 = (f1 + dc1.bias).reshape(1, h * w, 4 * c1)
        self.w2 = dc2.weight.permute(0, 2, 3, 1).reshape(dc2.in_channels, 4 * c2)
        # feat_s0[0, o, 4y+2i+k, 4x+2j+l] -> F2[(y, x, i, j), (k, l, o)], plus the bias
        f2 = feat_s0[0].reshape(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0)
        self.f2 = (f2 + dc2.bias).reshape(1, h * w * 4, 4 * c2)
        self.c1, self.c2 = c1, c2

    def _upscale_and_project(self, keys: torch.Tensor, hyper: torch.Tensor,
                             prompt: Optional[torch.Tensor] = None,
                             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``hyper @ upscaled(keys)`` as the decoder computes it: ``(B, M, 4h, 4w)`` logits.

        With ``prompt`` and ``mask`` (``(K,)`` each), only those K (prompt, mask) pairs are put
        back in raster order: ``(K, 4h, 4w)``.
        """
        _, ln1, act1, _, act2 = self.dec.output_upscaling
        bsz, n, _ = keys.shape
        h, w = self.hw
        up = torch.baddbmm(self.f1, keys, self.w1.expand(bsz, -1, -1))  # (B, N, 4*c1)
        up = F.layer_norm(up.reshape(bsz, n * 4, self.c1), (self.c1,), ln1.weight, ln1.bias,
                          ln1.eps)
        up = _activate(act1, up)
        # one product per prompt: 1.3x faster than a batched product of a broadcast matrix here
        up2 = up.new_empty((bsz, 4 * n, 4 * self.c2))
        for b in range(bsz):
            torch.addmm(self.f2[0], up[b], self.w2, out=up2[b])
        up = _activate(act2, up2)  # (B, 4N, 4*c2)
        m = hyper.shape[1]
        out = torch.bmm(up.reshape(bsz, n * 16, self.c2), hyper.transpose(1, 2))  # (B, 16N, M)
        # rows are (y, x, i, j, k, l): pixel (4y + 2i + k, 4x + 2j + l)
        if prompt is not None:
            out = out[prompt, :, mask]  # (K, 16N)
            out = out.reshape(len(prompt), h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
            return out.reshape(len(prompt), 4 * h, 4 * w)
        out = out.reshape(bsz, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return out.reshape(bsz, m, 4 * h, 4 * w)

    # -- attention pieces ----------------------------------------------------------------------
    @staticmethod
    def _token_to_image(attn, q_in: torch.Tensor, keys: torch.Tensor,
                        kp: torch.Tensor) -> torch.Tensor:
        """``attn(q=q_in, k=kp, v=keys)`` for few queries against many image tokens.

        The key projection's bias adds a constant to each query's scores, which the softmax over
        the image tokens ignores: it is left out.
        """
        h = attn.num_heads
        bsz, t, _ = q_in.shape
        c = keys.shape[-1]
        d = attn.internal_dim // h
        q = _heads(_linear(q_in, attn.q_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
        wk = attn.k_proj.weight.reshape(h, d, c)
        folded = torch.einsum("bhtd,hdc->bhtc", q, wk).reshape(bsz, h * t, c)
        probs = torch.softmax(torch.bmm(folded, kp.transpose(1, 2)), dim=-1)  # (B, H*T, N)
        mixed = torch.bmm(probs, keys).reshape(bsz, h, t, c)
        wv = attn.v_proj.weight.reshape(h, d, c)
        out = torch.einsum("bhtc,hdc->bhtd", mixed, wv) + attn.v_proj.bias.reshape(1, h, 1, d)
        return _linear(_merge(out), attn.out_proj)

    @staticmethod
    def _image_to_token(attn, q_heads_img_t: torch.Tensor, k_in: torch.Tensor,
                        v_in: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + attn(q=image, k=k_in, v=v_in)`` given the image queries already projected
        (``(1, H, d, N)``, transposed) and ``residual`` including the output projection's bias."""
        h = attn.num_heads
        bsz, t, c = v_in.shape
        d = attn.internal_dim // h
        k = _heads(_linear(k_in, attn.k_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
        v = _heads(_linear(v_in, attn.v_proj), h)
        probs = _softmax_tokens(torch.matmul(k, q_heads_img_t))  # (B, H, T, N)
        n = probs.shape[-1]
        wo = attn.out_proj.weight.reshape(c, h, d)
        v_out = torch.einsum("bhtd,chd->bhtc", v, wo).reshape(bsz, h * t, c)
        flat = probs.reshape(bsz, h * t, n).transpose(1, 2)  # (B, N, H*T), transposed view
        return torch.baddbmm(residual.expand(bsz, -1, -1), flat, v_out)

    def _image_to_token_full(self, attn, kp: torch.Tensor, k_in: torch.Tensor,
                             v_in: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + attn(q=kp, k=k_in, v=v_in)`` with per-prompt image tokens ``kp``; q_proj
        folded into k. ``residual`` is overwritten with the result.

        Each head's attention rows sum to one, so the output projection's bias is added by
        adding ``bias / heads`` to every token value. The scores are laid out ``(B, H, T, N)``
        (tokens before pixels): the softmax over a head's T tokens then runs along a strided
        dimension, vectorised over pixels, which is 2x faster than over a last dimension of 8.
        """
        h = attn.num_heads
        bsz, t, c = v_in.shape
        d = attn.internal_dim // h
        k = _heads(_linear(k_in, attn.k_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
        wq = attn.q_proj.weight.reshape(h, d, c)
        folded = torch.einsum("bhtd,hdc->bhtc", k, wq).reshape(bsz, h * t, c)
        bias = torch.einsum("bhtd,hd->bht", k, attn.q_proj.bias.reshape(h, d))
        scores = torch.baddbmm(bias.reshape(bsz, h * t, 1), folded, kp.transpose(1, 2))
        n = kp.shape[1]
        probs = _softmax_tokens(scores.reshape(bsz, h, t, n))
        v = _heads(_linear(v_in, attn.v_proj), h)
        wo = attn.out_proj.weight.reshape(c, h, d)
        v_out = torch.einsum("bhtd,chd->bhtc", v, wo) + attn.out_proj.bias / h
        return residual.baddbmm_(probs.reshape(bsz, h * t, n).transpose(1, 2),
                                 v_out.reshape(bsz, h * t, c))

    # -- decoding ------------------------------------------------------------------------------
    def transformer(self, sparse: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, "_ImageTokens"]:
        """The two-way transformer's layers for B prompts, without the final attention.

        Returns:
            output tokens ``(B, T, C)`` (before the final token-to-image attention), the prompt
            tokens ``(B, T, C)`` (their positional encoding) and the image tokens, kept before
            the last layer norm (:class:`_ImageTokens`).
        """
        t = self.t
        bsz = sparse.shape[0]
        tokens = torch.cat([self.out_tokens.unsqueeze(0).expand(bsz, -1, -1), sparse], dim=1)

        # layer 0: the image side is the same for every prompt
        first = t.layers[0]
        q = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        a = first.cross_attn_token_to_image
        # all prompts' queries in one attention against the shared keys and values
        n_tok = tokens.shape[1]
        qh = _heads(_linear(q + tokens, a.q_proj).reshape(1, bsz * n_tok, -1), a.num_heads)
        o = F.scaled_dot_product_attention(qh, self.k0, self.v0)  # (1, H, B*T, d)
        o = _merge(o).reshape(bsz, n_tok, -1)
        q = first.norm2(q + _linear(o, a.out_proj))
        q = first.norm3(q + first.mlp(q))
        x = self._image_to_token(first.cross_attn_image_to_token, self.qi0_t, q + tokens, q,
                                 self.keys0b)
        norm = first.norm4

        # further layers: per-prompt image tokens
        for layer in t.layers[1:]:
            keys = norm(x)
            qp = q + tokens
            q = layer.norm1(q + layer.self_attn(q=qp, k=qp, v=q))
            kp = keys + self.pe
            q = layer.norm2(q + self._token_to_image(layer.cross_attn_token_to_image,
                                                     q + tokens, keys, kp))
            q = layer.norm3(q + layer.mlp(q))
            x = self._image_to_token_full(layer.cross_attn_image_to_token, kp, q + tokens, q,
                                          keys)
            norm = layer.norm4
            del kp, keys
        return q, tokens, _ImageTokens(x, norm)

    def final_tokens(self, q: torch.Tensor, tokens: torch.Tensor, image: "_ImageTokens",
                     rows: slice) -> torch.Tensor:
        """The transformer's output tokens ``rows`` after its final token-to-image attention.

        That attention and the layer norm after it act on each token separately, so the tokens
        the heads read (the IoU token for the filter, the three multimask tokens for the masks
        that pass it) are computed alone: ``(B, len(rows), C)``.

        The image tokens are those before the last layer norm, ``x``: with ``keys = (x - m) r g
        + b`` (``m``, ``r`` each pixel's mean and inverse deviation), a query's scores are
        ``r ((w g) . x - m (w . g)) + w . pe`` (plus a constant) and its attention-weighted keys
        ``g ((p r) x - (p r) . m) + b``, so the normalised ``(B, N, C)`` tokens are never
        written for prompts that the IoU filter drops.
        """
        attn = self.t.final_attn_token_to_image
        q, tokens = q[:, rows], tokens[:, rows]
        x, mean, rstd = image.x, image.mean, image.rstd
        g, beta = image.norm.weight, image.norm.bias
        h = attn.num_heads
        bsz, t, _ = q.shape
        n, c = x.shape[1], x.shape[2]
        d = attn.internal_dim // h
        qh = _heads(_linear(q + tokens, attn.q_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
        wk = attn.k_proj.weight.reshape(h, d, c)
        folded = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(bsz, h * t, c)
        fg = folded * g
        scores = torch.bmm(fg, x.transpose(1, 2))  # (B, H*T, N)
        scores = scores.sub_(fg.sum(dim=-1, keepdim=True) * mean[:, None, :]).mul_(
            rstd[:, None, :])
        # w . b and the key projection's bias are constant over the pixels: the softmax ignores
        # them
        scores.view(bsz * h * t, n).addmm_(folded.reshape(bsz * h * t, c), self.pe[0].t())
        probs = torch.softmax(scores, dim=-1).mul_(rstd[:, None, :])
        mixed = torch.bmm(probs, x).sub_((probs @ mean[:, :, None]))  # (B, H*T, C)
        mixed = (mixed * g + beta).reshape(bsz, h, t, c)
        wv = attn.v_proj.weight.reshape(h, d, c)
        out = torch.einsum("bhtc,hdc->bhtd", mixed, wv) + attn.v_proj.bias.reshape(1, h, 1, d)
        return self.t.norm_final_attn(q + _linear(_merge(out), attn.out_proj))

    def iou(self, q: torch.Tensor, tokens: torch.Tensor, image: "_ImageTokens") -> torch.Tensor:
        """Predicted IoU ``(B, 3)`` of the multimask outputs (reads the IoU token only)."""
        s = self.s
        out = self.final_tokens(q, tokens, image, slice(s, s + 1))
        return self.dec.iou_prediction_head(out[:, 0])[:, 1:]

    def hyper(self, q: torch.Tensor, tokens: torch.Tensor, image: "_ImageTokens"
              ) -> torch.Tensor:
        """Hypernetwork vectors ``(B, 3, c8)`` of the multimask tokens 1..3."""
        dec, s = self.dec, self.s
        first = s + 2  # token s is the IoU token, s + 1 the single-mask token
        out = self.final_tokens(q, tokens, image, slice(first, s + 1 + dec.num_mask_tokens))
        return torch.stack([dec.output_hypernetworks_mlps[i](out[:, i - 1])
                            for i in range(1, dec.num_mask_tokens)], dim=1)

    @torch.no_grad()
    def __call__(self, sparse: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompts given their sparse embeddings ``(B, P, C)`` (multimask output).

        Returns:
            low-resolution logits ``(B, 3, 256, 256)`` and predicted IoU ``(B, 3)``, as
            ``model.sam_mask_decoder(..., multimask_output=True)`` returns them.
        """
        q, tokens, image = self.transformer(sparse)
        return (self._upscale_and_project(image.keys(), self.hyper(q, tokens, image)),
                self.iou(q, tokens, image))

    @torch.no_grad()
    def decode_above(self, sparse: torch.Tensor, iou_thresh: float
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates whose predicted IoU is above ``iou_thresh``, upscaling only those.

        The predicted IoU comes from the IoU token alone, so the multimask tokens' final
        attention and the upscaling (transposed convolutions and hypernetwork products, over
        half the cost of a prompt) run only for prompts having at least one candidate above the
        threshold, and the pixels are put back in raster order only for those candidates.

        Returns:
            ``index`` ``(K,)`` of the kept candidates in the point-major order of
            ``__call__``'s outputs flattened (``3 * prompt + mask``), increasing; their
            logits ``(K, 256, 256)`` and IoU ``(K,)``, equal to ``__call__``'s for them.
        """
        q, tokens, image = self.transformer(sparse)
        iou = self.iou(q, tokens, image).flatten()
        index = torch.nonzero(iou > iou_thresh)[:, 0]
        if len(index) == 0:
            h, w = self.hw
            return index, iou.new_zeros((0, 4 * h, 4 * w)), iou[index]
        prompt = index // 3
        used, local = torch.unique(prompt, return_inverse=True)
        if len(used) < len(sparse):
            image = image.select(used)
        hyper = self.hyper(q[used], tokens[used], image)
        logits = self._upscale_and_project(image.keys(), hyper, local, index % 3)
        return index, logits, iou[index]


class _ImageTokens:
    """The decoder's image tokens ``x`` ``(B, N, C)`` before the last layer norm ``norm``, with
    each pixel's mean and inverse standard deviation ``(B, N)`` (as ``norm`` computes them)."""

    def __init__(self, x: torch.Tensor, norm: torch.nn.LayerNorm,
                 stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        self.x, self.norm = x, norm
        if stats is None:
            # E[x^2] - E[x]^2 from two fast reductions (torch.var_mean is 10x slower on CPU)
            mean = x.mean(dim=-1)
            square = torch.linalg.vector_norm(x, dim=-1).square_().div_(x.shape[-1])
            stats = mean, torch.rsqrt((square - mean * mean).clamp_(min=0.0) + norm.eps)
        self.mean, self.rstd = stats

    def select(self, index: torch.Tensor) -> "_ImageTokens":
        return _ImageTokens(self.x[index], self.norm, (self.mean[index], self.rstd[index]))

    def keys(self) -> torch.Tensor:
        """The normalised image tokens ``norm(x)``."""
        return self.norm(self.x)


def _activate(act: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``, in place when ``act`` is a plain ``nn.GELU`` (the upscaling's activations):
    on the CPU, writing a new output of this size costs as much as the GELU itself."""
    if type(act) is torch.nn.GELU:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)


def _softmax_tokens(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 2 of ``(B, H, T, N)`` scores (each pixel's weights over a head's T
    tokens), in place: ``exp(x - max) / sum`` as ``torch.softmax``, vectorised over N."""
    scores = scores.sub_(scores.amax(dim=2, keepdim=True)).exp_()
    return scores.div_(scores.sum(dim=2, keepdim=True))
