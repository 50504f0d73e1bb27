"""annotate.py and the dataset engine with the random-weight tiny model: the three prompt
sources (COCO boxes, YOLO labels, an Ikomia detector), automatic mode, masks equal to the
Ikomia task's, corrupt images, and resuming after an interruption."""
from __future__ import annotations

import json

import numpy as np
import pytest

from annotate_helpers import BOXES, BROKEN, CATEGORIES, CLASSES, NAMES, make_folder
from conftest import PLUGIN_NAME, make_task
from infer_segment_anything_2.annotate import WEIGHTS_DIR, main as annotate_main
from infer_segment_anything_2.engine.dataset import (
    Annotator, PartStore, finish, list_images, read_image, read_yolo_boxes, read_yolo_names,
    run_items, work_items)
from infer_segment_anything_2.engine.image import rle_to_mask

AUTOMATIC = {"points_per_side": "3", "iou_thresh": "0", "stability_score_thresh": "0"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def model_values(tiny_checkpoint):
    return {"model_name": "sam2.1_hiera_tiny", "model_weight_file": str(tiny_checkpoint),
            "cuda": "False"}


@pytest.fixture(scope="module")
def annotator(model_values):
    """One model for the module: its embedding cache serves every test's images."""
    return Annotator({**model_values, **AUTOMATIC}, str(WEIGHTS_DIR))


def cli(folder, out, *extra, model_values):
    argv = [str(folder / "images"), "--out", str(out), "--no-progress", *extra]
    for key, value in model_values.items():
        argv += ["--param", f"{key}={value}"]
    return annotate_main(argv)


def load(path):
    data = json.loads(path.read_text())
    by_image = {img["file_name"]: [a for a in data["annotations"] if a["image_id"] == img["id"]]
                for img in data["images"]}
    return data, by_image


@pytest.fixture(scope="module")
def coco_run(folder, model_values):
    out = folder / "coco.json"
    code = cli(folder, out, "--coco-boxes", str(folder / "boxes.json"), model_values=model_values)
    return code, out


def test_coco_boxes_keep_categories_scores_and_report_the_broken_image(coco_run, folder):
    from pycocotools.coco import COCO

    code, out = coco_run
    assert code == 1  # one image could not be read: the run went on and says so
    data, by_image = load(out)
    assert data["categories"] == CATEGORIES
    assert [img["file_name"] for img in data["images"]] == NAMES
    assert [img["id"] for img in data["images"]] == [1, 2, 4]  # ids from the sorted list
    cats = {c["id"]: c["name"] for c in CATEGORIES}
    for name in NAMES:
        anns = by_image[name]
        assert [cats[a["category_id"]] for a in anns] == CLASSES[name]
        assert [a["detector_score"] for a in anns] == pytest.approx(
            [0.5 + 0.1 * k for k in range(len(anns))])
        assert all(0 <= a["score"] <= 1.5 for a in anns)
    errors = json.loads((folder / "coco.json.errors.json").read_text())
    assert [e["file_name"] for e in errors] == [BROKEN] and "decode" in errors[0]["error"]
    COCO(str(out))  # pycocotools loads it


def test_box_masks_equal_the_ikomia_task(coco_run, folder, model_values):
    _, by_image = load(coco_run[1])
    wf, task = make_task(**model_values)
    for name in NAMES:
        image = read_image(str(folder / "images" / name))
        task.set_parameters({"input_box": json.dumps(BOXES[name])})
        wf.run_on(array=image)
        objects = task.get_output(4).get_objects()
        anns = by_image[name]
        assert len(objects) == len(anns) == len(BOXES[name])
        for ann, obj, score in zip(anns, objects, task.last_result.scores):
            assert np.array_equal(rle_to_mask(ann["segmentation"]), obj.mask.astype(bool))
            assert ann["score"] == pytest.approx(float(score), abs=1e-6)
            assert ann["area"] == int(obj.mask.sum())


def test_yolo_labels_give_the_coco_boxes_masks(coco_run, folder, annotator):
    _, expected = load(coco_run[1])
    images = [(n, p) for n, p in list_images(str(folder / "images")) if n != BROKEN]
    boxes = read_yolo_boxes(str(folder / "labels"), [n for n, _ in images],
                            read_yolo_names(str(folder / "data.yaml")))
    assert boxes.categories == [{"id": 1, "name": "car"}, {"id": 2, "name": "dog"}]
    out = folder / "yolo.json"
    with PartStore(str(out) + ".parts.jsonl") as store:
        run_items(work_items(images, boxes), annotator, store, progress=False)
        finish(str(out), work_items(images, boxes), store, boxes.categories)
    _, got = load(out)
    for name in NAMES:
        assert [a["category_id"] for a in got[name]] == [
            1 + ["car", "dog"].index(c) for c in CLASSES[name]]
        for a, b in zip(got[name], expected[name]):
            assert a["segmentation"] == b["segmentation"] and a["bbox"] == b["bbox"]
            assert "detector_score" not in a  # YOLO labels without a confidence column


def fixed_detector_factory():
    """A detector made in Python (task and parameter factories, to register by name) that
    emits the boxes of BOXES["a.png"] with their classes on every image."""
    from ikomia import core, dataprocess

    boxes, classes = BOXES["a.png"], CLASSES["a.png"]

    class FixedDetector(dataprocess.CObjectDetectionTask):
        def __init__(self, name="annotate_fixed_detector", param=None):
            dataprocess.CObjectDetectionTask.__init__(self, name)
            self.set_param_object(core.CWorkflowTaskParam())

        def run(self):
            self.begin_task_run()
            self.set_names(["car", "dog"])
            for i, ((x1, y1, x2, y2), cls) in enumerate(zip(boxes, classes)):
                self.add_object(i, ["car", "dog"].index(cls), 0.9 - 0.1 * i, float(x1),
                                float(y1), float(x2 - x1), float(y2 - y1))
            self.end_task_run()

    class Factory(dataprocess.CTaskFactory):
        def __init__(self):
            dataprocess.CTaskFactory.__init__(self)
            self.info.name = "annotate_fixed_detector"

        def create(self, param=None):
            return FixedDetector(self.info.name, param)

    class ParamFactory(dataprocess.CTaskParamFactory):
        def __init__(self):
            dataprocess.CTaskParamFactory.__init__(self)
            self.name = "annotate_fixed_detector"

        def create(self):
            return core.CWorkflowTaskParam()

    return Factory(), ParamFactory()


def test_detector_by_name_runs_before_the_task(folder, model_values, annotator):
    from ikomia.dataprocess.registry import ik_registry

    ik_registry.register_task(*fixed_detector_factory())
    out = folder / "detector.json"
    assert cli(folder, out, "--detector", "annotate_fixed_detector", "--format", "polygon",
               model_values=model_values) == 1  # the broken image
    data, got = load(out)
    assert data["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "dog"}]
    # the same boxes through the engine directly: same masks and SAM 2 scores
    entry = {"boxes": BOXES["a.png"], "normalized": False, "category_ids": [1, 2],
             "scores": [0.9, 0.8]}
    for name in NAMES:
        masks, scores, _, _ = annotator(read_image(str(folder / "images" / name)), entry)
        anns = got[name]
        assert [a["category_id"] for a in anns] == [1, 2]
        assert [a["detector_score"] for a in anns] == pytest.approx([0.9, 0.8])
        for ann, mask, score in zip(anns, masks, scores):
            assert isinstance(ann["segmentation"], list)  # polygons
            assert ann["area"] == int(mask.sum()) and ann["score"] == pytest.approx(
                float(score), abs=1e-6)


def test_automatic_mode_equals_the_task_and_resumes_after_an_interruption(folder, annotator,
                                                                         model_values):
    items = work_items(list_images(str(folder / "images")))
    whole = folder / "auto-whole.json"
    with PartStore(str(whole) + ".parts.jsonl") as store:
        run_items(items, annotator, store, progress=False)
        assert finish(str(whole), items, store, [{"id": 1, "name": "object"}])["errors"] == 1

    calls = []

    def interrupted(image, boxes):  # Ctrl-C while the last image (sub/c.jpg) is segmented
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return annotator(image, boxes)

    out = folder / "auto.json"
    with PartStore(str(out) + ".parts.jsonl") as store, pytest.raises(KeyboardInterrupt):
        run_items(items, interrupted, store, progress=False)
    with PartStore(str(out) + ".parts.jsonl") as store:
        assert set(store) == set(NAMES[:2]) and set(store.errors()) == {BROKEN}  # c.jpg lost
        calls.clear()
        run_items(items, lambda image, boxes: calls.append(1) or annotator(image, boxes),
                  store, progress=False)
        assert len(calls) == 1  # the done images are not segmented again
        finish(str(out), items, store, [{"id": 1, "name": "object"}])
    lines = [json.loads(line)["file_name"] for line in
             (folder / "auto.json.parts.jsonl").read_text().splitlines()]
    assert sorted(n for n in lines if n != BROKEN) == NAMES  # each image once
    assert lines.count(BROKEN) == 2  # an image that failed is tried again on the next run
    assert out.read_bytes() == whole.read_bytes()

    data, got = load(out)
    assert data["categories"] == [{"id": 1, "name": "object"}]
    wf, task = make_task(**model_values, **AUTOMATIC)
    wf.run_on(array=read_image(str(folder / "images" / NAMES[0])))
    objects = task.get_output(4).get_objects()
    assert len(got[NAMES[0]]) == len(objects) > 0
    for ann, obj in zip(got[NAMES[0]], objects):
        assert np.array_equal(rle_to_mask(ann["segmentation"]), obj.mask.astype(bool))
