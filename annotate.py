"""Annotate a folder of images with SAM 2 masks: one COCO instances file, resumable.

    python annotate.py IMAGES --out annotations.json [prompts] [model and automatic parameters]

IMAGES is a folder (searched recursively for any image OpenCV reads) or a text file listing
images. Prompts, one source: --coco-boxes FILE (a COCO instances file's boxes), --yolo-labels DIR
(YOLO label files; --yolo-names data.yaml or classes.txt), --detector NAME (an Ikomia detection
algorithm run before SAM 2 in one workflow), or none: automatic mode (category "object").
Parameters are the task's (same names, same checks): --param KEY=VALUE or --KEY VALUE.
Results go to OUT.parts.jsonl as each image is done: run the same command again to resume.
--ray [ADDRESS] spreads the images over Ray Data actors (local instance or a cluster).

    python annotate.py VIDEOS --videos --out tracks.json [prompts] [--direction both|forward]
        [--format ytvis,coco-video,davis,ytvis-results] [parameters]

With --videos, IMAGES is a video file, a folder of frames, or a folder or text list of them (one
video each). Prompts, one source: --ytvis FILE (a YouTube-VIS file's tracks), --mot DIR_OR_FILE
(MOT box tracks, --prompt-every K), --detector NAME (--detect-every N), or none: automatic
seeding every --seed-every N frames. Each track gets a mask on every frame where it is present,
before its first prompt too (--direction both). Finished videos go to OUT.parts.jsonl, long
videos are checkpointed every 500 frames in OUT.checkpoints/: run the same command again to
resume. Bad videos are reported by name (OUT.errors.json) and skipped.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PLUGIN = "infer_segment_anything_2"
ROOT = Path(__file__).resolve().parent

if __package__:  # imported as part of the plugin (tests, Python)
    from .engine import dataset
    from .engine.parameters import PARAMETERS, ParameterError, parse_values, unknown_keys
else:  # run as a script: import the plugin's package from this folder, whatever its name
    if PLUGIN not in sys.modules:
        _spec = importlib.util.spec_from_file_location(PLUGIN, ROOT / "__init__.py",
                                                       submodule_search_locations=[str(ROOT)])
        sys.modules[PLUGIN] = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(sys.modules[PLUGIN])
    from infer_segment_anything_2.engine import dataset
    from infer_segment_anything_2.engine.parameters import (PARAMETERS, ParameterError,
                                                            parse_values, unknown_keys)

# The task's parameters that apply to a dataset: the model, precision and automatic ones, and
# mask_threshold. The prompt and video ones do not (prompts come from the sources above).
KEYS = [k for k, p in PARAMETERS.items()
        if p.group in ("General", "Automatic") or k == "mask_threshold"]
# With --videos: the same but input_size_percent (the propagation sees whole frames), and video
# mode's matching and bound for the tracks a detector or seeding starts.
VIDEO_KEYS = [k for k in KEYS if k != "input_size_percent"] + ["video_match_iou",
                                                               "video_max_objects"]
WEIGHTS_DIR = ROOT / "weights"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="annotate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", metavar="IMAGES", help="folder of images, or a text file listing "
                   "them (with --videos: a video, a frame folder, or a folder or list of them)")
    p.add_argument("--out", required=True, help="the COCO instances file to write (with "
                   "--videos: the first --format's file, or folder for davis)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--coco-boxes", metavar="FILE", help="COCO instances JSON: its boxes are "
                     "the prompts, its categories kept")
    src.add_argument("--yolo-labels", metavar="DIR", help="YOLO label folder (<DIR>/<image "
                     "path without extension>.txt)")
    src.add_argument("--detector", metavar="NAME", help="Ikomia detection algorithm (e.g. "
                     "infer_yolo_v8): its detections are the prompts")
    src.add_argument("--ytvis", metavar="FILE", help="with --videos: a YouTube-VIS file, its "
                     "tracks' masks or boxes are the prompts, categories kept")
    src.add_argument("--mot", metavar="DIR_OR_FILE", help="with --videos: MOT box tracks "
                     "(<DIR>/<video>.txt, or one file for one video), ids kept")
    p.add_argument("--yolo-names", metavar="FILE", help="class names: data.yaml or classes.txt")
    p.add_argument("--detector-param", metavar="KEY=VALUE", action="append", default=[],
                   help="a parameter of the detector (repeatable)")
    p.add_argument("--format", metavar="FORMAT", help="images: rle (compressed RLE, default) "
                   "or polygon; videos: ytvis (default), ytvis-results, coco-video, davis, or "
                   "several separated by commas")
    vid = p.add_argument_group("videos (with --videos)")
    vid.add_argument("--videos", action="store_true", help="IMAGES holds videos: annotate "
                     "tracks (see above)")
    vid.add_argument("--direction", choices=("both", "forward"), help="both (default): also "
                     "track backwards, before each track's first prompt or detection; forward")
    vid.add_argument("--prompt-every", type=int, metavar="K", help="with --mot or --ytvis: a "
                     "track's prompts at least K frames apart (default: every frame it has)")
    vid.add_argument("--detect-every", type=int, metavar="N", help="with --detector: run it on "
                     "frames 0, N, 2N, ... (default 1)")
    vid.add_argument("--seed-every", type=int, metavar="N", help="no prompts: automatic "
                     "seeding on frames 0, N, 2N, ... (default 30)")
    vid.add_argument("--checkpoint-every", type=int, metavar="N", help="frames between two "
                     "checkpoints of a video in progress (default 500)")
    p.add_argument("--param", metavar="KEY=VALUE", action="append", default=[],
                   help="a parameter of the task (repeatable): " + ", ".join(KEYS) +
                   "; with --videos also video_match_iou, video_max_objects")
    params = p.add_argument_group("the task's parameters (README: Set algorithm parameters)")
    for key in dict.fromkeys(KEYS + VIDEO_KEYS):
        spec = PARAMETERS[key]
        params.add_argument("--" + key.replace("_", "-"), dest="p_" + key, metavar="VALUE",
                            help=f"{spec.help} ({spec.expected()})")
    run = p.add_argument_group("running")
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run on Ray Data actors: a local instance, or the cluster at ADDRESS")
    run.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    run.add_argument("--threads", type=int, default=0, help="torch threads per process "
                     "(default: torch's in one process; cores / workers with --ray)")
    run.add_argument("--batch-size", type=int, default=1, help="images per Ray batch")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _pairs(items: List[str], flag: str) -> Dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(flag, f"got {item!r}", "KEY=VALUE")
        out[key.strip()] = value
    return out


def task_values(args: argparse.Namespace) -> Dict[str, str]:
    """The task parameters given (strings), checked with the task's own rules: an unknown or
    bad one raises ``ParameterError`` naming it."""
    keys = VIDEO_KEYS if getattr(args, "videos", False) else KEYS
    values = _pairs(args.param, "--param")
    values.update({k: getattr(args, "p_" + k) for k in dict.fromkeys(KEYS + VIDEO_KEYS)
                   if getattr(args, "p_" + k) is not None})
    bad = dict(unknown_keys(values))
    bad.update({k: None for k in values if k in PARAMETERS and k not in keys})
    if bad:
        key, hint = next(iter(bad.items()))
        where = "annotate.py --videos" if keys is VIDEO_KEYS else "annotate.py" + (
            " (only with --videos)" if key in VIDEO_KEYS else "")
        raise ParameterError(key, f"not a parameter of {where}" +
                             (f" (did you mean {hint!r}?)" if hint else ""), ", ".join(keys))
    parse_values(values)
    return values


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace
               ) -> Tuple[Dict[str, str], List[Tuple[str, str]], Optional[dataset.BoxFile]]:
    """Check the arguments and read the image list and box files, before any model loads.

    A problem ends the program as argparse's errors do, but on one line naming the argument
    (``annotate.py: error: --coco-boxes: boxes.json: not JSON (...)``), exit status 2. Returns
    the task's parameter values, the images (``(file_name, path)``) and the boxes (None: none
    given). Checks of a new argument go here."""
    def fail(message: str):
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(message).split())}\n")

    def read(flag: str, value: str, reader, *more):
        try:
            return reader(value, *more)
        except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
            if isinstance(exc, OSError) and exc.strerror:
                exc = exc.strerror
            elif isinstance(exc, json.JSONDecodeError):
                exc = f"not JSON ({exc})"
            elif isinstance(exc, KeyError):
                exc = f"no {exc} key where one is needed"
            fail(exc if str(exc).startswith(flag) else f"{flag}: {value}: {exc}")

    try:
        values = task_values(args)
        _pairs(args.detector_param, "--detector-param")
    except ParameterError as exc:
        fail(exc)
    for flag, least in (("workers", 1), ("threads", 0), ("batch_size", 1)):
        if getattr(args, flag) < least:
            fail(f"--{flag.replace('_', '-')}: {getattr(args, flag)}, at least {least}")
    if args.detector and args.ray:
        fail("--detector runs in one process (an Ikomia workflow); use --coco-boxes or "
             "--yolo-labels with --ray")
    if not Path(args.out).expanduser().parent.is_dir():
        fail(f"--out: {args.out}: its folder does not exist")
    images = read("IMAGES", args.images, dataset.list_images)
    names = [name for name, _ in images]
    boxes = None
    if args.coco_boxes:
        boxes = read("--coco-boxes", args.coco_boxes, dataset.read_coco_boxes, names)
    elif args.yolo_labels:
        classes = args.yolo_names and read("--yolo-names", args.yolo_names,
                                           dataset.read_yolo_names)
        boxes = read("--yolo-labels", args.yolo_labels, dataset.read_yolo_boxes, names,
                     classes)
    return values, images, boxes


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.videos:  # its own checks (annotate_videos.check_video_args), then its run
        return _video_cli().main_videos(parser, args)
    _video_cli().check_image_args(parser, args)
    values, images, boxes = check_args(parser, args)
    items = dataset.work_items(images, boxes)
    categories = boxes.categories if boxes else (
        None if args.detector else [dict(dataset.AUTOMATIC_CATEGORY)])
    if args.threads > 0 and not args.ray:
        import torch

        torch.set_num_threads(args.threads)
    with dataset.PartStore(dataset.parts_path(args.out)) as store:
        if args.detector:
            ikomia_annotate = _glue()
            segment = ikomia_annotate.DetectorSegmenter(args.detector, values, _pairs(
                args.detector_param, "--detector-param"))
            dataset.run_items(items, segment, store, args.format, not args.no_progress)
        elif args.ray:
            from infer_segment_anything_2.engine.dataset.ray_runner import run_items_ray

            run_items_ray(items, values, str(WEIGHTS_DIR), store, args.format, args.ray,
                          args.workers, parse_values(values)["cuda"], args.threads,
                          args.batch_size, not args.no_progress)
        else:
            segment = dataset.Annotator(values, str(WEIGHTS_DIR))
            dataset.run_items(items, segment, store, args.format, not args.no_progress)
        counts = dataset.finish(args.out, items, store, categories)
    print(f"{args.out}: {counts['images']} of {len(items)} images, {counts['annotations']} "
          f"annotations, {counts['categories']} categories, {counts['errors']} errors" +
          (f" (see {dataset.errors_path(args.out)})" if counts["errors"] else ""))
    return 0 if counts["errors"] == 0 else 1


def _video_cli():
    """``annotate.py --videos`` (its checks and its run)."""
    return importlib.import_module(PLUGIN + ".annotate_videos")


def _glue():
    """The Ikomia side (imports ikomia, so only for --detector)."""
    os.environ.setdefault("IKOMIA_AUTO_COMPLETION", "0")
    return importlib.import_module(PLUGIN + ".ikomia_annotate")


if __name__ == "__main__":
    sys.exit(main())
