"""What a video run keeps on disk: one store record per finished video, and a checkpoint per
video in progress.

* The store is ``OUT.parts.jsonl``, a :class:`.store.PartStore` keyed by ``"video"``: one JSON
  line per finished video, appended, flushed and fsynced as soon as the video is done, so a rerun
  skips it. A record is ``{"video", "width", "height", "file_names", "tracks": [{"track_id",
  "category", "score", "segmentations"}]}`` (segmentations: compressed COCO RLE or ``None`` per
  frame) or ``{"video", "error"}`` for a video that could not be annotated (tried again by the
  next run). The final files are written from these records only.
* A checkpoint is ``OUT.checkpoints/<hash of the video's name>.pkl``: a pickle of ``{"video",
  "fingerprint", "count", "state", "results", "new_tracks"}`` (the propagation's bounded state,
  the per-(track, frame) results so far and the new-tracks callback's state, after ``count``
  frame results), written to a temporary file, fsynced, then renamed over the previous one
  (``os.replace``): a crash leaves the old checkpoint or the new one, never half of one. A
  checkpoint whose ``fingerprint`` (the video, its prompts and the run's settings) differs from
  the run's is ignored. It is removed once the video's record is in the store.

Checkpoints are pickles written by this program; like any pickle, only load your own.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .store import PartStore
from .video_tracks import TrackResult, VideoInfo


def video_store(out: str) -> PartStore:
    """The per-video store next to the output, ``OUT.parts.jsonl``."""
    return PartStore(str(out) + ".parts.jsonl", key="video")


def video_record(info: VideoInfo, tracks: List[TrackResult]) -> Dict:
    """The store's record of a finished video (tracks in the given order)."""
    return {"video": info.name, "width": int(info.width), "height": int(info.height),
            "file_names": list(info.file_names),
            "tracks": [{"track_id": int(t.track_id), "category": t.category,
                        "score": float(t.score), "segmentations": t.segmentations}
                       for t in tracks]}


def error_record(name: str, error: str) -> Dict:
    """The store's record of a video that could not be annotated."""
    return {"video": name, "error": error}


def record_video(record: Dict) -> Tuple[VideoInfo, List[TrackResult]]:
    """A finished record back as the writers' ``(VideoInfo, [TrackResult])``."""
    info = VideoInfo(record["video"], list(record["file_names"]), int(record["height"]),
                     int(record["width"]))
    tracks = [TrackResult(int(t["track_id"]), t["category"], float(t["score"]),
                          list(t["segmentations"])) for t in record["tracks"]]
    return info, tracks


def checkpoint_dir(out: str) -> Path:
    """The folder of the checkpoints of the videos in progress, ``OUT.checkpoints``."""
    return Path(str(out) + ".checkpoints")


def checkpoint_path(out: str, video: str) -> Path:
    """The checkpoint file of ``video`` (named by a hash: video names hold slashes)."""
    digest = hashlib.sha1(video.encode("utf-8")).hexdigest()[:20]
    return checkpoint_dir(out) / f"{digest}.pkl"


def fingerprint(*parts: Any) -> str:
    """A stable digest of what decides a video's result (its name and length, its prompts, the
    run's settings), given as ``repr``-able parts; numpy arrays by their bytes."""
    h = hashlib.sha256()
    for part in parts:
        h.update(_canonical(part).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _canonical(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"nd{value.dtype}{value.shape}{hashlib.sha1(value.tobytes()).hexdigest()}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v)}"
                              for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if hasattr(value, "__dataclass_fields__"):
        return type(value).__name__ + _canonical(
            {k: getattr(value, k) for k in value.__dataclass_fields__})
    return repr(value)


def save_checkpoint(path: Path, data: Dict) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, video: str, print_: str) -> Optional[Dict]:
    """The checkpoint at ``path`` when it is ``video``'s with fingerprint ``print_``, else None
    (missing, unreadable, or from another run's settings)."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None
    if not isinstance(data, dict) or data.get("video") != video or \
            data.get("fingerprint") != print_:
        return None
    return data


def remove_checkpoint(path: Path) -> None:
    """Remove a finished video's checkpoint, a temporary one a killed run left, and the folder
    once empty."""
    for old in [path, *path.parent.glob(path.name + ".tmp*")]:
        try:
            old.unlink()
        except OSError:
            pass
    try:
        path.parent.rmdir()
    except OSError:
        pass
