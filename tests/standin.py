"""A stand-in for SAM 2's prompt encoder and mask decoder (and, optionally, image encoder).

Random weights give near-useless masks, so comparing two automatic mask generators on them says
little. The stand-in returns known, diverse shapes instead: for a point prompt, three discs around
the point with radii, logit slopes (hence stability scores) and predicted IoU that vary smoothly
with the point's position, so neighbouring points give near-duplicates for NMS to remove, some
candidates fail the IoU filter, some the stability filter, and masks near crop edges are cut.
Candidate 0 also has a small hole and a small island, for ``min_mask_region_area``.

It is a pure function of each prompt (the point in the model's 1024 frame, and for ``use_m2m`` the
mask input), so every generator that calls it with the same prompt gets the same answer, whatever
its batching. The stand-in prompt encoder carries the point in the sparse embedding and the mask
input, losslessly, in the dense embedding (4x4 pixel-unshuffle into 16 channels); the stand-in
decoder reads them back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED = 256
MASK_FLAG = 16  # dense channel set to 1 when a mask input is present


class StandInPromptEncoder(nn.Module):
    def __init__(self, embed_hw=(64, 64)):
        super().__init__()
        self.embed_hw = embed_hw
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1, EMBED, *self.embed_hw, device=self.anchor.device)

    def forward(self, points, boxes, masks):
        coords, labels = points
        bsz = coords.shape[0]
        sparse = torch.zeros(bsz, coords.shape[1] + 1, EMBED, device=coords.device)
        sparse[:, :-1, :2] = coords
        sparse[:, :-1, 2] = labels.float()
        dense = torch.zeros(bsz, EMBED, *self.embed_hw, device=coords.device)
        if masks is not None:
            dense[:, :MASK_FLAG] = F.pixel_unshuffle(masks.float(), 4)
            dense[:, MASK_FLAG] = 1.0
        return sparse, dense


def disc_logits(coords: torch.Tensor, size: int = 256):
    """``(B, 3, size, size)`` logits and ``(B, 3)`` IoU for points ``coords`` (B, 2), 1024 frame,
    float32 on ``coords``' device."""
    dev = coords.device
    g = coords.double() / 4.0  # point in the 256 grid
    gx, gy = g[:, 0:1], g[:, 1:2]
    wave = torch.sin(gx / 17.0) * torch.cos(gy / 23.0)
    base = torch.tensor([[9.0, 24.0, 90.0]], dtype=torch.float64, device=dev)
    radius = base * (1.0 + 0.35 * wave)  # (B, 3)
    three = torch.arange(3, device=dev)
    slope = torch.tensor([[6.0, 1.5, 0.6]], dtype=torch.float64, device=dev) * (
        1.0 + 0.9 * torch.sin(gx * 0.061 + gy * 0.043 + three * 1.3))
    iou = 0.72 + 0.27 * torch.sin(gx * 0.037 - gy * 0.051 + three * 2.1) ** 2
    ys = torch.arange(size, dtype=torch.float64, device=dev) + 0.5
    xs = torch.arange(size, dtype=torch.float64, device=dev) + 0.5
    dx = xs[None, None, :] - gx[:, :, None]  # (B, 1, W)
    dy = ys[None, :, None] - gy[:, :, None]  # (B, H, 1)
    dist = torch.sqrt(dx ** 2 + dy ** 2)[:, None]  # (B, 1, H, W)
    logits = slope[:, :, None, None] * (radius[:, :, None, None] - dist)
    # candidate 0: a hole of radius 2 at the point and an island of radius 2 beside the disc
    hole = slope[:, 0, None, None] * (dist[:, 0] - 2.0)
    island_dist = torch.sqrt((dx - radius[:, 0, None, None] - 6.0) ** 2 + dy ** 2)
    island = slope[:, 0, None, None] * (2.0 - island_dist)
    logits[:, 0] = torch.maximum(torch.minimum(logits[:, 0], hole), island)
    return logits.float(), iou.float()


class StandInMaskDecoder(nn.Module):
    def __init__(self, conv_s0: nn.Module, conv_s1: nn.Module):
        super().__init__()
        self.conv_s0, self.conv_s1 = conv_s0, conv_s1  # SAM2Base.forward_image calls them
        self.calls = 0
        self.prompts = 0

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                dense_prompt_embeddings, multimask_output, repeat_image, high_res_features=None):
        self.calls += 1
        bsz = sparse_prompt_embeddings.shape[0]
        self.prompts += bsz
        coords = sparse_prompt_embeddings[:, 0, :2]
        has_mask = dense_prompt_embeddings[:, MASK_FLAG, 0, 0] > 0.5
        logits, iou = disc_logits(coords)
        if multimask_output:
            out_logits, out_iou = logits, iou
        else:
            out_logits, out_iou = logits[:, :1].clone(), iou[:, :1].clone()
            if has_mask.any():
                given = F.pixel_shuffle(dense_prompt_embeddings[:, :MASK_FLAG], 4)  # (B,1,256,256)
                refined = 1.25 * given + 0.8  # a little larger and sharper than the input
                g = coords.double() / 4.0
                out_logits[has_mask] = refined[has_mask]
                out_iou[has_mask] = (0.7 + 0.29 * torch.cos(g[:, 0] * 0.029 + g[:, 1] * 0.071)
                                     ** 2).float()[has_mask, None]
        tokens = torch.zeros(bsz, 1, EMBED, device=coords.device)
        obj = torch.full((bsz, 1), 10.0, device=coords.device)
        return out_logits, out_iou, tokens, obj


class StandInImageEncoder(nn.Module):
    """Zero features of the right shapes (the stand-in decoder ignores the image)."""

    def __init__(self, channels: int = EMBED):
        super().__init__()
        self.channels = channels
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = x.shape[-1]
        maps = [torch.zeros(1, self.channels, s // d, s // d, device=x.device)
                for d in (4, 8, 16)]
        return {"vision_features": maps[-1], "vision_pos_enc": [m.clone() for m in maps],
                "backbone_fpn": maps}


def install(model, image_encoder: bool = True):
    """Replace ``model``'s prompt encoder and mask decoder (and image encoder) by stand-ins.

    Returns the stand-in decoder (its ``calls``/``prompts`` count what it was asked).
    """
    dec = model.sam_mask_decoder
    stand_in = StandInMaskDecoder(dec.conv_s0, dec.conv_s1)
    model.sam_prompt_encoder = StandInPromptEncoder()
    model.sam_mask_decoder = stand_in
    if image_encoder:
        model.image_encoder = StandInImageEncoder()
    return stand_in

