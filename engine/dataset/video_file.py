"""A video file's frames, decoded lazily and exactly (:class:`VideoFile`).

Opening a video file (:func:`.videos.open_video`) decodes it once from the start, counting its
frames (``CAP_PROP_FRAME_COUNT`` is an estimate for many containers) and keeping a CRC-32 of each
decoded frame (4 bytes a frame). A later read that seeks (``CAP_PROP_POS_FRAMES``, used to go
back or to jump far ahead) is checked against those CRCs, frame by frame; where a seek lands
elsewhere the file is read again sequentially from its start (and seeks are not trusted for it
any more: going back then decodes from the start again, once per block of a descending run),
so frame ``i`` is always the image that sequential decoding gives (equal CRC-32).
"""
from __future__ import annotations

import os
import zlib
from typing import Callable, Iterator, Optional, Sequence, Tuple

import cv2
import numpy as np

from .videos import Closing, VideoError, VideoRef, check_indices

BLOCK = 32  # a descending run is decoded in ascending blocks of this many frames
SKIP = 64  # a forward jump of at most this many frames decodes through instead of seeking


def _open_capture(path: str) -> cv2.VideoCapture:
    """OpenCV's capture of a file (a function of its own so tests can give a faulty one)."""
    return cv2.VideoCapture(path)


def _crc(frame: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frame))


class VideoFile(Closing):
    """A video file as a :class:`~engine.video.offline_types.FrameSource` (``names``:
    ``000000.jpg``, ``000001.jpg``, ...); see the module docstring for how reads stay exact.

    ``open_capture`` opens the file (OpenCV's ``VideoCapture``; a test gives one that seeks wrong).
    ``seeks`` / ``rereads`` count the seeks made and the sequential re-reads from the start that
    a wrong seek caused."""

    def __init__(self, ref: VideoRef,
                 open_capture: Optional[Callable[[str], cv2.VideoCapture]] = None):
        self.name, self.path = ref.name, ref.path
        self._open = open_capture or _open_capture
        if not os.path.isfile(ref.path):
            raise VideoError(ref.name, f"no such file: {ref.path}")
        cap = self._open(ref.path)
        if not cap.isOpened():
            raise VideoError(ref.name, f"OpenCV cannot open {ref.path} as a video")
        crcs, shape = [], None
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if shape is None:
                    shape = frame.shape
                elif frame.shape != shape:
                    raise VideoError(ref.name, f"frame {len(crcs)} is {frame.shape[0]}x"
                                     f"{frame.shape[1]}, frame 0 {shape[0]}x{shape[1]} (HxW)")
                crcs.append(_crc(frame))
        finally:
            cap.release()
        if not crcs:
            raise VideoError(ref.name, f"no frames (OpenCV decodes no frame of {ref.path})")
        self._crcs = np.asarray(crcs, np.uint32)
        self.hw = (int(shape[0]), int(shape[1]))
        self.names = [f"{i:06d}.jpg" for i in range(len(crcs))]
        self._cap: Optional[cv2.VideoCapture] = None
        self._pos = 0  # the index the next read of self._cap gives
        self._seek_ok = True
        self._seeked = False
        self.seeks = self.rereads = 0

    def __len__(self) -> int:
        return len(self._crcs)

    def _restart(self, index: int) -> None:
        """Open the file again and decode through to ``index`` (exact by definition)."""
        if self._cap is not None:
            self._cap.release()
        self._cap = self._open(self.path)
        self._pos = 0
        self._seeked = False  # True once the stream's position comes from a seek
        self._forward(index)

    def _forward(self, index: int) -> None:
        while self._pos < index:
            if not self._cap.grab():
                raise VideoError(self.name, f"decoding stopped at frame {self._pos}, before "
                                 f"frame {index} (it gave {len(self)} frames when opened)")
            self._pos += 1

    def _position(self, index: int) -> None:
        """Make the next read give frame ``index``: decode through, or seek (checked on read)."""
        if self._cap is None:
            self._restart(index)
        elif self._pos <= index <= self._pos + SKIP:
            self._forward(index)
        elif self._seek_ok:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self.seeks += 1
            self._seeked = True
            self._pos = index
        elif index < self._pos:
            self._restart(index)
        else:
            self._forward(index)

    def _read(self, index: int) -> np.ndarray:
        """Frame ``index`` as decoded BGR, equal (CRC) to sequential decoding's."""
        if self._cap is None or self._pos != index:
            self._position(index)
        ok, frame = self._cap.read()
        good = ok and _crc(frame) == self._crcs[index]
        if not good and self._seeked:  # the seek landed elsewhere: read sequentially from now on
            self._seek_ok = False
            self.rereads += 1
            self._restart(index)
            ok, frame = self._cap.read()
            good = ok and _crc(frame) == self._crcs[index]
        if not good:
            raise VideoError(self.name, f"frame {index} decodes differently from when the video "
                             f"was opened (OpenCV's decoder is not deterministic here)")
        self._pos = index + 1
        return frame

    def _ascending(self, start: int, stop: int) -> Iterator[Tuple[int, np.ndarray]]:
        for i in range(start, stop):
            yield i, cv2.cvtColor(self._read(i), cv2.COLOR_BGR2RGB)

    def iterate(self, indices: Sequence[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """``(index, (H, W, 3) RGB uint8)`` for each of a contiguous run of indices; a
        descending run is decoded in ascending blocks of :data:`BLOCK` frames, each handed out
        reversed (at most one block held)."""
        step = check_indices(indices, len(self))
        if len(indices) == 0:
            return
        first, last = int(indices[0]), int(indices[-1])
        if step == 1:
            yield from self._ascending(first, last + 1)
            return
        top = first
        while top >= last:
            low = max(last, top - BLOCK + 1)
            block = list(self._ascending(low, top + 1))
            yield from reversed(block)
            top = low - 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
