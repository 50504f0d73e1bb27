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
    import cv2

    from docs_text import doc_block

    block = doc_block("video-example")
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


def scripted_detector(world, classes=True):
    """A ``CObjectDetectionTask`` made in Python: on its k-th run it emits the world's objects
    of frame k, in a new order each frame (as a detector lists its boxes)."""
    from ikomia import core, dataprocess

    class ScriptedDetector(dataprocess.CObjectDetectionTask):
        def __init__(self):
            dataprocess.CObjectDetectionTask.__init__(self, "scripted_detector")
            self.set_param_object(core.CWorkflowTaskParam())
            self.frame = 0

        def run(self):
            self.begin_task_run()
            dets = world.detections(self.frame, classes=classes)
            names = sorted(set(dets.classes)) or ["object"]
            self.set_names(names)
            for i, (box, cls) in enumerate(zip(dets.boxes, dets.classes)):
                x1, y1, x2, y2 = (float(v) for v in box)
                self.add_object(i, names.index(cls), 0.9, x1, y1, x2 - x1, y2 - y1)
            self.frame += 1
            self.end_task_run()

    return ScriptedDetector()


def test_detections_in_a_new_order_keep_ids_and_names(tiny_checkpoint):
    """Detect then track through Ikomia: a detector whose boxes come in another order on every
    frame and that finds a new object on frame 2. Ids, names and label values stay with the
    objects (Ikomia also draws the detections on the graphics input: not taken as prompts);
    the new object gets the next id. The tracking is a scripted perfect tracker
    (tests/world.py), so that what is checked is the task's handling of detections."""
    from ikomia.dataprocess.workflow import Workflow

    from world import PerfectTracker, World

    def box(x, y, s=20):
        return [x, y, x + s, y + s]

    world = World({"car": [box(10 + 6 * t, 10) for t in range(5)],
                   "dog": [box(100 - 5 * t, 60) for t in range(5)],
                   "person": [None, None] + [box(60, 90) for _ in range(3)]})
    wf = Workflow()
    detector = scripted_detector(world)
    wf.add_task(task=detector, auto_connect=True)
    sam = wf.add_task(name="infer_segment_anything_2", auto_connect=True, public_hub=False,
                      private_hub=False)
    sam.set_parameters({"model_name": "sam2.1_hiera_tiny",
                        "model_weight_file": str(tiny_checkpoint), "video_tracking": "True"})
    sam.session.video.tracker_factory = lambda model, choice: PerfectTracker(world, model, choice)
    seen = []
    for t in range(5):
        wf.run_on(array=np.zeros((120, 160, 3), np.uint8))
        objects = {o.label: (o.id, o.class_index) for o in sam.get_output(4).get_objects()}
        seen.append(objects)
        labels = sam.get_output(1).get_mask()
        for name, (k, _) in objects.items():  # object k is label k + 1 on its own pixels
            assert (labels[world.mask(name, t)] == k + 1).mean() > 0.9
    first = seen[0]
    assert sorted(first) == ["car", "dog"] and sorted(v[0] for v in first.values()) == [0, 1]
    assert seen[1] == first
    for objects in seen[2:]:
        assert objects == {**first, "person": (2, 2)}


def _readme_loop(marker: str, clip_path, checkpoint, extra: str = "") -> str:
    """A video loop of the README or docs/video.md as written, on ``clip_path``, with the test
    checkpoint (and ``extra`` parameters) instead of the default download."""
    from docs_text import doc_block

    block = doc_block(marker)
    model = (f'"model_name": "sam2.1_hiera_tiny", "model_weight_file": {str(checkpoint)!r}, '
             + extra)
    code = block.replace('"clip.mp4"', repr(str(clip_path)))
    code = code.replace('sam.set_parameters({', 'sam.set_parameters({' + model, 1)
    assert code.count(str(checkpoint)) == 1 and str(clip_path) in code
    return code


def _write_clip(path, frames=3):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for t in range(frames):
        writer.write(clip_frame(t)[:, :, ::-1].copy())
    writer.release()


def test_readme_detect_then_track_example_runs(present_checkpoint, tmp_path, capsys):
    """docs/video.md's "Detect then track" loop as written (a detector made in Python in place of
    infer_yolo_v8, which is not installed here): one line per frame; on frame 0 every detection
    is a new object named by its class, with ids 0, 1; the ids stay."""
    from world import World

    world = World({"disc": [[20 + 6 * t, 36, 68 + 6 * t, 84] for t in range(3)],
                   "square": [[110, 10 + 5 * t, 140, 40 + 5 * t] for t in range(3)]})
    _write_clip(tmp_path / "clip.avi")
    code = _readme_loop("video-detect-example", tmp_path / "clip.avi", present_checkpoint)
    line = 'detector = wf.add_task(name="infer_yolo_v8", auto_connect=True)'
    assert line in code
    code = code.replace(line, 'detector = wf.add_task(task=scripted_detector(world), '
                              'auto_connect=True)')
    exec(compile(code, "docs/video.md detect-then-track example", "exec"),
         {"scripted_detector": scripted_detector, "world": world})
    lines = [eval(x) for x in capsys.readouterr().out.splitlines() if x.startswith("[(")]
    assert len(lines) == 3
    assert sorted((i, name) for i, name, _ in lines[0]) == [(0, "disc"), (1, "square")] or \
        sorted((i, name) for i, name, _ in lines[0]) == [(0, "square"), (1, "disc")]
    first = {i: name for i, name, _ in lines[0]}
    for frame in lines[1:]:
        assert {i: name for i, name, _ in frame if i in first} == first
        assert all(0 < conf <= 1 for _, _, conf in frame)


def test_readme_track_everything_example_runs(present_checkpoint, tmp_path, capsys):
    """docs/video.md's "Track everything" loop as written (automatic filters opened, as random
    weights need, and a 2x2 grid): frame 0 seeds objects named object 1, object 2, ..."""
    _write_clip(tmp_path / "clip.avi", frames=2)
    code = _readme_loop("video-seed-example", tmp_path / "clip.avi", present_checkpoint,
                        '"iou_thresh": "0", "stability_score_thresh": "0", '
                        '"points_per_side": "2", ')
    namespace: dict = {}
    exec(compile(code, "docs/video.md track-everything example", "exec"), namespace)
    lines = [eval(x) for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert len(lines) == 2 and len(lines[0]) >= 1
    assert lines[0] == [(i, f"object {i + 1}") for i in range(len(lines[0]))]
    assert lines[1][:len(lines[0])] == lines[0]
    assert namespace["sam"].session.video.frame_index == -1
