"""Draw the plugin icon, icons/icon.png: a mask over an object, its box and a click point.

    .venv/bin/python scripts/make_icon.py [--out icons/icon.png] [--size 128]

Drawn with numpy + OpenCV at 4x the final size, then reduced (anti-aliasing). Deterministic.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCALE = 4  # supersampling factor


def _rounded_square(n: int, radius: int) -> np.ndarray:
    """A filled rounded square mask of side n (uint8 0/255)."""
    mask = np.zeros((n, n), np.uint8)
    cv2.rectangle(mask, (radius, 0), (n - 1 - radius, n - 1), 255, -1)
    cv2.rectangle(mask, (0, radius), (n - 1, n - 1 - radius), 255, -1)
    for cx in (radius, n - 1 - radius):
        for cy in (radius, n - 1 - radius):
            cv2.circle(mask, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    return mask


def _blob(n: int) -> np.ndarray:
    """The 'object': a smooth closed curve (a few harmonics around a centre), filled."""
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    r = 0.27 * n * (1 + 0.16 * np.sin(3 * t + 0.6) + 0.08 * np.cos(5 * t + 1.1))
    cx, cy = 0.47 * n, 0.53 * n
    pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    mask = np.zeros((n, n), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    return mask


def draw(size: int) -> np.ndarray:
    """The icon as a BGRA uint8 image of ``size`` x ``size``."""
    n = size * SCALE
    img = np.zeros((n, n, 3), np.float32)
    # Background: vertical gradient, deep blue to teal.
    ramp = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
    img[:] = (1 - ramp) * np.array([92, 42, 22], np.float32) + ramp * np.array([120, 96, 20],
                                                                               np.float32)
    alpha = _rounded_square(n, int(0.18 * n)).astype(np.float32) / 255

    # The mask: translucent warm fill with a bright outline, as SAM's outputs are shown.
    blob = _blob(n)
    fill = blob.astype(np.float32)[:, :, None] / 255
    img = img * (1 - 0.85 * fill) + 0.85 * fill * np.array([40, 175, 255], np.float32)
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, (235, 245, 255), int(0.022 * n), cv2.LINE_AA)

    # The box prompt: dashed white rectangle around the object.
    x, y, w, h = cv2.boundingRect(blob)
    pad = int(0.035 * n)
    x1, y1, x2, y2 = x - pad, y - pad, x + w + pad, y + h + pad
    dash, thick = int(0.06 * n), int(0.014 * n)
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True),
                                    (y1, y2, x1, False), (y1, y2, x2, False)):
        for s in range(a, b, 2 * dash):
            e = min(s + dash, b)
            p, q = ((s, fixed), (e, fixed)) if horizontal else ((fixed, s), (fixed, e))
            cv2.line(img, p, q, (255, 255, 255), thick, cv2.LINE_AA)

    # The point prompt: a green foreground click with a white ring, at the object's centre.
    m = cv2.moments(blob)
    c = (int(m["m10"] / m["m00"]), int(m["m01"] / m["m00"]))
    cv2.circle(img, c, int(0.075 * n), (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(img, c, int(0.052 * n), (90, 200, 40), -1, cv2.LINE_AA)

    # A mouse pointer touching the click point, down-right of it.
    tip = np.array([c[0] + 0.05 * n, c[1] + 0.05 * n])
    arrow = np.array([[0, 0], [0, 0.30], [0.075, 0.23], [0.125, 0.335], [0.17, 0.315],
                      [0.12, 0.21], [0.215, 0.21]]) * n + tip
    arrow = np.round(arrow).astype(np.int32)
    cv2.fillPoly(img, [arrow], (30, 30, 30), cv2.LINE_AA)
    cv2.polylines(img, [arrow], True, (255, 255, 255), int(0.016 * n), cv2.LINE_AA)

    bgra = np.dstack([np.clip(img, 0, 255), alpha * 255]).astype(np.float32)
    # Premultiply before resizing so edges do not pick up the (invisible) outside colour.
    bgra[:, :, :3] *= alpha[:, :, None]
    small = cv2.resize(bgra, (size, size), interpolation=cv2.INTER_AREA)
    a = np.maximum(small[:, :, 3:] / 255, 1e-6)
    small[:, :, :3] = np.where(a > 1e-5, small[:, :, :3] / a, 0)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "icons" / "icon.png")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), draw(args.size), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    print(f"{args.out} ({args.size}x{args.size}, {args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
