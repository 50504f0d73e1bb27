"""The task's outputs are reset in place, never replaced (``ikomia_outputs.py``): a reset output
is a fresh one, no Ikomia IO object of an earlier run stays alive, nothing of an earlier run stays
visible, and memory is flat over hundreds of runs, through the real Ikomia runtime."""
from __future__ import annotations

import gc

import numpy as np
from ikomia import core, dataprocess

from conftest import make_task, synthetic_image
from infer_segment_anything_2.engine.image.predictor import PromptPredictor
from infer_segment_anything_2.engine.session import ModelKey
from infer_segment_anything_2.ikomia_outputs import reset_output

import standin
from rss import rss_mib
from clips import small_model

MASK_OUTPUTS, INSTANCE_OUTPUT = (1, 2, 3), 4
BOXES = "[[100,100,400,300],[450,200,780,520]]"  # on a 540x810 frame


def io_alive() -> int:
    """Ikomia IO objects (inputs and outputs of any task) alive in this process."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), core.CWorkflowTaskIO))


def with_model(task, checkpoint, model=None):
    """Load the task's model through its session (the plugin's checkpoint path), then put
    ``model`` in its place when given (a small or stand-in model; the key stays, so the task's
    runs keep it)."""
    task.session.load(ModelKey("sam2.1_hiera_tiny", str(checkpoint), False, True))
    if model is not None:
        task.session.model, task.session.predictor = model, PromptPredictor(model)
    return task.session.model


# -- a reset output is a fresh one ----------------------------------------------------------------
def _semantic_state(out) -> dict:
    legend = out.get_legend()
    return dict(available=out.is_data_available(), mask=out.get_mask(),
                polygons=len(out.get_polygons()), names=list(out.get_class_names()),
                colors=len(out.get_colors() or []), legend=legend is None, json=out.to_json())


def _instance_state(out) -> dict:
    return dict(available=out.is_data_available(), objects=out.get_object_count(),
                merged=out.get_merge_mask() is None,
                items=len(out.get_graphics_io().get_items()),
                blobs=len(out.get_blob_measure_io().get_measures()), json=out.to_json())


def test_a_reset_semantic_output_is_a_fresh_one():
    mask = np.zeros((100, 120), np.uint8)
    mask[10:40, 10:50], mask[60:90, 70:110] = 1, 2
    out = dataprocess.CSemanticSegmentationIO()
    out.set_class_names(["background", "a", "b"])
    out.set_class_colors([[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    out.set_mask(mask)
    assert out.is_data_available() and len(out.get_polygons()) == 3
    reset_output(out)
    assert _semantic_state(out) == _semantic_state(dataprocess.CSemanticSegmentationIO())


def test_a_reset_instance_output_is_a_fresh_one():
    out = dataprocess.CInstanceSegmentationIO()
    out.init("task", 0, 120, 100)
    mask = np.zeros((100, 120), np.uint8)
    mask[10:40, 10:50] = 1
    out.add_object(0, 0, 0, "a", 0.9, 10, 10, 40, 30, mask, [255, 0, 0])
    assert out.get_object_count() == 1 and out.get_graphics_io().get_items()
    reset_output(out)
    assert _instance_state(out) == _instance_state(dataprocess.CInstanceSegmentationIO())


# -- through the task -----------------------------------------------------------------------------
def test_prompt_mode_keeps_its_io_objects(tiny_checkpoint):
    """50 runs with 3 multimask outputs and 2 images (each run re-encodes): the IO objects
    alive after run 50 are those alive after run 1 (today's code: 3 more per run)."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         input_box="[[10,10,60,50],[50,40,120,90]]", multimask_output="True")
    with_model(task, tiny_checkpoint, small_model(64))
    images = [synthetic_image(96, 128, seed=s) for s in range(2)]
    counts = {}
    for run in range(1, 51):
        wf.run_on(array=images[run % 2])
        if run in (1, 50):
            assert all(task.get_output(i).is_data_available() for i in MASK_OUTPUTS)
            counts[run] = io_alive()
    assert counts[50] == counts[1]


def _visible(task) -> list:
    """What each output shows: data available, class names, polygons; objects and their ids."""
    shown = [(task.get_output(i).is_data_available(), list(task.get_output(i).get_class_names()),
              len(task.get_output(i).get_polygons())) for i in MASK_OUTPUTS]
    instances = task.get_output(INSTANCE_OUTPUT)
    return shown + [(instances.is_data_available(),
                     [(o.id, o.label) for o in instances.get_objects()],
                     len(instances.get_graphics_io().get_items()))]


def _polygons_of(mask: np.ndarray) -> int:
    fresh = dataprocess.CSemanticSegmentationIO()
    fresh.set_mask(mask)
    return len(fresh.get_polygons())


def test_a_run_with_fewer_masks_leaves_nothing_of_the_runs_before(tiny_checkpoint):
    """Automatic mode (many masks), then 2 boxes with 3 candidates each, then 1 point with one
    mask: each run shows only its own masks, names, outlines and objects on every output."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side="8")
    standin.install(with_model(task, tiny_checkpoint), image_encoder=True)
    image = synthetic_image(240, 320, seed=0)
    wf.run_on(array=image)
    assert task.get_output(INSTANCE_OUTPUT).get_object_count() > 10
    task.set_parameters({"input_box": "[[20,20,150,120],[160,100,300,220]]",
                         "multimask_output": "True"})
    wf.run_on(array=image)
    assert [s[0] for s in _visible(task)] == [True] * 4
    assert task.get_output(INSTANCE_OUTPUT).get_object_count() == 6
    task.set_parameters({"input_box": "", "input_point": "[[80,60]]",
                         "multimask_output": "False"})
    wf.run_on(array=image)
    one = task.get_output(1).get_mask()
    assert _visible(task) == [
        (True, ["background", "object 1"], _polygons_of(one)),
        (False, [], 0), (False, [], 0),
        (True, [(0, "object 1")], _items_of(task.get_output(INSTANCE_OUTPUT).get_objects(),
                                            one.shape))]


def _items_of(objects, shape) -> int:
    """Graphics items a fresh instance output shows for ``objects``."""
    fresh = dataprocess.CInstanceSegmentationIO()
    fresh.init("fresh", 0, shape[1], shape[0])
    for o in objects:
        fresh.add_object(o.id, o.type, o.class_index, o.label, o.confidence, *o.box, o.mask,
                         o.color)
    return len(fresh.get_graphics_io().get_items())


def test_automatic_mode_memory_is_flat_over_300_runs(tiny_checkpoint):
    """300 runs on a 1920x1080 image with the stand-in decoder (tens of masks with real
    outlines): the same IO objects after run 50 as after run 1, and RSS after run 300 within
    10 MiB of RSS after run 20 (replaced outputs kept 3 outputs per run, with their polygons)."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side="8")
    standin.install(with_model(task, tiny_checkpoint), image_encoder=True)
    image = synthetic_image(1080, 1920, seed=0)
    counts, rss = {}, {}
    for run in range(1, 301):
        wf.run_on(array=image)
        if run in (1, 50):
            counts[run] = io_alive()
        if run in (20, 300):
            rss[run] = rss_mib()
    assert task.get_output(INSTANCE_OUTPUT).get_object_count() > 20
    assert len(task.get_output(1).get_polygons()) > 20
    assert counts[50] == counts[1]
    # 30 MiB is the goal; measured +0.1 MiB over 500 runs (benchmarks/bench_memory.py --runs),
    # and today's replaced outputs grew ~0.1 MiB a run here (29 MiB over these 280 runs): 10 MiB
    # keeps that failure clear of the noise.
    assert rss[300] - rss[20] < 10, f"RSS grew from {rss[20]:.0f} to {rss[300]:.0f} MiB"


def test_video_mode_memory_is_flat_over_300_frames(tiny_checkpoint):
    """300 frames of 540x810 with 2 box objects (the tiny model at a 256 input with a stand-in
    image encoder of the real one's output shapes; noisy masks with hundreds of outlines): the
    same IO objects after frame 50 as after frame 1, RSS after frame 300 within 30 MiB of RSS
    after frame 20, once the memory window (7 frames) has filled."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         video_tracking="True", input_box=BOXES)
    with_model(task, tiny_checkpoint, small_model(256, standin_encoder=True))
    frames = [synthetic_image(540, 810, seed=s) for s in range(4)]
    counts, rss = {}, {}
    for frame in range(1, 301):
        wf.run_on(array=frames[frame % 4])
        if frame in (1, 50):
            counts[frame] = io_alive()
        if frame in (20, 300):
            rss[frame] = rss_mib()
    assert task.session.video.frame_index == 299
    assert task.get_output(INSTANCE_OUTPUT).get_object_count() == 2
    assert len(task.get_output(1).get_polygons()) > 100
    assert counts[50] == counts[1]
    assert rss[300] - rss[20] < 30, f"RSS grew from {rss[20]:.0f} to {rss[300]:.0f} MiB"
