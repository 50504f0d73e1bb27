"""Tiny videos, prompts' files and a small model for the video command-line and Ray tests.

The model is SAM 2.1 tiny with the "present"-biased random checkpoint (every object scored
present, so masks are non-empty), built at ``IMAGE_SIZE`` instead of 1024 through the plugin's
own loading path (:func:`small_model_config` patches :func:`engine.model.loader.load_config`):
the same modules, 64x fewer pixels. ``small_cli.py`` runs ``annotate.py`` so in a subprocess.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
IMAGE_SIZE = 64
H, W = 48, 64
FRAMES = 6
# MOT tracks: id -> {frame (0-based): XYXY box}; 7 starts on frame 2 (tracked backwards too)
MOT = {3: {t: (4 + 2 * t, 8, 24 + 2 * t, 30) for t in range(FRAMES)},
       7: {t: (36, 4 + t, 58, 20 + t) for t in range(2, FRAMES)}}


def frame(t: int, seed: int = 0) -> np.ndarray:
    """A grey frame with a bright disc and a dark square that move (RGB uint8)."""
    img = np.full((H, W, 3), 110 + 20 * seed, np.uint8)
    cv2.circle(img, (14 + 2 * t, 19), 9, (240, 220, 60), -1)
    cv2.rectangle(img, (38, 6 + t), (56, 18 + t), (20, 30, 200), -1)
    return img


def write_folder(folder: Path, n: int = FRAMES, seed: int = 0, sizes=None) -> Path:
    """A frame folder of ``n`` PNGs (``sizes``: per frame ``(h, w)`` to mix sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = frame(t, seed)
        if sizes is not None:
            img = cv2.resize(img, sizes[t][::-1])
        cv2.imwrite(str(folder / f"{t:05d}.png"), img[:, :, ::-1])
    return folder


def mot_text(tracks=MOT) -> str:
    """MOT lines ``frame, id, x, y, w, h, conf, class, visibility`` (frames from 1)."""
    lines = []
    for tid, boxes in sorted(tracks.items()):
        for t, (x1, y1, x2, y2) in sorted(boxes.items()):
            lines.append(f"{t + 1},{tid},{x1},{y1},{x2 - x1},{y2 - y1},1,1,1")
    return "\n".join(lines) + "\n"


def make_videos(root: Path) -> Path:
    """``root/videos`` with two frame folders ``a`` and ``sub/b``, and ``root/mot/<video>.txt``
    of :data:`MOT` for both."""
    write_folder(root / "videos" / "a")
    write_folder(root / "videos" / "sub" / "b", seed=1)
    for name in ("a", "sub/b"):
        path = root / "mot" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mot_text())
    return root


def model_values(checkpoint) -> dict:
    return {"model_name": "sam2.1_hiera_tiny", "model_weight_file": str(checkpoint),
            "cuda": "False"}


def param_args(checkpoint) -> list:
    return [a for k, v in model_values(checkpoint).items() for a in ("--param", f"{k}={v}")]


def _small_load_config(size: int):
    """Patch the plugin's config loading so that SAM 2 is built at ``size``; returns the
    function that undoes it."""
    from infer_segment_anything_2.engine.model import loader

    real = loader.load_config

    def small(spec, apply_postprocessing):
        cfg = real(spec, apply_postprocessing)
        cfg.model.image_size = size
        return cfg

    loader.load_config = small
    return lambda: setattr(loader, "load_config", real)


@contextlib.contextmanager
def small_model_config(size: int = IMAGE_SIZE):
    """While active, the plugin builds SAM 2 at ``size`` (its config's ``image_size``) and torch
    runs on one thread (the suite's budget; the runs compared byte for byte use one thread)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    undo = _small_load_config(size)
    try:
        yield
    finally:
        undo()
        torch.set_num_threads(threads)


def run_cli(args, **kwargs) -> subprocess.Popen:
    """``annotate.py ARGS`` in a subprocess (small model, one torch thread), started."""
    env = {**os.environ, "IKOMIA_AUTO_COMPLETION": "0", "SAM2_TEST_IMAGE_SIZE": str(IMAGE_SIZE)}
    return subprocess.Popen([sys.executable, str(HERE / "small_cli.py"), *map(str, args),
                             "--threads", "1", "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def use_small_model(size: int = IMAGE_SIZE) -> None:
    """SAM 2 at ``size`` for the rest of the process (a Ray worker's setup)."""
    _small_load_config(size)
