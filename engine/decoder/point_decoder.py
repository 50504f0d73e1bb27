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
float32 rounding (``tests/decoder/test_point_decoder.py``, ``tests/decoder/test_lowrank.py``).
Self-attention, MLPs, layer norms and the IoU head call the model's own modules; the three
multimask hypernetwork MLPs run as one batched MLP (:mod:`engine.decoder.readout`).

**Devices and precisions.** The decoder runs with autocast off and casts explicitly, so that it
behaves the same under any autocast policy (CUDA's and the CPU's differ). The large products (the
image side: 4096 tokens) run in ``dtype`` (bfloat16 / float16 under a low precision, with float32
accumulation as the backends do); everything else stays float32 on purpose: the residual streams
of the image tokens (as the model's own residual sums are under autocast; rounding them to
bfloat16 adds about 20% to the logits' error on random weights, and more where the stream is
large next to the attention's contribution), the softmaxes (computed in float32 from the
low-precision scores) and layer norms, and the few-token side (self-attention, MLPs, heads:
negligible cost). Two formulations:

* ``exact`` (the CPU in float32): after the first layer, the image tokens are kept factored
  (:mod:`engine.decoder.lowrank`: a per-image part plus attention weights times token values),
  so the second layer, the final attention and the upscaling's first convolution run as
  per-image products plus 16- and 64-wide per-prompt ones, and the ``(B, 4096, 256)``
  per-prompt tokens are never written. Its variances (``E[x^2] - E[x]^2`` from sums of pieces)
  need float32. 4 prompts per call, one upscaling product per prompt in a Python loop;
* otherwise (any GPU, or a low precision): few kernels per call, each over all the call's
  prompts. The image tokens are written per prompt; after the first layer the attention's
  projections are folded into matrices made once per model (:mod:`engine.decoder.folded`: five
  kernels per attention); the IoU and mask tokens share one final attention; the image tokens
  are freed once the upscaling's first convolution has read them, and no float32 temporary
  their size is written, so a prompt costs a call 12 MiB at its peak in float32 and 11 MiB in
  bfloat16 (``engine.automatic.on_device.TOKEN_COPIES``; Meta's decoder 28 MiB in float32).

The attention pieces live in :mod:`engine.decoder.attention` and :mod:`engine.decoder.folded`,
the factored form in :mod:`engine.decoder.lowrank` and :mod:`engine.decoder.factored`, the
upscaling in :mod:`engine.decoder.upscaling`, the hypernetworks in :mod:`engine.decoder.readout`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from . import folded
from .attention import ImageTokens, heads, linear, merge, softmax32, softmax_tokens
from ..model.device import autocast_off
from .factored import FactoredTokens, head_mm
from .lowrank import FactoredLayers
from .prompts import dense_pe
from .readout import stacked
from .support import supports  # noqa: F401 (re-exported: what PointDecoder needs of a model)
from .upscaling import CPU_CHUNK, Upscaler


class PointDecoder:
    """Mask decoder for batches of point prompts (no mask input) on one image.

    Args:
        model: a SAM 2 model (``SAM2Base``); :func:`supports` must be True.
        image_embed: ``(1, C, 64, 64)`` image embedding (``ImageEmbedding.image_embed``).
        high_res_feats: the two high-resolution feature maps.
        dtype: dtype of the large products (float32, bfloat16 or float16).
        exact: the CPU-tuned float32 formulation (module docstring); default: on the CPU in
            float32 only.
    """

    def __init__(self, model, image_embed: torch.Tensor, high_res_feats: List[torch.Tensor],
                 dtype: torch.dtype = torch.float32, exact: Optional[bool] = None):
        device = image_embed.device
        self.dtype = dtype
        self.exact = (device.type == "cpu" and dtype == torch.float32) if exact is None else exact
        self.dec = dec = model.sam_mask_decoder
        self.t = t = dec.transformer
        self.hw = image_embed.shape[-2:]
        with torch.no_grad(), autocast_off(device):
            pe = dense_pe(model.sam_prompt_encoder)
            no_mask = model.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            # (1, N, C), contiguous: results of broadcast ops take their inputs' memory layout,
            # and a transposed layout here would make every (B, N, C) tensor below strided
            keys0 = (image_embed.float() + no_mask).flatten(2).transpose(1, 2).contiguous()
            self.pe = pe.flatten(2).transpose(1, 2).contiguous()
            first = t.layers[0]
            kp0 = keys0 + self.pe
            a = first.cross_attn_token_to_image
            self.k0 = heads(linear(kp0, a.k_proj), a.num_heads).to(dtype)
            self.v0 = heads(linear(keys0, a.v_proj), a.num_heads).to(dtype)
            b = first.cross_attn_image_to_token
            qi0 = heads(linear(kp0, b.q_proj), b.num_heads).transpose(2, 3)  # (1, H, d, N)
            if self.exact:
                # image-to-token scores are computed tokens-first, (B, H, T, N)
                self.qi0_t = qi0.contiguous().to(dtype)
                # layer 0's image tokens plus the bias of its image-to-token output projection
                self.keys0b = keys0 + b.out_proj.bias
            else:  # (H, d, N), the attention's scale included; the bias is in the values
                d0 = b.internal_dim // b.num_heads
                self.qi0_scaled = (qi0[0] * (1.0 / math.sqrt(d0))).contiguous().to(dtype)
                self.keys0 = keys0
            cpu = device.type == "cpu"
            self.upscale = Upscaler(dec.output_upscaling, *high_res_feats, self.hw, dtype,
                                    per_prompt=cpu, chunk=CPU_CHUNK if cpu else None)
            # the CPU's float32 formulation keeps the second layer's image tokens factored
            self.factored = (FactoredLayers(t, self.keys0b, self.pe, self.upscale.w1,
                                            self.upscale.f1) if self.exact else None)
            s = 1 if dec.pred_obj_scores else 0
            self.s = s
            parts = ([dec.obj_score_token.weight] if s else []) + [dec.iou_token.weight,
                                                                   dec.mask_tokens.weight]
            self.out_tokens = torch.cat(parts, dim=0)
            # the multimask tokens' hypernetwork MLPs as one batched MLP
            self.hyper_mlps = stacked(dec, dec.output_hypernetworks_mlps[1:])

    def _low(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the products' dtype (no copy in float32)."""
        return x.to(self.dtype)

    # -- attention pieces ----------------------------------------------------------------------
    def _image_to_token_factors(self, attn, k_in: torch.Tensor, v_in: torch.Tensor
                                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer 0's image-to-token attention ``attn(q=image, k=k_in, v=v_in)`` as factors (the
        exact formulation): the weights ``(B, H, T, N)`` float32 (each pixel's softmax over a
        head's tokens), the token values by head ``(B, H, T, d)`` and through the output
        projection ``(B, H*T, C)``, so that the image tokens are ``keys0b + weights^T values``
        (the image queries are the same for every prompt: ``qi0_t``, projected once; ``keys0b``
        includes the output projection's bias)."""
        h = attn.num_heads
        bsz, t, c = v_in.shape
        d = attn.internal_dim // h
        k = heads(linear(k_in, attn.k_proj), h) * (1.0 / math.sqrt(d))  # (B, H, T, d)
        v = heads(linear(v_in, attn.v_proj), h)
        probs = softmax_tokens(head_mm(k.contiguous(), self.qi0_t[0]))
        wo = attn.out_proj.weight.reshape(c, h, d)
        return probs, v, torch.einsum("bhtd,chd->bhtc", v, wo).reshape(bsz, h * t, c)

    def _image_to_token(self, attn, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        """Layer 0's image tokens ``keys0 + attn(q=image, k=k_in, v=v_in)`` written per prompt
        (the other formulation): float32 ``(B, N, C)``.

        The image queries are the same for every prompt (``qi0_scaled``, ``(H, d, N)``): the
        scores are one product per head over all prompts' tokens, ``(H, B*T, N)``; the values
        go through the output projection folded per head (:func:`.folded.folds`), token-major
        rows ``(T, H)``, which already carry the output bias (a pixel's weights over a head's
        tokens sum to one)."""
        h = attn.num_heads
        bsz, t, c = v_in.shape
        d = attn.internal_dim // h
        n = self.keys0.shape[1]
        k = linear(k_in, attn.k_proj).view(bsz * t, h, d).transpose(0, 1)  # (H, B*T, d)
        scores = torch.bmm(self._low(k), self.qi0_scaled)  # (H, B*T, N)
        probs = softmax32(scores.view(h, bsz, t, n), 2)
        f = folded.folds(attn)
        values = F.linear(v_in, f["v_out"], f["v_out_b"]).view(bsz, t * h, c)
        # (B, N, T*H): one copy into the layout of the values' rows
        flat = probs.new_empty((bsz, n, t, h), dtype=self.dtype)
        flat = flat.copy_(probs.permute(1, 3, 2, 0)).view(bsz, n, t * h)
        if self.dtype == torch.float32:
            return torch.baddbmm(self.keys0.expand(bsz, -1, -1), flat, values)
        return torch.bmm(flat, values.to(self.dtype)).float().add_(self.keys0)

    # -- decoding ------------------------------------------------------------------------------
    def transformer(self, sparse: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, "ImageTokens"]:
        """The two-way transformer's layers for B prompts, without the final attention.

        Returns:
            output tokens ``(B, T, C)`` (before the final token-to-image attention), the prompt
            tokens ``(B, T, C)`` (their positional encoding) and the image tokens, kept before
            the last layer norm (:class:`ImageTokens`); all float32.
        """
        t = self.t
        bsz = sparse.shape[0]
        tokens = torch.cat([self.out_tokens.unsqueeze(0).expand(bsz, -1, -1), sparse.float()],
                           dim=1)

        # layer 0: the image side is the same for every prompt
        first = t.layers[0]
        q = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
        a = first.cross_attn_token_to_image
        # all prompts' queries in one attention against the shared keys and values
        n_tok = tokens.shape[1]
        qh = heads(linear(q + tokens, a.q_proj).reshape(1, bsz * n_tok, -1), a.num_heads)
        o = F.scaled_dot_product_attention(self._low(qh), self.k0, self.v0).float()
        o = merge(o).reshape(bsz, n_tok, -1)  # (1, H, B*T, d) -> (B, T, C)
        q = first.norm2(q + linear(o, a.out_proj))
        q = first.norm3(q + first.mlp(q))
        if self.exact:
            factors = self._image_to_token_factors(first.cross_attn_image_to_token, q + tokens,
                                                   q)
            q, image = self.factored.layer1(q, tokens, *factors)
            return q, tokens, image
        x = self._image_to_token(first.cross_attn_image_to_token, q + tokens, q)
        norm = first.norm4

        # further layers: per-prompt image tokens
        for layer in t.layers[1:]:
            keys = norm(x)
            del x  # the residual stream continues in keys (overwritten below)
            qp = q + tokens
            q = layer.norm1(q + layer.self_attn(q=qp, k=qp, v=q))
            kp = self._low(keys + self.pe)
            q = layer.norm2(q + folded.token_to_image(layer.cross_attn_token_to_image,
                                                      q + tokens, self._low(keys), kp))
            q = layer.norm3(q + layer.mlp(q))
            x = folded.image_to_token(layer.cross_attn_image_to_token, kp, q + tokens, q, keys)
            norm = layer.norm4
            del kp, keys
        return q, tokens, ImageTokens(x, norm, self.pe, self.dtype)

    def final_tokens(self, q: torch.Tensor, tokens: torch.Tensor, image: "ImageTokens",
                     rows: slice) -> torch.Tensor:
        """The transformer's output tokens ``rows`` after its final token-to-image attention.

        That attention and the layer norm after it act on each token separately, so the tokens
        the heads read (the IoU token for the filter, the three multimask tokens for the masks
        that pass it) are computed alone: ``(B, len(rows), C)``.
        """
        attn = self.t.final_attn_token_to_image
        q, tokens = q[:, rows], tokens[:, rows]
        if self.exact:
            out = self.factored.final_attention(q + tokens, image)
        else:
            out = folded.token_to_image(attn, q + tokens, image.keys_low(), image.kp_low())
        return self.t.norm_final_attn(q + out)

    def _read_rows(self) -> slice:
        """The tokens the heads read: the IoU token and the mask tokens (the single-mask token
        among them, unused)."""
        return slice(self.s, self.s + 1 + self.dec.num_mask_tokens)

    def iou(self, q: torch.Tensor, tokens: torch.Tensor, image: "ImageTokens") -> torch.Tensor:
        """Predicted IoU ``(B, 3)`` of the multimask outputs.

        The exact (CPU) formulation reads the IoU token alone (the early IoU filter then skips
        the mask tokens of prompts with no candidate); the other one the same rows as
        :meth:`read_out`, so that both give the same values to the bit.
        """
        s = self.s
        out = self.final_tokens(q, tokens, image,
                                slice(s, s + 1) if self.exact else self._read_rows())
        return self.dec.iou_prediction_head(out[:, 0])[:, 1:]

    def hyper(self, q: torch.Tensor, tokens: torch.Tensor, image: "ImageTokens"
              ) -> torch.Tensor:
        """Hypernetwork vectors ``(B, 3, c8)`` of the multimask tokens 1..3 (rows as
        :meth:`iou`)."""
        dec, s = self.dec, self.s
        if self.exact:
            first = s + 2  # token s is the IoU token, s + 1 the single-mask token
            out = self.final_tokens(q, tokens, image,
                                    slice(first, s + 1 + dec.num_mask_tokens))
        else:
            out = self.final_tokens(q, tokens, image, self._read_rows())[:, 2:]
        return self.hyper_mlps(out)

    def read_out(self, q: torch.Tensor, tokens: torch.Tensor, image: "ImageTokens"
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`hyper` and :meth:`iou`: hypernetwork vectors ``(B, 3, c8)`` and predicted IoU
        ``(B, 3)``. On GPUs (not ``exact``) from one final attention over the IoU and mask
        tokens together: one set of kernels instead of two."""
        if self.exact:
            return self.hyper(q, tokens, image), self.iou(q, tokens, image)
        out = self.final_tokens(q, tokens, image, self._read_rows())
        return self.hyper_mlps(out[:, 2:]), self.dec.iou_prediction_head(out[:, 0])[:, 1:]

    @staticmethod
    def upscale_input(image):
        """What :class:`Upscaler` reads: factored tokens themselves (they give the first
        convolution's output without being written), else the normalised tokens."""
        return image if isinstance(image, FactoredTokens) else image.keys()

    def __call__(self, sparse: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompts given their sparse embeddings ``(B, P, C)`` (multimask output).

        Returns:
            low-resolution logits ``(B, 3, 256, 256)`` and predicted IoU ``(B, 3)``, float32, as
            ``model.sam_mask_decoder(..., multimask_output=True)`` returns them.
        """
        with torch.no_grad(), autocast_off(sparse.device):
            q, tokens, image = self.transformer(sparse)
            hyper, iou = self.read_out(q, tokens, image)
            del q, tokens
            if isinstance(image, FactoredTokens):
                return self.upscale(image, hyper), iou
            # the written tokens are freed once the first convolution has read them: a call's
            # memory peaks in the upscaling, which then holds only its own intermediates
            keys = image.keys_low()  # what the first convolution reads (no copy in float32)
            del image
            first = [self.upscale.first(keys)]
            del keys
            return self.upscale.from_first(first, hyper), iou

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
            logits ``(K, 256, 256)`` and IoU ``(K,)``, float32, equal to ``__call__``'s for them.
        """
        with torch.no_grad(), autocast_off(sparse.device):
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
            logits = self.upscale(self.upscale_input(image), hyper, local, index % 3)
            return index, logits, iou[index]


