"""One annotated video as the writers take it: the video's frames and its tracks' masks.

Pure types: the video readers, the runner and the writers (YouTube-VIS, COCO with tracks, DAVIS)
share them. A segmentation is pycocotools' compressed RLE (``{"size": [h, w], "counts": str}``)
of one frame's mask, or None where the track is absent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class VideoInfo:
    """A video: ``name`` (its path relative to the input root, ``/``-separated), ``file_names``
    (one per frame, ``<name>/<frame>``), frame ``height`` and ``width`` in pixels, and
    ``video_id``: the id the writers give it (None: its position ``1..`` in what they write;
    set it to keep a prompt file's ids, :attr:`.video_prompts.VideoPrompts.video_ids`)."""

    name: str
    file_names: List[str]
    height: int
    width: int
    video_id: Optional[int] = None

    @property
    def length(self) -> int:
        return len(self.file_names)


@dataclass
class TrackResult:
    """One track of a video: its id (kept from the prompts' file, or given in order of start),
    its category name, its score (mean object-presence probability over the frames where it is
    present) and one segmentation per frame (None: absent)."""

    track_id: int
    category: str
    score: float
    segmentations: List[Optional[Dict]] = field(default_factory=list)
