"""HUB test of infer_segment_anything_2, in Ikomia's convention: ``test(t, data_dict)``.

The HUB runner creates the task ``t`` with its default parameters (so the official checkpoint
is downloaded) and passes ``data_dict`` with its test images. Each scenario below sets a prompt
(or none: automatic mode) on a real image, runs the task with ``run_for_test`` and then checks
the outputs; a failed check replaces the ``"OK"`` status with the reason.
"""
import logging
from typing import List, Optional, Tuple

import cv2
import numpy as np
from ikomia.utils.tests import run_for_test

logger = logging.getLogger(__name__)

MASK_OUTPUTS = (1, 2, 3)  # best mask, then the two other candidates of multimask_output
INSTANCE_OUTPUT = 4


def scenarios(height: int, width: int) -> List[Tuple[str, dict, Optional[int], int]]:
    """(name, parameters, objects expected or None for automatic, candidates per object)."""
    cx, cy = width // 2, height // 2
    return [
        ("one foreground point", {"input_point": f"[[{cx},{cy}]]"}, 1, 1),
        ("foreground and background points",
         {"input_point": f"[[{cx},{cy}],[{width // 10},{height // 10}]]",
          "input_point_label": "[1,0]"}, 1, 1),
        ("one box, three candidates",
         {"input_box": f"[{width // 4},{height // 4},{3 * width // 4},{3 * height // 4}]",
          "multimask_output": "True"}, 1, 3),
        ("two boxes", {"input_box": f"[[0,0,{cx},{cy}],[{cx},{cy},{width - 1},{height - 1}]]"},
         2, 1),
        ("automatic mode, coarse grid", {"points_per_side": "8"}, None, 1),
    ]


def check_outputs(t, shape: Tuple[int, int], objects: Optional[int], candidates: int) -> str:
    """'' when the outputs of the last run are consistent, else what is wrong."""
    height, width = shape
    masks = [t.get_output(i).get_mask() for i in MASK_OUTPUTS]
    instances = t.get_output(INSTANCE_OUTPUT).get_objects()
    for rank, mask in enumerate(masks):
        used = rank < candidates
        if not used:
            if mask is not None and mask.size:
                return f"output {MASK_OUTPUTS[rank]} should be empty without multimask_output"
            continue
        if mask is None or mask.shape != (height, width) or mask.dtype != np.uint8:
            return (f"output {MASK_OUTPUTS[rank]}: mask "
                    f"{None if mask is None else (mask.shape, mask.dtype)}, expected "
                    f"({height}, {width}) uint8")
        top = int(mask.max())
        limit = objects if objects is not None else len(instances)
        if top > limit:
            return f"output {MASK_OUTPUTS[rank]}: label {top} but only {limit} objects"
        names = t.get_output(MASK_OUTPUTS[rank]).get_class_names()
        if objects is not None and len(names) != objects + 1:
            return f"output {MASK_OUTPUTS[rank]}: {len(names)} class names for {objects} objects"
    if objects is not None and len(instances) != objects * candidates:
        return f"{len(instances)} instances, expected {objects * candidates}"
    for obj in instances:
        x, y, w, h = obj.box
        if obj.mask.shape != (height, width):
            return f"instance {obj.id}: mask {obj.mask.shape}, expected ({height}, {width})"
        if not (np.isfinite(obj.confidence) and -1e-3 <= x and -1e-3 <= y
                and x + w <= width + 1e-3 and y + h <= height + 1e-3):
            return f"instance {obj.id}: box {obj.box} or score {obj.confidence} out of range"
    return ""


def test(t, data_dict):
    logger.info(f"===== Test::{t.name} =====")
    path = data_dict["images"]["detection"]["coco"]
    bgr = cv2.imread(path)
    if bgr is None:
        raise FileNotFoundError(f"cannot read the test image {path}")
    img = np.ascontiguousarray(bgr[:, :, ::-1])  # Ikomia images are RGB
    t.get_input(0).set_image(img)
    base = t.get_parameters()
    for name, changes, objects, candidates in scenarios(*img.shape[:2]):
        logger.info(f"----- {name}: {changes}")
        t.set_parameters({**base, **changes})
        params, status = run_for_test(t)
        if status == "OK":
            problem = check_outputs(t, img.shape[:2], objects, candidates)
            if problem:
                logger.error(f"{name}: {problem}")
                status = f"{name}: {problem}"
        yield params, status
