"""Video outputs without a model: every format read back (schema, every mask decoded by
pycocotools equal to the input, DAVIS PNGs by Pillow), TrackEval reading the YouTube-VIS labels
as ground truth, the overlap rule, the 255-track limit and atomic writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from infer_segment_anything_2.engine.dataset.video_davis import davis_palette
from infer_segment_anything_2.engine.dataset.video_tracks import TrackResult, VideoInfo
from infer_segment_anything_2.engine.dataset.video_writers import (FORMATS, rle_stats,
                                                                    write_videos)
from infer_segment_anything_2.engine.dataset.videos import VideoError
from infer_segment_anything_2.engine.image.coco import mask_to_rle

H, W = 20, 30
CATEGORIES = [{"id": 3, "name": "cat", "supercategory": "animal"}]


def encode(mask):
    rle = mask_utils.encode(np.asfortranarray(mask, np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def dataset():
    """Two videos: ``a`` (4 frames, two overlapping tracks, one empty mask) and ``sub/b.mp4``
    (3 frames, one track); masks (or None) per video, track and frame."""
    rng = np.random.default_rng(1)
    masks = {"a": {5: [box_mask(2, 2, 12, 15), box_mask(3, 2, 14, 16), rng.random((H, W)) > .5,
                       None],
                   2: [None, box_mask(10, 5, 25, 19), np.zeros((H, W), bool),
                       box_mask(0, 0, W, H)]},
             "sub/b.mp4": {100: [box_mask(5, 0, 6, H), None, box_mask(1, 19, 29, 20)]}}
    scores = {5: 0.9, 2: 0.5, 100: 0.7}
    names = {5: "cat", 2: "dog", 100: "cat"}
    videos = []
    for name, tracks in masks.items():
        length = len(next(iter(tracks.values())))
        frame = "{:05d}.png" if name == "a" else "{:06d}.jpg"
        info = VideoInfo(name, [f"{name}/{frame.format(t)}" for t in range(length)], H, W)
        videos.append((info, [TrackResult(tid, names[tid], scores[tid],
                                          [None if m is None else encode(m) for m in ms])
                              for tid, ms in tracks.items()]))
    return videos, masks


def present(mask):
    return mask is not None and mask.any()


def test_rle_stats_match_pycocotools():
    rng = np.random.default_rng(0)
    wrap = np.zeros((H, W), bool)
    wrap[15:, 3], wrap[:4, 4] = True, True  # one run from column 3's bottom to column 4's top
    cases = [np.zeros((H, W), bool), np.ones((H, W), bool), box_mask(4, 3, 9, 20),
             box_mask(0, 18, 30, 20), wrap] + [rng.random((H, W)) > p for p in (.3, .9, .99)]
    for mask in cases:
        rle = encode(mask)
        for form in (rle, mask_to_rle(mask)):
            counts, area, box = rle_stats(form)
            assert counts == mask_to_rle(mask)["counts"]
            assert area == int(mask_utils.area(rle)) == mask.sum()
            expected = mask_utils.toBbox(rle).tolist()
            assert box == (expected if area else None)


def test_ytvis_labels_read_back(tmp_path):
    videos, masks = dataset()
    out = tmp_path / "labels.json"
    counts = write_videos("ytvis", str(out), videos, CATEGORIES)
    assert counts == {"videos": 2, "tracks": 3, "categories": 2}
    data = json.loads(out.read_text())
    assert sorted(data) == ["annotations", "categories", "videos"]
    assert data["categories"] == [{"id": 3, "name": "cat", "supercategory": "animal"},
                                  {"id": 4, "name": "dog"}]
    assert data["videos"][1] == {"id": 2, "name": "sub/b.mp4", "width": W, "height": H,
                                 "length": 3, "file_names": [f"sub/b.mp4/{t:06d}.jpg"
                                                             for t in range(3)]}
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3]
    for ann in data["annotations"]:
        assert set(ann) == {"id", "video_id", "category_id", "track_id", "iscrowd", "height",
                            "width", "score", "segmentations", "bboxes", "areas"}
        name = data["videos"][ann["video_id"] - 1]["name"]
        given = masks[name][ann["track_id"]]
        assert len(ann["segmentations"]) == len(given) == len(ann["bboxes"])
        for t, seg in enumerate(ann["segmentations"]):
            if not present(given[t]):
                assert seg is None and ann["bboxes"][t] is None and ann["areas"][t] is None
                continue
            assert isinstance(seg["counts"], list)  # uncompressed: what TrackEval's GT reads
            rle = mask_utils.frPyObjects(seg, H, W)
            assert np.array_equal(mask_utils.decode(rle).astype(bool), given[t])
            assert ann["bboxes"][t] == mask_utils.toBbox(rle).tolist()
            assert ann["areas"][t] == given[t].sum()
    assert [(a["track_id"], a["category_id"], a["score"]) for a in data["annotations"]] == [
        (5, 3, 0.9), (2, 4, 0.5), (100, 3, 0.7)]


def test_ytvis_results_and_kept_video_ids(tmp_path):
    videos, masks = dataset()
    videos[0][0].video_id, videos[1][0].video_id = 40, 7
    out = tmp_path / "results.json"
    write_videos("ytvis-results", str(out), videos, CATEGORIES)
    data = json.loads(out.read_text())
    assert isinstance(data, list) and [d["video_id"] for d in data] == [40, 40, 7]
    for entry in data:
        assert set(entry) == {"video_id", "category_id", "score", "track_id", "segmentations"}
        given = masks["a" if entry["video_id"] == 40 else "sub/b.mp4"][entry["track_id"]]
        for t, seg in enumerate(entry["segmentations"]):
            assert (seg is None) == (not present(given[t]))
            if seg is not None:
                assert isinstance(seg["counts"], str)  # compressed: what loadRes reads
                assert np.array_equal(mask_utils.decode(seg).astype(bool), given[t])
    videos[1][0].video_id = 40
    with pytest.raises(ValueError, match="sub/b.mp4: video id 40 is used by another video"):
        write_videos("ytvis-results", str(out), videos)


def test_trackeval_reads_the_labels_as_ground_truth(tmp_path):
    trackeval = pytest.importorskip("trackeval")
    videos, _ = dataset()
    split = "youtube_vis_train_sub_split"
    gt, results = tmp_path / "gt" / split, tmp_path / "trackers" / split / "ours" / "data"
    gt.mkdir(parents=True)
    results.mkdir(parents=True)
    write_videos("ytvis", str(gt / "labels.json"), videos, CATEGORIES)
    write_videos("ytvis-results", str(results / "results.json"), videos, CATEGORIES)
    dataset_config = {"GT_FOLDER": str(tmp_path / "gt") + "/", "PRINT_CONFIG": False,
                      "TRACKERS_FOLDER": str(tmp_path / "trackers") + "/",
                      "OUTPUT_FOLDER": str(tmp_path / "eval")}
    evaluator = trackeval.Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False,
                                     "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                                     "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                                     "PLOT_CURVES": False})
    res, messages = evaluator.evaluate([trackeval.datasets.YouTubeVIS(dataset_config)],
                                       [trackeval.metrics.HOTA()])
    assert messages["YouTubeVIS"]["ours"] == "Success"
    combined = res["YouTubeVIS"]["ours"]["COMBINED_SEQ"]
    assert sorted(combined) == ["cat", "cls_comb_cls_av", "cls_comb_det_av", "dog"]
    for cls in ("cat", "dog"):  # the results are the labels: a perfect score on each class
        assert np.allclose(combined[cls]["HOTA"]["HOTA"], 1.0)
    assert set(res["YouTubeVIS"]["ours"]) == {"a", "sub", "COMBINED_SEQ"}  # TrackEval's names


def test_coco_video_read_back(tmp_path):
    videos, masks = dataset()
    out = tmp_path / "coco.json"
    counts = write_videos("coco-video", str(out), videos, CATEGORIES)
    expected = sum(present(m) for tracks in masks.values() for ms in tracks.values() for m in ms)
    assert counts == {"videos": 2, "images": 7, "annotations": expected, "categories": 2}
    data = json.loads(out.read_text())
    assert data["videos"] == [{"id": 1, "name": "a", "width": W, "height": H, "length": 4},
                              {"id": 2, "name": "sub/b.mp4", "width": W, "height": H,
                               "length": 3}]
    assert data["images"][4] == {"id": 5, "file_name": "sub/b.mp4/000000.jpg", "width": W,
                                 "height": H, "video_id": 2, "frame_index": 0}
    coco = COCO(str(out))  # pycocotools' own index of the file
    for ann in data["annotations"]:
        image = coco.imgs[ann["image_id"]]
        assert image["video_id"] == ann["video_id"]
        name = data["videos"][ann["video_id"] - 1]["name"]
        given = masks[name][ann["track_id"]][image["frame_index"]]
        assert np.array_equal(coco.annToMask(ann).astype(bool), given)
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["attributes"] == {"track_id": ann["track_id"], "keyframe": True,
                                     "occluded": False}
        assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist()
        assert ann["area"] == given.sum() and ann["iscrowd"] == 0
    assert [a["id"] for a in data["annotations"]] == list(range(1, expected + 1))


def test_davis_pngs_read_back(tmp_path):
    videos, masks = dataset()
    out = tmp_path / "davis"
    assert write_videos("davis", str(out), videos) == {"videos": 2, "frames": 7, "tracks": 3}
    assert sorted(p.name for p in (out / "a").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert sorted(p.name for p in (out / "sub" / "b.mp4").iterdir()) == [
        f"{t:06d}.png" for t in range(3)]
    for t in range(4):
        with Image.open(out / "a" / f"{t:05d}.png") as im:
            assert im.mode == "P" and im.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0,
                                                               128, 128, 0]
            label = np.array(im)
        expected = np.zeros((H, W), np.uint8)
        for value, tid in ((2, 2), (1, 5)):  # track 5 (score 0.9) on top of track 2 (0.5)
            if masks["a"][tid][t] is not None:
                expected[masks["a"][tid][t]] = value
        assert np.array_equal(label, expected)
    assert (np.array(Image.open(out / "a" / "00001.png")) == 1).sum() == masks["a"][5][1].sum()
    mapping = json.loads((out / "tracks.json").read_text())
    assert mapping["a"] == [{"value": 1, "track_id": 5, "category": "cat", "score": 0.9},
                            {"value": 2, "track_id": 2, "category": "dog", "score": 0.5}]
    assert len(davis_palette()) == 768 and davis_palette()[3 * 255:] == [224, 224, 192]
    assert not list(out.rglob("*.tmp*"))


def test_davis_ties_go_to_the_earlier_track(tmp_path):
    info = VideoInfo("t", ["t/0.jpg"], H, W)
    full = encode(np.ones((H, W), bool))
    tracks = [TrackResult(8, "x", 0.5, [full]), TrackResult(9, "x", 0.5, [full])]
    write_videos("davis", str(tmp_path), [(info, tracks)])
    assert np.all(np.array(Image.open(tmp_path / "t" / "0.png")) == 1)


def test_davis_more_than_255_tracks_is_an_error(tmp_path):
    info = VideoInfo("crowd", ["crowd/0.jpg"], H, W)
    tracks = [TrackResult(i, "x", 0.5, [None]) for i in range(256)]
    with pytest.raises(VideoError, match="crowd: 256 tracks do not fit DAVIS PNGs"):
        write_videos("davis", str(tmp_path / "out"), [(info, tracks)])
    assert not (tmp_path / "out" / "crowd").exists()
    write_videos("davis", str(tmp_path / "out"), [(info, tracks[:255])])
    assert (tmp_path / "out" / "crowd" / "0.png").exists()
    outside = VideoInfo("../up", ["../up/0.jpg"], H, W)
    with pytest.raises(VideoError, match=r"\.\./up: a DAVIS folder"):
        write_videos("davis", str(tmp_path / "out"), [(outside, [])])
    assert not (tmp_path / "up").exists()


def test_json_outputs_are_atomic(tmp_path):
    videos, _ = dataset()
    for fmt in FORMATS[:3]:
        out = tmp_path / f"{fmt}.json"
        write_videos(fmt, str(out), videos)
        before = out.read_text()
        bad = [(videos[0][0], [TrackResult(1, "x", 0.1, [None])])]  # 1 segmentation, 4 frames
        with pytest.raises(ValueError, match="a: track 1 has 1 segmentations for 4 frames"):
            write_videos(fmt, str(out), videos + bad)
        assert out.read_text() == before  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{f}.json" for f in FORMATS[:3])
    with pytest.raises(ValueError, match="--format"):
        write_videos("mots", str(tmp_path / "x"), videos)
