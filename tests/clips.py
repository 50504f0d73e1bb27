"""Video clips and a small model for the video tests: frames drawn in Python, the tiny
architecture at a small input size."""
from __future__ import annotations

import copy

import numpy as np
import torch

H, W = 120, 160  # the clip's frames (the model sees them at its 1024x1024 input)


def clip_frame(t: int, height: int = H, width: int = W) -> np.ndarray:
    """A disc moving right over a flat background, and a square moving down."""
    import cv2

    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (40, 90, 60)
    cv2.circle(img, (int(width * 0.28) + 6 * t, height // 2), height // 5, (230, 200, 40), -1)
    cv2.rectangle(img, (width - 50, 10 + 5 * t), (width - 20, 40 + 5 * t), (30, 30, 220), -1)
    return img


def _tiny_at(image_size: int):
    """SAM 2.1 tiny from our loader's config (post-processing on, as ``build_model``) at input
    ``image_size``, random weights from torch's current RNG, eval mode."""
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.loader import load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    cfg = load_config(get_model_spec("sam2.1_hiera_tiny"), True)
    cfg.model.image_size = image_size
    return instantiate(cfg.model, _recursive_=True).eval()


def sized_model(checkpoint, image_size: int):
    """Our loader's model of ``checkpoint`` (SAM 2.1 tiny) at input ``image_size``: the same
    config, weights and modules as ``build_model`` gives, fewer pixels."""
    from pathlib import Path

    from infer_segment_anything_2.engine.model.loader import load_checkpoint
    from infer_segment_anything_2.engine.model.table import get_model_spec

    model = _tiny_at(image_size)
    load_checkpoint(model, Path(checkpoint), get_model_spec("sam2.1_hiera_tiny"))
    return model


_BUILT: dict = {}  # image_size -> (model, torch's RNG state right after building it)


def small_model(image_size: int = 64, standin_encoder: bool = False):
    """The tiny architecture (real config, random weights of seed 0) at a small input size: the
    same modules, 16x16 fewer pixels, for long runs.

    The model is built once per size (Hydra and the random initialisation: 0.36 s of CPU, 1.9 s
    on a busy machine; a copy 0.08 s) and each call returns a deep copy of it, with torch's RNG left as a fresh build leaves it: what a
    caller gets, and may change, is what a fresh build would give.

    ``standin_encoder``: the image encoder replaced by :class:`standin.StandInImageEncoder`
    (zero features of the real encoder's shapes, checked here against the real one on a frame),
    for tests of memory and bookkeeping over thousands of frames, where the image encoder is
    two thirds of each frame's time and its values do not matter.
    """
    if image_size not in _BUILT:
        torch.manual_seed(0)
        model = _tiny_at(image_size)
        _BUILT[image_size] = model, torch.get_rng_state()
    model, rng = _BUILT[image_size]
    model = copy.deepcopy(model)
    torch.set_rng_state(rng)
    if standin_encoder:
        _install_standin_encoder(model, image_size)
    return model


def _install_standin_encoder(model, image_size: int) -> None:
    """Replace ``model.image_encoder`` by the stand-in, after checking that the stand-in's
    outputs have the real encoder's keys, shapes and dtypes at ``image_size``."""
    from standin import StandInImageEncoder

    stand_in = StandInImageEncoder()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        real, fake = model.image_encoder(x), stand_in(x)

    def shapes(out):
        return {k: [(t.shape, t.dtype) for t in (v if isinstance(v, list) else [v])]
                for k, v in out.items()}
    assert shapes(fake) == shapes(real), (shapes(fake), shapes(real))
    model.image_encoder = stand_in


def present_small_model(image_size: int = 256):
    """The tiny architecture at ``image_size`` input through the plugin's loader, with the random
    weights of tests/conftest.py's present checkpoint (objects always scored present)."""
    from conftest import present_checkpoint_path

    return sized_model(present_checkpoint_path(), image_size).eval()


def saved_clip(folder, frames: int) -> list:
    """The clip's first ``frames`` saved as JPEG in ``folder`` for Meta's loader, and read back
    (PIL, as Meta's loader reads) as the very pixels our tracker gets."""
    from PIL import Image

    out = []
    for t in range(frames):
        Image.fromarray(clip_frame(t)).save(folder / f"{t:05d}.jpg", quality=95)
        out.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    return out
