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


def saved_clip(folder, frames: int) -> list:
    """The clip's first ``frames`` saved as JPEG in ``folder`` for Meta's loader, and read back
    (PIL, as Meta's loader reads) as the very pixels our tracker gets."""
    from PIL import Image

    out = []
    for t in range(frames):
        Image.fromarray(clip_frame(t)).save(folder / f"{t:05d}.jpg", quality=95)
        out.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    return out
