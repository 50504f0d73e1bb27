"""The video runner's bookkeeping with a scripted propagation (``video_fakes``): the last result
per (track, frame), absence, scores and categories; checkpoints and an exact resume after a
crash; bad videos reported and skipped; finished videos skipped by a rerun."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from video_fakes import H, W, FakeFrames, FakePropagation, box_prompts
from infer_segment_anything_2.engine.dataset.video_runner import (
    VideoAnnotator, VideoJob, annotate_video, run_videos)
from infer_segment_anything_2.engine.dataset.video_store import (checkpoint_path, record_video,
                                                                 video_store)

N = 8
# the first prompts on frame 3: forward 3..7, then backward 3..0 (9 results)
PROMPTS = {1: [(3, (2, 2, 10, 10))], 2: [(3, (4, 4, 12, 12)), (5, (4, 4, 12, 12))],
           3: [(4, (27, 0, 31, 4))]}
RESULTS = 9


class Prompts:
    """A prompts' file of ``PROMPTS`` for every video; track 1 is a car."""

    @staticmethod
    def for_video(name):
        return box_prompts(PROMPTS)

    @staticmethod
    def category(name, track):
        return "car" if track == 1 else "object"


class Script:
    """The annotator's pieces over fakes, recording every propagation made."""

    def __init__(self, crash_after=None, settings="a"):
        self.made, self.crash_after = [], crash_after
        self.annotator = VideoAnnotator(self.propagation, self.open_video, Prompts(),
                                        settings=settings)

    def propagation(self, frames, prompts, new_tracks):
        self.made.append(FakePropagation(frames, prompts, new_tracks,
                                         crash_after=self.crash_after))
        return self.made[-1]

    @staticmethod
    def open_video(ref):
        if isinstance(ref, Exception):
            raise ref
        return ref


def job(name="v", n=N):
    return VideoJob(name, FakeFrames(n))


def expected_mask(box, shift):
    x1, y1, x2, y2 = box
    m = np.zeros((H, W), bool)
    m[y1:y2, min(W, x1 + shift):min(W, x2 + shift)] = True
    return m


def test_the_last_result_of_each_track_and_frame_is_kept():
    record = annotate_video(job(), Script().annotator)
    info, tracks = record_video(record)
    assert info.file_names == [f"v/{t:05d}.jpg" for t in range(N)]
    assert (info.height, info.width, info.length) == (H, W, N)
    assert [t.track_id for t in tracks] == [1, 2, 3]
    assert [t.category for t in tracks] == ["car", "object", "object"]
    first = 3  # the backward pass runs from the first prompted frame: it wins on 0..3
    for track in tracks:
        box = PROMPTS[track.track_id][0][1]
        present = []
        for t, seg in enumerate(track.segmentations):
            logit = np.float32(track.track_id - t / 4)
            mask = expected_mask(box, t + 1 if t <= first else t)
            if logit <= 0 or not mask.any():
                assert seg is None, (track.track_id, t)
                continue
            assert isinstance(seg["counts"], str)  # compressed RLE
            np.testing.assert_array_equal(mask_utils.decode(seg).astype(bool), mask)
            present.append(1 / (1 + math.exp(-float(logit))))
        assert present, track.track_id  # each track is present somewhere
        assert track.score == pytest.approx(sum(present) / len(present), abs=1e-12)
    assert tracks[0].segmentations[4] is None  # logit 0: absent
    assert tracks[2].segmentations[5] is None  # off the frame: empty mask, absent


def test_a_crash_mid_video_resumes_from_its_checkpoint_with_the_same_record(tmp_path):
    out = str(tmp_path / "out.json")
    whole = annotate_video(job(), Script().annotator)
    crashing = Script(crash_after=7)
    with pytest.raises(RuntimeError, match="crash drill"):
        annotate_video(job(), crashing.annotator, out=out, checkpoint_every=3)
    path = checkpoint_path(out, "v")
    assert path.exists()
    again, steps = Script(), []
    record = annotate_video(job(), again.annotator, out=out, checkpoint_every=3,
                            progress=steps.append)
    # the checkpoint after 6 results (forward 3..7, backward 3): resumed, not started over
    assert again.made[0].resumed == [{"pass": 1, "next": 2}]
    assert steps[0] == 6 and sum(steps) == RESULTS
    assert json.dumps(record) == json.dumps(whole)
    assert not path.exists()  # removed once the video is done


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    out = str(tmp_path / "out.json")
    with pytest.raises(RuntimeError):
        annotate_video(job(), Script(crash_after=7).annotator, out=out, checkpoint_every=3)
    other = Script(settings="b")
    record = annotate_video(job(), other.annotator, out=out, checkpoint_every=3)
    assert other.made[0].resumed == [None]  # started over
    assert json.dumps(record) == json.dumps(annotate_video(job(), Script().annotator))


def test_bad_videos_are_reported_and_skipped_and_a_rerun_skips_finished_ones(tmp_path):
    out = str(tmp_path / "out.json")
    jobs = [job("a"), VideoJob("b", OSError("cannot open b.mp4")),
            job("c", n=4),  # prompts on frames 4 and 5, past its end
            job("d")]
    script, reported = Script(), []
    with video_store(out) as store:
        assert run_videos(jobs, script.annotator, store, out, progress=False,
                          report=lambda name, error: reported.append((name, error))) == 4
        assert sorted(store) == ["a", "d"]
        errors = store.errors()
    assert [name for name, _ in reported] == ["b", "c"]
    assert "cannot open b.mp4" in errors["b"]
    assert "track 2 has a prompt on frame 5" in errors["c"]
    assert "the video has 4 frames (0..3)" in errors["c"]
    with video_store(out) as store:
        assert run_videos(jobs, script.annotator, store, out, progress=False) == 2  # b, c
        assert sorted(store) == ["a", "d"] and len(script.made) == 2  # a, d not run again


def test_the_progress_bar_counts_all_videos_frames_with_a_rate(tmp_path, capsys):
    out = str(tmp_path / "out.json")
    with video_store(out) as store:
        assert run_videos([job("a"), job("b", n=6)], Script().annotator, store, out,
                          progress=True) == 2
        assert sorted(store) == ["a", "b"]
    err = capsys.readouterr().err
    total = 2 * (N + 6)  # frames times two passes, over both videos
    assert f"{total}/{total}" in err and "frame/s" in err
