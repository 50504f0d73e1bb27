"""The automatic generator's parameters (Meta's ``SAM2AutomaticMaskGenerator`` names) and its
progress steps. No torch, no model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import amg

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class AutomaticParams:
    """The generator's parameters (names as Meta's ``SAM2AutomaticMaskGenerator``)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    use_m2m: bool = False


# The task's parameter keys that Meta's generator names differently.
_RENAMED = {"iou_thresh": "pred_iou_thresh"}


def automatic_params(values: Mapping[str, Any]) -> AutomaticParams:
    """The generator's parameters from the task's parsed values
    (:func:`engine.parameters.parse_values`): the automatic keys and ``mask_threshold``."""
    fields = AutomaticParams.__dataclass_fields__
    return AutomaticParams(**{_RENAMED.get(k, k): v for k, v in values.items()
                              if _RENAMED.get(k, k) in fields})


def count_steps(params: AutomaticParams) -> int:
    """Decoder batches of points a run makes (over all crops): ``on_batch`` is called this often."""
    return amg.count_point_batches(params.points_per_side, params.points_per_batch,
                                   params.crop_n_layers, params.crop_n_points_downscale_factor)
