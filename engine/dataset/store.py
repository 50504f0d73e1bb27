"""The resumable per-image store: a JSON-lines file next to the output (``OUT.parts.jsonl``).

One line per image, appended as soon as the image is done, flushed and fsynced: a crash or
Ctrl-C loses at most the image in progress (a line cut short by the crash is ignored, and cut
off before the next append). A line is ``{"file_name", "width", "height", "annotations"}`` for a
finished image or ``{"file_name", "error"}`` for an image that could not be read or segmented.

The first finished line of a ``file_name`` is its record: a repeated one (an image redone by a
restarted Ray worker whose first result had already arrived) is ignored, so each image appears
exactly once. An image with only error lines is not done: the next run tries it again.
Only the file offsets of the records are kept in memory, not the annotations.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Iterator, Optional


class PartStore(Mapping):
    """``file_name`` -> finished record, read from disk on access; :meth:`append` adds a line.

    ``key``: the record's field that names it (``"file_name"`` for images, ``"video"`` for the
    video store of :mod:`.video_store`)."""

    def __init__(self, path: str, key: str = "file_name"):
        self.path = Path(path)
        self.key = key
        self._offsets: Dict[str, int] = {}
        self._errors: Dict[str, str] = {}
        self.repeated = 0
        self._reader = None
        good_end = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                offset = 0
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # cut short by a crash
                    try:
                        self._index(json.loads(line), offset)
                    except ValueError:
                        break
                    offset += len(line)
                good_end = offset
            if good_end < self.path.stat().st_size:
                os.truncate(self.path, good_end)
        self._file = open(self.path, "ab")

    def _index(self, record: Dict, offset: int) -> None:
        name = record[self.key]
        if "error" in record:
            if name not in self._offsets:
                self._errors[name] = record["error"]
        elif name in self._offsets:
            self.repeated += 1
        else:
            self._offsets[name] = offset
            self._errors.pop(name, None)

    def append(self, record: Dict) -> bool:
        """Write one image's record (flushed and fsynced); False when the image was already
        done (the record is not written again)."""
        if record[self.key] in self._offsets:
            self.repeated += 1
            return False
        line = (json.dumps(record) + "\n").encode()
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._index(record, offset)
        return True

    def errors(self) -> Dict[str, str]:
        """``file_name`` -> error of the images that failed and have no finished record."""
        return dict(self._errors)

    def __getitem__(self, name: str) -> Dict:
        if self._reader is None:
            self._reader = open(self.path, "rb")
        self._reader.seek(self._offsets[name])
        return json.loads(self._reader.readline())

    def __contains__(self, name: object) -> bool:
        return name in self._offsets

    def __iter__(self) -> Iterator[str]:
        return iter(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def close(self) -> None:
        for f in (self._file, self._reader):
            if f is not None:
                f.close()
        self._reader = None

    def __enter__(self) -> "PartStore":
        return self

    def __exit__(self, *exc) -> Optional[bool]:
        self.close()
        return None
