"""New tracks from a detector or from automatic seeding (engine.dataset.video_new_tracks).

The rule tests feed the sources a stream of FrameResults built here (no model): a world of two
boxes, the car seen from frame 0 and the dog from frame 6, and a stand-in propagation whose mask
of a track is its object's box on the frame (or a deliberately wrong one)."""
from __future__ import annotations

import logging
import pickle
from typing import Dict, List

import numpy as np
import pytest

from infer_segment_anything_2.engine.dataset.video_new_tracks import (
    SEED_CATEGORY, DetectorTracks, SeedTracks)
from infer_segment_anything_2.engine.video.matching import Detections
from infer_segment_anything_2.engine.video.offline_types import FrameResult, TrackPrompt

H, W = 120, 160
DOG_FROM = 6


def world_boxes(t: int) -> Dict[str, np.ndarray]:
    """The objects in frame ``t``: continuous XYXY float32 boxes by class."""
    boxes = {"car": np.array([10 + 2 * t, 20, 40 + 2 * t, 50], np.float32)}
    if t >= DOG_FROM:
        boxes["dog"] = np.array([100, 60 + t, 130, 90 + t], np.float32)
    return boxes


def box_mask(box: np.ndarray) -> np.ndarray:
    m = np.zeros((H, W), bool)
    x1, y1, x2, y2 = np.round(box).astype(int)
    m[max(y1, 0):y2, max(x1, 0):x2] = True
    return m


class FakeDetector:
    """Sees ``extra`` on a frame, then the world's boxes (dog first: the order must not matter)."""

    def __init__(self, extra: Dict[int, tuple] = None):
        self.calls: List[int] = []
        self.extra = extra or {}

    def __call__(self, t: int, image: np.ndarray) -> Detections:
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        self.calls.append(t)
        found = list(self.extra.get(t, ())) + sorted(world_boxes(t).items(), reverse=True)
        return Detections(np.array([b for _, b in found], np.float32).reshape(-1, 4),
                          [c for c, _ in found], np.full(len(found), 0.9, np.float32))


class StandInPropagation:
    """Tracks each started track as the world object its prompt started on (the class with the
    box nearest the prompt's), its mask that object's box on every frame; ``wrong(t, track)``
    may replace a mask."""

    def __init__(self, new_tracks, wrong=None):
        self.new_tracks, self.wrong = new_tracks, wrong
        self.objects: Dict[int, str] = {}  # track id -> world class
        self.started: Dict[int, TrackPrompt] = {}

    def frame(self, t: int) -> Dict[int, TrackPrompt]:
        boxes = world_boxes(t)
        ids = sorted(self.objects)
        masks = [box_mask(boxes[self.objects[i]]) if self.objects[i] in boxes
                 else np.zeros((H, W), bool) for i in ids]
        if self.wrong is not None:
            masks = [self.wrong(t, i, m) for i, m in zip(ids, masks)]
        result = FrameResult(t, False, np.array(ids, np.int64),
                             np.array(masks, bool).reshape(-1, H, W), np.ones(len(ids), np.float32))
        new = self.new_tracks(t, np.zeros((H, W, 3), np.uint8), result)
        for tid, prompt in new.items():
            assert tid not in self.objects and prompt.frame == t
            ref = prompt.box if prompt.box is not None else _box_of(prompt.mask)
            self.objects[tid] = min(boxes, key=lambda c: np.abs(boxes[c] - ref).sum())
            self.started[tid] = prompt
        return new

    def run(self, frames) -> Dict[int, Dict[int, TrackPrompt]]:
        return {t: self.frame(t) for t in frames}


def _box_of(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_detections_start_tracks_once_every_n_frames():
    detector = FakeDetector()
    tracks = DetectorTracks(detector, every=3, match_iou=0.3, max_tracks=8, first_id=5)
    run = StandInPropagation(tracks).run(range(12))
    assert detector.calls == [0, 3, 6, 9]
    assert {t: sorted(new) for t, new in run.items() if new} == {0: [5], 6: [6]}
    assert tracks.categories == {5: "car", 6: "dog"}
    car, dog = run[0][5], run[6][6]
    assert car.mask is None and car.points is None and dog.frame == 6
    np.testing.assert_array_equal(car.box, world_boxes(0)["car"])
    np.testing.assert_array_equal(dog.box, world_boxes(6)["dog"])
    # the last detection of each track: frame 9's boxes
    np.testing.assert_array_equal(tracks.last_boxes[5], world_boxes(9)["car"])
    np.testing.assert_array_equal(tracks.last_boxes[6], world_boxes(9)["dog"])
    assert tracks.next_id == 7


def _blob(t, tid, mask):  # a poor mask in a corner: matched by the last detection box
    out = np.zeros_like(mask)
    out[:5, :5] = True
    return out


def test_a_wrong_mask_matches_by_its_last_detection_box():
    """The car's mask is a blob in a corner (SAM 2's poor mask): its detection on frames 3, 6, 9
    matches the box of its last detection (IoU 0.67), as video mode's rule: no second car."""
    tracks = DetectorTracks(FakeDetector(), every=3, match_iou=0.3, max_tracks=8)
    run = StandInPropagation(tracks, wrong=_blob).run(range(10))
    assert {t: sorted(new) for t, new in run.items() if new} == {0: [0], 6: [1]}
    np.testing.assert_array_equal(tracks.last_boxes[0], world_boxes(9)["car"])


@pytest.mark.parametrize("lost_from", [None, 4])
def test_a_mask_box_matches_and_an_absent_track_its_last_mask_box(lost_from):
    """Detections 6 frames apart with ``match_iou`` 0.5: the car's last detection box is too far
    (IoU 0.43); its mask box on frame 6 matches (IoU 1), or, when SAM 2 lost it from frame 4,
    its last mask box (frame 3's, IoU 0.67)."""
    def lost(t, tid, mask):
        return np.zeros_like(mask) if lost_from is not None and t >= lost_from else mask

    tracks = DetectorTracks(FakeDetector(), every=6, match_iou=0.5, max_tracks=8)
    run = StandInPropagation(tracks, wrong=lost).run(range(7))
    assert {t: sorted(new) for t, new in run.items() if new} == {0: [0], 6: [1]}
    assert tracks.categories == {0: "car", 1: "dog"}
    last_mask = world_boxes(6 if lost_from is None else lost_from - 1)["car"]
    np.testing.assert_array_equal(tracks.mask_boxes[0], last_mask)


def test_classes_must_agree_and_bad_boxes_are_skipped(caplog):
    """On frame 3 the detector also sees a truck on the car's box (another class: a new track),
    a NaN box and a box outside the frame (both skipped, with a warning each)."""
    extra = {3: [("truck", world_boxes(3)["car"]),
                 ("car", np.array([np.nan, 1, 5, 5], np.float32)),
                 ("car", np.array([W + 5, 0, W + 20, 9], np.float32))]}
    tracks = DetectorTracks(FakeDetector(extra), every=3, match_iou=0.3, max_tracks=8)
    with caplog.at_level(logging.WARNING):
        run = StandInPropagation(tracks).run(range(4))
    assert {t: list(new) for t, new in run.items() if new} == {0: [0], 3: [1]}
    assert tracks.categories == {0: "car", 1: "truck"}
    text = caplog.text
    assert "frame 3: 1 detection(s) with NaN" in text and "frame 3: 1 detection(s) outside" in text


def test_max_tracks_bounds_new_tracks_and_warns_once(caplog):
    tracks = DetectorTracks(FakeDetector(), every=1, match_iou=0.3, max_tracks=1)
    with caplog.at_level(logging.WARNING):
        run = StandInPropagation(tracks).run(range(10))
    assert {t: list(new) for t, new in run.items() if new} == {0: [0]}
    assert caplog.text.count("max_tracks (1) reached") == 1


def _resumed(make, frames, cut, wrong=None):
    """The new tracks of ``frames`` by one source, and by one whose state is pickled after
    ``cut`` frames and loaded into a fresh source (the propagation's own state carried over)."""
    whole = StandInPropagation(make(), wrong).run(frames)
    first = make()
    prop = StandInPropagation(first, wrong)
    part = prop.run(frames[:cut])
    second = make()
    second.load_state(pickle.loads(pickle.dumps(first.state())))
    prop.new_tracks = second
    part.update(prop.run(frames[cut:]))
    return whole, part, second


def _same(a: Dict[int, Dict[int, TrackPrompt]], b: Dict[int, Dict[int, TrackPrompt]]) -> None:
    assert a.keys() == b.keys()
    for t in a:
        assert a[t].keys() == b[t].keys()
        for tid in a[t]:
            for name in ("box", "mask"):
                x, y = getattr(a[t][tid], name), getattr(b[t][tid], name)
                assert (x is None) == (y is None)
                if x is not None:
                    assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


def _lost_from_4(t, tid, mask):  # absent from frame 4: matched by the last mask box
    return np.zeros_like(mask) if t >= 4 else mask


@pytest.mark.parametrize("every, match_iou, wrong", [(2, 0.3, _blob), (6, 0.5, _lost_from_4)])
def test_detector_state_round_trip_continues_bit_identically(every, match_iou, wrong):
    """Pickled after frame 4 and loaded into a new source: the same tracks on frames 5..11,
    where the car matches by a box remembered before the cut."""
    def make():
        return DetectorTracks(FakeDetector(), every=every, match_iou=match_iou, max_tracks=8)

    frames = list(range(12))
    whole, part, resumed = _resumed(make, frames, 5, wrong)
    _same(whole, part)
    assert sum(len(n) for n in whole.values()) == 2  # the car and the dog, once each
    ref = make()
    StandInPropagation(ref, wrong).run(frames)
    assert resumed.categories == ref.categories and resumed.next_id == ref.next_id
    for mine, theirs in ((resumed.last_boxes, ref.last_boxes), (resumed.mask_boxes,
                                                               ref.mask_boxes)):
        assert mine.keys() == theirs.keys()
        for tid, box in theirs.items():
            assert mine[tid].tobytes() == box.tobytes()


def fake_generate(image: np.ndarray) -> np.ndarray:
    """The automatic mode's masks of a frame of the world (known from the image's first pixel,
    the frame index): largest first, the car, a part of the car (its left half), the dog."""
    t = int(image[0, 0, 0])
    boxes = world_boxes(t)
    car = boxes["car"]
    half = car.copy()
    half[2] = (car[0] + car[2]) / 2
    masks = [box_mask(car), box_mask(half)] + ([box_mask(boxes["dog"])] if "dog" in boxes else [])
    return np.array(masks)


class SeedPropagation(StandInPropagation):
    def frame(self, t):  # the frame carries its index for fake_generate
        calls = self.new_tracks

        def tracks_on(t_, image, result):
            image = image.copy()
            image[0, 0, 0] = t_
            return calls(t_, image, result)

        self.new_tracks = tracks_on
        try:
            return super().frame(t)
        finally:
            self.new_tracks = calls


def test_seeding_starts_uncovered_masks_every_n_frames():
    calls = []

    def generate(image):
        calls.append(int(image[0, 0, 0]))
        return fake_generate(image)

    seeds = SeedTracks(generate, every=4, max_tracks=8)
    run = SeedPropagation(seeds).run(range(10))
    assert calls == [0, 4, 8]
    # frame 0: the car (its half is covered by it); frame 4: nothing new; frame 8: the dog
    assert {t: list(new) for t, new in run.items() if new} == {0: [0], 8: [1]}
    assert seeds.categories == {0: SEED_CATEGORY, 1: SEED_CATEGORY}
    np.testing.assert_array_equal(run[0][0].mask, box_mask(world_boxes(0)["car"]))
    np.testing.assert_array_equal(run[8][1].mask, box_mask(world_boxes(8)["dog"]))
    assert run[8][1].box is None and run[8][1].frame == 8


def test_seeding_bound_and_state_round_trip(caplog):
    with caplog.at_level(logging.WARNING):
        bounded = SeedTracks(fake_generate, every=4, max_tracks=1)
        run = SeedPropagation(bounded).run(range(10))
    assert {t: list(new) for t, new in run.items() if new} == {0: [0]}
    assert caplog.text.count("max_tracks (1) reached") == 1

    def make():
        return SeedTracks(fake_generate, every=4, max_tracks=8, first_id=3)

    frames = list(range(10))
    whole = SeedPropagation(make()).run(frames)
    first = make()
    prop = SeedPropagation(first)
    part = prop.run(frames[:6])
    second = make()
    second.load_state(pickle.loads(pickle.dumps(first.state())))
    prop.new_tracks = second
    part.update(prop.run(frames[6:]))
    _same(whole, part)
    assert second.categories == {3: SEED_CATEGORY, 4: SEED_CATEGORY} and second.next_id == 5


@pytest.mark.parametrize("bad", [dict(every=0), dict(max_tracks=-1), dict(first_id=-2)])
def test_bad_arguments_are_refused(bad):
    args = dict(every=1, max_tracks=4, first_id=0, **{})
    args.update(bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        SeedTracks(fake_generate, **args)


# ---------------------------------------------------------------------------------------------
# With the real OfflinePropagation: a small random-weight model whose objects are scored present
# ---------------------------------------------------------------------------------------------
N = 8  # frames of the clip (few: each costs the model a step per track and pass)
SQUARE_FROM = 4  # the detector sees the square from this frame on


def disc_box(t):  # the disc of tests/clips.py's frame t (continuous XYXY)
    from clips import H as CH, W as CW

    x = int(CW * 0.28) + 6 * t
    return np.array([x - 24, CH // 2 - 24, x + 24, CH // 2 + 24], np.float32)


def square_box(t):
    from clips import W as CW

    return np.array([CW - 50, 10 + 5 * t, CW - 19, 41 + 5 * t], np.float32)


class ClipFrames:
    """tests/clips.py's clip as a FrameSource (frames drawn when iterated)."""

    def __init__(self, n=N):
        from clips import H as CH, W as CW

        self.hw, self.names, self.n = (CH, CW), [f"{t:05d}.png" for t in range(n)], n

    def __len__(self):
        return self.n

    def iterate(self, indices):
        from clips import clip_frame

        for t in indices:
            yield int(t), clip_frame(int(t))


def clip_detector(t, image):
    """Sees the disc on every frame and the square from frame 4 on."""
    boxes = [disc_box(t)] + ([square_box(t)] if t >= SQUARE_FROM else [])
    classes = ["disc", "square"][:len(boxes)]
    return Detections(np.array(boxes, np.float32), classes, np.full(len(boxes), 0.9, np.float32))


def final_masks(results):
    """(track, frame) -> the last mask, and the passes each (track, frame) was yielded in."""
    out, passes = {}, {}
    for r in results:
        for k, i in enumerate(r.ids.tolist()):
            out[i, r.index] = r.masks[k]
            passes.setdefault((i, r.index), []).append(r.reverse)
    return out, passes


@pytest.fixture(scope="module")
def present_small_model():
    """SAM 2.1 tiny at input 256, random weights scored present."""
    from clips import present_small_model as build

    return build(256)


def propagate(model, new_tracks, n=N):
    from infer_segment_anything_2.engine.model.device import CPU
    from infer_segment_anything_2.engine.video.offline import OfflinePropagation

    run = OfflinePropagation(model, CPU, ClipFrames(n), {}, "both", new_tracks=new_tracks,
                             fill_hole_area=0)
    return list(run.run())


def test_a_detected_track_has_masks_before_its_first_detection(present_small_model):
    """The detector sees the square from frame 4 on (every 2 frames): its track starts on frame
    4, has non-empty masks on frames 3..0 from the backward pass, and its later detection
    (frame 6) matches it; the disc is one track from frame 0. Ids stay 0 and 1 on every frame."""
    calls = []

    def detect(t, image):
        calls.append(t)
        return clip_detector(t, image)

    tracks = DetectorTracks(detect, every=2, match_iou=0.3, max_tracks=8)
    results = propagate(present_small_model, tracks)
    assert calls == [0, 2, 4, 6]
    assert tracks.categories == {0: "disc", 1: "square"}
    assert all(set(r.ids.tolist()) <= {0, 1} for r in results)
    masks, passes = final_masks(results)
    assert sorted(masks) == sorted((i, t) for i in (0, 1) for t in range(N))
    for t in range(SQUARE_FROM):
        assert passes[1, t] == [True] and masks[1, t].any(), t  # backward only, non-empty
    for t in range(SQUARE_FROM, N):
        assert passes[1, t] == [False] and masks[1, t].any(), t
    assert all(passes[0, t] == [False] and masks[0, t].any() for t in range(N))
    np.testing.assert_array_equal(tracks.last_boxes[1], square_box(6))
    np.testing.assert_array_equal(tracks.last_boxes[0], disc_box(6))


SEED_EVERY, SEED_FRAMES = 3, 6  # seeding on frames 0 and 3 of a 6-frame clip


def clip_masks(t):
    """The automatic masks of clip frame ``t`` as a generator would give them: none on frame 0,
    then the disc and the square (largest first)."""
    from clips import H as CH, W as CW

    if t == 0:
        return np.zeros((0, CH, CW), bool)
    yy, xx = np.mgrid[:CH, :CW]
    disc = (xx - (int(CW * 0.28) + 6 * t)) ** 2 + (yy - CH // 2) ** 2 <= (CH // 5) ** 2
    square = np.zeros((CH, CW), bool)
    square[10 + 5 * t:41 + 5 * t, CW - 50:CW - 19] = True
    return np.stack([disc, square])


def test_seeded_tracks_are_tracked_backwards_from_their_frame(present_small_model):
    """Seeding on frames 0 and 3, the generator finding nothing on frame 0: on frame 3 the disc
    and the square start tracks 0 and 1 from their masks (nothing tracked covers them), each
    with its seed's mask on frame 3 and non-empty masks on frames 2..0 from the backward pass.
    (Whether a tracked mask covers a seed is the rule tests' job: random weights' masks are
    blobs.)"""
    from conftest import iou

    frames_seen, tracked_on = [], {}

    def generate(image):
        t = len(frames_seen) * SEED_EVERY
        frames_seen.append(t)
        return clip_masks(t)

    seeds = SeedTracks(generate, every=SEED_EVERY, max_tracks=6)

    def new_tracks(t, image, tracked, embedding):
        tracked_on[t] = tracked.ids.tolist()
        return seeds(t, image, tracked)

    results = propagate(present_small_model, new_tracks, SEED_FRAMES)
    assert frames_seen == [0, SEED_EVERY]
    assert tracked_on == {0: [], 1: [], 2: [], 3: [], 4: [0, 1], 5: [0, 1]}
    assert seeds.categories == {0: SEED_CATEGORY, 1: SEED_CATEGORY}
    masks, passes = final_masks(results)
    for tid in (0, 1):
        assert iou(masks[tid, SEED_EVERY], clip_masks(SEED_EVERY)[tid]) > 0.8
        assert all(passes[tid, t] == [True] and masks[tid, t].any() for t in range(SEED_EVERY))
        assert all(passes[tid, t] == [False] and masks[tid, t].any()
                   for t in range(SEED_EVERY, SEED_FRAMES))
