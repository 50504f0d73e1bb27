"""Automatic mode: masks for everything in the image, as Meta's ``SAM2AutomaticMaskGenerator``.

Entry points: :func:`generate` (:mod:`.generator`: grids, crops, decoding, filters, NMS) with its
:class:`AutomaticParams` (:func:`automatic_params` from the task's values) and
:func:`count_steps` (:mod:`.params`). Its pieces: :mod:`.amg` (Meta's
pure helpers: grids, crops, stability, crop edges, small regions), :mod:`.on_device` (the GPU
path: the grid in few decoder calls, a crop's candidates filtered at once), :mod:`.candidates`
(the candidates kept until the final masks), :mod:`.stability` (stability
and boxes of the candidates that pass the IoU filter), :mod:`.bilinear` and :mod:`.cells` (the
same counted on the low-resolution grid without upsampling), :mod:`.final_masks` (full-size masks
of the survivors of NMS).

May import: :mod:`engine.model`, :mod:`engine.image`, :mod:`engine.decoder`, :mod:`engine.cancel`.
"""
from .generator import generate
from .params import AutomaticParams, ProgressCallback, automatic_params, count_steps

__all__ = ["generate", "AutomaticParams", "ProgressCallback", "automatic_params", "count_steps"]
