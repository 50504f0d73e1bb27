"""The end of a video run: the final files, written from the store, and the errors report.

Each format's file is written by :func:`.video_writers.write_videos` (atomically: a temporary
file, then ``os.replace``; DAVIS PNG by PNG) from the finished records of the store, videos in
name order, so the files do not depend on the order the videos finished in (Ray) or on how
often the run was resumed. With one ``--format`` its output is ``OUT``; with several, the first
is ``OUT`` and each other one is named after it (:func:`output_paths`). The errors report is
``OUT.errors.json``: ``[{"video", "error"}]`` for the videos that failed (unreadable, no frames,
frames of different sizes, prompts past the end, more tracks than DAVIS holds), removed when
there is none.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .runner import errors_path
from .video_store import record_video
from .video_tracks import TrackResult, VideoInfo

DEFAULT_FORMAT = "ytvis"


def output_paths(out: str, formats: Sequence[str]) -> Dict[str, str]:
    """Where each format goes: the first to ``out``; another to ``<out without .json>.<fmt>.json``
    (``davis``: the folder ``<out without .json>.davis``)."""
    base = str(out)[:-5] if str(out).endswith(".json") else str(out)
    paths = {}
    for i, fmt in enumerate(formats):
        paths[fmt] = str(out) if i == 0 else (
            f"{base}.davis" if fmt == "davis" else f"{base}.{fmt}.json")
    return paths


def _videos(names: Sequence[str], store, video_ids: Dict[str, int],
            skip: Sequence[str] = ()) -> Iterator[Tuple[VideoInfo, List[TrackResult]]]:
    for name in sorted(names):
        if name in store and name not in skip:
            info, tracks = record_video(store[name])
            info.video_id = video_ids.get(name)
            yield info, tracks


def finish_videos(out: str, formats: Sequence[str], names: Sequence[str], store,
                  categories: Optional[List[Dict]] = None,
                  video_ids: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Write every format's file and the errors report. ``categories``: COCO-style
    ``[{"id", "name"}]`` kept with their ids (the prompts' file's), new names numbered after
    them; ``video_ids``: video name -> id to keep (a YouTube-VIS prompts' file's). Returns
    counts: videos (written), tracks, errors, missing (neither done nor failed)."""
    from .video_davis import MAX_TRACKS
    from .video_writers import write_videos

    video_ids = video_ids or {}
    errors = {n: e for n, e in store.errors().items() if n in set(names)}
    too_many = [n for n in names if n in store and len(store[n]["tracks"]) > MAX_TRACKS]
    for fmt, path in output_paths(out, formats).items():
        skip = too_many if fmt == "davis" else ()
        for name in skip:
            errors[name] = (f"{len(store[name]['tracks'])} tracks do not fit DAVIS PNGs (at "
                            f"most {MAX_TRACKS}): left out of {path}")
        write_videos(fmt, path, _videos(names, store, video_ids, skip), categories)
    report = errors_path(out)
    if errors:
        tmp = report + f".tmp{os.getpid()}"
        Path(tmp).write_text(json.dumps([{"video": k, "error": v}
                                         for k, v in sorted(errors.items())], indent=1))
        os.replace(tmp, report)
    elif os.path.exists(report):
        os.remove(report)
    done = [n for n in names if n in store]
    return {"videos": len(done), "tracks": sum(len(store[n]["tracks"]) for n in done),
            "errors": len(errors), "missing": len(names) - len(done) - len(
                [n for n in store.errors() if n in set(names)])}
