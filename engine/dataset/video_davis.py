"""DAVIS output (``--format davis``): one 8-bit indexed-palette PNG per frame, as Meta's
``tools/vos_inference.py`` writes and DAVIS evaluators read.

``OUT/<video>/<frame>.png`` for every frame (``<frame>``: the frame's file name with ``.png``
for its extension; a frame where no track is present is all 0). A pixel's value is the track's
index ``1..N`` in the video's track list (0 the background), so track ids of any size fit;
``OUT/tracks.json`` maps them back: ``{video name: [{"value", "track_id", "category",
"score"}, ...]}``. The palette is DAVIS's (PASCAL VOC's colour map: value 1 dark red, 2 dark
green, ...). A PNG holds one track per pixel: where masks overlap, the track with the higher
score wins (equal scores: the earlier track in the list). More than 255 tracks in a video do
not fit: :func:`check_davis` raises :class:`~.videos.VideoError` naming the video (a runner can
call it before tracking; the writer calls it before writing the video's first PNG).
Each PNG and ``tracks.json`` are written atomically (a temporary file, then ``os.replace``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..image.coco import rle_to_mask
from .video_tracks import TrackResult
from .video_writers import Annotated, numbered
from .videos import VideoError

MAX_TRACKS = 255


def davis_palette() -> List[int]:
    """The 256 RGB colours (768 ints) of DAVIS's PNGs: PASCAL VOC's colour map, each index's
    bits spread over the three channels' high bits."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def check_davis(name: str, n_tracks: int) -> None:
    """Raise :class:`VideoError` when ``n_tracks`` do not fit a DAVIS PNG (values 1..255)."""
    if n_tracks > MAX_TRACKS:
        raise VideoError(name, f"{n_tracks} tracks do not fit DAVIS PNGs (values 1..{MAX_TRACKS}):"
                         f" write this video in another format")


def frame_label(tracks: Sequence[TrackResult], index: int, height: int, width: int) -> np.ndarray:
    """``(H, W)`` uint8 of frame ``index``: track ``i`` (0-based in ``tracks``) as ``i + 1``,
    higher scores painted over lower (ties: the earlier track on top)."""
    label = np.zeros((height, width), np.uint8)
    order = sorted(range(len(tracks)), key=lambda i: (tracks[i].score, -i))  # last on top
    for i in order:
        seg = tracks[i].segmentations[index]
        if seg is not None:
            label[rle_to_mask(seg)] = i + 1
    return label


def _save_png(path: Path, label: np.ndarray, palette: List[int]) -> None:
    from PIL import Image

    height, width = label.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(label).tobytes())
    image.putpalette(palette)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def write_davis(out: str, videos: Annotated,
                categories: Optional[Sequence[Dict]] = None) -> Dict[str, int]:
    """DAVIS PNGs of every frame and ``tracks.json`` (``categories`` unused: a PNG has no class;
    the names are in ``tracks.json``); returns counts."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    palette = davis_palette()
    mapping: Dict[str, List[Dict]] = {}
    frames = 0
    for _, info, tracks in numbered(videos):
        check_davis(info.name, len(tracks))
        if PurePath(info.name).is_absolute() or ".." in PurePath(info.name).parts:
            raise VideoError(info.name, "a DAVIS folder is named by the video's relative path")
        folder = root / PurePath(info.name)
        folder.mkdir(parents=True, exist_ok=True)
        for index, file_name in enumerate(info.file_names):
            stem = PurePath(file_name).with_suffix("").name
            label = frame_label(tracks, index, info.height, info.width)
            _save_png(folder / f"{stem}.png", label, palette)
            frames += 1
        mapping[info.name] = [{"value": i + 1, "track_id": int(t.track_id),
                               "category": t.category, "score": float(t.score)}
                              for i, t in enumerate(tracks)]
    tmp = root / f"tracks.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(mapping, indent=1) + "\n")
    os.replace(tmp, root / "tracks.json")
    return {"videos": len(mapping), "frames": frames,
            "tracks": sum(len(v) for v in mapping.values())}
