"""Video mode's rules (``engine/video/session.py``): prompts taken when they appear or change,
what starts a new video, names and the per-object results."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infer_segment_anything_2.engine.model.device import CPU, DeviceChoice
from infer_segment_anything_2.engine.image.prompts import parse_prompt
from infer_segment_anything_2.engine.video.session import VideoSession

from clips import clip_frame, small_model

BOXES = "[[10,10,30,30],[35,5,60,25]]"


@pytest.fixture(scope="module")
def model():
    return small_model()


class Spy:
    """Records the prompts each frame hands the tracker."""

    def __init__(self, session):
        self.calls = []
        self.session = session

    def __call__(self, model, choice, image, prompt, names=(), threshold=0.0, stop=None):
        tracker = self.session._tracker_for(model, choice, image.shape[:2])
        track = tracker.track

        def spy(img, prompts, should_stop=None):
            self.calls.append(sorted(prompts))
            return track(img, prompts, should_stop)
        tracker.track = spy
        try:
            return VideoSession.frame(self.session, model, choice, image, prompt, names,
                                      threshold, stop)
        finally:
            del tracker.track


def test_prompts_are_taken_when_they_appear_or_change(model):
    session = VideoSession()
    run = Spy(session)
    one = parse_prompt("", "", "[10,10,30,30]")
    two = parse_prompt("", "", BOXES)
    moved = parse_prompt("", "", "[[10,10,30,30],[36,5,60,25]]")
    with torch.no_grad():
        segs = [run(model, CPU, clip_frame(0, 48, 64), one),
                run(model, CPU, clip_frame(1, 48, 64), one),  # unchanged: not applied again
                run(model, CPU, clip_frame(2, 48, 64), two),  # object 2 appears
                run(model, CPU, clip_frame(3, 48, 64), moved),  # object 2's box changed
                run(model, CPU, clip_frame(4, 48, 64), parse_prompt("", "", ""))]  # removed
    assert run.calls == [[0], [], [1], [1], []]
    assert [len(s) for s in segs] == [1, 1, 2, 2, 2]
    assert session.frame_index == 4 and session.videos == 1
    for seg in segs:
        assert list(seg.object_index) == list(range(len(seg)))
        assert seg.masks.shape[1:] == (48, 64) and ((seg.scores > 0) & (seg.scores < 1)).all()


def test_what_starts_a_new_video(model):
    session = VideoSession()
    run = Spy(session)
    box = parse_prompt("", "", "[10,10,30,30]")
    with torch.no_grad():
        run(model, CPU, clip_frame(0, 48, 64), box)
        run(model, CPU, clip_frame(1, 48, 64), box)
        assert (session.frame_index, session.videos) == (1, 1)
        run(model, CPU, clip_frame(2, 50, 64), box)  # another size: new video, prompt again
        assert (session.frame_index, session.videos) == (0, 2)
        bf16 = DeviceChoice.make(torch.device("cpu"), "bfloat16")
        run(model, bf16, clip_frame(3, 50, 64), box)  # another precision
        assert (session.frame_index, session.videos) == (0, 3)
        session.reset()
        run(model, bf16, clip_frame(4, 50, 64), box)
        assert (session.frame_index, session.videos) == (0, 4)
    assert run.calls == [[0], [], [0], [0], [0]]


def test_names_follow_the_objects(model):
    session = VideoSession()
    with torch.no_grad():
        session.frame(model, CPU, clip_frame(0, 48, 64), parse_prompt("", "", BOXES),
                      ["car", "dog"])
        session.frame(model, CPU, clip_frame(1, 48, 64), parse_prompt("", "", BOXES), [])
        assert session.names == ["car", "dog"]
        three = parse_prompt("", "", "[[10,10,30,30],[35,5,60,25],[1,1,9,9]]")
        session.frame(model, CPU, clip_frame(2, 48, 64), three, [])
    assert session.names == ["car", "dog", "object 3"]


def test_point_groups_are_objects(model):
    session = VideoSession()
    groups = parse_prompt("[[[20,20]],[[40,15]]]", "[[1],[1]]", "")
    with torch.no_grad():
        seg = session.frame(model, CPU, clip_frame(0, 48, 64), groups, [])
    assert len(seg) == 2
    scores = np.asarray(seg.scores)
    assert ((scores > 0) & (scores < 1)).all()


def test_repeated_names_are_numbered_in_the_outputs():
    from infer_segment_anything_2.infer_segment_anything_2_process import _unique

    assert _unique(["car", "dog", "car", "object 4"]) == ["car", "dog", "car 3", "object 4"]
