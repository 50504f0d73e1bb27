"""COCO run-length encoding of masks, without pycocotools.

COCO's RLE reads a ``(H, W)`` mask in column-major (Fortran) order and stores the lengths of the
alternating runs, starting with a run of zeros (0 when the first pixel is set):

* *uncompressed*: ``{"size": [H, W], "counts": [int, ...]}`` (what Meta's
  ``sam2.utils.amg.mask_to_rle_pytorch`` returns);
* *compressed*: ``{"size": [H, W], "counts": str}`` (what ``pycocotools.mask.encode`` returns,
  decoded to ``str``): each count, minus the count two places before it from the fourth on, is
  written as little-endian groups of 5 bits, one character (``48 + group``) per group with bit
  ``0x20`` meaning "more groups follow" and bit ``0x10`` of the last group carrying the sign.

:func:`segmentation_to_coco` gives the COCO annotations of a :class:`engine.image.results.Segmentation`
(the glue's ``ikomia_formats.instance_json_to_coco`` those of the Ikomia instance output).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np


def mask_to_rle(mask: np.ndarray) -> Dict:
    """Uncompressed COCO RLE ``{"size": [H, W], "counts": [...]}`` of a 2-D mask."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    flat = mask.ravel(order="F")
    if flat.size == 0:
        return {"size": [h, w], "counts": []}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def rle_to_mask(rle: Dict) -> np.ndarray:
    """The ``(H, W)`` bool mask of an uncompressed or compressed COCO RLE."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = decode_counts(counts)
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts cover {flat.size} pixels, expected {h}x{w}={h * w}")
    return flat.reshape((h, w), order="F")


def encode_counts(counts: Sequence[int]) -> str:
    """COCO's compressed string for run lengths (``pycocotools``' ``rleToString``)."""
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        while True:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative numbers end at -1
            more = x != -1 if group & 0x10 else x != 0
            out.append(chr(48 + (group | (0x20 if more else 0))))
            if not more:
                break
    return "".join(out)


def decode_counts(text: Union[str, bytes]) -> List[int]:
    """Run lengths of a compressed COCO string (inverse of :func:`encode_counts`)."""
    data = text.decode("ascii") if isinstance(text, bytes) else text
    counts: List[int] = []
    pos = 0
    while pos < len(data):
        x, shift = 0, 0
        while True:
            c = ord(data[pos]) - 48
            pos += 1
            x |= (c & 0x1F) << shift
            shift += 5
            if not c & 0x20:
                if c & 0x10:
                    x -= 1 << shift  # sign-extend
                break
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_to_coco_rle(mask: np.ndarray) -> Dict:
    """Compressed COCO RLE ``{"size": [H, W], "counts": str}`` (as ``pycocotools.mask.encode``)."""
    rle = mask_to_rle(mask)
    return {"size": rle["size"], "counts": encode_counts(rle["counts"])}


def annotation(mask: np.ndarray, index: int, score: float, compressed: bool = True,
               image_id: int = 0, category_id: int = 1, extra: Optional[Dict] = None) -> Dict:
    """One COCO annotation of a 2-D bool mask: RLE ``segmentation``, ``area``, XYWH ``bbox``
    (of the mask's pixels), ``score``, plus ``extra`` fields."""
    ys, xs = np.nonzero(mask)
    bbox = [0.0, 0.0, 0.0, 0.0] if len(xs) == 0 else [
        float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1)]
    ann = {"id": index, "image_id": image_id, "category_id": category_id,
           "segmentation": mask_to_coco_rle(mask) if compressed else mask_to_rle(mask),
           "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0, "score": float(score)}
    ann.update(extra or {})
    return ann


def segmentation_to_coco(seg, compressed: bool = True, image_id: int = 0,
                         category_id: int = 1) -> List[Dict]:
    """COCO annotations (RLE, area, XYWH bbox, score) of an ``engine.image.results.Segmentation``;
    ``stability_score`` is included when the segmentation has stability scores."""
    anns = []
    for i in range(len(seg)):
        extra = None if seg.stability is None else {"stability_score": float(seg.stability[i])}
        anns.append(annotation(seg.masks[i], i, seg.scores[i], compressed, image_id,
                                category_id, extra))
    return anns
