"""An Ikomia detector on video frames (ikomia_video_detector.py, through the real Ikomia runtime):
its boxes as the engine's Detections, and the tracks they start in DetectorTracks."""
from __future__ import annotations

import numpy as np
import pytest

from infer_segment_anything_2.engine.dataset.video_new_tracks import DetectorTracks
from infer_segment_anything_2.engine.video.offline_types import FrameResult
from infer_segment_anything_2.ikomia_video_detector import VideoDetector

H, W = 120, 160


def moving_detector(name="video_moving_detector"):
    """A ``CObjectDetectionTask`` made in Python (and its factories, to register by name): on
    its k-th run a car at ``x = 10 + 4k`` and, from the third run on, a dog; its fourth run also
    has a box with a NaN width."""
    from ikomia import core, dataprocess

    class MovingDetector(dataprocess.CObjectDetectionTask):
        def __init__(self, name=name, param=None):
            dataprocess.CObjectDetectionTask.__init__(self, name)
            self.set_param_object(core.CWorkflowTaskParam())
            self.runs = 0

        def run(self):
            self.begin_task_run()
            self.set_names(["car", "dog"])
            k = self.runs
            self.add_object(0, 0, 0.9, 10.0 + 4 * k, 20.0, 30.0, 25.0)
            if k >= 2:
                self.add_object(1, 1, 0.7, 100.0, 60.0, 20.5, 30.0)
            if k == 3:
                self.add_object(2, 1, 0.5, 5.0, 5.0, float("nan"), 10.0)
            self.runs += 1
            self.end_task_run()

    class Factory(dataprocess.CTaskFactory):
        def __init__(self):
            dataprocess.CTaskFactory.__init__(self)
            self.info.name = name

        def create(self, param=None):
            return MovingDetector(self.info.name, param)

    class ParamFactory(dataprocess.CTaskParamFactory):
        def __init__(self):
            dataprocess.CTaskParamFactory.__init__(self)
            self.name = name

        def create(self):
            return core.CWorkflowTaskParam()

    return MovingDetector, Factory(), ParamFactory()


def test_detections_of_a_frame_as_xyxy_boxes_with_classes():
    detector_class, _, _ = moving_detector()
    detect = VideoDetector(detector_class())
    frame = np.zeros((H, W, 3), np.uint8)
    first = detect(0, frame)
    np.testing.assert_allclose(first.boxes, [[10, 20, 40, 45]])
    assert first.boxes.dtype == np.float32 and first.classes == ["car"]
    np.testing.assert_allclose(first.confidences, [0.9])
    detect(1, frame)
    third = detect(2, frame)
    np.testing.assert_allclose(third.boxes, [[18, 20, 48, 45], [100, 60, 120.5, 90]])
    assert third.classes == ["car", "dog"]
    np.testing.assert_allclose(third.confidences, [0.9, 0.7])
    fourth = detect(3, frame)  # the NaN box comes through: DetectorTracks checks boxes
    assert len(fourth) == 3 and np.isnan(fourth.boxes[2]).any()


def test_a_detector_by_name_starts_tracks(caplog):
    """By name, as ``--detector NAME``: the car starts track 0 on frame 0 and the dog track 1 on
    frame 2; the car's later boxes match its track (its last detection box: the stand-in
    tracker here gives no masks), the NaN box is skipped with a warning."""
    from ikomia.dataprocess.registry import ik_registry


    _, factory, param_factory = moving_detector("video_named_detector")
    ik_registry.register_task(factory, param_factory)
    tracks = DetectorTracks(VideoDetector("video_named_detector"), every=1, match_iou=0.3,
                            max_tracks=8)
    ids: list = []
    started = {}
    for t in range(4):
        result = FrameResult(t, False, np.array(ids, np.int64), np.zeros((len(ids), H, W), bool),
                             np.ones(len(ids), np.float32))
        new = tracks(t, np.zeros((H, W, 3), np.uint8), result)
        started.update({tid: t for tid in new})
        ids += sorted(new)
    assert started == {0: 0, 1: 2}
    assert tracks.categories == {0: "car", 1: "dog"}
    np.testing.assert_allclose(tracks.last_boxes[0], [22, 20, 52, 45])
    assert "frame 3: 1 detection(s) with NaN or infinite coordinates: skipped" in caplog.text


@pytest.fixture(autouse=True)
def _warnings(caplog):
    import logging

    caplog.set_level(logging.WARNING)
