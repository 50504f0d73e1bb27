"""``annotate.py --videos`` with the random-weight tiny model (present-biased, small input size):
MOT box tracks to masks with their ids, YouTube-VIS prompts, every output format read back,
resume after a SIGKILL mid-video byte for byte, bad videos reported and skipped, and one-line
exit-2 answers to bad arguments."""
from __future__ import annotations

import json
import signal
import time

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from video_helpers import (FRAMES, H, MOT, W, make_videos, mot_text, param_args, read_json,
                           run_cli, small_model_config, write_folder)
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
    (["{root}/nowhere", "--videos"], "argument IMAGES: {root}/nowhere does not exist"),
    (["{root}/mot", "--videos"], "argument IMAGES: no video file or frame folder in"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/none.json"], "argument --ytvis:"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/mot/a.txt"], "argument --ytvis: "
     "{root}/mot/a.txt is not JSON"),
    (["{root}/videos", "--videos", "--ytvis", "{root}/list.json"], "argument --ytvis: "),
    (["{root}/videos", "--videos", "--mot", "{root}/nomot"], "argument --mot: {root}/nomot "
     "does not exist"),
    (["{root}/videos", "--videos", "--format", "rle"], "argument --format: invalid choice: "
     "'rle' for videos"),
    (["{root}/videos", "--videos", "--format", "ytvis,ytvis"], "argument --format:"),
    (["{root}/videos", "--format", "davis"], "argument --format: invalid choice: 'davis' for "
     "images"),
    (["{root}/videos", "--mot", "{root}/mot"], "argument --mot: only with --videos"),
    (["{root}/videos", "--videos", "--coco-boxes", "{root}/x.json"], "argument --coco-boxes: "
     "not with --videos"),
    (["{root}/videos", "--videos", "--mot", "{root}/mot", "--prompt-every", "0"],
     "argument --prompt-every: 0 is not a whole number >= 1"),
    (["{root}/videos", "--videos", "--prompt-every", "2"], "argument --prompt-every: only with"),
    (["{root}/videos", "--videos", "--mot", "{root}/mot", "--seed-every", "5"],
     "argument --seed-every: only without prompts"),
    (["{root}/videos", "--videos", "--seed-every", "x"], "argument --seed-every: invalid int"),
    (["{root}/videos", "--videos", "--detect-every", "3"], "argument --detect-every: only with "
     "--detector"),
    (["{root}/videos", "--videos", "--detector", "infer_yolo_v8", "--ray"], "argument --ray:"),
    (["{root}/videos", "--videos", "--direction", "back"], "argument --direction: invalid "
     "choice"),
    (["{root}/videos", "--videos", "--checkpoint-every", "0"], "argument --checkpoint-every:"),
    (["{root}/videos", "--videos", "--param", "video_match_iou=2"], "video_match_iou"),
    (["{root}/videos", "--videos", "--input-size-percent", "50"], "input_size_percent: not a "
     "parameter of annotate.py --videos"),
    (["{root}/videos", "--video-max-objects", "3"], "video_max_objects: not a parameter of "
     "annotate.py (only with --videos)"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_a_bad_argument_is_one_line_naming_it_with_exit_2(root, argv, message, capsys):
    (root / "list.json").write_text("[1, 2]")
    code, out, err = cli([a.format(root=root) for a in argv] + ["--out", root / "o.json"],
                         capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert message.format(root=root) in lines[-1], err
    assert lines[-1].startswith("annotate.py: error: ")
