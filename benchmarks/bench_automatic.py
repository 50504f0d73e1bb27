"""Automatic mode: Meta's ``SAM2AutomaticMaskGenerator`` against ours (``engine.automatic.generator``).

One command runs the whole matrix (images x models x decoder modes x generators). Each
measurement runs in a fresh child process of this script, so that peak RSS is the generator's own
(the kernel's high-water mark, reset after the model is loaded: ``/proc/self/clear_refs``) and not
a leftover of the previous measurement; the child saves its masks (bit-packed) and the parent
compares them. Wall time covers the whole ``generate`` call (image encoding included; the imports
both generators make on first use are done before the clock starts). It is also split into the
time spent in modules both generators run alike (the image encoder, and in ``standin`` mode the
stand-in prompt encoder and decoder) and the rest, the generator's own work; the speed-up is
printed for both.

CPU time (``cpu_s``: the process's CPU seconds over the same call, all its threads) is kept too:
on a machine shared with other jobs, or under ``nice``, wall time measures the scheduler as much
as the code, where the CPU seconds of a 1-thread run stay close to its wall time on an idle core.

Decoder modes:
  pass50   the model's own decoder, random weights (seed 0), ``iou_thresh`` at the median of the
           model's own predicted IoUs over the grid: half of the candidates pass, and nearly
           every prompt has one that does (what trained weights do: most grid points land on
           something); other parameters at their defaults
  pass90   the same with 90% of the candidates passing
  random   the model's own decoder at the default thresholds: random weights pass no candidate,
           so ours never upscales: a bound, not what users meet
  standin  the stand-in prompt encoder/decoder of ``tests/standin.py`` (known discs, real image
           encoder): many masks, so agreement is meaningful, but the decoder is not ours: a
           bound on the post-processing

Our time is split into encoder, transformer (the decoder up to the IoU head), upscaling
(hypernetworks and upscaling of the passing prompts), stability and boxes, NMS and final masks.

``--points-per-side 4 8 16`` sweeps the grid (both generators at each size); with ``--json``
the file then also holds ``sweep`` (seconds of each side, their ratio and the masks each kept
per size, ``benchmarks/automatic_sweep.py``) and ``regime`` (what the decoder mode means for
those figures), which ``benchmarks/plots.py`` draws as ``docs/automatic_time.png``. The file is
rewritten after each grid size, so an interrupted sweep keeps the sizes it finished.

Usage (from the repository root):
  .venv/bin/python benchmarks/bench_automatic.py                    # full matrix
  nice -n 19 .venv/bin/python benchmarks/bench_automatic.py --models sam2.1_hiera_tiny \
      --images truck --modes random --threads 1 --points-per-side 4 8 16 \
      --json docs/automatic_time.json                               # the plot's data
  .venv/bin/python benchmarks/bench_automatic.py --models sam2.1_hiera_tiny --images truck \\
      --modes standin --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import automatic_sweep
from provenance import _cpu, provenance

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "images"
PLUGIN = "infer_segment_anything_2"


def _import_engine():
    """Import the plugin package by name through a temporary link to this checkout (one link
    folder per checkout, so that two checkouts never import each other's code)."""
    import hashlib

    tag = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    link_dir = Path(tempfile.gettempdir()) / f"sam2-bench-plugins-{tag}"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / PLUGIN
    if not link.exists():
        try:
            link.symlink_to(REPO, target_is_directory=True)
        except FileExistsError:
            pass
    sys.path.insert(0, str(link_dir))
    sys.path.insert(0, str(REPO / "tests"))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def worker(args) -> None:
    """Child: load, reset the RSS high-water mark, generate once, report and save the masks."""
    _import_engine()
    import cv2
    import torch

    (points,) = args.points
    from infer_segment_anything_2.engine.automatic.generator import AutomaticParams, generate
    from meta_reference import generate_with_meta  # tests/, on the path (_import_engine)
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.manual_seed(0)
    model = build_model(get_model_spec(args.model), None)
    if args.mode == "standin":
        import standin

        standin.install(model, image_encoder=False)
    image = cv2.cvtColor(cv2.imread(str(IMAGES / f"{args.image}.jpg")), cv2.COLOR_BGR2RGB)
    extra = {}
    if args.mode.startswith("pass"):  # the same threshold in both workers (deterministic)
        share = int(args.mode[4:]) / 100
        extra["pred_iou_thresh"] = grid_iou_quantile(model, image, points, 1.0 - share)
    params = AutomaticParams(points_per_side=points, **extra)
    fn = generate_with_meta if args.generator == "meta" else generate
    split = split_timers() if args.generator == "ours" else {}
    # imports both generators make on first use (torchvision alone takes seconds): not timed
    import sam2.automatic_mask_generator  # noqa: F401
    import torchvision.ops  # noqa: F401
    import gc

    # after the imports: tests/conftest.py (imported by meta_reference) sets torch to all cores
    torch.set_num_threads(args.threads)
    # time spent in modules both generators run alike: the image encoder, and with the
    # stand-in its prompt encoder and decoder (the rest is the generator's own work)
    shared = {"s": 0.0, "cpu_s": 0.0}
    modules = [model.image_encoder] + (
        [model.sam_prompt_encoder, model.sam_mask_decoder] if args.mode == "standin" else [])

    def pre(_m, _i):
        shared["t0"], shared["cpu0"] = time.perf_counter(), time.process_time()

    def post(_m, _i, _o):
        shared["s"] += time.perf_counter() - shared.pop("t0")
        shared["cpu_s"] += time.process_time() - shared.pop("cpu0")

    for m in modules:
        m.register_forward_pre_hook(pre)
        m.register_forward_hook(post)

    gc.collect()
    base = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    t0, cpu0 = time.perf_counter(), time.process_time()
    seg = fn(model, image, params)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = _rss_kib("VmHWM")
    np.savez_compressed(args.save, masks=np.packbits(seg.masks, axis=-1), shape=seg.masks.shape,
                        scores=seg.scores, stability=seg.stability)
    if split:
        split["encoder"] = shared["s"]
    print(json.dumps({"wall_s": wall, "shared_s": shared["s"], "own_s": wall - shared["s"],
                      "cpu_s": cpu, "shared_cpu_s": shared["cpu_s"],
                      "peak_rss_mib": peak / 1024, "base_rss_mib": base / 1024,
                      "peak_above_base_mib": (peak - base) / 1024, "hwm_reset": reset,
                      "n_masks": len(seg), "split_s": split,
                      "torch_threads": torch.get_num_threads(),
                      "load_avg": [round(x, 2) for x in os.getloadavg()], **extra}))


def grid_iou_quantile(model, image, points_per_side: int, q: float) -> float:
    """The ``q`` quantile of the model's predicted IoUs (3 per point) over the whole-image grid
    of automatic mode, computed as our generator computes them."""
    import torch

    from infer_segment_anything_2.engine.automatic import amg
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.image.predictor import encode_image

    h, w = image.shape[:2]
    with torch.no_grad():
        emb = encode_image(model, image)
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats)
        coords = torch.as_tensor(amg.point_grid(points_per_side) * np.array([[w, h]]),
                                 dtype=torch.float32)
        coords = coords / torch.tensor([w, h], dtype=torch.float32) * model.image_size
        ious = []
        for start in range(0, len(coords), 64):
            c = coords[start:start + 64, None]
            sparse, _ = model.sam_prompt_encoder(
                points=(c, torch.ones(len(c), 1, dtype=torch.int)), boxes=None, masks=None)
            q_, tokens, toks = fast.transformer(sparse)
            ious.append(fast.iou(q_, tokens, toks).flatten())
    return float(torch.quantile(torch.cat(ious), q))


def split_timers() -> dict:
    """Wrap the steps of our generator with timers; returns the dict they add seconds to."""
    import torchvision.ops

    from infer_segment_anything_2.engine.automatic import generator, stability
    from infer_segment_anything_2.engine.decoder import point_decoder as decoder, upscaling

    split = {k: 0.0 for k in ("transformer", "upscaling", "stability and boxes", "NMS",
                              "final masks")}

    def timed(owner, name, key):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                split[key] += time.perf_counter() - start
        setattr(owner, name, wrapper)

    for owner, name, key in (
            (decoder.PointDecoder, "transformer", "transformer"),
            (decoder.PointDecoder, "iou", "transformer"),
            (decoder.PointDecoder, "hyper", "upscaling"),
            (upscaling.Upscaler, "__call__", "upscaling"),
            (stability, "stability_by_cells", "stability and boxes"),
            (stability, "stability_upsampled", "stability and boxes"),
            (torchvision.ops, "batched_nms", "NMS"),
            (generator, "final_masks", "final masks")):
        timed(owner, name, key)
    return split


def _load(path: Path):
    data = np.load(path)
    shape = tuple(data["shape"])
    masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return masks, data["scores"]


def agreement(ours_path: Path, meta_path: Path) -> dict:
    """Greedy one-to-one matching by IoU of our masks to Meta's."""
    ours, _ = _load(ours_path)
    meta, _ = _load(meta_path)
    out = {"n_ours": len(ours), "n_meta": len(meta)}
    if len(meta) == 0 or len(ours) == 0:
        out.update(min_iou=None, mean_iou=None, matched=0)
        return out
    a = ours.reshape(len(ours), -1)
    b = meta.reshape(len(meta), -1)
    inter = a.astype(np.float32) @ b.T.astype(np.float32)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    ious = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    matched, free = [], set(range(len(ours)))
    for j in np.argsort(-ious.max(axis=0)):
        if not free:
            break
        i = max(free, key=lambda k: ious[k, j])
        matched.append(ious[i, j])
        free.discard(i)
    out.update(min_iou=float(min(matched)), mean_iou=float(np.mean(matched)),
               matched=int(sum(m > 0.98 for m in matched)))
    return out


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _line(image: str, model: str, mode: str, gen: str, r: dict, points: int) -> str:
    shared = (f" (encoder{' + stand-in' if mode == 'standin' else ''} {r['shared_s']:.1f} s, "
              f"own {r['own_s']:.1f} s)") if "own_s" in r else ""
    split = ", ".join(f"{k} {v:.1f}" for k, v in r.get("split_s", {}).items())
    thresh = f" iou_thresh {r['pred_iou_thresh']:.4f}" if "pred_iou_thresh" in r else ""
    cpu = f" (CPU {r['cpu_s']:.1f} s, {r['torch_threads']} threads)" if "cpu_s" in r else ""
    return (f"{image:6s} {model:20s} {mode:8s} {points:3d}x{points:<3d} {gen:5s} "
            f"wall {r['wall_s']:8.1f} s{cpu}{shared}  "
            f"peak RSS {r['peak_rss_mib']:7.0f} MiB (+{r['peak_above_base_mib']:.0f} over "
            f"loaded)  masks {r['n_masks']}{thresh}" + (f"\n    split (s): {split}" if split
                                                         else ""))


def machine() -> dict:
    cpu = _cpu()
    import torch

    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "torch": torch.__version__, "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", nargs="+", default=["truck", "cars"])
    ap.add_argument("--models", nargs="+", default=["sam2.1_hiera_tiny", "sam2.1_hiera_small"])
    ap.add_argument("--modes", nargs="+", default=["pass50", "pass90", "random", "standin"])
    ap.add_argument("--points-per-side", "--points", dest="points", type=_positive, nargs="+",
                    default=[32], help="points_per_side, one or more grid sizes (default 32)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--generators", nargs="+", default=["ours", "meta"])
    ap.add_argument("--json", type=Path, help="write all results to this file")
    ap.add_argument("--out", type=Path, help="keep each measurement (masks and numbers) in this "
                    "folder (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="with --out: reuse the measurements "
                    "already in that folder (e.g. Meta's, which take minutes) instead of "
                    "re-running them")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--generator", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.threads <= 0:
            import torch

            args.threads = torch.get_num_threads()
        worker(args)
        return

    info = machine()
    print(f"# machine: nproc={info['nproc']} cpu={info['cpu']!r} torch={info['torch']} "
          f"threads={args.threads or 'default'} load={info['load_avg']}", flush=True)
    print(f"# points_per_side={' '.join(map(str, args.points))}, other parameters at their "
          "defaults", flush=True)
    results = []
    tmp = args.out or Path(tempfile.mkdtemp(prefix="bench-auto-"))
    tmp.mkdir(parents=True, exist_ok=True)
    for points in args.points:
        results += measure_grid(args, points, tmp)
        if args.json:  # after each grid size: an interrupted sweep keeps what it finished
            args.json.write_text(json.dumps(
                {"source": provenance(), "machine": info, "threads": args.threads,
                 "regime": automatic_sweep.regime(args.modes),
                 "sweep": automatic_sweep.sweep(results), "results": results}, indent=1) + "\n")


def measure_grid(args, points: int, tmp: Path) -> list[dict]:
    """Both generators on every image x model x mode at one grid size: one row each."""
    results = []
    for image in args.images:
        for model in args.models:
            for mode in args.modes:
                row = {"image": image, "model": model, "mode": mode, "points_per_side": points}
                stem = f"{image}-{model}-{mode}-p{points}"
                for gen in args.generators:
                    save = tmp / f"{stem}-{gen}.npz"
                    numbers = save.with_suffix(".json")
                    if args.reuse and numbers.exists() and save.exists():
                        row[gen] = json.loads(numbers.read_text())
                        print(_line(image, model, mode, gen, row[gen], points) +
                              f"  (reused from {numbers})", flush=True)
                        continue
                    cmd = [sys.executable, __file__, "--worker", "--model", model, "--image",
                           image, "--mode", mode, "--generator", gen, "--save", str(save),
                           "--points", str(points), "--threads", str(args.threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                    if proc.returncode != 0 or not lines:
                        row[gen] = {"error": (proc.stderr or proc.stdout)[-2000:]}
                        print(f"{image} {model} {mode} {gen}: FAILED\n{row[gen]['error']}",
                              flush=True)
                        continue
                    row[gen] = json.loads(lines[-1])
                    row[gen]["threads"] = args.threads
                    numbers.write_text(json.dumps(row[gen]))
                    print(_line(image, model, mode, gen, row[gen], points), flush=True)
                if all(g in row and "error" not in row[g] for g in ("ours", "meta")):
                    o, m = row["ours"], row["meta"]
                    row["speedup"] = m["wall_s"] / o["wall_s"]
                    row["peak_ratio"] = o["peak_above_base_mib"] / max(m["peak_above_base_mib"],
                                                                       1e-9)
                    row["agreement"] = agreement(tmp / f"{stem}-ours.npz",
                                                 tmp / f"{stem}-meta.npz")
                    a = row["agreement"]
                    own = ""
                    if "own_s" in o and "own_s" in m:
                        row["own_speedup"] = m["own_s"] / o["own_s"]
                        own = f" (generator's own work x{row['own_speedup']:.1f})"
                    print(f"  -> speed-up x{row['speedup']:.1f}{own}, peak memory above loaded "
                          f"model: "
                          f"ours/meta = {row['peak_ratio']:.2f}; masks ours {a['n_ours']} meta "
                          f"{a['n_meta']}, matched IoU>0.98: {a['matched']}, min IoU "
                          f"{a['min_iou']}", flush=True)
                results.append(row)
    return results


if __name__ == "__main__":
    main()
