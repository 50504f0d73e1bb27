"""Video mode's rules for detections and seeding (``engine/video/session.py``), in a scripted
world with a tracker that follows it perfectly (``world.py``): detections matched to objects
whatever their order, new objects with new ids, objects that leave and come back, seeding
without duplicates, bounds and drops."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from infer_segment_anything_2.engine.image.prompts import Prompt, parse_prompt
from infer_segment_anything_2.engine.model.device import CPU
from infer_segment_anything_2.engine.video.session import VideoOptions, VideoSession

from world import H, W, PerfectTracker, World, seeder_of

FRAME = np.zeros((H, W, 3), np.uint8)
NONE = Prompt()


def _session(world, **kw):
    trackers = []

    def factory(model, choice):
        trackers.append(PerfectTracker(world, model, choice, **kw))
        return trackers[-1]
    return VideoSession(tracker_factory=factory), trackers


def _moving(x0, y0, dx, n, size=20, gone=()):
    return [None if t in gone else [x0 + dx * t, y0, x0 + dx * t + size, y0 + size]
            for t in range(n)]


def _run(session, world, frames, options=VideoOptions(), seed=False, classes=True,
         detect=True):
    out = []
    for t in range(frames):
        dets = world.detections(t, classes=classes) if detect else None
        seg = session.frame(None, CPU, FRAME, NONE, [], dets, options,
                            seeder=seeder_of(world) if seed else None)
        out.append({session.name_of(int(i)): int(i) for i in seg.object_index})
    return out


def test_detections_in_a_new_order_each_frame_keep_their_objects():
    """The detector lists its boxes in another order on every frame and finds a new object on
    frame 3: ids and names stay with the objects, the new one gets the next id."""
    world = World({"car": _moving(10, 10, 6, 6), "dog": _moving(90, 60, -5, 6),
                   "person": [None] * 3 + _moving(60, 90, 0, 3)})
    session, trackers = _session(world)
    frames = _run(session, world, 6)
    assert frames[0] == {"car": frames[0]["car"], "dog": frames[0]["dog"]}
    assert sorted(frames[0].values()) == [0, 1]
    for seen in frames[1:3]:
        assert seen == frames[0]
    for seen in frames[3:]:
        assert seen == {**frames[0], "person": 2}
    # only the frames where objects appear applied a box: the memory tracks the rest
    assert [(t, k) for t, _, k in trackers[0].started] == [(0, "box"), (0, "box"), (3, "box")]
    assert len(trackers[0].objects) == 3


def test_an_object_that_leaves_and_comes_back_keeps_its_id():
    """The car leaves the view on frames 2-3 (no detection, the tracker finds nothing) and
    comes back on frame 4; the dog is in view but lost by the tracker on frame 2 while the
    detector sees it: matched to its last box, not a new object."""
    world = World({"car": _moving(10, 10, 5, 7, gone=(2, 3)), "dog": _moving(100, 70, -2, 7)})
    session, trackers = _session(world, lost=[("car", 2), ("car", 3), ("dog", 2)])
    frames = _run(session, world, 7)
    assert all(seen == frames[0] for seen in frames)
    assert len(trackers[0].started) == 2


class WrongMasks(PerfectTracker):
    """A tracker whose masks never fit the objects: a blob in the frame's top-left corner, or
    nothing (every object absent)."""

    def __init__(self, world, model=None, choice=None, empty=False):
        super().__init__(world, model, choice)
        self.empty = empty

    def _logits(self, oid, t):
        out = torch.full((1, 1, 256, 256), -10.0)
        if not self.empty:
            out[..., :4, :4] = 10.0
        return out


@pytest.mark.parametrize("empty", [False, True])
def test_objects_whose_masks_miss_their_boxes_match_their_last_detections(empty):
    """Masks that do not fit the detections (a corner blob, or empty): the same two boxes on
    frames 0..4 are the same two objects, matched by their last detection's box (the mask box
    alone started two new objects on every frame: 4 objects on frame 1)."""
    world = World({"car": _moving(40, 40, 0, 5), "dog": _moving(100, 60, 0, 5)})
    trackers = []

    def factory(model, choice):
        trackers.append(WrongMasks(world, model, choice, empty))
        return trackers[-1]
    session = VideoSession(tracker_factory=factory)
    frames = _run(session, world, 5)
    assert frames == [frames[0]] * 5 and sorted(frames[0].values()) == [0, 1]
    assert sorted(frames[0]) == ["car", "dog"]
    assert len(trackers) == 1 and len(trackers[0].started) == 2
    assert sorted(trackers[0].objects) == [0, 1]


def test_classes_must_agree():
    """A detection of another class on an object's box starts a new object; without classes
    on the detections the boxes alone decide."""
    world = World({"car": _moving(10, 10, 0, 2)})
    session, _ = _session(world)
    session.frame(None, CPU, FRAME, NONE, [], world.detections(0))
    other = world.detections(1)
    other.classes = ["dog"]
    seg = session.frame(None, CPU, FRAME, NONE, [], other)
    assert [session.name_of(int(i)) for i in seg.object_index] == ["car", "dog"]
    session, _ = _session(world)
    assert _run(session, world, 2, classes=False) == [{"object 1": 0}] * 2


def test_reapply_every_n_frames():
    world = World({"car": _moving(10, 10, 4, 7)})
    session, trackers = _session(world)
    calls = []
    tracker = session._tracker_for(None, CPU, (H, W))
    finish = tracker.finish
    tracker.finish = lambda staged, prompts={}, masks={}, should_stop=None: (
        calls.append(sorted(prompts)) or finish(staged, prompts, masks, should_stop))
    _run(session, world, 7, VideoOptions(reapply_every=3))
    assert calls == [[0], [], [], [0], [], [], [0]]


def test_seeding_starts_each_shape_once(caplog):
    """Track everything: each shape in view becomes one object (its parts, covered by it, do
    not), later seeding frames add only the shape that entered the view, and nothing is added
    twice."""
    world = World({"a": _moving(5, 5, 3, 9, 40), "b": _moving(100, 60, -2, 9, 30),
                   "c": [None] * 4 + _moving(60, 5, 0, 5, 25)})
    session, trackers = _session(world)
    frames = _run(session, world, 9, VideoOptions(seed_every=2), seed=True, detect=False)
    started = trackers[0].started
    assert [(t, k) for t, _, k in started] == [(0, "mask"), (0, "mask"), (4, "mask")]
    assert {trackers[0].follows[i] for _, i, _ in started} == {"a", "b", "c"}
    assert len(frames[-1]) == 3 and sorted(frames[-1].values()) == [0, 1, 2]


def test_max_objects_warns_once_per_video(caplog):
    world = World({"abcdefgh"[i]: _moving(5 + 15 * i, 5 + 10 * (i % 3), 0, 3, 10) for i in range(8)})
    session, trackers = _session(world)
    with caplog.at_level(logging.WARNING):
        frames = _run(session, world, 3, VideoOptions(max_objects=5))
    assert [len(f) for f in frames] == [5, 5, 5]
    assert sum("video_max_objects" in r.message for r in caplog.records) == 1


def test_thousands_of_detections_are_capped():
    """A detector that emits thousands of boxes: at most max_objects objects are started."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 140, (3000, 2))
    boxes = np.concatenate([xy, xy + 10], axis=1)
    world = World({"car": _moving(10, 10, 0, 2)})
    session, trackers = _session(world)
    from infer_segment_anything_2.engine.video.matching import Detections

    many = Detections(boxes.astype(np.float32), ["car"] * 3000, np.ones(3000, np.float32))
    seg = session.frame(None, CPU, FRAME, NONE, [], many, VideoOptions(max_objects=32))
    assert len(seg) == 32 and len(trackers[0].objects) == 32


def test_absent_objects_are_dropped_and_their_ids_retired():
    """drop_after=2: the car, out of view from frame 2, is dropped after two absent frames;
    when it comes back it is a new object with a new id (ids are never reused)."""
    world = World({"car": _moving(10, 10, 2, 8, gone=(2, 3, 4)), "dog": _moving(100, 70, 0, 8)})
    session, trackers = _session(world)
    frames = _run(session, world, 8, VideoOptions(drop_after=2))
    assert frames[1] == {"car": 0, "dog": 1}
    assert frames[2] == {"car": 0, "dog": 1}  # absent 1 frame: kept (empty mask)
    assert frames[3] == frames[4] == {"dog": 1}  # absent 2 frames: dropped
    assert frames[5] == {"dog": 1, "car": 2}
    assert 0 not in trackers[0].objects


def test_parameter_prompts_keep_their_objects_beside_detections():
    """A box given as a parameter is object 0 (today's rule) and is not matched to the
    detections; an unchanged prompt is not applied again."""
    world = World({"car": _moving(10, 10, 3, 3), "dog": _moving(100, 60, 0, 3)})
    session, trackers = _session(world)
    box = parse_prompt("", "", "[100,60,120,80]")  # the dog, given by hand
    names = []
    for t in range(3):
        seg = session.frame(None, CPU, FRAME, box, [""], world.detections(t))
        names.append([session.name_of(int(i)) for i in seg.object_index])
    # the dog's detection matches the prompted object: no second dog
    assert names == [["object 1", "car"]] * 3
    assert len(trackers[0].started) == 2


def test_a_stop_leaves_the_video_as_it_was():
    from infer_segment_anything_2.engine.cancel import GenerationCancelled

    world = World({"car": _moving(10, 10, 3, 3), "dog": [None] + _moving(100, 60, 0, 2)})
    session, trackers = _session(world)
    session.frame(None, CPU, FRAME, NONE, [], world.detections(0))
    tracker = trackers[0]
    finish = tracker.finish

    def stopped(*a, **k):
        raise GenerationCancelled("stop")
    tracker.finish = stopped
    try:
        session.frame(None, CPU, FRAME, NONE, [], world.detections(1))
    except GenerationCancelled:
        pass
    tracker.finish = finish
    assert session.video.next_id == 1 and session.frame_index == 0
    seg = session.frame(None, CPU, FRAME, NONE, [], world.detections(1))
    assert [session.name_of(int(i)) for i in seg.object_index] == ["car", "dog"]
