"""Peak memory of a whole run as users make it: one process, ``import ikomia``, the task, the
model loaded from a checkpoint, one image, CPU (what ``hardware_config.min_ram`` rests on).

Each case runs in a fresh child process, which reports its peak resident memory (``ru_maxrss``:
Python, torch, Ikomia, the model, the run and the task's outputs). Random weights (seed 0) of the
real architectures; image: ../shared/images/truck.jpg resized (else a synthetic picture).
Automatic mode runs in two regimes: ``random`` (the model's own decoder; random weights pass no
candidate at the default ``iou_thresh``: a lower bound) and ``standin`` (the stand-in decoder of
``tests/standin.py`` on the real image encoder: ~150 masks on a full image, which is what trained
weights give and what sizes the final masks and the task's outputs).

With ``--runs N``: RSS over many runs of one task in one process instead (issue 33: what a run
replaces must be freed), prompt mode (2 boxes, 3 candidates each, on a 1920x1080 image), automatic
mode (the stand-in decoder, ``points_per_side`` 8, on the same image: truck.jpg resized) and video
mode (``--frames`` frames of 540x810, random pixels, with 2 box objects; the tiny model at a 256 input with the stand-in image encoder
of ``tests/clips.py``, so that thousands of frames fit in minutes; its masks are noisy, with
hundreds of outlines). RSS (after ``gc.collect`` and ``malloc_trim``) after run 20, after the last
run, the growth between, and the Ikomia IO objects alive; ``--replaced`` repeats each with the
outputs replaced on every run, as the task did before issue 33, for the contrast.

Usage: .venv/bin/python benchmarks/bench_memory.py [--models M ...] [--sizes 1920x1080 ...]
       .venv/bin/python benchmarks/bench_memory.py --runs 500 --frames 2000 [--replaced 100]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES  # noqa: E402
from bench_prompt import setup_ikomia_home  # noqa: E402

CASES = [  # (model, mode)
    ("sam2.1_hiera_tiny", "prompt"), ("sam2.1_hiera_small", "prompt"),
    ("sam2.1_hiera_base_plus", "prompt"), ("sam2.1_hiera_large", "prompt"),
    ("sam2.1_hiera_small", "random"), ("sam2.1_hiera_large", "random"),
    ("sam2.1_hiera_small", "standin"), ("sam2.1_hiera_large", "standin"),
]


def bench_image(w: int, h: int, seed: int = 0):
    """truck.jpg resized to ``w`` x ``h`` (HWC RGB uint8), else random pixels of ``seed``."""
    import cv2
    import numpy as np

    path = IMAGES / "truck.jpg"
    if path.is_file() and seed == 0:
        return cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (w, h))
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def child(args) -> None:
    setup_ikomia_home()
    w, h = (int(v) for v in args.size.split("x"))
    image = bench_image(w, h)
    from ikomia.dataprocess.workflow import Workflow

    from infer_segment_anything_2.engine.session import ModelKey

    wf = Workflow()
    algo = wf.add_task(name="infer_segment_anything_2", auto_connect=True, public_hub=False,
                       private_hub=False)
    algo.set_parameters({"model_name": args.model, "model_weight_file": args.checkpoint,
                         "cuda": "False"})
    if args.mode == "prompt":
        algo.set_parameters({"input_point": str([[w * 0.4, h * 0.5]])})
    if args.mode == "standin":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import standin

        algo.session.load(ModelKey(args.model, args.checkpoint, False, True))
        standin.install(algo.session.model, image_encoder=False)
    start = time.perf_counter()
    wf.run_on(array=image)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "wall_s": wall,
                      "masks": len(algo.get_output(4).get_objects())}))


def rss_mib() -> float:
    import ctypes
    import gc
    import os

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def runs_child(args) -> None:
    """``args.runs`` runs of the task in ``args.mode``; prints one JSON line."""
    setup_ikomia_home()
    import gc

    from ikomia import core, dataprocess
    from ikomia.dataprocess.workflow import Workflow

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import standin
    from clips import small_model
    from infer_segment_anything_2 import infer_segment_anything_2_process as process
    from infer_segment_anything_2.engine.image.predictor import PromptPredictor
    from infer_segment_anything_2.engine.session import ModelKey

    if args.replaced:  # the task before issue 33: fresh mask outputs handed over on every run
        def replace(task):
            for i in range(1, 1 + process.NUM_MASK_OUTPUTS):
                task.set_output(dataprocess.CSemanticSegmentationIO(), i)
            task.get_output(1 + process.NUM_MASK_OUTPUTS).clear_data()
        process.reset_outputs = replace
    wf = Workflow()
    algo = wf.add_task(name="infer_segment_anything_2", auto_connect=True, public_hub=False,
                       private_hub=False)
    algo.set_parameters({"model_name": "sam2.1_hiera_tiny", "model_weight_file": args.checkpoint,
                         "cuda": "False", "points_per_side": "8"})
    algo.session.load(ModelKey("sam2.1_hiera_tiny", args.checkpoint, False, True))
    if args.mode == "video":
        model = small_model(256, standin_encoder=True)
        algo.session.model, algo.session.predictor = model, PromptPredictor(model)
        algo.set_parameters({"video_tracking": "True",
                             "input_box": "[[100,100,400,300],[450,200,780,520]]"})
        images = [bench_image(810, 540, seed=s) for s in range(4)]
    else:
        standin.install(algo.session.model, image_encoder=False)
        images = [bench_image(1920, 1080)]
        if args.mode == "prompt":
            algo.set_parameters({"input_box": "[[200,200,900,700],[1000,300,1700,1000]]",
                                 "multimask_output": "True"})
    samples, start = {}, time.perf_counter()
    for run in range(1, args.runs + 1):
        wf.run_on(array=images[run % len(images)])
        if run in (1, 20) or run % 50 == 0 or run == args.runs:
            samples[run] = rss_mib()
    gc.collect()
    alive = sum(1 for o in gc.get_objects() if issubclass(type(o), core.CWorkflowTaskIO))
    print(json.dumps({"rss": samples, "io_alive": alive, "wall_s": time.perf_counter() - start,
                      "masks": algo.get_output(4).get_object_count(),
                      "polygons": len(algo.get_output(1).get_polygons())}))


def runs_table(args, checkpoint: Path) -> None:
    print("| mode | outputs | runs | masks (outlines) of the last | RSS after run 20 | after the "
          "last | growth | IO objects alive | time per run |\n|---|---|---|---|---|---|---|---|---|",
          flush=True)
    cases = [(m, False, args.frames if m == "video" else args.runs)
             for m in ("prompt", "automatic", "video")]
    if args.replaced:
        cases += [(m, True, args.replaced) for m in ("prompt", "automatic", "video")]
    for mode, replaced, runs in cases:
        cmd = [sys.executable, __file__, "--runs-child", "--mode", mode, "--runs", str(runs),
               "--checkpoint", str(checkpoint)] + (["--replaced", "1"] if replaced else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        kind = "replaced (before)" if replaced else "reset"
        if proc.returncode or not lines:
            print(f"| {mode} | {kind} | {runs} | FAILED: {proc.stderr[-500:]} |", flush=True)
            continue
        r = json.loads(lines[-1])
        first, last = r["rss"]["20"], r["rss"][str(runs)]
        print(f"| {mode} | {kind} | {runs} | {r['masks']} ({r['polygons']}) | {first:.0f} MiB | "
              f"{last:.0f} MiB | {last - first:+.1f} MiB | {r['io_alive']} | "
              f"{r['wall_s'] / runs:.2f} s |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None, help="only these models")
    ap.add_argument("--modes", nargs="+", default=None, help="only these modes")
    ap.add_argument("--sizes", nargs="+", default=["1920x1080", "4000x3000"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=0, help="RSS over this many runs per mode")
    ap.add_argument("--frames", type=int, default=2000, help="with --runs: video frames")
    ap.add_argument("--replaced", type=int, default=0,
                    help="with --runs: also this many runs with outputs replaced (before)")
    ap.add_argument("--runs-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.runs_child:
        runs_child(args)
        return
    if args.runs < 0 or args.frames < 20 or args.replaced < 0 or 0 < args.runs < 20 \
            or 0 < args.replaced < 20:
        ap.error("--runs, --frames, --replaced: at least 20 runs")
    from bench_automatic import _import_engine

    _import_engine()
    import torch

    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    checkpoints = {}
    if args.runs:
        torch.manual_seed(0)
        checkpoint = folder / "sam2.1_hiera_tiny.pt"
        torch.save({"model": build_model(get_model_spec("sam2.1_hiera_tiny"), None).state_dict()},
                   checkpoint)
        print(f"# torch {torch.__version__}, CPU, threads {torch.get_num_threads()}", flush=True)
        runs_table(args, checkpoint)
        return
    print(f"# torch {torch.__version__}, CPU, threads {torch.get_num_threads()}", flush=True)
    print("| model | mode | image | masks | peak RSS | time |\n|---|---|---|---|---|---|",
          flush=True)
    for model, mode in CASES:
        if (args.models and model not in args.models) or (args.modes and mode not in args.modes):
            continue
        if model not in checkpoints:
            torch.manual_seed(0)
            checkpoints[model] = folder / f"{model}.pt"
            torch.save({"model": build_model(get_model_spec(model), None).state_dict()},
                       checkpoints[model])
        for size in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", "--model", model,
                                   "--mode", mode, "--size", size, "--checkpoint",
                                   str(checkpoints[model])], capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(f"| {model} | {mode} | {size} | FAILED: {proc.stderr[-500:]} |", flush=True)
                continue
            r = json.loads(lines[-1])
            print(f"| {model} | {mode} | {size} | {r['masks']} | {r['peak_mib'] / 1024:.2f} GiB "
                  f"| {r['wall_s']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
