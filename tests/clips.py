"""Video clips and a small model for the video tests: frames drawn in Python, the tiny
architecture at a small input size."""
from __future__ import annotations

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


def small_model(image_size: int = 64):
    """The tiny architecture (real config) at a small input size: the same modules, 16x16 fewer
    pixels, for long runs."""
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.loader import load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.manual_seed(0)
    cfg = load_config(get_model_spec("sam2.1_hiera_tiny"), True)
    cfg.model.image_size = image_size
    return instantiate(cfg.model, _recursive_=True).eval()


def present_small_model(image_size: int = 256):
    """The tiny architecture at ``image_size`` input through the plugin's loader, with the random
    weights of tests/conftest.py's present checkpoint (objects always scored present)."""
    from hydra.utils import instantiate

    from conftest import present_checkpoint_path
    from infer_segment_anything_2.engine.model.loader import load_checkpoint, load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    spec = get_model_spec("sam2.1_hiera_tiny")
    cfg = load_config(spec, True)
    cfg.model.image_size = image_size
    model = instantiate(cfg.model, _recursive_=True)
    load_checkpoint(model, present_checkpoint_path(), spec)
    return model.eval()
