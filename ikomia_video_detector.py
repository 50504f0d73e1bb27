"""Ikomia glue for ``annotate.py --videos --detector NAME``: an Ikomia detector on a video frame.

:class:`VideoDetector` is the ``detect(frame_index, image) -> Detections`` of
:class:`engine.dataset.video_new_tracks.DetectorTracks`: the detector (any Ikomia algorithm with
an object detection output, created by name as ``ikomia_annotate`` does, e.g. ``infer_yolo_v8``)
runs alone in a workflow on the frame; its objects' ``x, y, w, h`` boxes become continuous XYXY
pixels (as video mode reads its detection input, :func:`ikomia_prompts.video_detections`), with
their class names and confidences. Boxes are returned as they are: ``DetectorTracks`` checks them
(NaN, empty and outside boxes skipped with a warning).
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import numpy as np
from ikomia.dataprocess.workflow import Workflow

from .engine.video.matching import Detections
from .ikomia_annotate import detection_output
from .ikomia_prompts import video_detections


class VideoDetector:
    """Runs one Ikomia detector on frames.

    Args:
        detector: the detector's Ikomia name (installed, or installed from Ikomia HUB), or a
            task object made in Python.
        detector_values: the detector's parameters (strings, as Ikomia stores them).
    """

    def __init__(self, detector: Union[str, object],
                 detector_values: Optional[Dict[str, str]] = None) -> None:
        self.wf = Workflow()
        if isinstance(detector, str):
            self.task = self.wf.add_task(name=detector, auto_connect=True)
        else:
            self.task = self.wf.add_task(task=detector, auto_connect=True)
        if detector_values:
            self.task.set_parameters(detector_values)
        self.output = detection_output(self.task)

    def __call__(self, frame_index: int, image: np.ndarray) -> Detections:
        """The detections on an HWC RGB uint8 frame (``frame_index`` unused: a detector sees
        each frame on its own)."""
        self.wf.run_on(array=image)
        boxes, classes, confidences = video_detections(self.task.get_output(self.output), None)
        return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), list(classes),
                          np.asarray(confidences, np.float32).reshape(-1))
