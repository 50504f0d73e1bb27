"""The CPU proxy of GPU throughput: device operations (kernel launches on a GPU: every operation
on device tensors but views and allocations) and host waits (``.item()``, ``bool()``,
``nonzero``, boolean indexing, ``unique``, ``nms``, copies to the host) per image of an automatic
run, ours against Meta's ``SAM2AutomaticMaskGenerator``, both on the fake accelerator of
``tests/fake_accelerator.py`` (the GPU path, computed on the CPU; ``tests/dispatch_counter.py``).

Two regimes of random weights (docs/precision-and-gpu.md, "CPU proxy of GPU throughput"):
``defaults`` (nothing passes the IoU filter at 0.8) and ``median`` (``pred_iou_thresh`` at the
median predicted IoU of the grid, stability filter off: most prompts have a candidate that passes,
as with trained weights). The image encoder is the same model code in both generators: its share
is printed apart.

Our decoder calls follow the memory budget (``engine.automatic.on_device``): on a GPU half its
free memory, on a device whose memory is unknown (as this fake one) ``DECODE_BYTES``, 4 GiB.
``--decode-gib`` lists budgets to count ours with (4, 8 and 13 by default: 4, 2 and 1 calls for
32x32 points at 12.2 MiB per prompt in float32; the last one holds the whole grid, as a GPU with
25 GiB free does, and needs about 13 GiB of this machine's memory). Meta's generator runs once per
regime (its batches are ``points_per_batch``).

Usage: .venv/bin/python benchmarks/bench_dispatch.py [--points 32] [--decode-gib 4 8 13]
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
    ap.add_argument("--decode-gib", type=float, nargs="+", default=[4.0, 8.0, 13.0])
    args = ap.parse_args(argv)
    _import_engine()
    import torch
    from dispatch_counter import (accelerator_model, count_meta, count_ours, iou_quantile,
                                  warm_up)

    from infer_segment_anything_2.engine.automatic import AutomaticParams, on_device
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.set_num_threads(1)  # as dispatch_counter.one_thread: the counts do not depend on it
    torch.manual_seed(0)
    cpu_model = build_model(get_model_spec(args.model), None)
    model = accelerator_model(cpu_model)
    image = _image(args.image, args.scale)
    warm_up(model, image)
    n = args.points
    per_prompt = on_device.bytes_per_prompt(torch.zeros(1, 256, 64, 64))
    print(f"# {args.model}, {image.shape[1]}x{image.shape[0]} ({args.image}), {n}x{n} points, "
          f"torch {torch.__version__}; ours: {per_prompt / 2**20:.1f} MiB per prompt, "
          f"Meta: 64 prompts per decoder call", flush=True)
    rows = []
    saved = on_device.DECODE_BYTES
    for regime in args.regimes:
        extra = {}
        if regime == "median":
            extra = dict(pred_iou_thresh=iou_quantile(cpu_model, image, n, 0.5),
                         stability_score_thresh=0.0)
        params = AutomaticParams(points_per_side=n, **extra)
        counts = {}
        for gib in args.decode_gib:
            on_device.DECODE_BYTES = int(gib * (1 << 30))
            per_call = max(params.points_per_batch, on_device.DECODE_BYTES // per_prompt)
            name = f"ours, {gib:g} GiB ({-(-n * n // per_call)} calls)"
            start = time.perf_counter()
            counts[name] = count_ours(model, image, params)
            print(f"  {regime} {name}: {counts[name]} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        on_device.DECODE_BYTES = saved
        start = time.perf_counter()
        counts["Meta"] = meta = count_meta(model, image, params)
        print(f"  {regime} Meta: {meta} ({time.perf_counter() - start:.0f} s)", flush=True)
        for name, c in counts.items():
            rows.append((regime, name, c.masks, c.ops, c.generator_ops, c.waits,
                         c.peak_bytes / 2**30, c.ops / meta.ops,
                         c.generator_ops / meta.generator_ops, c.waits / meta.waits))
    head = ("regime", "generator", "masks", "ops", "ops w/o encoder", "host waits",
            "peak GiB", "ops / Meta", "ops w/o encoder / Meta", "waits / Meta")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                          f"{r[6]:.2f}", f"{r[7]:.3f}", f"{r[8]:.3f}", f"{r[9]:.3f}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
