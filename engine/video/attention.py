"""SAM 2's memory attention (``MemoryAttention``, its 4 ``MemoryAttentionLayer``) with exact
shortcuts, for the video tracker.

Inputs are structured where Meta's are concatenated: the current frame's features ``curr`` and
their positional encoding ``curr_pos`` ``(HW, B, 256)`` (as ``_prepare_memory_conditioned_features``
gets them), each spatial memory frame as an output dict with its row of ``maskmem_tpos_enc``, and
the object-pointer tokens ``(P, B, 64)`` with their encoding. Meta's layers are single-head
``RoPEAttention`` with queries 256 wide and memory 64 wide (``kv_in_dim``), keys and values
projected to 256 (``Wk``, ``Wv`` ``(256, 64)``), RoPE on the queries and on the keys of spatial
memory tokens (not on the pointers, ``num_k_exclude_rope``). Write ``A = softmax(Q K^T / 16)``
(each row sums to 1), ``M`` the memory tokens, ``P`` their spatial encoding, ``T_t`` the
temporal row, ``R`` the rotation of RoPE (linear, by token position), ``Wo, bo`` ``out_proj``.
The shortcuts (:class:`Shortcuts`), each exact in real arithmetic (float32 rounding aside):

* ``values``: ``A (M Wv^T + bv) Wo^T + bo = (A M)(Wo Wv)^T + (Wo bv + bo)`` because ``A 1 = 1``:
  the product with the attention weights is 64 wide instead of 256 (``Wo Wv`` ``(256, 64)``
  folded once per video). 64-wide values have no fused CPU kernel: :func:`attend` runs by
  blocks with the softmax online (the rescaling identity ``e^(s-a) = e^(s-b) e^(b-a)``), the
  1/16 scale folded into ``Q`` (a power of two: exact).
* ``layer0``: layer 0's self-attention reads only the frame's own features and their encoding,
  which are the same for every object of a frame (expanded views, stride 0 over the batch): it
  runs once per frame, and so do layer 0's cross-attention queries (``norm2``, ``q_proj``, RoPE).
  Later layers differ per object (their input went through each object's memory).
* ``keys``: ``R(Wk (M + P + T_t) + bk) = R(Wk (M + P) + bk) + R(Wk T_t)``: the first term is a
  memory frame's own (kept with the frame's output as ``attn_keys``, one ``(1, HW, 256)`` per
  layer, made when the frame is first read, dropped when it leaves what the model reads); the
  second depends only on the memory's relative position ``t`` (made once per video per layer).
  It is the same forward and in reverse (only the pointers' temporal encoding changes sign,
  and pointer keys, a few tokens, are projected on every frame as Meta does).

A cross-attention with a single memory token (no memory) and configurations other than these
(several heads, other positional flags, training mode) are not handled here: the caller keeps
Meta's path for them (:func:`supported`). Everything runs on the inputs' device, in their dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

QUERY_BLOCK, KEY_BLOCK = 256, 2048  # attention weights held at once: 2 MiB in float32


@dataclass(frozen=True)
class Shortcuts:
    """Which exact shortcuts run (all by default; none: Meta's arithmetic, our structure)."""

    values: bool = True
    layer0: bool = True
    keys: bool = True

    def any(self) -> bool:
        return self.values or self.layer0 or self.keys


ALL = Shortcuts()
NONE = Shortcuts(False, False, False)


@dataclass
class MemoryFrame:
    """One spatial memory frame of a batch: ``sources`` the per-object outputs (batch order)
    whose ``attn_keys`` cache lives with them; ``features`` ``(B, HW, 64)``, ``pos``
    ``(B, HW, 64)`` its spatial encoding; ``tpos`` the row of ``maskmem_tpos_enc``."""

    sources: Sequence[dict]
    features: torch.Tensor
    pos: torch.Tensor
    tpos: int


@dataclass
class AttentionState:
    """What a video's memory attention derives from the weights once: folded value-output
    projections, RoPE tables, the temporal keys ``R(Wk T_t)``. One per video (weights fixed)."""

    tables: Dict[tuple, torch.Tensor] = field(default_factory=dict)

    def get(self, key: tuple, make) -> torch.Tensor:
        if key not in self.tables:
            self.tables[key] = make()
        return self.tables[key]


def supported(model) -> bool:
    """Whether :func:`memory_attention` reproduces this model's memory attention."""
    from sam2.modeling.sam.transformer import RoPEAttention

    ma = model.memory_attention
    if ma.training or not ma.batch_first:
        return False
    for layer in ma.layers:
        sa, ca = layer.self_attn, layer.cross_attn_image
        if not (isinstance(sa, RoPEAttention) and isinstance(ca, RoPEAttention)):
            return False
        if sa.num_heads != 1 or ca.num_heads != 1 or not ca.rope_k_repeat:
            return False
        if layer.pos_enc_at_attn or not layer.pos_enc_at_cross_attn_keys:
            return False
        if layer.activation_str != "relu":
            return False
    return True


def rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """RoPE of ``x`` ``(..., N, D)`` by ``freqs`` ``(N, D/2)`` complex, Meta's arithmetic
    (``apply_rotary_enc``: complex product in float32, back to ``x``'s dtype)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(-2).type_as(x)


def _freqs(state: AttentionState, attn, n: int, device) -> torch.Tensor:
    """The layer's RoPE table for ``n`` query tokens (a square grid), as ``RoPEAttention``."""
    def make():
        if attn.freqs_cis.shape[0] == n:
            return attn.freqs_cis.to(device)
        side = math.sqrt(n)
        return attn.compute_cis(end_x=side, end_y=side).to(device)
    return state.get(("freqs", id(attn), n, str(device)), make)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` per batch item, ``q`` ``(B, Nq, D)`` already scaled, ``k``
    ``(B, Nk, D)``, ``v`` ``(B, Nk, Dv)``, by blocks of :data:`QUERY_BLOCK` queries and
    :data:`KEY_BLOCK` keys (the weights of a block stay in the core's cache), softmax online:
    a block's ``exp(s - m)`` sums and products are rescaled by ``exp(m_old - m_new)`` when the
    running row maximum grows (exact: ``e^(s-a) = e^(s-b) e^(b-a)``); one division at the end."""
    out = []
    for b in range(q.shape[0]):
        kt, vb = k[b].t(), v[b]
        rows = []
        for s in range(0, q.shape[1], QUERY_BLOCK):
            qc = q[b, s:s + QUERY_BLOCK]
            acc = total = top = None
            for j in range(0, kt.shape[1], KEY_BLOCK):
                scores = qc @ kt[:, j:j + KEY_BLOCK]
                peak = scores.amax(-1, keepdim=True)
                if acc is None:
                    top = peak
                    weights = scores.sub_(top).exp_()
                    acc, total = weights @ vb[j:j + KEY_BLOCK], weights.sum(-1, keepdim=True)
                    continue
                new_top = torch.maximum(top, peak)
                rescale = (top - new_top).exp_()
                weights = scores.sub_(new_top).exp_()
                acc = acc.mul_(rescale).add_(weights @ vb[j:j + KEY_BLOCK])
                total = total.mul_(rescale).add_(weights.sum(-1, keepdim=True))
                top = new_top
            rows.append(acc / total)
        out.append(torch.cat(rows))
    return torch.stack(out)


def memory_attention(model, state: AttentionState, curr: torch.Tensor, curr_pos: torch.Tensor,
                     frames: List[MemoryFrame], ptrs: Optional[torch.Tensor],
                     ptr_pos: Optional[torch.Tensor], shortcuts: Shortcuts = ALL) -> torch.Tensor:
    """``model.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)`` for
    ``memory`` = the frames' features then the pointers (``(P, B, 64)`` or None), its encoding
    the frames' ``pos`` + their temporal rows then ``ptr_pos``. Returns ``(HW, B, 256)``."""
    ma = model.memory_attention
    n_batch = curr.shape[1]
    shared = shortcuts.layer0 and n_batch > 1 and curr.stride(1) == 0 and curr_pos.stride(1) == 0
    x = curr
    if ma.pos_enc_at_input and curr_pos is not None:
        x = x + 0.1 * curr_pos
    x, pos = x.transpose(0, 1), curr_pos.transpose(0, 1)  # (B, HW, C)
    if shared:
        x, pos = x[:1], pos[:1]
    memory = torch.cat([f.features.float() for f in frames]
                       + ([ptrs.transpose(0, 1).float()] if ptrs is not None else []), dim=1)
    for index, layer in enumerate(ma.layers):
        x = layer._forward_sa(x, pos)
        q = _queries(state, layer, x, pos)
        if shared and index == 0:  # layer 0 done once for the frame: now one row per object
            x, q, pos = (t.expand(n_batch, *t.shape[1:]) for t in (x, q, pos))
        keys = _keys(model, state, index, frames, ptrs, ptr_pos, shortcuts.keys)
        x = x + _cross(state, layer, index, q, keys, memory, shortcuts.values)
        x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
    if shared and len(ma.layers) == 0:
        x = x.expand(n_batch, *x.shape[1:])
    return ma.norm(x).transpose(0, 1)


def _queries(state: AttentionState, layer, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The cross-attention's queries, rotated (RoPE), before the 1/sqrt(D) scale."""
    ca = layer.cross_attn_image
    t = layer.norm2(x)
    q = ca.q_proj(t + pos if layer.pos_enc_at_cross_attn_queries else t)
    return rope(q, _freqs(state, ca, q.shape[1], q.device))


def _cross(state: AttentionState, layer, index: int, q: torch.Tensor, keys: torch.Tensor,
           memory: torch.Tensor, values: bool) -> torch.Tensor:
    """The cross-attention's output ``(B, HW, 256)`` from rotated queries and keys."""
    ca = layer.cross_attn_image
    if not values:  # Meta's: values projected to 256, the fused kernel, out_proj
        v = ca.v_proj(memory)
        out = F.scaled_dot_product_attention(q[:, None], keys[:, None], v[:, None])[:, 0]
        return ca.out_proj(out)
    w_v, w_o = ca.v_proj.weight, ca.out_proj.weight
    w = state.get(("wov", index), lambda: w_o @ w_v)  # (256, 64): Wo Wv
    b = state.get(("bov", index), lambda: w_o @ ca.v_proj.bias + ca.out_proj.bias)
    scale = q.shape[-1] ** -0.5  # 1/16 at 256: a power of two, exact
    return F.linear(attend(q * scale, keys, memory), w, b)


def _keys(model, state: AttentionState, index: int, frames: List[MemoryFrame],
          ptrs: Optional[torch.Tensor], ptr_pos: Optional[torch.Tensor],
          cached: bool) -> torch.Tensor:
    """Layer ``index``'s keys ``(B, N, 256)``: spatial memories rotated, then the pointers."""
    ca = model.memory_attention.layers[index].cross_attn_image
    parts = []
    for f in frames:
        tpos = model.maskmem_tpos_enc[f.tpos].reshape(1, 1, -1)
        n = f.features.shape[1]
        freqs = _freqs(state, ca, n, f.features.device)
        if not cached:  # Meta's: k_proj(M + (P + T_t)), then RoPE
            parts.append(rope(ca.k_proj(f.features.float() + (f.pos + tpos)), freqs))
            continue
        temporal = state.get(("tkey", index, f.tpos, n), lambda: rope(
            F.linear(tpos, ca.k_proj.weight).expand(1, n, -1), freqs))
        own = [_frame_keys(model, state, s, k, f)[index] for k, s in enumerate(f.sources)]
        parts.append(torch.cat(own) + temporal)
    if ptrs is not None:
        parts.append(ca.k_proj((ptrs.float() + ptr_pos).transpose(0, 1)))
    return torch.cat(parts, dim=1)


def _frame_keys(model, state: AttentionState, source: dict, k: int,
                frame: MemoryFrame) -> List[torch.Tensor]:
    """A memory frame's own keys ``R(Wk (M + P) + bk)`` per layer ``(1, HW, 256)``, made once
    and kept with its output (object ``k`` of the frame's batch)."""
    keys = source.get("attn_keys")
    if keys is None:
        m = frame.features[k:k + 1].float() + frame.pos[k:k + 1]
        keys = [rope(ca.k_proj(m), _freqs(state, ca, m.shape[1], m.device))
                for ca in (layer.cross_attn_image for layer in model.memory_attention.layers)]
        source["attn_keys"] = keys
    return keys
