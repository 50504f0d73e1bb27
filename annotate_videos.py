"""``annotate.py --videos``: its argument checks and its run (see ``annotate.py``'s help).

Every bad argument is one line naming it and exit status 2 (:func:`fail`, as
``annotate.check_args``), never a traceback: a missing IMAGES, a missing or non-JSON ``--ytvis``, a missing ``--mot``, a format
or an option that does not fit the mode, a count below 1. A bad video is not a bad argument: it
is reported by name (a stderr line and ``OUT.errors.json``), skipped, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .engine.dataset import FORMATS as IMAGE_FORMATS
from .engine.dataset.video_finish import DEFAULT_FORMAT, finish_videos, output_paths
from .engine.dataset.video_model import VideoConfig, build_annotator, read_prompts
from .engine.dataset.video_runner import CHECKPOINT_EVERY, VideoJob, run_videos
from .engine.dataset.video_store import video_store
from .engine.dataset.videos import list_videos
from .engine.parameters import parse_values

DEFAULT_SEED_EVERY = 30
VIDEO_ONLY = ("ytvis", "mot", "direction", "prompt_every", "detect_every", "seed_every",
              "checkpoint_every")
IMAGE_ONLY = ("coco_boxes", "yolo_labels", "yolo_names", "batch_size")


def fail(parser: argparse.ArgumentParser, message: str) -> None:
    """End the program on one line naming the argument (no usage), exit status 2, as
    ``annotate.check_args`` does."""
    parser.exit(2, f"{parser.prog}: error: {' '.join(str(message).split())}\n")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def video_formats() -> tuple:
    from .engine.dataset.video_writers import FORMATS

    return FORMATS


def check_image_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The image path's view of the video options: none of them without ``--videos``; its
    ``--format`` one of rle, polygon (default rle)."""
    for dest in VIDEO_ONLY:
        if getattr(args, dest) is not None:
            fail(parser, f"{_flag(dest)}: only with --videos")
    if args.format is None:
        args.format = "rle"
    elif args.format not in IMAGE_FORMATS:
        fail(parser, f"--format: invalid choice: {args.format!r} for images (choose "
                     f"from {', '.join(IMAGE_FORMATS)}; the video formats need --videos)")


def _positive(parser, args, dest: str) -> None:
    value = getattr(args, dest)
    if value is not None and value < 1:
        fail(parser, f"{_flag(dest)}: {value} is not a whole number >= 1")


def check_video_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> List[str]:
    """The checks of ``--videos``' arguments (each failure: :func:`fail`, exit 2); returns
    the formats asked for."""
    for dest in IMAGE_ONLY:
        value = getattr(args, dest, None)
        if value is not None and (dest != "batch_size" or value != 1):
            fail(parser, f"{_flag(dest)}: not with --videos (prompts: --ytvis, --mot, "
                         f"--detector, or none for automatic seeding)")
    if not os.path.exists(os.path.expanduser(args.images)):
        fail(parser, f"IMAGES: {args.images} does not exist")
    for dest in ("ytvis", "mot"):
        path = getattr(args, dest)
        if path is not None and not os.path.exists(os.path.expanduser(path)):
            fail(parser, f"{_flag(dest)}: {path} does not exist")
    if args.ytvis is not None:
        if os.path.isdir(args.ytvis):
            fail(parser, f"--ytvis: {args.ytvis} is a folder, not a YouTube-VIS file")
        try:
            with open(os.path.expanduser(args.ytvis), "rb") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            fail(parser, f"--ytvis: {args.ytvis} is not JSON ({exc})")
        except OSError as exc:
            fail(parser, f"--ytvis: {args.ytvis} cannot be read ({exc.strerror})")
    for dest in ("prompt_every", "detect_every", "seed_every", "checkpoint_every", "workers"):
        _positive(parser, args, dest)
    if args.threads < 0:
        fail(parser, f"--threads: {args.threads} is not a whole number >= 0")
    if not Path(args.out).expanduser().parent.is_dir():
        fail(parser, f"--out: {args.out}: its folder does not exist")
    if args.prompt_every is not None and not (args.ytvis or args.mot):
        fail(parser, "--prompt-every: only with --ytvis or --mot")
    if args.detect_every is not None and not args.detector:
        fail(parser, "--detect-every: only with --detector")
    if args.seed_every is not None and (args.ytvis or args.mot or args.detector):
        fail(parser, "--seed-every: only without prompts (automatic seeding)")
    if args.detector and args.ray:
        fail(parser, "--ray: --detector runs in one process (an Ikomia workflow); "
                     "use --ytvis or --mot with --ray")
    if args.detector_param and not args.detector:
        fail(parser, "--detector-param: only with --detector")
    formats = [f.strip() for f in (args.format or DEFAULT_FORMAT).split(",")]
    known = video_formats()
    for fmt in formats:
        if fmt not in known:
            fail(parser, f"--format: invalid choice: {fmt!r} for videos (choose from "
                         f"{', '.join(known)}, or several separated by commas)")
    if len(set(formats)) != len(formats):
        fail(parser, f"--format: {args.format!r} names a format twice")
    return formats


def _config(args, values: Dict[str, str], names: List[str]) -> VideoConfig:
    kind = "ytvis" if args.ytvis else "mot" if args.mot else None
    detector = None
    if args.detector:
        pairs = dict(p.partition("=")[::2] for p in args.detector_param)
        detector = (args.detector, tuple(sorted(pairs.items())))
    return VideoConfig(
        values=tuple(sorted(values.items())), weights_dir=str(_weights_dir()),
        names=tuple(names), direction=args.direction or "both",
        prompts=(kind, os.path.expanduser(args.ytvis or args.mot), args.prompt_every)
        if kind else None,
        seed_every=None if (kind or args.detector) else (args.seed_every or DEFAULT_SEED_EVERY),
        detect_every=(args.detect_every or 1) if args.detector else None, detector=detector)


def _weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


def categories_of(config: VideoConfig, prompts) -> Optional[List[Dict]]:
    """The final files' categories: the prompts' file's (ids kept), ``object`` for seeding, the
    detector's classes as they come (None)."""
    if prompts is not None:
        return prompts.categories
    if config.seed_every:
        return [{"id": 1, "name": "object"}]
    return None


def main_videos(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run ``annotate.py --videos``; returns the exit status (1 when a video failed)."""
    from .annotate import task_values
    from .engine.parameters import ParameterError

    try:
        values = task_values(args)
    except ParameterError as exc:
        fail(parser, str(exc))
    formats = check_video_args(parser, args)
    try:
        refs = list_videos(args.images)
    except (OSError, ValueError) as exc:
        fail(parser, f"IMAGES: {exc}")
    if not refs:
        fail(parser, f"IMAGES: no video file or frame folder in {args.images}")
    names = [r.name for r in refs]
    config = _config(args, values, names)
    try:
        prompts = read_prompts(config)
    except (OSError, ValueError) as exc:
        flag = "--ytvis" if args.ytvis else "--mot"
        text = str(exc)
        text = text[len(flag) + 2:] if text.startswith(flag + ": ") else text
        fail(parser, f"{flag}: {text}")
    _warn_prompts(prompts)
    out = args.out
    every = args.checkpoint_every or CHECKPOINT_EVERY
    jobs = [VideoJob(r.name, r) for r in refs]

    def report(name: str, error: str) -> None:
        print(f"annotate.py: video {name}: {error}", file=sys.stderr)

    if args.threads > 0 and not args.ray:
        import torch

        torch.set_num_threads(args.threads)
    with video_store(out) as store:
        if args.ray:
            from .engine.dataset.video_ray import run_videos_ray

            run_videos_ray(jobs, config, store, out, args.ray, args.workers,
                           parse_values(values)["cuda"], args.threads,
                           not args.no_progress, every, report=report)
        else:
            detect = None
            if args.detector:
                glue = _glue()
                detect = glue.VideoDetector(args.detector, dict(config.detector[1]))
            annotator = build_annotator(config, detect, prompts)
            run_videos(jobs, annotator, store, out, not args.no_progress, every, report,
                       on_resume=lambda name, count: print(
                           f"annotate.py: video {name}: resumed after {count} frame results "
                           f"from its checkpoint", file=sys.stderr))
        counts = finish_videos(out, formats, names, store, categories_of(config, prompts),
                               getattr(prompts, "video_ids", None))
    paths = output_paths(out, formats)
    print(f"{', '.join(paths.values())}: {counts['videos']} of {len(names)} videos, "
          f"{counts['tracks']} tracks, {counts['errors']} errors" +
          (f" (see {out}.errors.json)" if counts["errors"] else ""))
    return 0 if counts["errors"] == 0 and counts["missing"] == 0 else 1


def _warn_prompts(prompts) -> None:
    if prompts is None:
        return
    for text in prompts.warnings:
        print(f"annotate.py: skipped {text}", file=sys.stderr)
    if prompts.skipped > len(prompts.warnings):
        print(f"annotate.py: {prompts.skipped} malformed prompt entries skipped in all",
              file=sys.stderr)
    for name in prompts.unmatched:
        print(f"annotate.py: the prompts' video {name} is none of the run's videos",
              file=sys.stderr)


def _glue():
    """The Ikomia side (imports ikomia, so only for --detector)."""
    os.environ.setdefault("IKOMIA_AUTO_COMPLETION", "0")
    return importlib.import_module(__package__ + ".ikomia_video_detector")
