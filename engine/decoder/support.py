"""Which models :class:`engine.decoder.point_decoder.PointDecoder` can decode for: SAM 2's
``MaskDecoder`` with its ``TwoWayTransformer`` of two layers, high-resolution features, the
upscaling it unpacks into products and hypernetwork MLPs it can stack. Others (a changed
architecture) run the model's own decoder.
"""
from __future__ import annotations

import torch

from .readout import stackable


def supports(model) -> bool:
    """True when ``model``'s decoder has the structure ``PointDecoder`` reorders."""
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
    return (len(t.layers) == 2 and t.layers[0].skip_first_layer_pe
            and all(type(a) is Attention for a in attns) and dec.use_high_res_features
            and _upscaling_supported(dec.output_upscaling)
            and stackable(dec.output_hypernetworks_mlps[1:]))


def _upscaling_supported(up) -> bool:
    """``output_upscaling`` is SAM 2's ``[ConvTranspose2d(k=2, s=2), LayerNorm2d, act,
    ConvTranspose2d(k=2, s=2), act]``, which :class:`engine.decoder.upscaling.Upscaler` unpacks."""
    from sam2.modeling.sam2_utils import LayerNorm2d

    if not isinstance(up, torch.nn.Sequential) or len(up) != 5:
        return False
    convs = (up[0], up[3])
    return (all(type(c) is torch.nn.ConvTranspose2d and tuple(c.kernel_size) == (2, 2)
                and tuple(c.stride) == (2, 2) and tuple(c.padding) == (0, 0)
                and tuple(c.output_padding) == (0, 0) and tuple(c.dilation) == (1, 1)
                and c.groups == 1 and c.bias is not None for c in convs)
            and type(up[1]) is LayerNorm2d)
