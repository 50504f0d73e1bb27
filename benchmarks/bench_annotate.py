"""annotate.py's throughput: one process against Ray Data workers on the same machine, same
images, in one run; identical output checked, peak memory (RSS) of each process.

Images: ``--images`` copies of ../shared/images (truck, cars, groceries) resized to distinct
sizes (so no embedding is reused), else synthetic pictures. Model: the tiny architecture with
random weights (seed 0), automatic mode with ``points_per_side`` 8 and the filters at 0 (random
weights pass nothing at the defaults), CPU, float32.

- single process: ``--threads`` torch threads (default: the machine's cores), then again with
  a worker's share of them (the output is compared with Ray's for both);
- Ray: a local instance with ``--workers`` actors of ``--threads`` / workers torch threads each
  (the same cores shared out), ``batch_size`` 1.

Throughput is given twice: over the whole run (model loads and Ray's actor start-up included)
and in the steady state (between the first and the last image's result). Peak RSS: the single
process's own (``ru_maxrss``, measured before Ray starts), and each Ray worker's ``VmHWM``
polled from /proc while it runs.

Usage: .venv/bin/python benchmarks/bench_annotate.py [--images 24] [--workers 2] [--threads N]
       [--json PATH]

``--json docs/annotate_throughput.json`` then ``python benchmarks/plots.py`` redraws the
throughput plot of docs/performance.md from this run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_prompt import REPO, setup_ikomia_home  # noqa: E402
from provenance import provenance  # noqa: E402

SHARED = REPO.parent / "shared" / "images"


def make_images(folder: Path, count: int) -> None:
    import cv2
    import numpy as np

    bases = [cv2.imread(str(SHARED / n)) for n in ("truck.jpg", "cars.jpg", "groceries.jpg")]
    bases = [b for b in bases if b is not None]
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = 640 + 16 * i, 480 + 8 * i
        image = (cv2.resize(bases[i % len(bases)], (w, h)) if bases
                 else rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / f"img{i:03d}.jpg"), image)


class TimedStore:
    """The store, with the time each record arrives."""

    def __init__(self, store):
        self.store, self.times = store, []

    def __contains__(self, name):
        return name in self.store

    def append(self, record):
        self.times.append(time.perf_counter())
        return self.store.append(record)


def throughput(start: float, times) -> tuple:
    whole = len(times) / (times[-1] - start)
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return whole, steady


class WorkerMemory(threading.Thread):
    """Polls the peak RSS (VmHWM) of Ray's annotate workers."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks, self.running = {}, True

    def run(self):
        while self.running:
            for pid in os.listdir("/proc"):
                try:
                    if "AnnotateWorker" not in Path(f"/proc/{pid}/cmdline").read_text():
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except (OSError, ValueError):
                    continue
                kb = int(status.split("VmHWM:")[1].split()[0])
                self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
            time.sleep(0.5)


def report(images: int, singles: dict, workers: int, per_worker: int, ray: tuple,
           first_result_s: float, single_rss_gib: float, worker_rss_gib: list) -> dict:
    """The run as ``--json`` writes it (what benchmarks/plots.py reads): ``singles`` maps torch
    threads to (whole run, steady state) images/s of one process, ``ray`` is Ray's pair."""
    runs = [{"label": f"one process, {n} torch thread{'s' if n > 1 else ''}", "workers": 1,
             "threads_per_worker": n, "whole_img_s": whole, "steady_img_s": steady}
            for n, (whole, steady) in singles.items()]
    runs.append({"label": f"Ray, {workers} workers x {per_worker} torch "
                          f"thread{'s' if per_worker > 1 else ''}",
                 "workers": workers, "threads_per_worker": per_worker,
                 "whole_img_s": ray[0], "steady_img_s": ray[1],
                 "first_result_s": first_result_s})
    return {"source": provenance(), "images": images, "cores": os.cpu_count(), "runs": runs,
            "peak_rss_gib": {"single process": single_rss_gib, "ray workers": worker_rss_gib}}


def compare(a: Path, b: Path) -> str:
    if a.read_bytes() == b.read_bytes():
        return "identical (byte for byte)"
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    seg = sum(p["segmentation"] != q["segmentation"] for p, q in
              zip(x["annotations"], y["annotations"]))
    score = max((abs(p["score"] - q["score"]) for p, q in
                 zip(x["annotations"], y["annotations"])), default=0.0)
    return (f"DIFFERENT: {len(x['annotations'])} vs {len(y['annotations'])} annotations, "
            f"{seg} segmentations differ, largest score difference {score:.2e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="write the throughputs to this file")
    args = parser.parse_args(argv)
    setup_ikomia_home()
    import torch

    from infer_segment_anything_2.engine.dataset import (Annotator, PartStore, finish,
                                                         list_images, run_items, work_items)
    from infer_segment_anything_2.engine.dataset.ray_runner import run_items_ray
    from infer_segment_anything_2.engine.model import build_model, get_model_spec

    work = Path(tempfile.mkdtemp(prefix="sam2-bench-annotate-"))
    (work / "images").mkdir()
    make_images(work / "images", args.images)
    torch.manual_seed(0)
    checkpoint = work / "tiny.pt"
    torch.save({"model": build_model(get_model_spec("sam2.1_hiera_tiny"), None).state_dict()},
               checkpoint)
    values = {"model_name": "sam2.1_hiera_tiny", "model_weight_file": str(checkpoint),
              "cuda": "False", "points_per_side": "8", "iou_thresh": "0",
              "stability_score_thresh": "0"}
    items = work_items(list_images(str(work / "images")))
    weights = str(REPO / "weights")
    per_worker = max(1, args.threads // args.workers)
    print(f"{len(items)} images, {os.cpu_count()} cores; single process: {args.threads} torch "
          f"threads; Ray: {args.workers} workers x {per_worker} threads", flush=True)
    rows = {}
    for threads in dict.fromkeys([args.threads, per_worker]):  # the cores, then a worker's share
        torch.set_num_threads(threads)
        start = time.perf_counter()
        annotator = Annotator(values, weights)
        loaded = time.perf_counter() - start
        out = work / f"single-{threads}.json"
        with PartStore(str(out) + ".parts.jsonl") as store:
            timed = TimedStore(store)
            run_items(items, annotator, timed, progress=False)
            finish(str(out), items, store, None)
        rows[threads] = throughput(start, timed.times)
        del annotator
        print(f"single process, {threads} threads: {rows[threads][0]:.3f} img/s whole run "
              f"(model load {loaded:.1f} s), {rows[threads][1]:.3f} img/s steady", flush=True)
    single = rows[args.threads]
    single_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"single process peak RSS {single_rss:.2f} GiB", flush=True)

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    memory = WorkerMemory()
    memory.start()
    start = time.perf_counter()
    with PartStore(str(work / "ray.json.parts.jsonl")) as store:
        timed = TimedStore(store)
        run_items_ray(items, values, weights, timed, workers=args.workers,
                      threads=per_worker, progress=False)
        finish(str(work / "ray.json"), items, store, None)
    memory.running = False
    ray.shutdown()
    spread = throughput(start, timed.times)
    rss = ", ".join(f"{kb / 2**20:.2f}" for kb in sorted(memory.peaks.values()))
    print(f"Ray, {args.workers} workers: {spread[0]:.3f} img/s whole run (first result after "
          f"{timed.times[0] - start:.1f} s), {spread[1]:.3f} img/s steady; peak RSS per worker "
          f"{rss} GiB", flush=True)
    print(f"Ray / single process ({args.threads} threads): {spread[0] / single[0]:.2f}x whole "
          f"run, {spread[1] / single[1]:.2f}x steady")
    for threads in rows:
        print(f"output against the single process on {threads} threads:",
              compare(work / f"single-{threads}.json", work / "ray.json"))
    if args.json:
        args.json.write_text(json.dumps(report(
            len(items), rows, args.workers, per_worker, spread, timed.times[0] - start,
            single_rss, sorted(kb / 2**20 for kb in memory.peaks.values())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
