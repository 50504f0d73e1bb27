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


def masks_to_rle(masks: np.ndarray) -> List[Dict]:
    """:func:`mask_to_rle` of each of ``(K, H, W)`` masks, the runs of all found at once (one
    pass of numpy over all pixels instead of one per mask)."""
    masks = np.asarray(masks, bool)
    k, h, w = masks.shape
    if k == 0 or h * w == 0:
        return [{"size": [h, w], "counts": []} for _ in range(k)]
    flat = masks.transpose(0, 2, 1).reshape(k, h * w)  # each mask in column-major order
    which, where = np.nonzero(flat[:, 1:] != flat[:, :-1])
    ends = np.searchsorted(which, np.arange(k + 1))  # mask i's changes: ends[i]:ends[i + 1]
    out = []
    for i in range(k):
        bounds = np.concatenate([[0], where[ends[i]:ends[i + 1]] + 1, [h * w]])
        counts = np.diff(bounds).tolist()
        out.append({"size": [h, w], "counts": [0] + counts if flat[i, 0] else counts})
    return out


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


def _bbox(cols: np.ndarray, rows: np.ndarray) -> List[float]:
    """XYWH box of the pixels of a mask given which of its columns and rows have any."""
    xs, ys = np.flatnonzero(cols), np.flatnonzero(rows)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def _annotation(rle: Dict, area: int, bbox: List[float], index: int, score: float,
                compressed: bool, image_id: int, category_id: int,
                extra: Optional[Dict]) -> Dict:
    segmentation = ({"size": rle["size"], "counts": encode_counts(rle["counts"])}
                    if compressed else rle)
    ann = {"id": index, "image_id": image_id, "category_id": category_id,
           "segmentation": segmentation, "area": int(area), "bbox": bbox, "iscrowd": 0,
           "score": float(score)}
    ann.update(extra or {})
    return ann


def annotation(mask: np.ndarray, index: int, score: float, compressed: bool = True,
               image_id: int = 0, category_id: int = 1, extra: Optional[Dict] = None) -> Dict:
    """One COCO annotation of a 2-D bool mask: RLE ``segmentation``, ``area``, XYWH ``bbox``
    (of the mask's pixels), ``score``, plus ``extra`` fields."""
    mask = np.asarray(mask, bool)
    return _annotation(mask_to_rle(mask), mask.sum(), _bbox(mask.any(axis=0), mask.any(axis=1)),
                       index, score, compressed, image_id, category_id, extra)


def segmentation_to_coco(seg, compressed: bool = True, image_id: int = 0,
                         category_id: int = 1) -> List[Dict]:
    """COCO annotations (RLE, area, XYWH bbox, score) of an ``engine.image.results.Segmentation``;
    ``stability_score`` is included when the segmentation has stability scores. The same as
    :func:`annotation` of each mask, with the runs, areas and boxes of all masks computed at
    once (:func:`masks_to_rle`)."""
    masks = np.asarray(seg.masks, bool)
    if len(masks) == 0:
        return []
    rles = masks_to_rle(masks)
    areas = masks.sum(axis=(1, 2))
    cols, rows = masks.any(axis=1), masks.any(axis=2)
    return [_annotation(rle, areas[i], _bbox(cols[i], rows[i]), i, seg.scores[i], compressed,
                        image_id, category_id, None if seg.stability is None else
                        {"stability_score": float(seg.stability[i])})
            for i, rle in enumerate(rles)]
