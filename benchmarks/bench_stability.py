"""Stability scores and boxes of the candidates that pass the IoU filter: the two ways of
``engine.automatic.stability`` timed against each other at crop sizes around ``BY_CELLS_MIN_PIXELS``.

* upsampling: ``F.interpolate`` of the 256x256 logits to the crop size, :data:`UPSAMPLE_CHUNK`
  candidates at a time, then Meta's ``stability_score`` and the thresholded mask's box;
* cells: ``cells.stability_and_boxes``, which counts on the low-resolution grid.

Both give the same scores and boxes (tests/automatic/test_cells.py); this script prints which is faster, so
that the crossover constant stays measured. Candidates are the stand-in's discs (60 of them,
the size of a batch that passes the filters).

Usage (from the repository root):
  .venv/bin/python benchmarks/bench_stability.py [--threads 1 2] [--sizes 128x128 400x400 ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import _import_engine  # noqa: E402

DEFAULT_SIZES = ["64x64", "128x128", "256x256", "320x400", "400x400", "420x420", "400x600",
                 "512x512", "600x900", "1200x1800"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="crop sizes HxW")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    _import_engine()
    import torch

    import standin
    from infer_segment_anything_2.engine.automatic import AutomaticParams, stability

    gen = torch.Generator().manual_seed(5)
    discs, _ = standin.disc_logits(torch.rand(20, 2, generator=gen) * 1024)
    logits = discs.flatten(0, 1).float()
    index = torch.arange(len(logits))
    params = AutomaticParams()

    def timed(fn, hw) -> float:
        fn(logits, index, hw, params)
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            fn(logits, index, hw, params)
        return (time.perf_counter() - t0) / args.repeat * 1e3

    print(f"threshold BY_CELLS_MIN_PIXELS = {stability.BY_CELLS_MIN_PIXELS} pixels; "
          f"{len(logits)} candidates")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            up = timed(stability.stability_upsampled, (h, w))
            cells = timed(stability.stability_by_cells, (h, w))
            used = "cells" if h * w >= stability.BY_CELLS_MIN_PIXELS else "upsampling"
            print(f"threads {threads}  {size:>9s}  upsampling {up:7.1f} ms  cells {cells:6.1f} ms"
                  f"  upsampling/cells {up / cells:5.2f}  used: {used}")


if __name__ == "__main__":
    main()
