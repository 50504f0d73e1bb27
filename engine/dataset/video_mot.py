"""MOT box tracks as video prompts (``--mot``): one text file per video.

A line is ``frame, id, x, y, w, h[, conf, class, visibility, ...]`` (commas or blanks between
fields): ``frame`` counted from 1 (converted to 0-based), ``id`` the track id (kept),
``x, y, w, h`` a box in pixels (XYWH, converted to continuous XYXY: ``x2 = x + w``). Every
line is a box (``conf`` is not used as a filter). A positive integer ``class`` is the track's
category id (its first line's), else category 1; the categories are named by their numbers,
or ``object`` when no line has a class. Skipped with a count and the first few messages: lines
with fewer than 6 fields, non-numeric or non-finite values, a frame below 1 or not whole, a
negative or not whole id (a detection file's ``-1``), sides not positive, a second box of the
same track on the same frame. Which boxes become prompts: :func:`.video_prompts.select_frames`.

Where a video's file is: ``--mot DIR``: ``DIR/<name>.txt``, ``DIR/<name without extension>.txt``
or MOTChallenge's ``DIR/<name>/gt/gt.txt`` (the first that exists); ``--mot FILE``: the video
whose name (or name without extension) is the file's stem, else the only video of the run.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..video.offline_types import TrackPrompt
from .video_prompts import (Skips, VideoPrompts, check_prompt_every, name_matcher,
                            select_frames, strip_extension)

Box = Tuple[int, np.ndarray, Optional[int]]  # 0-based frame, (4,) float32 XYXY, class or None


def _whole(text: str) -> Optional[int]:
    value = float(text)
    return int(value) if math.isfinite(value) and value == int(value) else None


def parse_mot_line(line: str) -> Tuple[Optional[Tuple[int, int, Box]], str]:
    """``((track_id, frame0, box), "")`` of a MOT line, or ``(None, why)``."""
    fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
    if len(fields) < 6:
        return None, f"{len(fields)} fields, expected frame,id,x,y,w,h[,...]"
    try:
        frame, track = _whole(fields[0]), _whole(fields[1])
        x, y, w, h = (float(v) for v in fields[2:6])
        cls = _whole(fields[7]) if len(fields) > 7 else None
    except ValueError:
        return None, "a field is not a number"
    if frame is None or frame < 1:
        return None, f"frame {fields[0]} is not a whole number >= 1"
    if track is None or track < 0:
        return None, f"id {fields[1]} is not a track id (a whole number >= 0)"
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None, f"box {fields[2:6]} is not finite XYWH with positive sides"
    box = np.array([x, y, x + w, y + h], np.float32)
    return (track, frame - 1, (frame - 1, box, cls if cls is not None and cls > 0 else None)), ""


def read_mot_file(path: Path, skips: Skips) -> Dict[int, List[Box]]:
    """``{track_id: [(frame0, XYXY, class), ...]}`` of one MOT file, each track in frame order."""
    tracks: Dict[int, Dict[int, Box]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed, why = parse_mot_line(line)
        if parsed is None:
            skips(f"{path.name}:{number}", why)
            continue
        track, frame, box = parsed
        if frame in tracks.setdefault(track, {}):
            skips(f"{path.name}:{number}", f"track {track} has a box on frame {frame + 1} already")
            continue
        tracks[track][frame] = box
    return {t: [boxes[f] for f in sorted(boxes)] for t, boxes in sorted(tracks.items())}


def _files(path: str, video_names: Sequence[str]) -> Tuple[Dict[str, Path], List[str]]:
    """video name -> its MOT file, and the folder's ``.txt`` files that are no video's."""
    root = Path(path).expanduser()
    if root.is_dir():
        found: Dict[str, Path] = {}
        for name in video_names:
            stem = strip_extension(name)
            for c in (f"{name}.txt", f"{stem}.txt", f"{name}/gt/gt.txt", f"{stem}/gt/gt.txt"):
                if (root / c).is_file():
                    found[name] = root / c
                    break
        used = {p.resolve() for p in found.values()}
        spare = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.txt"))
                 if p.resolve() not in used]
        return found, spare
    if root.is_file():
        name = name_matcher(video_names)(root.stem)
        if name is None and len(video_names) == 1:
            name = video_names[0]
        if name is None:
            raise ValueError(f"--mot: {path} is one file and no video of the {len(video_names)} "
                             f"is named {root.stem}: give a folder with one <video>.txt per video")
        return {name: root}, []
    raise FileNotFoundError(f"--mot: {path} is neither a file nor a folder")


def read_mot_prompts(path: str, video_names: Sequence[str],
                     prompt_every: Optional[int] = None) -> VideoPrompts:
    """Box prompts of MOT files for the run's ``video_names`` (see the module docstring)."""
    every = check_prompt_every(prompt_every)
    files, spare = _files(path, video_names)
    skips = Skips()
    tracks: Dict[str, Dict[int, List[TrackPrompt]]] = {}
    track_categories: Dict[str, Dict[int, int]] = {}
    classes = set()
    for name, file in sorted(files.items()):
        video, cats = {}, {}
        for track, boxes in read_mot_file(file, skips).items():
            chosen = set(select_frames([b[0] for b in boxes], every))
            video[track] = [TrackPrompt(f, box=box) for f, box, _ in boxes if f in chosen]
            first = boxes[0][2]
            cats[track] = 1 if first is None else first
            classes.update(c for _, _, c in boxes[:1] if c is not None)
        tracks[name], track_categories[name] = video, cats
    ids = sorted(classes | {c for v in track_categories.values() for c in v.values()})
    categories = ([{"id": c, "name": str(c)} for c in ids] if classes
                  else [{"id": 1, "name": "object"}])
    return VideoPrompts(tracks, categories, track_categories, {}, spare, skips.count,
                        skips.messages)
