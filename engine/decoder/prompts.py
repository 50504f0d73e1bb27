"""What the automatic mode's decoder reads of SAM 2's prompt encoder, in few kernels.

* :func:`point_embeddings`: the sparse embeddings of single foreground points, each with its
  padding point, as ``PromptEncoder(points=(coords, labels=1), boxes=None)`` makes them. The
  encoder selects a row per label kind (five ``where`` over all rows) and encodes the padding
  point only to overwrite it; here the padding row is its learnt vector and the point row the
  point's positional encoding plus the foreground vector: 11 kernels for a whole grid instead of
  about 33.
* :func:`dense_pe`: ``get_dense_pe()``, made once per model (it depends on the weights only).

The arithmetic is the encoder's own (``pe_layer._pe_encoding``: the same operations in the same
order); ``tests/decoder/test_prompt_embeddings.py`` checks both against the module.
"""
from __future__ import annotations

import torch

from .cache import per_model


def point_embeddings(prompt_encoder, coords: torch.Tensor) -> torch.Tensor:
    """Sparse embeddings ``(n, 2, C)`` float32 of ``n`` foreground points ``coords`` ``(n, 2)``
    float32, XY in the model's input frame (pixels of the ``image_size`` square), on their
    device: row 0 the point, row 1 its padding point."""
    pe_layer = prompt_encoder.pe_layer
    h, w = prompt_encoder.input_image_size
    xy = coords + 0.5  # the centre of the pixel, as the encoder shifts it
    if h == w:
        xy = xy / w
    else:
        xy = xy / xy.new_tensor([w, h])
    point = pe_layer._pe_encoding(xy.float()) + prompt_encoder.point_embeddings[1].weight
    pad = prompt_encoder.not_a_point_embed.weight.expand(len(coords), -1)
    return torch.stack([point, pad], dim=1)


def dense_pe(prompt_encoder) -> torch.Tensor:
    """``prompt_encoder.get_dense_pe()`` ``(1, C, h, w)``, made once per model."""
    return per_model(prompt_encoder, "dense_pe",
                     [prompt_encoder.pe_layer.positional_encoding_gaussian_matrix],
                     prompt_encoder.get_dense_pe)
