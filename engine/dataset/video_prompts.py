"""Prompts of videos from files: YouTube-VIS tracks (``--ytvis``) here, MOT boxes
(``--mot``) in :mod:`.video_mot`; both give a :class:`VideoPrompts`.

A video's prompts are ``{track_id: [TrackPrompt, ...]}`` (:class:`~engine.video.offline_types.
TrackPrompt`, frames from 0, boxes continuous XYXY pixels, masks ``(H, W)`` bool), each list in
frame order. Which of a track's frames become prompts (:func:`select_frames`, the same rule for
both files): ``prompt_every=None`` every frame where the file has the track; ``K``: the
track's first such frame, then each frame that is at least ``K`` frames after the track's
previous prompt (so a track seen on every frame is prompted on frames ``f0, f0 + K, ...``, and
one that reappears after a gap of at least ``K`` frames is prompted where it reappears).

YouTube-VIS (ground-truth form, :func:`read_ytvis_prompts`): a file video is matched to a video
of the run by the folder of its ``file_names[0]`` (the full prefix, e.g. ``a/b`` of
``a/b/00000.jpg``), else by its first component (what TrackEval names a sequence), each also
tried against the run's names without their extension (``clip`` for ``clip.mp4``) when that is
unique. A track's id is its ``track_id`` when it has one (what :mod:`.video_writers` writes),
else its annotation ``id``; its ``category_id`` is kept. On a frame where the track has a mask
(RLE of either form, or polygons) and a box, the mask is the prompt (``use="masks"``, the
default: a mask says more than its box); ``use="boxes"`` prompts with the boxes (a frame with
a mask and no box: the mask's pixel extent, XYXY). Masks are decoded when a video's prompts are
looked up, not when the file is read.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..image.coco import rle_to_mask
from ..video.offline_types import TrackPrompt
from .videos import VideoError

Tracks = Dict[int, List[TrackPrompt]]
USES = ("masks", "boxes")


@dataclass
class VideoPrompts:
    """Prompts read from a file for the videos of a run.

    Attributes:
        tracks: video name -> its tracks' prompts (a video absent from the file has no entry;
            a YouTube-VIS file's masks are decoded on each lookup).
        categories: COCO-style ``[{"id", "name"[, "supercategory"]}]``, the file's ids kept.
        track_categories: video name -> track id -> category id.
        video_ids: video name -> the file's video id (YouTube-VIS; empty for MOT).
        unmatched: the file's videos that match no video of the run.
        skipped: how many of the file's entries (MOT lines, boxes) were malformed and skipped;
            ``warnings``: the first few of them, as ``"<where>: <why>"``.
    """

    tracks: Mapping
    categories: List[Dict]
    track_categories: Dict[str, Dict[int, int]]
    video_ids: Dict[str, int] = field(default_factory=dict)
    unmatched: List[str] = field(default_factory=list)
    skipped: int = 0
    warnings: List[str] = field(default_factory=list)

    def for_video(self, name: str) -> Tracks:
        """``{track_id: [TrackPrompt, ...]}`` of a video (empty when the file has none)."""
        return self.tracks[name] if name in self.tracks else {}

    def category(self, name: str, track_id: int) -> str:
        """The name of a track's category."""
        cid = self.track_categories[name][track_id]
        return next((c["name"] for c in self.categories if c["id"] == cid), str(cid))


class Skips:
    """Counts malformed entries and keeps the first ``keep`` messages."""

    def __init__(self, keep: int = 5):
        self.count, self.keep, self.messages = 0, keep, []

    def __call__(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.messages) < self.keep:
            self.messages.append(f"{where}: {why}")


def select_frames(frames: Sequence[int], every: Optional[int]) -> List[int]:
    """The frames (sorted) of a track that become prompts (see the module docstring)."""
    frames = sorted(set(int(f) for f in frames))
    if every is None or every <= 1:
        return frames
    chosen: List[int] = []
    for f in frames:
        if not chosen or f - chosen[-1] >= every:
            chosen.append(f)
    return chosen


def check_prompt_every(every: Optional[int]) -> Optional[int]:
    if every is not None and (not isinstance(every, (int, np.integer)) or every < 1):
        raise ValueError(f"--prompt-every: {every!r} is not a whole number of frames >= 1")
    return None if every is None else int(every)


def check_prompts(name: str, tracks: Tracks, length: int, hw: Sequence[int]) -> None:
    """Raise :class:`VideoError` when a prompt is on a frame past the video's end (``length``
    frames, ``0..length-1``) or has a mask of another size than the frames' ``(H, W)``."""
    problems = []
    for track_id, prompts in tracks.items():
        for p in prompts:
            if p.frame >= length:
                problems.append(f"track {track_id} has a prompt on frame {p.frame}")
                break
            if p.mask is not None and tuple(p.mask.shape) != tuple(hw):
                problems.append(f"track {track_id}'s mask on frame {p.frame} is "
                                f"{p.mask.shape[0]}x{p.mask.shape[1]}")
                break
    if problems:
        more = f" (and {len(problems) - 3} more tracks)" if len(problems) > 3 else ""
        raise VideoError(name, f"{'; '.join(problems[:3])}{more}: the video has {length} frames "
                         f"(0..{length - 1}) of {hw[0]}x{hw[1]} (HxW)")


def decode_segmentation(seg, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO segmentation: RLE (compressed or not, its own ``size``)
    or polygons (``[[x1, y1, x2, y2, ...], ...]`` pixels, rasterised by pycocotools)."""
    if isinstance(seg, dict):
        return rle_to_mask(seg)
    if isinstance(seg, list):
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            raise ValueError("polygon segmentations need pycocotools (pip install pycocotools)")
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, int(height), int(width)))
        return mask_utils.decode(rle).astype(bool)
    raise ValueError(f"a segmentation is an RLE dict or a polygon list, not {type(seg).__name__}")


def good_box(box) -> Optional[np.ndarray]:
    """``(4,)`` float32 XYXY of an XYWH box with finite values and positive sides, else None."""
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        return None
    return np.array([x, y, x + w, y + h], np.float32)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """XYXY of a mask's pixel extent (``x2`` one past the last column), float32."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


class LazyTracks(Mapping):
    """video name -> tracks, built by ``build(name)`` on each lookup (nothing kept)."""

    def __init__(self, names: Sequence[str], build: Callable[[str], Tracks]):
        self._names, self._build = list(names), build

    def __getitem__(self, name: str) -> Tracks:
        if name not in self._names:
            raise KeyError(name)
        return self._build(name)

    def __contains__(self, name: object) -> bool:  # without building the video's prompts
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def strip_extension(name: str) -> str:
    p = PurePath(name)
    return p.with_suffix("").as_posix() if p.suffix else name


def name_matcher(video_names: Sequence[str]) -> Callable[[str], Optional[str]]:
    """A function giving the run's video named ``key``, else the one that is ``key`` without
    its extension (when unique), else None."""
    names = set(video_names)
    stems: Dict[str, List[str]] = {}
    for n in video_names:
        stems.setdefault(strip_extension(n), []).append(n)
    return lambda key: key if key in names else (stems[key][0] if len(stems.get(key, [])) == 1
                                                 else None)


def _ytvis_track(segs: List, boxes: List, h: int, w: int, every: Optional[int], use: str,
                 where: str) -> List[TrackPrompt]:
    masks = {t for t, s in enumerate(segs) if s}
    xyxy = {t: b for t, b in ((t, good_box(b)) for t, b in enumerate(boxes) if b) if b is not None}
    prompts = []
    for t in select_frames(masks | set(xyxy), every):
        if t in xyxy and (use == "boxes" or t not in masks):
            prompts.append(TrackPrompt(t, box=xyxy[t]))
            continue
        try:
            mask = decode_segmentation(segs[t], h, w)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{where}, frame {t}: bad segmentation ({e})") from None
        if use == "masks":
            prompts.append(TrackPrompt(t, mask=mask))
        elif mask.any():
            prompts.append(TrackPrompt(t, box=mask_box(mask)))
    return prompts


def read_ytvis_prompts(path: str, video_names: Sequence[str], prompt_every: Optional[int] = None,
                       use: str = "masks") -> VideoPrompts:
    """Prompts of a YouTube-VIS file (``videos``, ``annotations``, ``categories``) for the run's
    ``video_names`` (see the module docstring). A bad segmentation raises :class:`VideoError`
    for its video when that video's prompts are looked up; malformed boxes are skipped."""
    every = check_prompt_every(prompt_every)
    if use not in USES:
        raise ValueError(f"use: {use!r} is not one of {', '.join(USES)}")
    data = json.loads(Path(path).expanduser().read_text())
    if not isinstance(data, dict) or "videos" not in data or "annotations" not in data:
        raise ValueError(f"--ytvis: {path} has no 'videos' and 'annotations': give a YouTube-VIS "
                         f"file with videos (a results list names no video)")
    match = name_matcher(video_names)
    by_id, sizes, unmatched = {}, {}, []
    for v in data["videos"]:
        first = (v.get("file_names") or [""])[0]
        prefix = first.rsplit("/", 1)[0] if "/" in first else first
        name = match(prefix) or match(prefix.split("/")[0])
        if name is None or name in sizes:  # no video of the run, or one already matched
            unmatched.append(prefix or str(v.get("id")))
        else:
            by_id[v["id"]] = name
            sizes[name] = (v.get("height"), v.get("width"))
    skips = Skips()
    per_video: Dict[str, Dict[int, Dict]] = {}
    track_categories: Dict[str, Dict[int, int]] = {}
    for ann in data["annotations"]:
        name = by_id.get(ann.get("video_id"))
        if name is None:
            continue
        track_id = int(ann.get("track_id", ann.get("id", len(per_video.get(name, {})) + 1)))
        where = f"video {name}, track {track_id}"
        if track_id in per_video.setdefault(name, {}):
            skips(where, "a second annotation with this track id (skipped)")
            continue
        boxes = ann.get("bboxes") or []
        for t, b in enumerate(boxes):
            if b and good_box(b) is None:
                skips(f"{where}, frame {t}", f"box {b} is not finite XYWH with positive sides")
        h, w = ann.get("height") or sizes[name][0], ann.get("width") or sizes[name][1]
        per_video[name][track_id] = {"segs": ann.get("segmentations") or [], "boxes": boxes,
                                     "h": h, "w": w}
        track_categories.setdefault(name, {})[track_id] = int(ann.get("category_id", 1))

    def build(name: str) -> Tracks:
        try:
            return {tid: _ytvis_track(t["segs"], t["boxes"], t["h"], t["w"], every, use,
                                      f"track {tid}")
                    for tid, t in sorted(per_video[name].items())}
        except ValueError as e:
            raise VideoError(name, f"--ytvis: {e}") from None

    categories = [{"id": int(c["id"]), "name": str(c["name"]),
                   **({"supercategory": c["supercategory"]} if "supercategory" in c else {})}
                  for c in data.get("categories", [])]
    known = {c["id"] for c in categories}
    for cid in sorted({c for t in track_categories.values() for c in t.values()} - known):
        categories.append({"id": cid, "name": str(cid)})
    return VideoPrompts(LazyTracks(sorted(per_video), build), categories, track_categories,
                        {n: vid for vid, n in by_id.items()}, unmatched, skips.count,
                        skips.messages)
