"""The dataset annotation's pieces without a model: image lists, boxes from COCO and YOLO files,
polygons, the resumable store, the COCO file (pycocotools round trip) and flat memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from conftest import REPO, iou, synthetic_image
from infer_segment_anything_2.annotate import main as annotate_main
from infer_segment_anything_2.engine.dataset import (
    PartStore, WorkItem, finish, list_images, mask_annotations, mask_polygons, read_coco_boxes,
    read_image, read_yolo_boxes, read_yolo_names, run_items, work_items)
from infer_segment_anything_2.engine.dataset.sources import image_boxes
from infer_segment_anything_2.engine.image import to_rgb_uint8


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[:, :, ::-1])
    return path


def test_folder_is_searched_recursively_and_sorted(tmp_path):
    for name in ["b.png", "sub/a.jpg", "sub/deeper/c.tif", ".hidden/x.png"]:
        write(tmp_path / name, synthetic_image(32, 32))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [n for n, _ in list_images(str(tmp_path))] == ["b.png", "sub/a.jpg",
                                                          "sub/deeper/c.tif"]
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nsub/a.jpg\n\nb.png\nb.png\n")
    images = list_images(str(listing))
    assert [n for n, _ in images] == ["b.png", "sub/a.jpg"]
    assert images[0][1] == str(tmp_path / "b.png")
    assert [i.image_id for i in work_items(images)] == [1, 2]


def test_images_are_read_as_the_task_reads_them(tmp_path):
    rgb = synthetic_image(32, 48)
    assert np.array_equal(read_image(str(write(tmp_path / "a.png", rgb))), rgb)
    gray16 = (np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 100)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    got = read_image(str(tmp_path / "g.png"))
    assert np.array_equal(got, to_rgb_uint8(gray16))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="cannot decode"):
        read_image(str(tmp_path / "bad.png"))


def test_coco_boxes_match_by_path_then_base_name(tmp_path):
    names = ["a/one.png", "b/two.png", "b/one.png"]
    coco = {"images": [{"id": 7, "file_name": "a/one.png"}, {"id": 8, "file_name": "two.png"},
                       {"id": 9, "file_name": "one.png"}],
            "annotations": [{"image_id": 7, "bbox": [10, 20, 30, 40], "category_id": 3},
                            {"image_id": 8, "bbox": [1, 2, 3, 4], "category_id": 5,
                             "score": 0.5},
                            {"image_id": 9, "bbox": [1, 1, 2, 2], "category_id": 3}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog",
                                                     "supercategory": "animal"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    boxes = read_coco_boxes(str(tmp_path / "c.json"), names)
    assert boxes.categories == [{"id": 3, "name": "cat"},
                                {"id": 5, "name": "dog", "supercategory": "animal"}]
    assert boxes.boxes_for("a/one.png")["boxes"] == [[10, 20, 40, 60]]
    assert boxes.boxes_for("b/two.png") == {"boxes": [[1, 2, 4, 6]], "normalized": False,
                                            "category_ids": [5], "scores": [0.5]}
    assert boxes.boxes_for("b/one.png")["boxes"] == []  # "one.png" is ambiguous: no match
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(ValueError, match="--coco-boxes"):
        read_coco_boxes(str(tmp_path / "results.json"), names)


def test_yolo_boxes_and_names(tmp_path):
    labels = tmp_path / "labels"
    (labels / "sub").mkdir(parents=True)
    (labels / "sub" / "x.txt").write_text("1 0.5 0.5 0.5 0.25\n0 0.25 0.25 0.1 0.1 0.9\n")
    (labels / "classes.txt").write_text("cat\ndog\n")
    boxes = read_yolo_boxes(str(labels), ["sub/x.png", "y.png"])
    assert boxes.categories == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    xyxy, cats, scores = image_boxes(boxes.boxes_for("sub/x.png"), 100, 200)
    np.testing.assert_allclose(xyxy, [[50, 37.5, 150, 62.5], [40, 20, 60, 30]])
    assert cats == [2, 1] and scores == [None, pytest.approx(0.9)]
    assert image_boxes(boxes.boxes_for("y.png"), 10, 10)[0].shape == (0, 4)
    (tmp_path / "data.yaml").write_text("names:\n  0: person\n  1: car\n  2: bus\n")
    assert read_yolo_names(str(tmp_path / "data.yaml")) == ["person", "car", "bus"]
    (tmp_path / "list.yaml").write_text("names: [a, b]\n")
    assert read_yolo_names(str(tmp_path / "list.yaml")) == ["a", "b"]
    (labels / "sub" / "x.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(ValueError, match="x.txt:1"):
        read_yolo_boxes(str(labels), ["sub/x.png"])


def test_polygons_keep_holes_apart_and_thin_pieces():
    mask = np.zeros((40, 50), bool)
    mask[5:30, 5:30] = True
    mask[10:20, 10:20] = False  # a hole
    mask[35, 40] = True  # one pixel
    outer, holes = mask_polygons(mask)
    assert len(outer) == 2 and len(holes) == 1
    assert all(len(r) >= 6 and len(r) % 2 == 0 for r in outer + holes)
    assert sorted(outer, key=len)[0] == [40, 35, 41, 35, 41, 36, 40, 36]  # its pixel's corners
    ann = mask_annotations(mask[None], [0.9], [1], None, "polygon")[0]
    assert ann["segmentation"] == outer and ann["holes"] == holes
    assert ann["area"] == int(mask.sum()) and ann["bbox"] == [5.0, 5.0, 36.0, 31.0]
    empty = mask_annotations(np.zeros((1, 4, 4), bool), [0.1], [1], None, "polygon")[0]
    assert empty["segmentation"] == {"size": [4, 4], "counts": "`0"}  # RLE: no empty polygon


def test_store_survives_a_cut_line_dedupes_and_retries_errors(tmp_path):
    path = tmp_path / "out.json.parts.jsonl"
    with PartStore(str(path)) as store:
        assert store.append({"file_name": "a", "width": 1, "height": 1, "annotations": []})
        assert store.append({"file_name": "b", "error": "broken"})
    with open(path, "ab") as f:
        f.write(b'{"file_name": "c", "width": 1, "hei')  # a crash in the middle of a line
    with PartStore(str(path)) as store:
        assert set(store) == {"a"} and store.errors() == {"b": "broken"}
        assert not store.append({"file_name": "a", "width": 9, "height": 9, "annotations": []})
        assert store.append({"file_name": "b", "width": 2, "height": 2, "annotations": []})
        assert store["a"]["width"] == 1 and store["b"]["width"] == 2 and not store.errors()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == ["a", "b", "b"]


def random_masks(rng, k, h=48, w=64):
    masks = np.zeros((k, h, w), bool)
    for m in masks:
        x, y = rng.integers(0, w - 10), rng.integers(0, h - 10)
        cv2.circle(m.view(np.uint8), (int(x) + 5, int(y) + 5), int(rng.integers(4, 9)), 1, -1)
    return masks


@pytest.mark.parametrize("fmt", ["rle", "polygon"])
def test_coco_file_round_trips_through_pycocotools(tmp_path, fmt):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    items = [WorkItem(f"im{i}.png", "", i + 1) for i in range(3)]
    masks = {i.file_name: random_masks(rng, 3) for i in items}
    segment = {i.file_name: i for i in items}
    with PartStore(str(tmp_path / "gt.json.parts.jsonl")) as store:
        for item in items:
            anns = mask_annotations(masks[item.file_name], [0.9, 0.8, 0.7], ["dog", "cat", 1],
                                    [0.5, None, 0.25], fmt)
            store.append({"file_name": item.file_name, "width": 64, "height": 48,
                          "annotations": anns})
        counts = finish(str(tmp_path / "gt.json"), items[::-1], store,
                        [{"id": 1, "name": "object"}])
    assert counts == {"images": 3, "annotations": 9, "categories": 3, "errors": 0,
                      "missing": 0}
    assert segment and not (tmp_path / "gt.json.errors.json").exists()
    gt = COCO(str(tmp_path / "gt.json"))
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["object", "cat", "dog"]
    for image_id, item in enumerate(items, 1):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        assert [a["category_id"] for a in anns] == [3, 2, 1]
        assert [a.get("detector_score") for a in anns] == [0.5, None, 0.25]
        for ann, mask in zip(anns, masks[item.file_name]):
            decoded = gt.annToMask(ann).astype(bool)
            if fmt == "rle":
                assert np.array_equal(decoded, mask)
            else:  # polygons through the boundary pixels lose part of the border pixels
                grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                assert not (decoded & ~grown).any() and iou(decoded, mask) > 0.5
            assert ann["area"] == mask.sum()
            assert ann["bbox"] == list(mask_utils.toBbox(mask_utils.encode(
                np.asfortranarray(mask.astype(np.uint8)))))
    results = [dict(a, score=a["score"]) for a in gt.dataset["annotations"]]
    dt = gt.loadRes(results)
    evaluation = COCOeval(gt, dt, "segm")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # the file against itself: AP 1


def test_unknown_or_bad_parameters_are_named(tmp_path, capsys):
    cases = [(["--param", "iou_thres=0.5"], "iou_thres: not a parameter of annotate.py (did "
                                             "you mean 'iou_thresh'?)"),
             (["--points-per-side", "0"], "points_per_side: 0 is out of range. Expected an "
                                          "integer from 1 to 256."),
             (["--param", "input_box=[1,2,3,4]"], "input_box: not a parameter"),
             (["--param", "multimask_output=True"], "multimask_output: not a parameter"),
             (["--param", "model_name"], "--param: got 'model_name'. Expected KEY=VALUE."),
             (["--model-name", "sam3"], "model_name: unknown value 'sam3'")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            annotate_main([str(tmp_path), "--out", str(tmp_path / "o.json"), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.json.parts.jsonl").exists()


def _bad_inputs(root):
    """Argument lists with one bad input each, and what the one line of the error must say."""
    images = root / "images"
    write(images / "a.png", synthetic_image(32, 32))
    (root / "text.json").write_text("not json {")
    (root / "list.json").write_text("[]")
    (root / "coco.json").write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("car 0.5 0.5 0.1 0.1\n")
    out = ["--out", str(root / "o.json")]
    return [
        ([str(root / "missing"), *out], "IMAGES: "),
        ([str(images), *out, "--coco-boxes", str(root / "nope.json")],
         f"--coco-boxes: {root / 'nope.json'}: No such file or directory"),
        ([str(images), *out, "--coco-boxes", str(root / "text.json")],
         f"--coco-boxes: {root / 'text.json'}: not JSON (Expecting value"),
        ([str(images), *out, "--coco-boxes", str(root / "list.json")],
         f"--coco-boxes: {root / 'list.json'} has no 'images' and 'annotations'"),
        ([str(images), *out, "--coco-boxes", str(root / "coco.json")],
         f"--coco-boxes: {root / 'coco.json'}: no 'file_name' key"),
        ([str(images), *out, "--yolo-labels", str(root / "nolabels")],
         f"--yolo-labels: {root / 'nolabels'} is not a folder"),
        ([str(images), *out, "--yolo-labels", str(root / "labels")],
         f"--yolo-labels: {root / 'labels' / 'a.txt'}:1: expected 'class cx cy w h"),
        ([str(images), *out, "--yolo-labels", str(root / "labels"), "--yolo-names",
          str(root / "names.txt")], f"--yolo-names: {root / 'names.txt'}: No such file"),
        ([str(images), "--out", str(root / "no" / "o.json")],
         f"--out: {root / 'no' / 'o.json'}: its folder does not exist"),
        ([str(images), *out, "--workers", "0"], "--workers: 0, at least 1"),
        ([str(images), *out, "--detector", "infer_yolo_v8", "--detector-param", "conf"],
         "--detector-param: got 'conf'. Expected KEY=VALUE."),
        ([str(images), *out, "--detector", "infer_yolo_v8", "--ray"], "--detector runs in"),
    ]


def test_bad_inputs_are_one_line_naming_the_argument(tmp_path, capsys):
    """A missing folder or file, a file that is not JSON or not COCO, a bad YOLO label, a bad
    count: exit status 2 and one line naming the argument (these were tracebacks), before any
    model loads (nothing written)."""
    for argv, message in _bad_inputs(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            annotate_main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, argv
        assert err.startswith("annotate.py: error: " + message) and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert not list(tmp_path.glob("*.jsonl"))


def test_the_script_answers_a_missing_folder_in_one_line(tmp_path):
    """The same as a script, as users run it: stderr is that one line, exit status 2."""
    done = subprocess.run([sys.executable, str(REPO / "annotate.py"), str(tmp_path / "missing"),
                           "--out", str(tmp_path / "o.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr == (f"annotate.py: error: IMAGES: {tmp_path / 'missing'} is neither a "
                           f"folder nor a list file\n")


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from infer_segment_anything_2.engine.dataset import PartStore, WorkItem, run_items, finish
    from infer_segment_anything_2.engine.dataset import runner

    runner.read_image = lambda path: np.zeros((120, 160, 3), np.uint8)
    rng = np.random.default_rng(0)

    pool = np.zeros((64, 120, 160), bool)  # blobs of all sizes, as a model gives
    for m in pool:
        x, y = rng.integers(0, 150, 2)
        m[y % 110:y % 110 + rng.integers(3, 60), x:x + rng.integers(3, 80)] = True

    def segment(image, boxes):  # 20 masks per image
        masks = pool[rng.integers(0, len(pool), 20)]
        return masks, rng.random(20).tolist(), [1] * 20, [None] * 20

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

    out = sys.argv[2]
    items = [WorkItem(f"im{i:04d}.png", "", i + 1) for i in range(1000)]
    with PartStore(out + ".parts.jsonl") as store:
        run_items(items[:100], segment, store, progress=False)
        before = rss()
        run_items(items, segment, store, progress=False)
        after = rss()
        finish(out, items, store, None)
        final = rss()
    print(before, after, final)
""")


def test_memory_stays_flat_over_1000_images(tmp_path):
    script = tmp_path / "memory.py"
    script.write_text(MEMORY_SCRIPT)
    plugins = os.path.dirname(os.path.dirname(sys.modules["infer_segment_anything_2"].__path__[0]
                                              + "/"))
    done = subprocess.run([sys.executable, str(script), plugins, str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    before, after, final = (int(v) for v in done.stdout.split())
    # 20,000 annotations (~6 MB on disk, ~25 MB as Python dicts): none of them stays in memory
    assert after - before < 4 * 2**20 and final - before < 8 * 2**20, (before, after, final)
    assert os.path.getsize(tmp_path / "out.json") > 5 * 2**20
