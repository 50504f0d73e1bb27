"""Automatic mode: masks for everything in the image."""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Optional

import numpy as np
import torch

from .loader import DeviceChoice, select_device
from .masks import resize_nearest
from .predictor import resize_for_input
from .results import Segmentation


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


def generate_with_meta(model, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
                       device_choice: Optional[DeviceChoice] = None) -> Segmentation:
    """Masks for the whole image through Meta's ``SAM2AutomaticMaskGenerator``.

    Args:
        image: HWC RGB uint8, original size.
        scale: ``input_size_percent / 100``; masks are brought back to the original size.
    Returns:
        a :class:`Segmentation` sorted by decreasing area, with stability scores.
    """
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    choice = device_choice or select_device(False)
    generator = SAM2AutomaticMaskGenerator(model, multimask_output=True, **asdict(params))
    small = resize_for_input(image, scale)
    with torch.no_grad(), choice.autocast():
        records = generator.generate(small)
    h, w = image.shape[:2]
    if not records:
        return Segmentation.empty(h, w)
    records.sort(key=lambda r: -r["area"])
    masks = np.stack([resize_nearest(r["segmentation"], h, w) for r in records])
    return Segmentation.from_masks(
        masks, np.array([r["predicted_iou"] for r in records], np.float32),
        stability=np.array([r["stability_score"] for r in records], np.float32))
