"""COCO instances output: one image's annotations, polygons, and the final file from the store.

An annotation (:func:`mask_annotations`) is :func:`engine.image.coco.annotation`'s: compressed
RLE ``segmentation`` (or polygons), ``area`` (the mask's pixel count), ``bbox`` (COCO XYWH
floats: left, top, width, height of the mask's pixels), ``score`` (SAM 2's predicted IoU),
``iscrowd`` 0, plus ``detector_score`` when the prompt came with one. ``id`` and ``image_id``
are given when the file is assembled (:func:`write_coco`).

Polygons (``--format polygon``): the mask's contours from ``cv2.findContours`` with
``RETR_CCOMP`` (outer boundaries and the boundaries of their holes), vertices at the boundary
pixels' coordinates (``CHAIN_APPROX_SIMPLE``). COCO's polygon form has no holes: pycocotools
fills every ring of a ``segmentation`` and unions them, so a hole written there would be painted
full. The outer rings are the ``segmentation``; the holes' rings go to a separate ``holes``
field (same ``[x1, y1, x2, y2, ...]`` form) that COCO tools ignore and that a reader can subtract.
A ring of fewer than 3 vertices (a 1- or 2-pixel-thin piece) is written as the 4 corners of its
pixels' rectangle. An empty mask keeps its compressed RLE (COCO has no empty polygon).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..image.coco import annotation

FORMATS = ("rle", "polygon")


def _ring(contour: np.ndarray) -> List[float]:
    xy = contour.reshape(-1, 2).astype(float)
    if len(xy) < 3:
        (x1, y1), (x2, y2) = xy.min(axis=0), xy.max(axis=0) + 1
        xy = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    return xy.ravel().tolist()


def mask_polygons(mask: np.ndarray) -> Tuple[List[List[float]], List[List[float]]]:
    """``(outer rings, hole rings)`` of a 2-D bool mask, each ring ``[x1, y1, x2, y2, ...]``."""
    contours, hierarchy = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE)
    outer, holes = [], []
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if hierarchy is not None else []):
        (holes if parent >= 0 else outer).append(_ring(contour))
    return outer, holes


def mask_annotations(masks: np.ndarray, scores: Sequence[float], category_ids: Sequence,
                     detector_scores: Optional[Sequence[Optional[float]]] = None,
                     fmt: str = "rle") -> List[Dict]:
    """Annotations (without ``id`` / ``image_id``) of ``(K, H, W)`` bool masks.

    ``category_ids``: one per mask, an int id, or a class name (str) that :func:`write_coco`
    turns into an id (detections whose classes are only known as names)."""
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    anns = []
    for i, mask in enumerate(masks):
        category = category_ids[i]
        extra = {} if isinstance(category, int) else {"category_name": str(category)}
        if detector_scores is not None and detector_scores[i] is not None:
            extra["detector_score"] = float(detector_scores[i])
        ann = annotation(mask, 0, float(scores[i]),
                         category_id=category if isinstance(category, int) else 0, extra=extra)
        del ann["id"], ann["image_id"]
        if fmt == "polygon" and ann["area"]:
            ann["segmentation"], holes = mask_polygons(mask)
            if holes:
                ann["holes"] = holes
        anns.append(ann)
    return anns


def _categories(categories: Optional[List[Dict]], names: Iterable[str]) -> List[Dict]:
    """The given categories, plus one per class name not among them (sorted names, next ids)."""
    cats = list(categories or [])
    known = {c["name"] for c in cats}
    start = max([c["id"] for c in cats], default=0) + 1
    new = sorted(set(names) - known)
    return cats + [{"id": start + i, "name": n} for i, n in enumerate(new)]


def write_coco(path: str, images: Sequence[Tuple[int, str]], records: Dict[str, Dict],
               categories: Optional[List[Dict]]) -> Dict[str, int]:
    """Write the COCO instances file atomically (a temporary file, then ``os.replace``).

    ``images``: ``(image_id, file_name)`` in id order; ``records``: ``file_name`` -> the store's
    finished record (``width``, ``height``, ``annotations``), read lazily by the caller's
    mapping so annotations stream to the file instead of being held together. Images without a
    finished record are left out. Annotation ids are ``1..`` in image order. Returns counts."""
    out = Path(path)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    done = [(image_id, name) for image_id, name in images if name in records]
    names = set()
    for _, name in done:
        names.update(a["category_name"] for a in records[name]["annotations"]
                     if "category_name" in a)
    cats = _categories(categories, names)
    ids = {c["name"]: c["id"] for c in cats}
    count = 0
    with open(tmp, "w") as f:
        f.write('{"images": [')
        for k, (image_id, name) in enumerate(done):
            rec = records[name]
            f.write(("," if k else "") + "\n" + json.dumps(
                {"id": image_id, "file_name": name, "width": rec["width"],
                 "height": rec["height"]}))
        f.write('],\n"categories": ' + json.dumps(cats) + ',\n"annotations": [')
        for image_id, name in done:
            for ann in records[name]["annotations"]:
                count += 1
                if "category_name" in ann:
                    ann = dict(ann, category_id=ids[ann["category_name"]])
                    del ann["category_name"]
                f.write(("," if count > 1 else "") + "\n" + json.dumps(
                    {"id": count, "image_id": image_id, **ann}))
        f.write("]}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return {"images": len(done), "annotations": count, "categories": len(cats)}
