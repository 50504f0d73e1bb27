"""Video mode through the real Ikomia task: one run per frame, stable identities, what starts a
new video, stop."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_task
from infer_segment_anything_2.engine.video import tracker as video_module

from clips import clip_frame

BOXES = "[[20,35,70,85],[110,10,140,40]]"


@pytest.fixture
def video_task(tiny_checkpoint):
    return make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                     video_tracking=True, input_box=BOXES)


def _instances(task):
    return [(o.id, o.label, o.class_index) for o in task.get_output(4).get_objects()]


def test_objects_keep_their_ids_labels_and_label_values(video_task):
    wf, task = video_task
    for t in range(3):
        if t == 2:  # a third object appears on frame 2 (a box added to the parameter)
            task.set_parameters({"input_box": BOXES[:-1] + ",[5,90,40,115]]"})
        wf.run_on(array=clip_frame(t))
        assert task.session.video.frame_index == t
        expected = [(0, "object 1", 0), (1, "object 2", 1)] + ([(2, "object 3", 2)] if t == 2
                                                               else [])
        assert _instances(task) == expected
        labels = task.get_output(1).get_mask()
        assert labels.shape == (120, 160) and set(np.unique(labels)) <= {0, 1, 2, 3}
        seg = task.last_result
        for k in range(len(seg)):  # label k + 1 is object k's mask where no later object covers
            covered = np.zeros_like(seg.masks[k])
            for j in range(k + 1, len(seg)):
                covered |= seg.masks[j]
            assert np.array_equal(labels[seg.masks[k] & ~covered], np.full(
                (seg.masks[k] & ~covered).sum(), k + 1, labels.dtype))
        for i in (2, 3):  # no multimask candidates in video mode
            mask = task.get_output(i).get_mask()
            assert mask is None or mask.size == 0 or mask.max() == 0
    assert task.session.video.videos == 1


def test_empty_objects_stay_in_the_outputs(video_task):
    """An object with an empty mask (here every mask, with the highest threshold) keeps its id
    and label in the instance output instead of being dropped."""
    wf, task = video_task
    task.set_parameters({"mask_threshold": "100"})
    wf.run_on(array=clip_frame(0))
    assert _instances(task) == [(0, "object 1", 0), (1, "object 2", 1)]
    assert all(o.box[2] == 0 and o.box[3] == 0 for o in task.get_output(4).get_objects())
    assert task.get_output(1).get_mask().max() == 0


def test_new_video_rules_through_the_task(tiny_checkpoint):
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         video_tracking=True, input_box="[20,35,70,85]")
    wf.run_on(array=clip_frame(0))
    wf.run_on(array=clip_frame(1))
    assert (task.session.video.frame_index, task.session.video.videos) == (1, 1)
    wf.run_on(array=clip_frame(2, 100, 160))  # another size
    assert (task.session.video.frame_index, task.session.video.videos) == (0, 2)
    task.reset_video()
    wf.run_on(array=clip_frame(3, 100, 160))
    assert (task.session.video.frame_index, task.session.video.videos) == (0, 3)
    task.set_parameters({"video_tracking": "False"})  # an image run (prompt mode) ends it
    wf.run_on(array=clip_frame(4, 100, 160))
    assert task.session.video.frame_index == -1 and task.last_result.masks.shape[0] == 1
    task.set_parameters({"video_tracking": "True"})
    wf.run_on(array=clip_frame(5, 100, 160))
    assert (task.session.video.frame_index, task.session.video.videos) == (0, 4)
    assert _instances(task) == [(0, "object 1", 0)]


def test_stop_during_a_frame_then_the_video_goes_on(video_task, monkeypatch):
    """A stop while the first object is tracked: no outputs, the frame is not in the video's
    memory, and the next run continues the video."""
    wf, task = video_task
    wf.run_on(array=clip_frame(0))
    step = video_module.VideoTracker._step
    calls = []

    def step_then_stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            task.stop()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(video_module.VideoTracker, "_step", step_then_stop)
    try:
        wf.run_on(array=clip_frame(1))
    except RuntimeError as exc:  # Ikomia may report the stop as an error of the workflow
        assert "stop" in str(exc).lower()
    assert task.get_output(4).get_object_count() == 0
    assert task.session.video.frame_index == 0
    assert 1 not in task.session.video.tracker.objects[0].recent
    wf.run_on(array=clip_frame(1))
    assert task.session.video.frame_index == 1
    assert _instances(task) == [(0, "object 1", 0), (1, "object 2", 1)]


def test_readme_video_example_runs(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """The README's Python loop over a video, as written, on a 3-frame clip (tiny random model
    instead of the default download)."""
    import re

    import cv2

    from conftest import REPO

    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- video-example:begin -->\n```python\n(.*?)```", text, re.S).group(1)
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (960, 540))
    for t in range(3):
        writer.write(clip_frame(t, 540, 960)[:, :, ::-1].copy())
    writer.release()
    model = (f'"model_name": "sam2.1_hiera_tiny", "model_weight_file": '
             f'{str(tiny_checkpoint)!r}, ')
    code = block.replace('"clip.mp4"', repr(str(tmp_path / "clip.avi")))
    code = code.replace('sam.set_parameters({', 'sam.set_parameters({' + model, 1)
    assert code.count(str(tiny_checkpoint)) == 1 and str(tmp_path) in code
    namespace: dict = {}
    exec(compile(code, "README video example", "exec"), namespace)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[(0,")]
    assert len(lines) == 3  # one line per frame, both objects on each
    assert all("(0, 'object 1'" in line and "(1, 'object 2'" in line for line in lines)
    assert namespace["sam"].session.video.frame_index == -1  # reset_video() at the end
