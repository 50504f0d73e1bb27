"""Annotated videos to files: YouTube-VIS (labels and results) and COCO with tracks here, DAVIS
PNGs in :mod:`.video_davis`. Each writer takes ``Iterable[Tuple[VideoInfo, List[TrackResult]]]``
(:mod:`.video_tracks`), reads it once, holds one video at a time (the arrays stream to
temporary files) and writes its output atomically (a temporary file, then ``os.replace``).

* ``ytvis`` (:func:`write_ytvis`): YouTube-VIS **labels**, the ground-truth form every reader
  takes (TrackEval's ground truth, the ytvos API, Mask2Former-style loaders): ``videos``
  (``id``, ``name``, ``file_names`` ``<video>/<frame>``, ``width``, ``height``, ``length``),
  one annotation per track (``id`` 1.. over the file, ``video_id``, ``category_id``,
  ``track_id``, ``iscrowd`` 0, ``height``, ``width``, ``score``, and per frame
  ``segmentations`` as **uncompressed** RLE (TrackEval reads ground truth with
  ``frPyObjects``, which refuses compressed RLE), ``bboxes`` XYWH and ``areas``, null where the
  track is absent), ``categories``.
* ``ytvis-results`` (:func:`write_ytvis_results`): the results list for evaluation, one entry per
  track ``{video_id, category_id, score, track_id, segmentations}`` with **compressed** RLE (what
  the ytvos API's ``loadRes`` and TrackEval's tracker files read); its video ids are those of
  ``ytvis`` written from the same run.
* ``coco-video`` (:func:`write_coco_video`): COCO instances with one image per frame (``id``,
  ``file_name`` ``<video>/<frame>``, ``width``, ``height``, ``video_id``, ``frame_index``), a
  ``videos`` table (``id``, ``name``, ``width``, ``height``, ``length``), one annotation per
  track and frame where present: compressed RLE ``segmentation``, ``area``, ``bbox``, ``score``
  (the track's), ``iscrowd`` 0, ``video_id``, ``track_id`` and CVAT's track attributes
  ``attributes: {track_id, keyframe: true, occluded: false}`` (CVAT's COCO import makes tracks
  of annotations that have ``track_id`` and ``keyframe`` there).

A segmentation with no pixel counts as absent (null / no annotation). Video ids: a
:class:`VideoInfo`'s ``video_id`` when set (kept from a YouTube-VIS prompt file), else its
position 1.. in the input. Categories: the given ones (ids kept), then one per new name, ids
after the largest, in order of appearance.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..image.coco import decode_counts, encode_counts
from .video_tracks import TrackResult, VideoInfo

Annotated = Iterable[Tuple[VideoInfo, List[TrackResult]]]


def rle_stats(seg: Dict) -> Tuple[List[int], int, Optional[List[float]]]:
    """``(uncompressed counts, area, XYWH bbox or None)`` of a COCO RLE (either form), from the
    runs alone (no mask decoded): a run of pixels ``s..e-1`` in column-major order covers
    columns ``s // H .. (e-1) // H`` and, when it crosses a column, rows ``0..H-1``. The box is
    the pixels' extent, as ``pycocotools.mask.toBbox``."""
    h = int(seg["size"][0])
    counts = seg["counts"]
    counts = decode_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    runs = np.asarray(counts, np.int64)
    ends = np.cumsum(runs)
    start, stop = (ends - runs)[1::2], ends[1::2]
    keep = stop > start
    start, last = start[keep], stop[keep] - 1
    area = int((last + 1 - start).sum())
    if area == 0:
        return counts, 0, None
    c0, c1 = start // h, last // h
    crosses = c0 != c1
    y0 = int(np.where(crosses, 0, start % h).min())
    y1 = int(np.where(crosses, h - 1, last % h).max())
    x0, x1 = int(c0.min()), int(c1.max())
    return counts, area, [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


class CategoryIds:
    """Category name -> id: the given categories (ids kept), new names get the next ids."""

    def __init__(self, categories: Optional[Sequence[Dict]] = None):
        self.categories = [{**c, "id": int(c["id"]), "name": str(c["name"])}
                           for c in categories or []]
        self._ids = {c["name"]: c["id"] for c in self.categories}

    def __call__(self, name: str) -> int:
        if name not in self._ids:
            new = max([c["id"] for c in self.categories], default=0) + 1
            self.categories.append({"id": new, "name": name})
            self._ids[name] = new
        return self._ids[name]


def numbered(videos: Annotated) -> Iterator[Tuple[int, VideoInfo, List[TrackResult]]]:
    """``(video_id, info, tracks)`` (see the module docstring), each track checked: one
    segmentation per frame, each of the frame's size."""
    seen = set()
    for position, (info, tracks) in enumerate(videos, 1):
        vid = position if info.video_id is None else int(info.video_id)
        if vid in seen:
            raise ValueError(f"{info.name}: video id {vid} is used by another video")
        seen.add(vid)
        for t in tracks:
            if len(t.segmentations) != info.length:
                raise ValueError(f"{info.name}: track {t.track_id} has {len(t.segmentations)} "
                                 f"segmentations for {info.length} frames")
            for seg in t.segmentations:
                if seg is not None and list(seg["size"]) != [info.height, info.width]:
                    raise ValueError(f"{info.name}: track {t.track_id} has a mask of size "
                                     f"{seg['size']}, the frames are {info.height}x{info.width}")
        yield vid, info, tracks


class JsonParts:
    """A JSON file whose arrays stream to temporary files and are put together atomically.

    ``keys``: the object's array fields in order, or None for a file that is one bare array
    (added with key None). Use as a context manager; :meth:`finish` writes the file."""

    def __init__(self, out: str, keys: Optional[Sequence[str]]):
        self.out = Path(out)
        self.keys = list(keys) if keys is not None else [None]
        tag = f".tmp{os.getpid()}"
        self.tmp = self.out.with_name(self.out.name + tag)
        self.parts = {k: open(self.out.with_name(f"{self.out.name}.{k or 'list'}{tag}"), "w+")
                      for k in self.keys}
        self.counts = {k: 0 for k in self.keys}

    def add(self, key: Optional[str], obj) -> None:
        self.parts[key].write(("," if self.counts[key] else "") + "\n" + json.dumps(obj))
        self.counts[key] += 1

    def finish(self, tail: Optional[Dict] = None) -> None:
        """Write the file (arrays, then ``tail``'s fields), fsync it, and replace ``out``."""
        bare = self.keys == [None]
        with open(self.tmp, "w") as f:
            f.write("" if bare else "{")
            for i, key in enumerate(self.keys):
                f.write("[" if bare else f'{"," if i else ""}\n{json.dumps(key)}: [')
                self.parts[key].seek(0)
                shutil.copyfileobj(self.parts[key], f)
                f.write("]")
            for key, value in (tail or {}).items():
                f.write(f",\n{json.dumps(key)}: {json.dumps(value)}")
            f.write("\n" if bare else "}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.tmp, self.out)

    def __enter__(self) -> "JsonParts":
        return self

    def __exit__(self, *exc) -> None:
        for part in self.parts.values():
            part.close()
            os.remove(part.name)
        if self.tmp.exists():
            os.remove(self.tmp)


def write_ytvis(out: str, videos: Annotated,
                categories: Optional[Sequence[Dict]] = None) -> Dict[str, int]:
    """YouTube-VIS labels (ground-truth form, uncompressed RLE); returns counts."""
    cats = CategoryIds(categories)
    with JsonParts(out, ["videos", "annotations"]) as parts:
        for vid, info, tracks in numbered(videos):
            parts.add("videos", {"id": vid, "name": info.name, "file_names": info.file_names,
                                 "width": info.width, "height": info.height,
                                 "length": info.length})
            for t in tracks:
                segs, boxes, areas = [], [], []
                for seg in t.segmentations:
                    counts, area, box = rle_stats(seg) if seg is not None else (None, 0, None)
                    segs.append({"size": [info.height, info.width], "counts": counts}
                                if area else None)
                    boxes.append(box)
                    areas.append(area or None)
                parts.add("annotations", {
                    "id": parts.counts["annotations"] + 1, "video_id": vid,
                    "category_id": cats(t.category), "track_id": int(t.track_id), "iscrowd": 0,
                    "height": info.height, "width": info.width, "score": float(t.score),
                    "segmentations": segs, "bboxes": boxes, "areas": areas})
        parts.finish({"categories": cats.categories})
        return {"videos": parts.counts["videos"], "tracks": parts.counts["annotations"],
                "categories": len(cats.categories)}


def compressed(seg: Dict) -> Dict:
    """The compressed form of a COCO RLE (unchanged when it is compressed already)."""
    counts = seg["counts"]
    if isinstance(counts, (str, bytes)):
        return {"size": list(seg["size"]),
                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    return {"size": list(seg["size"]), "counts": encode_counts(counts)}


def write_ytvis_results(out: str, videos: Annotated,
                        categories: Optional[Sequence[Dict]] = None) -> Dict[str, int]:
    """The YouTube-VIS results list (compressed RLE, null where absent); returns counts."""
    cats = CategoryIds(categories)
    count = 0
    with JsonParts(out, None) as parts:
        for vid, info, tracks in numbered(videos):
            count += 1
            for t in tracks:
                segs = [compressed(s) if s is not None and rle_stats(s)[1] else None
                        for s in t.segmentations]
                parts.add(None, {"video_id": vid, "category_id": cats(t.category),
                                 "score": float(t.score), "track_id": int(t.track_id),
                                 "segmentations": segs})
        parts.finish()
        return {"videos": count, "tracks": parts.counts[None], "categories": len(cats.categories)}


def write_coco_video(out: str, videos: Annotated,
                     categories: Optional[Sequence[Dict]] = None) -> Dict[str, int]:
    """COCO instances with one image per frame and tracks (see the module docstring)."""
    cats = CategoryIds(categories)
    with JsonParts(out, ["videos", "images", "annotations"]) as parts:
        for vid, info, tracks in numbered(videos):
            parts.add("videos", {"id": vid, "name": info.name, "width": info.width,
                                 "height": info.height, "length": info.length})
            first = parts.counts["images"] + 1
            for index, file_name in enumerate(info.file_names):
                parts.add("images", {"id": first + index, "file_name": file_name,
                                     "width": info.width, "height": info.height,
                                     "video_id": vid, "frame_index": index})
            for index in range(info.length):
                for t in tracks:
                    seg = t.segmentations[index]
                    if seg is None:
                        continue
                    _, area, box = rle_stats(seg)
                    if not area:
                        continue
                    track_id = int(t.track_id)
                    parts.add("annotations", {
                        "id": parts.counts["annotations"] + 1, "image_id": first + index,
                        "video_id": vid, "category_id": cats(t.category),
                        "segmentation": compressed(seg), "area": area, "bbox": box,
                        "score": float(t.score), "iscrowd": 0, "track_id": track_id,
                        "attributes": {"track_id": track_id, "keyframe": True,
                                       "occluded": False}})
        parts.finish({"categories": cats.categories})
        return {"videos": parts.counts["videos"], "images": parts.counts["images"],
                "annotations": parts.counts["annotations"], "categories": len(cats.categories)}


FORMATS = ("ytvis", "ytvis-results", "coco-video", "davis")


def write_videos(fmt: str, out: str, videos: Annotated,
                 categories: Optional[Sequence[Dict]] = None) -> Dict[str, int]:
    """Write ``videos`` in one of :data:`FORMATS` to ``out`` (a file; for ``davis`` a folder);
    returns the writer's counts."""
    from .video_davis import write_davis

    writers = {"ytvis": write_ytvis, "ytvis-results": write_ytvis_results,
               "coco-video": write_coco_video, "davis": write_davis}
    if fmt not in writers:
        raise ValueError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return writers[fmt](out, videos, categories)
