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
        finish = tracker.finish

        def spy(staged, prompts={}, masks={}, should_stop=None):
            self.calls.append(sorted(prompts))
            return finish(staged, prompts, masks, should_stop)
        tracker.finish = spy
        try:
            return self.session.frame(model, choice, image, prompt, names,
                                      mask_threshold=threshold, should_stop=stop)
        finally:
            del tracker.finish


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


def test_memory_is_flat_over_2000_frames_with_objects_joining_and_leaving():
    """Track everything on 2,000 frames (small input size): a new object is seeded every 8
    frames and each leaves (scored absent) and is dropped after 4 frames: the objects alive,
    the tracker's bytes and the process's peak memory stay flat, ids keep growing (frames with
    no object and no seeding are not encoded, and the image encoder is a stand-in of the same
    output shapes, which keeps the test short)."""
    import resource

    from infer_segment_anything_2.engine.image.results import Segmentation
    from infer_segment_anything_2.engine.video.session import VideoOptions

    model = small_model(standin_encoder=True)
    with torch.no_grad():  # tracked frames score the objects absent: they leave
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias -= 30.0
    frame = np.zeros((48, 64, 3), np.uint8)

    def seeder(image, staged):
        mask = np.zeros((1, 48, 64), bool)
        x = (staged.index * 3) % 50
        mask[0, 10:30, x:x + 12] = True
        return Segmentation.from_masks(mask, np.ones(1, np.float32))

    session = VideoSession()
    options = VideoOptions(seed_every=8, drop_after=4)
    alive, sizes, peaks = [], {}, {}
    with torch.no_grad():
        for t in range(2000):
            seg = session.frame(model, CPU, frame, parse_prompt("", "", ""), [],
                                options=options, seeder=seeder)
            alive.append(len(seg))
            if t in (200, 1992):  # the same phase: a seeding frame, one object alive
                sizes[t] = sum(_object_bytes(o) for o in session.tracker.objects.values())
                peaks[t] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    assert (min(alive[100:]), max(alive[100:])) == (0, 1)  # objects come and go
    assert session.video.next_id == 250  # one object every 8 frames, ids never reused
    assert 0 < sizes[1992] <= sizes[200] * 1.01
    assert peaks[1992] - peaks[200] < 20 * 1024  # KiB


def _object_bytes(obj) -> int:
    total = 0
    for outputs in (obj.cond, obj.recent):
        for out in outputs.values():
            for value in out.values():
                if isinstance(value, torch.Tensor):
                    total += value.numel() * value.element_size()
    return total
