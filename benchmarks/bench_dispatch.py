"""The CPU proxy of GPU throughput: device operations (kernel launches on a GPU: every operation
on device tensors but views and allocations) and host waits (``.item()``, ``bool()``,
``nonzero``, boolean indexing, ``unique``, ``nms``, copies to the host) per image of an automatic
run, ours against Meta's ``SAM2AutomaticMaskGenerator``, both on the fake accelerator of
``tests/fake_accelerator.py`` (the GPU path, computed on the CPU; ``tests/dispatch_counter.py``).

Two regimes of random weights (README, "Performance"): ``defaults`` (nothing passes the IoU
filter at 0.8) and ``median`` (``pred_iou_thresh`` at the median predicted IoU of the grid,
stability filter off: most prompts have a candidate that passes, as with trained weights). The
image encoder is the same model code in both generators: its share is printed apart.

Our decoder calls follow the memory budget (``engine.automatic.on_device``): on this CPU
``DECODE_BYTES`` (``--decode-gib``, 4 by default: about 170 prompts per call, 7 calls for 32x32
points), on a GPU half its free memory (the whole 32x32 grid in one call from 48 GiB
free). ``--one-call`` adds our counts with the whole grid in one call, measured on a grid that
fits this machine's memory (``--one-call-side``, 8 by default): on the device path the
operations and waits do not depend on the grid's size then (``tests/test_device_discipline.py``).

Usage: .venv/bin/python benchmarks/bench_dispatch.py [--points 32] [--one-call]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "tests"))
from bench_automatic import IMAGES, _import_engine  # noqa: E402


def _image(name: str, scale: float) -> np.ndarray:
    import cv2

    path = IMAGES / f"{name}.jpg"
    if path.is_file():
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    else:  # the synthetic picture of the tests
        from conftest import synthetic_image
        image = synthetic_image(1200, 1800)
    h, w = image.shape[:2]
    return cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default="truck")
    ap.add_argument("--scale", type=float, default=0.25,
                    help="image resized by this (the counts barely depend on its size; the "
                         "fake accelerator's time does)")
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--regimes", nargs="+", default=["defaults", "median"])
    ap.add_argument("--decode-gib", type=float, default=4.0)
    ap.add_argument("--one-call", action="store_true")
    ap.add_argument("--one-call-side", type=int, default=8)
    args = ap.parse_args(argv)
    _import_engine()
    import torch
    from dispatch_counter import (accelerator_model, count_meta, count_ours, iou_quantile,
                                  warm_up)

    from infer_segment_anything_2.engine.automatic import AutomaticParams, on_device
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    on_device.DECODE_BYTES = int(args.decode_gib * (1 << 30))
    torch.set_num_threads(1)  # as dispatch_counter.one_thread: the counts do not depend on it
    torch.manual_seed(0)
    cpu_model = build_model(get_model_spec(args.model), None)
    model = accelerator_model(cpu_model)
    image = _image(args.image, args.scale)
    warm_up(model, image)
    n = args.points
    per_call = on_device.DECODE_BYTES // on_device.bytes_per_prompt(
        torch.zeros(1, 256, 64, 64))
    print(f"# {args.model}, {args.image} {image.shape[1]}x{image.shape[0]}, {n}x{n} points, "
          f"torch {torch.__version__}; ours: {max(64, per_call)} prompts per decoder call "
          f"({-(-n * n // max(64, per_call))} calls), Meta: 64", flush=True)
    rows = []
    for regime in args.regimes:
        extra = {}
        if regime == "median":
            extra = dict(pred_iou_thresh=iou_quantile(cpu_model, image, n, 0.5),
                         stability_score_thresh=0.0)
        params = AutomaticParams(points_per_side=n, **extra)
        counts = {}
        for name, count in (("ours", count_ours), ("Meta", count_meta)):
            start = time.perf_counter()
            counts[name] = count(model, image, params)
            print(f"  {regime} {name}: {counts[name]} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        if args.one_call:
            on_device.DECODE_BYTES, saved = 1 << 40, on_device.DECODE_BYTES
            side = args.one_call_side
            small = AutomaticParams(points_per_side=side, **extra)
            counts["ours, 1 call"] = count_ours(model, image, small)
            on_device.DECODE_BYTES = saved
            print(f"  {regime} ours, {side}x{side} in one call: {counts['ours, 1 call']}",
                  flush=True)
        meta = counts["Meta"]
        for name, c in counts.items():
            rows.append((regime, name, c.masks, c.ops, c.generator_ops, c.waits,
                         c.ops / meta.ops, c.generator_ops / meta.generator_ops,
                         c.waits / meta.waits))
    head = ("regime", "generator", "masks", "ops", "ops w/o encoder", "host waits",
            "ops / Meta", "ops w/o encoder / Meta", "waits / Meta")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                          f"{r[6]:.3f}", f"{r[7]:.3f}", f"{r[8]:.3f}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
