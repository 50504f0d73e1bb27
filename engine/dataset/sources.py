"""What a dataset run reads: the list of images, the images themselves, and boxes from files.

An image is named by its ``file_name``: its path relative to the folder given (POSIX slashes),
or the line of a list file as written. The list is sorted by ``file_name`` and image ``i`` of it
gets COCO id ``i + 1``, so ids do not depend on how the run was split or resumed.

Boxes come as one JSON-able dict per image (what :class:`WorkItem` carries to a worker):
``{"boxes": [[...], ...], "normalized": bool, "category_ids": [int, ...], "scores": [float or
None, ...]}``. COCO boxes are absolute pixels ``[x1, y1, x2, y2]`` made from COCO's XYWH as the
task makes a detection's box (``x2 = x + w``); YOLO boxes stay normalised ``[cx, cy, w, h]``
until :func:`image_boxes` knows the image size.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..image.convert import to_rgb_uint8

# What cv2.imread reads (its documented formats); other files in the folder are not images.
IMAGE_EXTENSIONS = {".bmp", ".dib", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".avif",
                    ".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tiff",
                    ".tif", ".exr", ".hdr", ".pic"}


@dataclass(frozen=True)
class WorkItem:
    """One image to annotate: ``file_name`` (its name in the COCO file), ``path`` (where to
    read it), ``image_id`` and its boxes (``None``: automatic mode)."""

    file_name: str
    path: str
    image_id: int
    boxes: Optional[Dict] = None


@dataclass
class BoxFile:
    """Boxes read from a file: ``categories`` (COCO's ``[{"id", "name"}]``) and one box dict per
    ``file_name`` (see the module docstring); images absent from ``per_image`` have no box."""

    categories: List[Dict]
    per_image: Dict[str, Dict] = field(default_factory=dict)

    def boxes_for(self, file_name: str) -> Dict:
        return self.per_image.get(file_name) or empty_boxes()


def empty_boxes(normalized: bool = False) -> Dict:
    return {"boxes": [], "normalized": normalized, "category_ids": [], "scores": []}


def list_images(source: str) -> List[Tuple[str, str]]:
    """``(file_name, path)`` of every image, sorted by ``file_name``.

    ``source`` is a folder (searched recursively for the extensions OpenCV reads, hidden folders
    skipped) or a text file with one image path per line (relative to the file's folder; blank
    lines and ``#`` comments skipped)."""
    root = Path(source).expanduser()
    if root.is_dir():
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    path = Path(folder) / name
                    found.append((path.relative_to(root).as_posix(), str(path)))
    elif root.is_file():
        found = []
        for line in root.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line).expanduser()
                found.append((line, str(path if path.is_absolute() else root.parent / path)))
    else:
        raise FileNotFoundError(f"IMAGES: {source} is neither a folder nor a list file")
    return sorted(dict(found).items())


def work_items(images: Sequence[Tuple[str, str]],
               boxes: Optional[BoxFile] = None) -> List[WorkItem]:
    """The images as :class:`WorkItem` with ids ``1..N`` in list order."""
    return [WorkItem(name, path, i + 1, None if boxes is None else boxes.boxes_for(name))
            for i, (name, path) in enumerate(images)]


def read_image(path: str) -> np.ndarray:
    """An image file as ``(H, W, 3)`` RGB uint8 (16-bit, grayscale and alpha converted as the
    task converts them); raises ``ValueError`` when OpenCV cannot decode it."""
    data = np.fromfile(path, np.uint8)  # also reads names cv2.imread cannot (non-ASCII)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"OpenCV cannot decode {path} ({data.size} bytes)")
    if image.ndim == 3 and image.shape[2] >= 3:  # BGR(A) to RGB(A)
        image = image[:, :, [2, 1, 0] + list(range(3, image.shape[2]))]
    return to_rgb_uint8(image)


def image_boxes(entry: Dict, height: int, width: int) -> Tuple[np.ndarray, List[int],
                                                               List[Optional[float]]]:
    """``(B, 4)`` float32 XYXY pixel boxes, category ids and detector scores of an image."""
    boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
    if entry.get("normalized"):
        cx, cy, w, h = (boxes[:, i] for i in range(4))
        boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                          (cx + w / 2) * width, (cy + h / 2) * height], axis=1)
    return boxes, list(entry["category_ids"]), list(entry["scores"])


def _match_name(name: str, known: Dict[str, str]) -> Optional[str]:
    """The file_name of our list that a COCO ``file_name`` means: the same relative path, else
    the same base name when only one image has it."""
    return known.get(name) or known.get(Path(name).name)


def read_coco_boxes(path: str, file_names: Sequence[str]) -> BoxFile:
    """Boxes of a COCO instances / detections JSON (with ``images``, ``annotations``,
    ``categories``); categories kept with their ids, a box's ``score`` kept as the detector's.

    A COCO image is matched to ``file_names`` by its relative path, else by base name (unique
    base names only); annotations of crowds (``iscrowd`` 1) are boxes like the others."""
    data = json.loads(Path(path).expanduser().read_text())
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"--coco-boxes: {path} has no 'images' and 'annotations': give a COCO "
                         f"instances file (a results list has no file names)")
    bases: Dict[str, List[str]] = {}
    for name in file_names:
        bases.setdefault(Path(name).name, []).append(name)
    known = {n: n for n in file_names}
    known.update({b: v[0] for b, v in bases.items() if len(v) == 1 and b not in known})
    by_id = {img["id"]: _match_name(img["file_name"], known) for img in data["images"]}
    per_image: Dict[str, Dict] = {}
    for ann in data["annotations"]:
        name = by_id.get(ann["image_id"])
        if name is None or "bbox" not in ann:
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        entry = per_image.setdefault(name, empty_boxes())
        entry["boxes"].append([x, y, x + w, y + h])
        entry["category_ids"].append(int(ann.get("category_id", 1)))
        entry["scores"].append(None if ann.get("score") is None else float(ann["score"]))
    categories = [{"id": int(c["id"]), "name": str(c["name"]),
                   **({"supercategory": c["supercategory"]} if "supercategory" in c else {})}
                  for c in data.get("categories", [])]
    return BoxFile(categories, per_image)


def read_yolo_names(path: str) -> List[str]:
    """Class names from a YOLO ``data.yaml`` (``names:`` list or ``{index: name}``) or a text
    file with one name per line (``classes.txt``)."""
    file = Path(path).expanduser()
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        names = (yaml.safe_load(file.read_text()) or {}).get("names")
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        if not isinstance(names, list):
            raise ValueError(f"--yolo-names: {path} has no 'names' list or mapping")
        return [str(n) for n in names]
    return [line.strip() for line in file.read_text().splitlines() if line.strip()]


def read_yolo_boxes(label_dir: str, file_names: Sequence[str],
                    names: Optional[Sequence[str]] = None) -> BoxFile:
    """Boxes of YOLO label files: ``<label_dir>/<file_name without extension>.txt``, one
    ``class cx cy w h [confidence]`` line per box, normalised to the image size.

    Class ``c`` is COCO category ``c + 1`` named ``names[c]`` (``names``: from ``--yolo-names``,
    else ``<label_dir>/classes.txt`` when present, else the class numbers)."""
    root = Path(label_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--yolo-labels: {label_dir} is not a folder")
    if names is None and (root / "classes.txt").is_file():
        names = read_yolo_names(str(root / "classes.txt"))
    per_image: Dict[str, Dict] = {}
    classes = set()
    for name in file_names:
        label = root / Path(name).with_suffix(".txt")
        if not label.is_file():
            continue
        entry = per_image.setdefault(name, empty_boxes(normalized=True))
        for number, line in enumerate(label.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) not in (5, 6):
                    raise ValueError
                cls, box = int(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                raise ValueError(f"--yolo-labels: {label}:{number}: expected 'class cx cy w h "
                                 f"[confidence]', got {line!r}") from None
            classes.add(cls)
            entry["boxes"].append(box[:4])
            entry["category_ids"].append(cls + 1)
            entry["scores"].append(box[4] if len(box) == 5 else None)
    count = max([len(names or [])] + [c + 1 for c in classes])
    categories = [{"id": c + 1, "name": names[c] if names and c < len(names) else str(c)}
                  for c in range(count)]
    return BoxFile(categories, per_image)
