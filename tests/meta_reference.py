"""Meta's ``SAM2AutomaticMaskGenerator`` as a :class:`Segmentation`: the reference the tests and
benchmarks compare :func:`engine.automatic.generator.generate` with (not shipped in the engine),
and the comparison of two sets of masks."""
from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import numpy as np
import pytest
import torch

from conftest import iou as mask_iou
from infer_segment_anything_2.engine.automatic import AutomaticParams
from infer_segment_anything_2.engine.model.device import CPU, DeviceChoice
from infer_segment_anything_2.engine.image.masks import resize_nearest
from infer_segment_anything_2.engine.image.predictor import resize_for_input
from infer_segment_anything_2.engine.image.results import Segmentation


def generate_with_meta(model, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
                       device_choice: Optional[DeviceChoice] = None) -> Segmentation:
    """Masks for the whole image through Meta's ``SAM2AutomaticMaskGenerator`` (the reference).

    ``min_mask_region_area``: the installed SAM 2 generator does not call its own
    ``postprocess_small_regions``; it hands the value to ``SAM2ImagePredictor`` as
    ``max_hole_area``/``max_sprinkle_area``, which edit the 256x256 logits through SAM 2's CUDA
    extension and are skipped with a warning without it (on CPU). The reference therefore runs
    the generator with it off and then applies Meta's ``postprocess_small_regions`` to the result,
    as SAM 1's generator did; the area is converted from original-image pixels to pixels of the
    image the model saw.

    Args:
        image: HWC RGB uint8, original size.
        scale: ``input_size_percent / 100``; masks are brought back to the original size.
    Returns:
        a :class:`Segmentation` sorted by decreasing area, with stability scores.
    """
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.utils.amg import MaskData, rle_to_mask

    choice = device_choice or CPU
    kwargs = asdict(params)
    min_area = kwargs.pop("min_mask_region_area")
    generator = SAM2AutomaticMaskGenerator(model, multimask_output=True, min_mask_region_area=0,
                                           output_mode="uncompressed_rle", **kwargs)
    # Meta's image predictor hard-codes the backbone's feature sizes of a 1024x1024 input; a model
    # built at another ``image_size`` (the tests' smaller models) needs its own.
    size = model.image_size
    generator.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8),
                                          (size // 16, size // 16)]
    small = resize_for_input(image, scale)
    with torch.no_grad(), choice.compute():
        records = generator.generate(small)
    h, w = image.shape[:2]
    if not records:
        return Segmentation.empty(h, w)
    rles = [r["segmentation"] for r in records]
    iou = np.array([r["predicted_iou"] for r in records], np.float32)
    stability = np.array([r["stability_score"] for r in records], np.float32)
    if min_area > 0:
        area = min_area * (small.shape[0] * small.shape[1]) / float(h * w)
        xywh = torch.tensor([r["bbox"] for r in records], dtype=torch.float32)
        data = MaskData(rles=rles, boxes=torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                        iou_preds=torch.from_numpy(iou), stability_score=torch.from_numpy(stability))
        data = SAM2AutomaticMaskGenerator.postprocess_small_regions(
            data, area, max(params.box_nms_thresh, params.crop_nms_thresh))
        rles, iou, stability = data["rles"], data["iou_preds"].numpy(), \
            data["stability_score"].numpy()
    small_masks = [rle_to_mask(r) for r in rles]
    order = np.argsort([-int(m.sum()) for m in small_masks], kind="stable")
    masks = np.stack([resize_nearest(small_masks[i], h, w) for i in order])
    return Segmentation.from_masks(masks, iou[order], stability=stability[order])


def assert_same_masks(ours, ref, min_iou=0.98):
    """Same count; each reference mask has its own match (greedy by IoU) with IoU > min_iou, and
    the matched predicted IoU and stability agree. Returns the matched IoUs."""
    assert len(ours) == len(ref), (len(ours), len(ref))
    free = list(range(len(ours)))
    matched = []
    for i in range(len(ref)):
        scores = [mask_iou(ref.masks[i], ours.masks[j]) for j in free]
        best = int(np.argmax(scores))
        assert scores[best] > min_iou, (i, scores[best])
        matched.append(scores[best])
        j = free.pop(best)
        assert ours.scores[j] == pytest.approx(ref.scores[i], abs=1e-5)
        assert ours.stability[j] == pytest.approx(ref.stability[i], abs=1e-5)
    return np.array(matched)
