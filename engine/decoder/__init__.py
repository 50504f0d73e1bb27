"""SAM 2's mask decoder reordered for many point prompts on one image (the automatic mode).

:class:`PointDecoder` computes the same function as the model's ``SAMMaskDecoder`` (to float
rounding): the prompt-independent part of the first attention layer once per image, the
attention between a prompt's few tokens and the 4096 image tokens rearranged to multiply the
image side by fewer vectors (:mod:`.attention`; on GPUs with the projections folded into
matrices made once per model, :mod:`.folded`), on the CPU in float32 the second layer's image
tokens kept factored (:mod:`.factored`, :mod:`.lowrank`), the hypernetwork MLPs as one batched
MLP (:mod:`.readout`), and the upscaling of only the prompts that pass the IoU filter
(:mod:`.upscaling`). :func:`supports` (:mod:`.support`) tells whether a model's decoder has the
shape it needs.

May import: :mod:`engine.model`.
"""
from .point_decoder import PointDecoder, supports

__all__ = ["PointDecoder", "supports"]
