"""The video runner's pieces over the real engine: the model loaded once per process, the
prompts' file, the new-tracks source and the offline propagation, built from a plain
:class:`VideoConfig` (picklable: the Ray workers build theirs from the same one).

Track ids: the prompts' file's own (YouTube-VIS ``track_id`` or annotation ``id``, MOT ids);
a detector's or seeding's tracks are numbered from 1 in order of start, per video (0 is the
background of a DAVIS PNG).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import cv2

from ..automatic import automatic_params
from ..parameters import MODEL_KEYS, parse_values
from ..session import ModelKey, Sam2Session
from .video_runner import VideoAnnotator
from .videos import VideoRef, frame_files, open_video

FIRST_TRACK_ID = 1  # a detector's or seeding's first track
PROMPT_KINDS = ("ytvis", "mot")


@dataclass(frozen=True)
class VideoConfig:
    """What decides a video run's results.

    Attributes:
        values: the task's parameters (strings as Ikomia stores them), checked by
            :func:`engine.parameters.parse_values`.
        weights_dir: where official checkpoints are downloaded.
        names: the run's video names (a prompts' file is matched against them).
        direction: ``"both"`` or ``"forward"``.
        prompts: ``(kind, path, prompt_every)`` of a prompts' file (kind ``ytvis`` or ``mot``),
            or None.
        seed_every: automatic seeding on frames 0, N, 2N, ... (with no prompts and no detector).
        detect_every: a detector on frames 0, N, 2N, ... (the detector itself is given to
            :func:`build_annotator`: it lives in the Ikomia glue).
        detector: the detector's name and parameters (only part of the checkpoints' fingerprint).
    """

    values: Tuple[Tuple[str, str], ...]
    weights_dir: str
    names: Tuple[str, ...] = ()
    direction: str = "both"
    prompts: Optional[Tuple[str, str, Optional[int]]] = None
    seed_every: Optional[int] = None
    detect_every: Optional[int] = None
    detector: Optional[Tuple[str, Tuple[Tuple[str, str], ...]]] = None

    def settings(self) -> Dict[str, Any]:
        """The fingerprint's part: everything but where files are and which videos run."""
        out = asdict(self)
        del out["weights_dir"], out["names"]
        return out


def estimated_length(ref: VideoRef) -> int:
    """A video's frames without decoding it: a folder's image files, a file's frame count as its
    container states it (an estimate, for the progress bar only)."""
    if ref.kind == "frames":
        return len(frame_files(ref.path))
    cap = cv2.VideoCapture(ref.path)
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def read_prompts(config: VideoConfig):
    """The prompts' file of ``config`` (:class:`.video_prompts.VideoPrompts`), or None."""
    if config.prompts is None:
        return None
    kind, path, every = config.prompts
    if kind == "ytvis":
        from .video_prompts import read_ytvis_prompts

        return read_ytvis_prompts(path, list(config.names), every)
    if kind == "mot":
        from .video_mot import read_mot_prompts

        return read_mot_prompts(path, list(config.names), every)
    raise ValueError(f"prompts: {kind!r} is not one of {', '.join(PROMPT_KINDS)}")


def build_annotator(config: VideoConfig, detect: Optional[Callable] = None,
                    prompts: Any = None) -> VideoAnnotator:
    """Load the model (once) and make the :class:`.video_runner.VideoAnnotator` of ``config``.
    ``detect(frame_index, image) -> Detections``: the detector, with ``config.detect_every``;
    ``prompts``: ``config``'s prompts' file already read (else it is read here)."""
    from ..video.offline import OfflinePropagation
    from .video_new_tracks import DetectorTracks, SeedTracks, automatic_masks

    v = parse_values(dict(config.values))
    session = Sam2Session(config.weights_dir)
    session.load(ModelKey(**{k: v[k] for k in MODEL_KEYS}))
    model, choice = session.model, session.choice(v["precision"])
    new_tracks = None
    if detect is not None:
        def new_tracks():
            return DetectorTracks(detect, config.detect_every or 1, v["video_match_iou"],
                                  v["video_max_objects"], first_id=FIRST_TRACK_ID)
    elif config.seed_every:
        masks = automatic_masks(model, automatic_params(v), choice)

        def new_tracks():
            return SeedTracks(masks, config.seed_every, v["video_max_objects"],
                              first_id=FIRST_TRACK_ID)

    def propagation(frames, prompts, callback):
        return OfflinePropagation(model, choice, frames, prompts, config.direction, callback,
                                  v["mask_threshold"])

    if prompts is None:
        prompts = read_prompts(config)
    return VideoAnnotator(propagation, open_video, prompts, new_tracks,
                          settings=config.settings(),
                          passes=2 if config.direction == "both" else 1,
                          estimate=estimated_length)
