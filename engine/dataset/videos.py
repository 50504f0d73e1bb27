"""Videos to annotate: finding them, and reading their frames lazily and exactly.

A video is a video file (anything OpenCV's ``VideoCapture`` reads) or a folder of frames (the
image files OpenCV reads, in natural order of their names: ``2.jpg`` before ``10.jpg``; for
zero-padded names that is plain name order). :func:`list_videos` finds them, :func:`open_video`
gives a :class:`~engine.video.offline_types.FrameSource` over one, decoding frames as they are
asked for (never the whole video in memory). Frames are ``(H, W, 3)`` RGB uint8, indexed from 0.

A video file's frames are exact (:mod:`.video_file`): frame ``i`` is always the image that
sequential decoding from the start gives.

Problems with one video raise :class:`VideoError` (its ``name`` and a message), so that a runner
reports the video by name and goes on: a file OpenCV cannot open, no frame, frames of different
sizes (a frame folder's sizes are checked up front from the image headers, read with Pillow;
a file whose header Pillow cannot read, and every video file, is checked as it is decoded), a
frame that cannot be decoded.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..video.offline_types import FrameSource
from .sources import IMAGE_EXTENSIONS, read_image
from .video_tracks import VideoInfo

# Files of a folder that are taken as video files (a file given directly, or a list's line, may
# be any format VideoCapture reads).
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mxf", ".y4m"}
LIST_EXTENSIONS = {".txt", ".lst"}  # a root file with these extensions lists videos


class VideoError(Exception):
    """One video cannot be read (or its prompts or outputs do not fit it): ``name`` (the video's
    name) and ``message``; ``str()`` is ``"<name>: <message>"``."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class VideoRef:
    """A video found by :func:`list_videos`: ``name`` (its path relative to the root,
    ``/``-separated), ``path`` (where it is) and ``kind`` (``"file"`` or ``"frames"``)."""

    name: str
    path: str
    kind: str


def natural_key(name: str) -> Tuple:
    """Sort key of a name with its digit runs compared as numbers (``2.jpg`` < ``10.jpg``), the
    name itself breaking ties (``01.jpg`` / ``1.jpg``)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)) + (name,)


def frame_files(folder: str) -> List[str]:
    """The image file names directly in ``folder`` (hidden ones skipped), in natural order."""
    names = [n for n in os.listdir(folder)
             if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(folder, n))]
    return sorted(names, key=natural_key)


def _list_line(line: str, base: Path) -> VideoRef:
    path = Path(line).expanduser()
    # names are relative paths: "/data/a.mp4" and "../data/a.mp4" are named "data/a.mp4"
    parts = [p for p in PurePath(line).parts[1 if path.is_absolute() else 0:] if p != ".."]
    name = PurePath(*parts).as_posix() if parts else path.name
    path = path if path.is_absolute() else base / path
    return VideoRef(name, str(path), "frames" if path.is_dir() else "file")


def list_videos(root: str) -> List[VideoRef]:
    """The videos of ``root``, sorted by name.

    ``root`` is: a video file (one video, named by its base name); a folder with image files
    directly in it (one frame folder, named by its base name); a folder searched recursively
    (hidden entries skipped) for video files (by :data:`VIDEO_EXTENSIONS`) and frame folders (a
    folder with image files directly in it is one video; its subfolders are not searched); or a
    ``.txt`` / ``.lst`` file with one video file or frame folder per line (relative to the list's
    folder; blank lines and ``#`` comments skipped; named by the line as written, an absolute
    path without its leading ``/``, ``..`` parts left out; two entries of one name are an
    error). A listed entry that does not exist is kept:
    :func:`open_video` raises :class:`VideoError` for it. Raises ``FileNotFoundError`` when
    ``root`` does not exist."""
    top = Path(root).expanduser()
    if top.is_file() and top.suffix.lower() in LIST_EXTENSIONS:
        refs = [_list_line(line.strip(), top.parent) for line in top.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    elif top.is_file():
        refs = [VideoRef(top.name, str(top), "file")]
    elif top.is_dir() and frame_files(str(top)):
        refs = [VideoRef(top.resolve().name, str(top), "frames")]
    elif top.is_dir():
        refs = []
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            here = Path(folder)
            if here != top and frame_files(folder):
                refs.append(VideoRef(here.relative_to(top).as_posix(), folder, "frames"))
                dirs[:] = []
            for name in files:
                if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                    refs.append(VideoRef((here / name).relative_to(top).as_posix(),
                                         str(here / name), "file"))
    else:
        raise FileNotFoundError(f"--videos: {root} is neither a video, a folder nor a list file")
    unique: Dict[str, VideoRef] = {}
    for ref in refs:
        other = unique.setdefault(ref.name, ref)
        if os.path.abspath(other.path) != os.path.abspath(ref.path):
            raise ValueError(f"--videos: {other.path} and {ref.path} are both named {ref.name}")
    return sorted(unique.values(), key=lambda r: r.name)


def check_indices(indices: Sequence[int], length: int) -> int:
    """The run's step (+1 or -1) after checking it is contiguous and inside ``0..length-1``."""
    if len(indices) == 0:
        return 1
    first, last = int(indices[0]), int(indices[-1])
    step = 1 if last >= first else -1
    if len(indices) > 1 and np.any(np.diff(np.asarray(indices)) != step):
        raise ValueError("iterate: indices must be a contiguous ascending or descending run")
    if min(first, last) < 0 or max(first, last) >= length:
        raise ValueError(f"iterate: frames {first}..{last} outside 0..{length - 1}")
    return step


class Closing:
    """``with open_video(ref) as source:`` closes the source at the end."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameFolder(Closing):
    """A folder of frames as a :class:`~engine.video.offline_types.FrameSource` (``names``: the
    image file names; each frame read from its file when iterated, in the order asked)."""

    def __init__(self, ref: VideoRef):
        self.name = ref.name
        if not os.path.isdir(ref.path):
            raise VideoError(ref.name, f"no such folder: {ref.path}")
        self.folder = ref.path
        self.names = frame_files(ref.path)
        if not self.names:
            raise VideoError(ref.name, f"no frames (no image file in {ref.path})")
        sizes = [self._header_hw(n) for n in self.names]
        known = [(n, s) for n, s in zip(self.names, sizes) if s is not None]
        if known:
            self.hw = known[0][1]
            for n, s in known:
                if s != self.hw:
                    raise VideoError(ref.name, f"frames of different sizes: {self.names[0]} is "
                                     f"{self.hw[0]}x{self.hw[1]}, {n} is {s[0]}x{s[1]} (HxW)")
        else:
            self.hw = self._decode(0).shape[:2]

    def _header_hw(self, file: str) -> Optional[Tuple[int, int]]:
        """``(H, W)`` from the image's header (Pillow reads no pixel), None when Pillow cannot."""
        from PIL import Image

        try:
            with Image.open(os.path.join(self.folder, file)) as im:
                return im.size[1], im.size[0]
        except Exception:  # a format Pillow does not know: checked when decoded
            return None

    def __len__(self) -> int:
        return len(self.names)

    def _decode(self, i: int) -> np.ndarray:
        try:
            return read_image(os.path.join(self.folder, self.names[i]))
        except ValueError as e:
            raise VideoError(self.name, f"frame {i} ({self.names[i]}): {e}") from None

    def iterate(self, indices: Sequence[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """``(index, (H, W, 3) RGB uint8)`` for each of a contiguous run of indices."""
        check_indices(indices, len(self))
        for i in indices:
            image = self._decode(int(i))
            if image.shape[:2] != tuple(self.hw):
                raise VideoError(self.name, f"frame {i} ({self.names[i]}) is {image.shape[0]}x"
                                 f"{image.shape[1]}, the video {self.hw[0]}x{self.hw[1]} (HxW)")
            yield int(i), image


def open_video(ref: VideoRef) -> "FrameSource":
    """A frame source over ``ref`` (:class:`FrameFolder` or :class:`VideoFile`); raises
    :class:`VideoError` when it cannot be read (see the module docstring)."""
    if ref.kind == "frames":
        return FrameFolder(ref)
    if os.path.isdir(ref.path):
        return FrameFolder(VideoRef(ref.name, ref.path, "frames"))
    from .video_file import VideoFile  # imported here: it imports this module's names

    return VideoFile(ref)


def video_info(name: str, source: "FrameSource",
               video_id: Optional[int] = None) -> VideoInfo:
    """The writers' :class:`~.video_tracks.VideoInfo` of an opened video: ``file_names``
    ``<name>/<frame name>``, the frames' height and width."""
    return VideoInfo(name, [f"{name}/{n}" for n in source.names], int(source.hw[0]),
                     int(source.hw[1]), video_id)
