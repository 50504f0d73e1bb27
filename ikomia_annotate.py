"""Ikomia glue for ``annotate.py --detector NAME``: a detector and this task in one workflow.

The detector (any Ikomia algorithm with an object detection output, created by name, e.g.
``infer_yolo_v8``) gets the image; its detections go to the task's detection input 2 and each
becomes a box prompt, exactly as README "Detections as prompts" describes. The masks are the
task's own run (``last_result``); each annotation keeps the detection's class (its category) and
confidence (``detector_score``). For videos, ``ikomia_video_detector.VideoDetector`` runs the
detector alone: the engine matches its detections to the tracks.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from ikomia import dataprocess
from ikomia.dataprocess.workflow import Workflow

from .engine.dataset.runner import SegmentResult
from .infer_segment_anything_2_process import (DETECTIONS_INPUT, NUM_MASK_OUTPUTS,
                                               InferSegmentAnything2Factory)


def detection_output(task) -> int:
    """Index of ``task``'s first object detection output."""
    for i, output in enumerate(task.get_outputs()):
        if isinstance(output, dataprocess.CObjectDetectionIO):
            return i
    raise ValueError(f"--detector: {task.name} has no object detection output")


class DetectorSegmenter:
    """A :data:`engine.dataset.runner.Segmenter` running ``detector`` then the task.

    Args:
        detector: the detector's Ikomia name (installed, or installed from Ikomia HUB).
        values: the task's parameters (strings, checked by the task).
        detector_values: the detector's parameters.
    """

    def __init__(self, detector: str, values: Dict[str, str],
                 detector_values: Optional[Dict[str, str]] = None):
        self.wf = Workflow()
        self.detector = self.wf.add_task(name=detector, auto_connect=True)
        if detector_values:
            self.detector.set_parameters(detector_values)
        self.task = self.wf.add_task(task=InferSegmentAnything2Factory().create())
        self.wf.connect_tasks(self.wf.root(), self.task, [(0, 0)])
        self.wf.connect_tasks(self.detector, self.task,
                              [(detection_output(self.detector), DETECTIONS_INPUT)])
        self.task.set_parameters({**values, "multimask_output": "False"})

    def __call__(self, image: np.ndarray, boxes: Optional[Dict] = None) -> SegmentResult:
        """Run the workflow on an HWC RGB uint8 image (``boxes`` unused: the detector's)."""
        self.wf.run_on(array=image)
        seg = self.task.last_result
        objects = self.task.get_output(1 + NUM_MASK_OUTPUTS).get_objects()
        return (seg.masks, seg.scores, [o.label for o in objects],
                [float(o.confidence) for o in objects])
