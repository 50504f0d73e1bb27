"""Bring images as users have them to what SAM 2 takes: HWC RGB uint8."""
from __future__ import annotations

import numpy as np
import torch

from ..parameters import ParameterError

IMG_MEAN = (0.485, 0.456, 0.406)  # Meta's load_video_frames defaults (ImageNet)
IMG_STD = (0.229, 0.224, 0.225)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image to ``(H, W, 3)`` uint8 RGB.

    - 2-D (grayscale) or one channel: the channel is repeated three times.
    - Four channels (RGBA): alpha is dropped. Two channels (gray + alpha): gray is repeated.
    - uint8: as is. bool: 0 / 255.
    - Other integer types (uint16, int32...): linearly rescaled from the type's range to 0..255
      (uint16 / 257, i.e. the top 8 bits).
    - Floating point: values in [0, 1] (max <= 1) are multiplied by 255; otherwise values are taken
      as 0..255. NaN becomes 0; everything is clipped to 0..255 and rounded.

    Raises:
        ParameterError (``image``): an empty image, one that is not 2-D / 3-D, or pixels that are
            not numbers (object, string, complex arrays).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0 or (
            image.ndim == 3 and image.shape[2] == 0):
        raise ParameterError("image", f"got an array of shape {image.shape}",
                             "a non-empty image of shape (H, W) or (H, W, C)")
    if image.dtype != bool and not (np.issubdtype(image.dtype, np.integer)
                                    or np.issubdtype(image.dtype, np.floating)):
        raise ParameterError("image", f"got pixels of type {image.dtype}",
                             "an integer, floating-point or boolean image")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels in (1, 2):
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif channels >= 4:
        image = image[:, :, :3]
    elif channels != 3:
        raise ParameterError("image", f"got {channels} channels", "1, 2, 3 or 4 channels")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        scaled = (image.astype(np.float64) - max(info.min, 0)) * (255.0 / (info.max - max(info.min, 0)))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    values = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def frame_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """An HWC RGB uint8 frame as Meta's video loader makes it: ``(1, 3, size, size)`` float32
    (PIL resize of the RGB image, bicubic; /255 in float64 then float32; ImageNet mean / std)."""
    from PIL import Image

    pixels = np.array(Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
                      .resize((size, size)))
    x = torch.from_numpy(pixels / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std)[None]
