"""Annotate videos one after the other: each video's frame results to its tracks, resumable.

:func:`annotate_video` runs one :class:`VideoJob` through an offline propagation
(:class:`engine.video.offline.OfflinePropagation` as made by a :class:`VideoAnnotator`) and turns
its stream of :class:`~engine.video.offline_types.FrameResult` into the store's record
(:mod:`.video_store`) with a :class:`TrackAccumulator`:

* per (track, frame) the LAST result yielded counts (a backward pass revisits the frames of the
  forward one: the later result is the one that attended the prompts of both sides);
* a track is absent on a frame (segmentation ``None``) when its object-presence logit is
  ``<= 0`` or its mask is empty there, else the frame's mask as compressed COCO RLE;
* a track's score is the mean presence probability ``sigmoid(logit)`` over the frames where it
  is present (0 when it is never present; such a track is still written, its id kept);
* its category is the prompts' file's (:attr:`VideoJob.categories`), the new-tracks callback's
  (a detector's class), else :data:`DEFAULT_CATEGORY`.

Every ``checkpoint_every`` frame results the propagation's ``state()``, the accumulator's results
and the new-tracks callback's state are checkpointed (:func:`.video_store.save_checkpoint`); a
rerun resumes from there with ``run(resume=state)`` and gives the same record, byte for byte.
:func:`run_videos` is the single-process loop over videos with a progress bar; a video that
cannot be read or annotated becomes an error record and the run goes on.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..image.coco import mask_to_coco_rle
from ..video.offline_types import FrameResult, FrameSource, TrackPrompt
from .video_prompts import check_prompts
from .video_store import (checkpoint_path, error_record, fingerprint, load_checkpoint,
                          remove_checkpoint, save_checkpoint, video_record)
from .video_tracks import TrackResult
from .videos import video_info

DEFAULT_CATEGORY = "object"
CHECKPOINT_EVERY = 500  # frame results between two checkpoints (the work an interrupt can lose)


@dataclass(frozen=True)
class VideoJob:
    """One video to annotate: its ``name`` (path relative to the input root) and ``ref`` (what
    ``open_video`` takes, e.g. a :class:`.videos.VideoRef`). Its prompts are looked up by name
    when it runs (:attr:`VideoAnnotator.prompts`), so that a bad prompt is that video's error."""

    name: str
    ref: Any


class TrackAccumulator:
    """Per (track, frame), the last result: ``(compressed RLE or None, presence probability)``.

    Only RLE strings are kept, not masks. :attr:`results` (plain dicts and floats) is what a
    checkpoint saves."""

    def __init__(self, results: Optional[Dict[int, Dict[int, tuple]]] = None):
        self.results: Dict[int, Dict[int, tuple]] = results if results is not None else {}

    def add(self, result: FrameResult) -> None:
        for k, track in enumerate(np.asarray(result.ids).tolist()):
            # float64 on purpose: sigmoid of a float32 logit, the same on every machine
            logit = float(np.float32(result.scores[k]))
            mask = np.asarray(result.masks[k], bool)
            present = logit > 0 and bool(mask.any())
            prob = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
            self.results.setdefault(int(track), {})[int(result.index)] = (
                mask_to_coco_rle(mask) if present else None, prob)

    def tracks(self, length: int, categories: Mapping[int, str]) -> List[TrackResult]:
        """The tracks in id order, one segmentation per frame (``None`` where absent or never
        reached)."""
        out = []
        for track in sorted(self.results):
            frames = self.results[track]
            segs = [frames.get(t, (None, 0.0))[0] for t in range(length)]
            probs = [frames[t][1] for t in sorted(frames) if frames[t][0] is not None]
            score = float(sum(probs) / len(probs)) if probs else 0.0
            out.append(TrackResult(track, categories.get(track, DEFAULT_CATEGORY), score, segs))
        return out


class NewTracks:
    """What :func:`annotate_video` expects of a new-tracks callback beyond being callable as
    ``(frame_index, image, FrameResult) -> {new_track_id: TrackPrompt} or None``: its picklable
    ``state()`` / ``load_state(state)``, and ``categories`` (track id -> class name)."""

    categories: Dict[int, str]

    def __call__(self, frame_index: int, image: np.ndarray, result: FrameResult): ...

    def state(self) -> Dict: ...

    def load_state(self, state: Dict) -> None: ...


class VideoAnnotator:
    """Makes the pieces of one video's annotation: the propagation over a model loaded once.

    Args:
        propagation: ``(frames, prompts, new_tracks) -> object with run(resume) and state()``
            (:class:`engine.video.offline.OfflinePropagation` over the loaded model).
        open_video: ``ref -> FrameSource`` (raises on an unreadable, empty or mixed-size video).
        prompts: the prompts' file (:class:`.video_prompts.VideoPrompts`: ``for_video(name) ->
            {track_id: [TrackPrompt]}``, ``category(name, track_id) -> str``), or None.
        new_tracks: ``() -> NewTracks`` for a detector or automatic seeding, or None.
        settings: what else decides the result (parameters, direction): part of the checkpoints'
            fingerprint.
        passes: passes over the video (2 for ``both`` directions), for the progress bar.
        estimate: ``ref -> frames`` without decoding (the progress bar's total); default
            ``len(open_video(ref))``.
    """

    def __init__(self, propagation: Callable, open_video: Callable[[Any], FrameSource],
                 prompts: Any = None, new_tracks: Optional[Callable[[], NewTracks]] = None,
                 settings: Any = None, passes: int = 2,
                 estimate: Optional[Callable[[Any], int]] = None):
        self.propagation, self.open_video, self.prompts = propagation, open_video, prompts
        self.new_tracks, self.settings, self.passes = new_tracks, settings, passes
        self.estimate = estimate or (lambda ref: len(open_video(ref)))

    def prompts_of(self, name: str) -> Tuple[Dict[int, List[TrackPrompt]], Dict[int, str]]:
        """A video's prompts and their tracks' categories (empty without a prompts' file)."""
        if self.prompts is None:
            return {}, {}
        tracks = self.prompts.for_video(name)
        return tracks, {t: self.prompts.category(name, t) for t in tracks}


def annotate_video(job: VideoJob, annotator: VideoAnnotator, out: Optional[str] = None,
                   checkpoint_every: int = CHECKPOINT_EVERY,
                   progress: Callable[[int], None] = lambda n: None,
                   on_checkpoint: Callable[[], None] = lambda: None,
                   on_resume: Callable[[str, int], None] = lambda name, count: None) -> Dict:
    """The store's record of one video (see :mod:`.video_store`). With ``out``, checkpoints go
    to ``OUT.checkpoints/`` every ``checkpoint_every`` frame results and one left by an earlier
    run is resumed (``on_resume(name, results already done)``). ``progress(n)``: ``n`` more
    frame results done. Errors propagate (the callers turn them into error records:
    :func:`safe_annotate`)."""
    frames = annotator.open_video(job.ref)
    try:
        return _annotate(job, annotator, frames, out, checkpoint_every, progress, on_checkpoint,
                         on_resume)
    finally:
        getattr(frames, "close", lambda: None)()


def _annotate(job, annotator, frames, out, checkpoint_every, progress, on_checkpoint,
              on_resume) -> Dict:
    length = len(frames)
    prompts, prompt_categories = annotator.prompts_of(job.name)
    check_prompts(job.name, prompts, length, frames.hw)  # VideoError: past the end
    callback = annotator.new_tracks() if annotator.new_tracks else None
    prop = annotator.propagation(frames, prompts, callback)
    print_ = fingerprint(job.name, length, tuple(frames.hw), list(frames.names), prompts,
                         annotator.settings)
    path = checkpoint_path(out, job.name) if out else None
    data = load_checkpoint(path, job.name, print_) if path else None
    acc, count, resume = TrackAccumulator(), 0, None
    if data:
        acc, count, resume = TrackAccumulator(data["results"]), data["count"], data["state"]
        if callback is not None:
            callback.load_state(data["new_tracks"])
        progress(count)
        on_resume(job.name, count)
    for result in prop.run(resume=resume):
        acc.add(result)
        count += 1
        progress(1)
        if path and count % checkpoint_every == 0:
            save_checkpoint(path, {"video": job.name, "fingerprint": print_, "count": count,
                                   "state": prop.state(), "results": acc.results,
                                   "new_tracks": callback.state() if callback else None})
            on_checkpoint()
    categories = dict(getattr(callback, "categories", {}) or {})
    categories.update(prompt_categories)
    record = video_record(video_info(job.name, frames), acc.tracks(length, categories))
    if path:
        remove_checkpoint(path)
    return record


def safe_annotate(job: VideoJob, annotator: VideoAnnotator, **kwargs) -> Dict:
    """:func:`annotate_video`, or ``{"video", "error"}`` when the video cannot be read or
    annotated (one bad video must not end the run)."""
    try:
        return annotate_video(job, annotator, **kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 -- reported by name, the run goes on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{Path(where.filename).name}:{where.lineno}"
        return error_record(job.name, f"{type(exc).__name__}: {exc} ({place})")


def video_share(job: VideoJob, annotator: VideoAnnotator) -> int:
    """The progress bar's share of a video: its frames (``annotator.estimate``, without
    decoding it) times the passes; 0 when it cannot be told (the video is reported when run)."""
    try:
        return int(annotator.estimate(job.ref)) * annotator.passes
    except Exception:  # noqa: BLE001 -- reported when the video is run
        return 0


def progress_bar(total: int, done: int, enabled: bool = True):
    """A tqdm bar over all videos' frames (frames/s and time left)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="frame", disable=not enabled,
                dynamic_ncols=True, smoothing=0.05)


def run_videos(jobs: Sequence[VideoJob], annotator: VideoAnnotator, store, out: str,
               progress: bool = True, checkpoint_every: int = CHECKPOINT_EVERY,
               report: Callable[[str, str], None] = lambda name, error: None,
               on_resume: Callable[[str, int], None] = lambda name, count: None) -> int:
    """Annotate the videos not yet in ``store`` one after the other, appending each record as
    it is done; ``report(name, error)`` for each bad one, ``on_resume`` as
    :func:`annotate_video`'s. Returns how many were run now."""
    shares = {job.name: video_share(job, annotator) for job in jobs}
    todo = [job for job in jobs if job.name not in store]
    with progress_bar(sum(shares.values()), sum(shares.values()) - sum(
            shares[j.name] for j in todo), progress) as bar:
        for job in todo:
            start = bar.n
            record = safe_annotate(job, annotator, out=out, checkpoint_every=checkpoint_every,
                                   progress=bar.update, on_resume=on_resume)
            left = start + shares[job.name] - bar.n  # the share, whatever ran (an estimate)
            if left < 0:
                bar.total += -left
            bar.update(max(0, left))
            store.append(record)
            if "error" in record:
                report(job.name, record["error"])
    return len(todo)
