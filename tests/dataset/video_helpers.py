"""Tiny synthetic videos for the video input and output tests: distinct frames, written as PNG
folders or as video files with OpenCV, and OpenCV's own sequential decoding to compare with."""
from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np

H, W = 36, 48


def frames(n: int, height: int = H, width: int = W, seed: int = 0) -> List[np.ndarray]:
    """``n`` RGB uint8 frames, each different: a bar moving right, noise, the index in a pixel."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        img = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
        x = (3 * t) % (width - 8)
        img[4:height - 4, x:x + 8] = (200, 60 + (5 * t) % 150, 30)
        out.append(img)
    return out


def write_folder(folder: Path, images: List[np.ndarray], names: List[str] = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / (names[i] if names else f"{i:05d}.png")), img[:, :, ::-1])
    return folder


def write_video(path: Path, images: List[np.ndarray], fourcc: str = "MJPG") -> Path:
    """A video file (MJPG .avi and mp4v .mp4 are what this OpenCV writes without a GPU)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for img in images:
        writer.write(np.ascontiguousarray(img[:, :, ::-1]))
    writer.release()
    return path


def decode_sequentially(path: Path) -> List[np.ndarray]:
    """Every frame of a video file as OpenCV decodes it from the start, RGB."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return out
