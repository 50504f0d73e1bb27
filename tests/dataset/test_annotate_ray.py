"""annotate on Ray Data actors (the session's local Ray instance of ``tests/conftest.py``): the
merged COCO file is identical to the single-process one, and a worker killed during the run is
replaced with each image written exactly once."""
from __future__ import annotations

import json

import pytest
import ray  # requirements-ray.txt, installed by requirements-test.txt

from annotate_helpers import BROKEN, NAMES, make_folder
from infer_segment_anything_2.annotate import WEIGHTS_DIR
from infer_segment_anything_2.engine.dataset import (Annotator, PartStore, finish, list_images,
                                                     read_coco_boxes, run_items, work_items)

THREADS = 1  # torch threads of each Ray worker and of the single-process reference


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_checkpoint):
    """The folder with COCO boxes, and the single-process output on one torch thread."""
    import torch

    root = make_folder(tmp_path_factory.mktemp("ray"))
    values = {"model_name": "sam2.1_hiera_tiny", "model_weight_file": str(tiny_checkpoint),
              "cuda": "False"}
    images = list_images(str(root / "images"))
    boxes = read_coco_boxes(str(root / "boxes.json"), [n for n, _ in images])
    items = work_items(images, boxes)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        out = root / "single.json"
        with PartStore(str(out) + ".parts.jsonl") as store:
            run_items(items, Annotator(values, str(WEIGHTS_DIR)), store, progress=False)
            finish(str(out), items, store, boxes.categories)
    finally:
        torch.set_num_threads(threads)
    return root, values, items, boxes.categories


def run_on_ray(job, name, **kwargs):
    from infer_segment_anything_2.engine.dataset.ray_runner import run_items_ray

    root, values, items, categories = job
    out = root / name
    with PartStore(str(out) + ".parts.jsonl") as store:
        done = run_items_ray(items, values, str(WEIGHTS_DIR), store, workers=2, threads=THREADS,
                             progress=False, **kwargs)
        counts = finish(str(out), items, store, categories)
    lines = [json.loads(line)["file_name"] for line in
             (root / (name + ".parts.jsonl")).read_text().splitlines()]
    return out, done, counts, lines


def test_ray_output_is_identical_to_the_single_process_run(ray_instance, job):
    out, done, counts, lines = run_on_ray(job, "ray.json")
    assert done == len(NAMES) + 1 and counts["images"] == len(NAMES) and counts["errors"] == 1
    assert sorted(lines) == sorted(NAMES + [BROKEN])
    assert out.read_bytes() == (job[0] / "single.json").read_bytes()
    assert json.loads((job[0] / "ray.json.errors.json").read_text())[0]["file_name"] == BROKEN


def test_killed_worker_is_replaced_and_each_image_written_once(ray_instance, job, tmp_path):
    marker = tmp_path / "crashed"
    out, done, counts, lines = run_on_ray(job, "ray-crash.json", crash_once=str(marker))
    assert marker.exists()  # a worker process did exit in the middle of the run
    assert sorted(lines) == sorted(NAMES + [BROKEN])  # each image once in the store
    assert out.read_bytes() == (job[0] / "single.json").read_bytes()
