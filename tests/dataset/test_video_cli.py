"""``annotate.py --videos`` with the random-weight tiny model (present-biased, small input size):
MOT box tracks to masks with their ids, YouTube-VIS prompts, every output format read back,
resume after a SIGKILL mid-video byte for byte, bad videos reported and skipped, and one-line
exit-2 answers to bad arguments."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from video_run_helpers import (FRAMES, H, MOT, W, make_videos, model_values, mot_text, param_args,
                           read_json, run_cli, small_model_config, write_folder)
from infer_segment_anything_2.annotate import main as annotate_main


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("videos"))


def cli(argv, capsys):
    """``annotate.py ARGV`` in this process (small model): (exit status, stdout, stderr)."""
    with small_model_config():
        try:
            code = annotate_main([*map(str, argv), "--no-progress"])
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Bad arguments: one line naming the argument, exit 2, no traceback
# ---------------------------------------------------------------------------------------------
BAD = [
    (["{root}/nowhere", "--videos"], "IMAGES: {root}/nowhere does not exist"),
    (["{root}/mot", "--videos"], "IMAGES: no video file or frame folder in"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/none.json"], "--ytvis:"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/mot/a.txt"], "--ytvis: "
     "{root}/mot/a.txt is not JSON"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/list.json"], "--ytvis: "),
    (["{root}/videos", "--videos", "--mot", "{root}/nomot"], "--mot: {root}/nomot "
     "does not exist"),
    (["{root}/videos", "--videos", "--format", "rle"], "--format: invalid choice: "
     "'rle' for videos"),
    (["{root}/videos", "--videos", "--format", "ytvis,ytvis"], "--format:"),
    (["{root}/videos", "--format", "davis"], "--format: invalid choice: 'davis' for "
     "images"),
    (["{root}/videos", "--mot", "{root}/mot"], "--mot: only with --videos"),
    (["{root}/videos", "--videos", "--coco-boxes", "{root}/x.json"], "--coco-boxes: "
     "not with --videos"),
    (["{root}/videos", "--videos", "--mot", "{root}/mot", "--prompt-every", "0"],
     "--prompt-every: 0 is not a whole number >= 1"),
    (["{root}/videos", "--videos", "--prompt-every", "2"], "--prompt-every: only with"),
    (["{root}/videos", "--videos", "--mot", "{root}/mot", "--seed-every", "5"],
     "--seed-every: only without prompts"),
    (["{root}/videos", "--videos", "--seed-every", "x"], "argument --seed-every: invalid int"),
    (["{root}/videos", "--videos", "--detect-every", "3"], "--detect-every: only with "
     "--detector"),
    (["{root}/videos", "--videos", "--detector", "infer_yolo_v8", "--ray"], "--ray:"),
    (["{root}/videos", "--videos", "--direction", "back"], "argument --direction: invalid "
     "choice"),
    (["{root}/videos", "--videos", "--checkpoint-every", "0"], "--checkpoint-every:"),
    (["{root}/videos", "--videos", "--out", "{root}/no/o.json"], "--out: {root}/no/o.json: its "
     "folder does not exist"),
    (["{root}/videos", "--videos", "--param", "video_match_iou=2"], "video_match_iou"),
    (["{root}/videos", "--videos", "--input-size-percent", "50"], "input_size_percent: not a "
     "parameter of annotate.py --videos"),
    (["{root}/videos", "--video-max-objects", "3"], "video_max_objects: not a parameter of "
     "annotate.py (only with --videos)"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_a_bad_argument_is_one_line_naming_it_with_exit_2(root, argv, message, capsys):
    (root / "list.json").write_text("[1, 2]")
    code, out, err = cli(["--out", root / "o.json"] + [a.format(root=root) for a in argv],
                         capsys)  # an --out in argv comes later and wins
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert message.format(root=root) in lines[-1], err
    assert lines[-1].startswith("annotate.py: error: ")
    if not message.startswith("argument "):  # ours: that one line (argparse's: after usage)
        assert len(lines) == 1, err


# ---------------------------------------------------------------------------------------------
# Runs with the model
# ---------------------------------------------------------------------------------------------
FORMATS = "ytvis,ytvis-results,coco-video,davis"


def decode(seg) -> np.ndarray:
    """A segmentation of either RLE form, decoded by pycocotools."""
    if isinstance(seg["counts"], list):
        seg = mask_utils.frPyObjects(seg, *seg["size"])
    return mask_utils.decode(seg).astype(bool)


@pytest.fixture(scope="module")
def mot_run(root, present_checkpoint, tmp_path_factory):
    """MOT tracks of both videos to every format (one run for the module's checks)."""
    out = tmp_path_factory.mktemp("mot") / "tracks.json"
    with small_model_config():
        code = annotate_main([str(root / "videos"), "--videos", "--mot", str(root / "mot"),
                              "--out", str(out), "--format", FORMATS, "--no-progress",
                              *param_args(present_checkpoint)])
    return code, out


def test_mot_tracks_become_masks_with_their_ids_on_every_frame(mot_run):
    code, out = mot_run
    assert code == 0
    data = read_json(out)
    assert [v["file_names"][0] for v in data["videos"]] == ["a/00000.png", "sub/b/00000.png"]
    for v in data["videos"]:
        assert (v["width"], v["height"], v["length"]) == (W, H, FRAMES)
        assert v["file_names"] == [f"{v['name']}/{t:05d}.png" for t in range(FRAMES)]
    assert {c["name"] for c in data["categories"]} == {"1"}  # MOT class 1
    for video in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        assert sorted(a["track_id"] for a in anns) == sorted(MOT)  # the MOT ids kept
        for ann in anns:
            assert 0 < ann["score"] <= 1 and ann["iscrowd"] == 0
            assert len(ann["segmentations"]) == len(ann["bboxes"]) == FRAMES
            for t, seg in enumerate(ann["segmentations"]):
                # every frame has a mask, track 7's frames 0 and 1 too (before its first box)
                assert seg is not None, (video["name"], ann["track_id"], t)
                mask = decode(seg)
                assert mask.shape == (H, W) and mask.any()
                assert ann["areas"][t] == mask.sum()
                ys, xs = np.nonzero(mask)
                assert ann["bboxes"][t] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                            ys.max() - ys.min() + 1]


def test_every_format_is_written_and_reads_back_the_same_masks(mot_run):
    code, out = mot_run
    labels = read_json(out)
    masks = {(a["video_id"], a["track_id"], t): decode(s) for a in labels["annotations"]
             for t, s in enumerate(a["segmentations"])}
    results = read_json(str(out)[:-5] + ".ytvis-results.json")
    assert len(results) == len(labels["annotations"])
    for r in results:
        for t, seg in enumerate(r["segmentations"]):
            assert isinstance(seg["counts"], str)  # compressed, as loadRes reads
            np.testing.assert_array_equal(decode(seg), masks[r["video_id"], r["track_id"], t])
    coco = read_json(str(out)[:-5] + ".coco-video.json")
    images = {i["id"]: i for i in coco["images"]}
    assert len(images) == 2 * FRAMES
    assert len(coco["annotations"]) == len(masks)
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        assert ann["attributes"]["track_id"] == ann["track_id"]
        np.testing.assert_array_equal(decode(ann["segmentation"]), masks[
            image["video_id"], ann["track_id"], image["frame_index"]])
    davis = out.parent / "tracks.davis"
    values = read_json(davis / "tracks.json")
    from PIL import Image

    for video in labels["videos"]:
        track_of = {v["value"]: v["track_id"] for v in values[video["name"]]}
        for t, name in enumerate(video["file_names"]):
            png = Image.open(davis / (name[:-4] + ".png"))
            assert png.mode == "P"
            label = np.asarray(png)
            assert set(np.unique(label)) <= {0, *track_of}
            for value, track in track_of.items():  # each pixel is one of the track's pixels
                assert masks[video["id"], track, t][label == value].all()
            union = np.any([masks[video["id"], k, t] for k in track_of.values()], axis=0)
            np.testing.assert_array_equal(label > 0, union)


def test_youtube_vis_prompts_give_tracks_with_their_category(root, present_checkpoint, tmp_path,
                                                             capsys):
    boxes = [None] * FRAMES
    boxes[3] = [10, 8, 20, 22]  # XYWH, one box on frame 3
    prompts = {"videos": [{"id": 4, "file_names": [f"a/{t:05d}.png" for t in range(FRAMES)],
                           "width": W, "height": H, "length": FRAMES}],
               "annotations": [{"id": 1, "video_id": 4, "category_id": 9, "track_id": 12,
                                "iscrowd": 0, "bboxes": boxes,
                                "segmentations": [None] * FRAMES}],
               "categories": [{"id": 9, "name": "ball"}]}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out = tmp_path / "out.json"
    code, _, err = cli([root / "videos", "--videos", "--ytvis", tmp_path / "prompts.json",
                        "--out", out, *param_args(present_checkpoint)], capsys)
    assert code == 0, err
    data = read_json(out)
    (ann,) = data["annotations"]
    assert ann["track_id"] == 12 and ann["video_id"] == 4  # the file's ids kept
    assert data["categories"] == [{"id": 9, "name": "ball"}] and ann["category_id"] == 9
    assert all(s is not None and decode(s).any() for s in ann["segmentations"])


def test_resume_after_a_sigkill_mid_video_is_byte_identical(root, present_checkpoint, tmp_path,
                                                            capsys):
    write_folder(tmp_path / "long" / "v", n=8)  # forward 3..7, backward 3..0: 9 results
    (tmp_path / "long.txt").write_text(mot_text({5: {t: (6 + t, 10, 26 + t, 34)
                                                     for t in range(3, 8)}}))
    common = [tmp_path / "long" / "v", "--videos", "--mot", tmp_path / "long.txt",
              *param_args(present_checkpoint), "--checkpoint-every", "2"]
    whole = tmp_path / "whole.json"
    code, _, err = cli([*common, "--out", whole], capsys)
    assert code == 0, err
    out = tmp_path / "killed.json"
    checkpoints = tmp_path / "killed.json.checkpoints"
    proc = run_cli([*common, "--out", out])
    deadline = time.time() + 120
    while not any(checkpoints.glob("*.pkl")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()  # still mid-video
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (tmp_path / "killed.json.parts.jsonl").read_text() == ""
    code, _, err = cli([*common, "--out", out], capsys)  # the same command again
    assert code == 0, err
    assert "video v: resumed after" in err  # from the checkpoint, not from the start
    assert out.read_bytes() == whole.read_bytes()
    assert not checkpoints.exists()


def test_bad_videos_are_reported_by_name_and_skipped(present_checkpoint, tmp_path, capsys):
    videos = tmp_path / "videos"
    write_folder(videos / "ok", n=3)
    write_folder(videos / "late", n=3)
    write_folder(videos / "mixed", n=3, sizes=[(H, W), (H, W), (H // 2, W)])
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (videos / "empty.avi").write_bytes(b"")
    mot = tmp_path / "mot"
    mot.mkdir()
    for name in ("ok", "late", "mixed", "broken", "empty"):
        (mot / f"{name}.txt").write_text(mot_text({3: {t: (4, 8, 24, 30) for t in range(3)}}))
    (mot / "late.txt").write_text(mot_text({3: {t: (4, 8, 24, 30) for t in range(5)}}))
    out = tmp_path / "out.json"
    code, _, err = cli([videos, "--videos", "--mot", mot, "--out", out,
                        *param_args(present_checkpoint)], capsys)
    assert code == 1
    bad = ["broken.mp4", "empty.avi", "late", "mixed"]
    lines = [line for line in err.splitlines() if line.startswith("annotate.py: video ")]
    assert [line.split()[2].rstrip(":") for line in lines] == bad, err
    assert "has a prompt on frame 3" in lines[2] and "3 frames" in lines[2]
    errors = read_json(str(out) + ".errors.json")
    assert [e["video"] for e in errors] == bad
    data = read_json(out)
    assert [v["name"] for v in data["videos"]] == ["ok"]  # the run went on
    assert data["annotations"][0]["segmentations"][0] is not None


def _engine_run(config, out, detect=None):
    """The single-process run of ``config`` on the helper's videos (no Ikomia detector: a
    ``detect`` function is given to the engine as the glue gives its detector's)."""
    from infer_segment_anything_2.engine.dataset.video_finish import finish_videos
    from infer_segment_anything_2.engine.dataset.video_model import build_annotator
    from infer_segment_anything_2.engine.dataset.video_runner import VideoJob, run_videos
    from infer_segment_anything_2.engine.dataset.video_store import video_store
    from infer_segment_anything_2.engine.dataset.videos import list_videos

    refs = list_videos(config.names[0])
    with small_model_config(), video_store(str(out)) as store:
        run_videos([VideoJob(r.name, r) for r in refs], build_annotator(config, detect), store,
                   str(out), progress=False)
        finish_videos(str(out), ["ytvis"], [r.name for r in refs], store)
    return read_json(out)


def _config(folder, checkpoint, **kwargs):
    from infer_segment_anything_2.annotate import WEIGHTS_DIR
    from infer_segment_anything_2.engine.dataset.video_model import VideoConfig

    values = {**model_values(checkpoint), **kwargs.pop("values", {})}
    return VideoConfig(tuple(sorted(values.items())), str(WEIGHTS_DIR), (str(folder),),
                       **kwargs)


def test_a_detector_seeing_an_object_from_frame_3_on_gives_it_masks_before(
        root, present_checkpoint, tmp_path):
    from infer_segment_anything_2.engine.video.matching import Detections

    calls = []

    def detect(t, image):  # the disc, seen from frame 3 on, class "disc"
        calls.append(t)
        if t < 3:
            return Detections()
        return Detections(np.array([[5 + 2 * t, 10, 24 + 2 * t, 29]], np.float32), ["disc"],
                          np.array([0.9], np.float32))

    folder = root / "videos" / "a"
    data = _engine_run(_config(folder, present_checkpoint, detect_every=1, detector=("fake", ())),
                       tmp_path / "det.json", detect)
    assert calls == list(range(FRAMES))  # every frame of the forward pass
    ann = data["annotations"][0]  # the track started on frame 3
    assert ann["track_id"] == 1 and data["categories"][0]["name"] == "disc"
    assert ann["category_id"] == data["categories"][0]["id"]
    for t in range(3):  # tracked backwards from frame 3
        assert ann["segmentations"][t] is not None and decode(ann["segmentations"][t]).any()


def test_automatic_seeding_starts_object_tracks(root, present_checkpoint, tmp_path):
    folder = root / "videos" / "a"
    automatic = {"points_per_side": "2", "iou_thresh": "0", "stability_score_thresh": "0",
                 "video_max_objects": "2"}
    data = _engine_run(_config(folder, present_checkpoint, seed_every=FRAMES, values=automatic),
                       tmp_path / "seed.json")
    assert 1 <= len(data["annotations"]) <= 2, "seeding started no track, or too many"
    assert [a["track_id"] for a in data["annotations"]] == list(
        range(1, len(data["annotations"]) + 1))
    assert [c["name"] for c in data["categories"]] == ["object"]
    assert any(s is not None and decode(s).any() for s in data["annotations"][0]["segmentations"])


def test_an_ikomia_detector_by_name_starts_tracks_with_its_classes(present_checkpoint, tmp_path,
                                                                    capsys):
    """The glue (ikomia_annotate.VideoDetector): an Ikomia detection task made in Python,
    registered by name, emitting the same two boxes (a car, a dog) on every frame."""
    from ikomia.dataprocess.registry import ik_registry
    from test_annotate_model import fixed_detector_factory

    ik_registry.register_task(*fixed_detector_factory())
    folder = write_folder(tmp_path / "v", n=3, sizes=[(64, 128)] * 3)  # the boxes' image size
    out = tmp_path / "det.json"
    code, _, err = cli([folder, "--videos", "--detector", "annotate_fixed_detector", "--out",
                        out, *param_args(present_checkpoint)], capsys)
    assert code == 0, err
    data = read_json(out)
    names = {c["id"]: c["name"] for c in data["categories"]}
    # matched on every later frame by their last detection box: two tracks, ids from 1
    assert [(a["track_id"], names[a["category_id"]]) for a in data["annotations"]] == [
        (1, "car"), (2, "dog")]
    assert all(s is not None for a in data["annotations"] for s in a["segmentations"])
