"""Peak memory of a whole run as users make it: one process, ``import ikomia``, the task, the
model loaded from a checkpoint, one image, CPU (what ``hardware_config.min_ram`` rests on).

Each case runs in a fresh child process, which reports its peak resident memory (``ru_maxrss``:
Python, torch, Ikomia, the model, the run and the task's outputs). Random weights (seed 0) of the
real architectures; image: ../shared/images/truck.jpg resized (else a synthetic picture).
Automatic mode runs in two regimes: ``random`` (the model's own decoder; random weights pass no
candidate at the default ``iou_thresh``: a lower bound) and ``standin`` (the stand-in decoder of
``tests/standin.py`` on the real image encoder: ~150 masks on a full image, which is what trained
weights give and what sizes the final masks and the task's outputs).

Usage: .venv/bin/python benchmarks/bench_memory.py [--models M ...] [--sizes 1920x1080 ...]
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


def child(args) -> None:
    setup_ikomia_home()
    import cv2
    import numpy as np

    w, h = (int(v) for v in args.size.split("x"))
    path = IMAGES / "truck.jpg"
    if path.is_file():
        image = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (w, h))
    else:
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
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
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from bench_automatic import _import_engine

    _import_engine()
    import torch

    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    checkpoints = {}
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
