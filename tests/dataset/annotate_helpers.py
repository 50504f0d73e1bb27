"""A small image folder and box files shared by the dataset tests (random-weight tiny model)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2

from conftest import synthetic_image

# 64x128 images: YOLO's normalised boxes are exact binary fractions of these sizes
HEIGHT, WIDTH = 64, 128
NAMES = ["a.png", "sub/b.png", "sub/c.jpg"]
BROKEN = "sub/broken.png"
BOXES = {"a.png": [[8, 8, 72, 56], [64, 16, 120, 48]], "sub/b.png": [[16, 4, 112, 60]],
         "sub/c.jpg": [[0, 0, 64, 32], [32, 16, 96, 64]]}  # XYXY pixels
CLASSES = {"a.png": ["car", "dog"], "sub/b.png": ["dog"], "sub/c.jpg": ["car", "car"]}
CATEGORIES = [{"id": 4, "name": "car"}, {"id": 9, "name": "dog"}]


def make_folder(root: Path) -> Path:
    """The images (one of them a truncated PNG), a COCO file and YOLO labels of ``BOXES``."""
    for i, name in enumerate(NAMES):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), synthetic_image(HEIGHT, WIDTH, seed=i)[:, :, ::-1])
    png = (root / "images" / "a.png").read_bytes()
    (root / "images" / BROKEN).write_bytes(png[:len(png) // 3])
    ids = {c["name"]: c["id"] for c in CATEGORIES}
    images = [{"id": 10 + i, "file_name": name, "width": WIDTH, "height": HEIGHT}
              for i, name in enumerate(NAMES)]
    anns = []
    for i, name in enumerate(NAMES):
        for k, ((x1, y1, x2, y2), cls) in enumerate(zip(BOXES[name], CLASSES[name])):
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": ids[cls],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.5 + 0.1 * k})
    (root / "boxes.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": CATEGORIES}))
    names = [c["name"] for c in sorted(CATEGORIES, key=lambda c: c["id"])]
    for name in NAMES:
        label = root / "labels" / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(
            f"{names.index(cls)} {(x1 + x2) / 2 / WIDTH} {(y1 + y2) / 2 / HEIGHT} "
            f"{(x2 - x1) / WIDTH} {(y2 - y1) / HEIGHT}\n"
            for (x1, y1, x2, y2), cls in zip(BOXES[name], CLASSES[name])))
    (root / "data.yaml").write_text("names: [car, dog]\n")
    return root
