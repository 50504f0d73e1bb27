"""Video prompt files without a model: YouTube-VIS tracks (masks of every form preferred over
boxes, ids and categories kept, videos matched by name), MOT boxes (1-based frames, ids kept,
malformed lines counted), which frames become prompts, and prompts past a video's end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from infer_segment_anything_2.engine.dataset.video_mot import read_mot_prompts
from infer_segment_anything_2.engine.dataset.video_prompts import (
    check_prompts, read_ytvis_prompts, select_frames)
from infer_segment_anything_2.engine.dataset.videos import VideoError
from infer_segment_anything_2.engine.image.coco import mask_to_coco_rle, mask_to_rle

H, W, T = 20, 30, 6


def blob(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


POLYGON = [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0, 2.0, 9.0]]


def ytvis_file(tmp_path):
    a, b = blob(3, 4, 10, 12), blob(15, 1, 29, 5)
    videos = [{"id": 11, "file_names": [f"v1/{t:05d}.jpg" for t in range(T)], "height": H,
               "width": W},
              {"id": 12, "file_names": [f"nested/v2/{t}.jpg" for t in range(T)], "height": H,
               "width": W},
              {"id": 13, "file_names": ["clip/0.jpg"], "height": H, "width": W},
              {"id": 14, "file_names": ["unknown/0.jpg"], "height": H, "width": W}]
    anns = [{"id": 101, "video_id": 11, "category_id": 3, "height": H, "width": W,
             "segmentations": [None, mask_to_coco_rle(a), mask_to_rle(b), POLYGON, None, None],
             "bboxes": [[1, 2, 3, 4], [0, 0, 5, 5], None, None, None, [1, 1, 0, 4]]},
            {"id": 102, "track_id": 7, "video_id": 11, "category_id": 9,
             "segmentations": [None] * T, "bboxes": [None, None, None, None, [5, 5, 2, 2], None]},
            {"id": 103, "track_id": 7, "video_id": 11, "category_id": 3,
             "segmentations": [None] * T, "bboxes": [[0, 0, 1, 1]] + [None] * (T - 1)},
            {"id": 104, "video_id": 12, "category_id": 3, "segmentations": [None] * T,
             "bboxes": [[t, 0, 4, 4] for t in range(T)]},
            {"id": 105, "video_id": 13, "category_id": 3, "segmentations": [None],
             "bboxes": [[0, 0, 2, 2]]}]
    data = {"videos": videos, "annotations": anns,
            "categories": [{"id": 3, "name": "cat", "supercategory": "animal"}]}
    path = tmp_path / "ytvis.json"
    path.write_text(json.dumps(data))
    return path, a, b


def test_select_frames_first_then_every_k():
    assert select_frames([4, 1, 2, 3], None) == [1, 2, 3, 4]
    assert select_frames(range(10), 4) == [0, 4, 8]
    assert select_frames([0, 1, 2, 5, 6, 7, 9], 3) == [0, 5, 9]  # reappears after a gap
    assert select_frames([3], 100) == [3] and select_frames(range(5), 1) == [0, 1, 2, 3, 4]


def test_ytvis_masks_boxes_ids_categories(tmp_path):
    path, a, b = ytvis_file(tmp_path)
    names = ["v1", "nested/v2", "clip.mp4", "other"]
    p = read_ytvis_prompts(str(path), names)
    assert p.video_ids == {"v1": 11, "nested/v2": 12, "clip.mp4": 13}
    assert p.unmatched == ["unknown"]
    assert p.categories == [{"id": 3, "name": "cat", "supercategory": "animal"},
                            {"id": 9, "name": "9"}]
    assert p.category("v1", 101) == "cat" and p.category("v1", 7) == "9"
    assert p.skipped == 2  # the zero-width box, the second annotation of track 7
    v1 = p.for_video("v1")
    assert sorted(v1) == [7, 101]  # annotation id, or track_id when given
    track = v1[101]
    assert [q.frame for q in track] == [0, 1, 2, 3]
    np.testing.assert_array_equal(track[0].box, [1, 2, 4, 6])  # XYWH -> XYXY
    assert track[0].mask is None and track[1].box is None  # frame 1: the mask, not the box
    assert np.array_equal(track[1].mask, a) and np.array_equal(track[2].mask, b)
    polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(POLYGON, H, W)))
    assert np.array_equal(track[3].mask, polygon.astype(bool)) and track[3].mask.sum() > 0
    assert [q.frame for q in v1[7]] == [4]
    assert p.for_video("other") == {} and sorted(p.tracks) == ["clip.mp4", "nested/v2", "v1"]
    every = read_ytvis_prompts(str(path), names, prompt_every=2)
    assert [q.frame for q in every.for_video("nested/v2")[104]] == [0, 2, 4]
    boxes = read_ytvis_prompts(str(path), names, use="boxes").for_video("v1")[101]
    assert all(q.mask is None for q in boxes)
    np.testing.assert_array_equal(boxes[1].box, [0, 0, 5, 5])
    np.testing.assert_array_equal(boxes[2].box, [15, 1, 29, 5])  # the mask's pixel extent


def test_ytvis_errors(tmp_path):
    path, _, _ = ytvis_file(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentations"][1] = {"size": [H, W], "counts": [5, 5]}
    path.write_text(json.dumps(data))
    p = read_ytvis_prompts(str(path), ["v1"])
    assert "v1" in p.tracks and "v2" not in p.tracks  # without decoding the masks
    with pytest.raises(VideoError, match="v1: --ytvis: track 101, frame 1: bad segmentation"):
        p.for_video("v1")
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(ValueError, match="--ytvis"):
        read_ytvis_prompts(str(tmp_path / "results.json"), ["v1"])
    with pytest.raises(ValueError, match="--prompt-every"):
        read_ytvis_prompts(str(path), ["v1"], prompt_every=0)


MOT_LINES = """# frame,id,x,y,w,h,conf,class,visibility
1,5,10,20,30,40,1,1,1
2,5,11,21,30,40,1,1,1.0
3,5,12,22,30,40,1,1,1
4,5,13,23,30,40,1,1,1
5,5,14,24,30,40,1,1,1
6,5,15,25,30,40,1,1,1
4,3,1,1,2,2,0.5,2,1
5,3,1,1,2,2,0.5,2,1

3 8 1.5 1.5 2 2
1,2,3
x,5,1,1,2,2
1,6,nan,1,2,2
0,6,1,1,2,2
1,-1,1,1,2,2
1,7,1,1,0,2
1,5,99,99,2,2
"""


def test_mot_boxes_frames_ids(tmp_path):
    (tmp_path / "mot" / "seq" / "gt").mkdir(parents=True)
    (tmp_path / "mot" / "v1.txt").write_text(MOT_LINES)
    (tmp_path / "mot" / "seq" / "gt" / "gt.txt").write_text("2,1,0,0,4,4\n")
    (tmp_path / "mot" / "zzz.txt").write_text("1,1,0,0,4,4\n")
    p = read_mot_prompts(str(tmp_path / "mot"), ["v1.mp4", "seq", "none"])
    assert sorted(p.tracks) == ["seq", "v1.mp4"] and p.unmatched == ["zzz.txt"]
    v1 = p.for_video("v1.mp4")
    assert sorted(v1) == [3, 5, 8]
    assert [q.frame for q in v1[5]] == [0, 1, 2, 3, 4, 5]  # MOT's frames 1..6
    np.testing.assert_array_equal(v1[5][0].box, [10, 20, 40, 60])  # the first box of frame 1
    assert [q.frame for q in v1[3]] == [3, 4] and [q.frame for q in v1[8]] == [2]
    np.testing.assert_array_equal(v1[8][0].box, [1.5, 1.5, 3.5, 3.5])
    assert p.skipped == 7
    assert p.warnings[0] == "v1.txt:12: 3 fields, expected frame,id,x,y,w,h[,...]"
    assert len(p.warnings) == 5
    assert p.track_categories["v1.mp4"] == {3: 2, 5: 1, 8: 1}
    assert p.categories == [{"id": 1, "name": "1"}, {"id": 2, "name": "2"}]
    assert p.category("v1.mp4", 3) == "2"
    assert [q.frame for q in p.for_video("seq")[1]] == [1]
    every = read_mot_prompts(str(tmp_path / "mot"), ["v1.mp4"], prompt_every=2)
    assert [q.frame for q in every.for_video("v1.mp4")[5]] == [0, 2, 4]
    assert [q.frame for q in every.for_video("v1.mp4")[3]] == [3]


def test_mot_single_file(tmp_path):
    (tmp_path / "track.txt").write_text("1,4,0,0,4,4\n3,4,1,0,4,4\n")
    p = read_mot_prompts(str(tmp_path / "track.txt"), ["only.avi"])
    assert [q.frame for q in p.for_video("only.avi")[4]] == [0, 2]
    assert p.categories == [{"id": 1, "name": "object"}]
    assert sorted(read_mot_prompts(str(tmp_path / "track.txt"), ["a", "track.mp4"]).tracks) == [
        "track.mp4"]
    with pytest.raises(ValueError, match="--mot: .* is one file"):
        read_mot_prompts(str(tmp_path / "track.txt"), ["a", "b"])
    with pytest.raises(FileNotFoundError, match="--mot"):
        read_mot_prompts(str(tmp_path / "missing"), ["a"])


def test_prompts_past_the_end_or_of_another_size(tmp_path):
    (tmp_path / "v.txt").write_text("1,4,0,0,4,4\n10,4,1,0,4,4\n12,9,1,0,4,4\n")
    tracks = read_mot_prompts(str(tmp_path / "v.txt"), ["v"]).for_video("v")
    check_prompts("v", tracks, 12, (H, W))
    with pytest.raises(VideoError, match=r"v: track 9 has a prompt on frame 11.* 11 frames"):
        check_prompts("v", tracks, 11, (H, W))
    path, _, _ = ytvis_file(tmp_path)
    v1 = read_ytvis_prompts(str(path), ["v1"]).for_video("v1")
    with pytest.raises(VideoError, match=r"v1: track 101's mask on frame 1 is 20x30"):
        check_prompts("v1", v1, T, (H, W + 1))
