"""Video tracking: Meta's ``SAM2VideoPredictor.propagate_in_video`` against ours (``engine.video.tracker``),
per frame and in memory, in one run.

The clip: ``--frames`` windows of 960x540 panning across a photograph of ``../shared/images``
(truck.jpg by default; a synthetic picture when the folder is absent), saved as JPEG for Meta's
loader and read back (PIL) as the very pixels ours gets. One box on frame 0 (the middle third of
the frame), then tracking to the end. Random weights (seed 0) of the real architecture: per-frame
work does not depend on the weights (every frame runs the encoder, the memory attention over the
same number of memories, the decoder and the memory encoder).

Each side runs in a fresh child process; reported: time per frame (median over the frames after
the memory is full, frame >= 8, and the first frame: Meta's ``init_state`` has already encoded
that frame's image, ours encodes it in the frame), the resident memory after loading and at
the end (``/proc/self/status`` VmRSS) and its growth per frame, and whether the masks agree
(mask IoU per frame, holes not filled on either side: Meta's filling needs SAM 2's CUDA
extension). Meta's predictor loads every frame first (``init_state``, timed apart) and keeps every
frame's outputs; ours streams.

Ours runs once per row of ``--shortcuts`` (the memory attention's exact shortcuts of
``engine/video/attention.py``): ``none`` (Meta's arithmetic), each one alone (``values``,
``layer0``, ``keys``) and ``all``, so that each one's gain shows; the ratios printed are Meta's
time per frame over each row's. ``--floor`` adds the operation counts (torch's
``FlopCounterMode``, attention through the math kernel so that it is counted) in GFLOP per
object per frame on a frame with full memory: the image encoder (per frame, divided by the
objects), the decoder with the memory encoder, and the memory attention, Meta's and ours.
``--image-size`` runs the model at a smaller square input (a quick check; the figures of record
are at the model's 1024).

``--long N`` adds a run of ours alone over N frames at a small input size (the tiny architecture
at 128x128): memory over a long video without hours of CPU time.

Usage: .venv/bin/python benchmarks/bench_video.py [--frames 24] [--model sam2.1_hiera_tiny]
       [--objects 1 4 16] [--shortcuts none values layer0 keys all] [--floor]
       [--image-size 1024] [--long 2000] [--threads 2] [--json out.json]

``--json docs/video_memory.json`` then ``python benchmarks/plots.py`` redraws the memory plot of
docs/performance.md from this run (the file also keeps each side's RSS after every frame).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES, _import_engine  # noqa: E402
from provenance import provenance  # noqa: E402

WINDOW = (540, 960)  # H, W of the clip's frames
SHORTCUTS = ("none", "values", "layer0", "keys", "all")  # rows of ours


def shortcuts_of(name: str):
    """The row's :class:`Shortcuts`: none, one alone, or all."""
    from infer_segment_anything_2.engine.video.attention import ALL, NONE, Shortcuts

    if name in ("none", "all"):
        return NONE if name == "none" else ALL
    return Shortcuts(**{k: k == name for k in ("values", "layer0", "keys")})


def build(model_name: str, image_size: int):
    """The architecture with random weights (seed 0, the same in every child) at this input."""
    import torch
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.loader import load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.manual_seed(0)
    cfg = load_config(get_model_spec(model_name), True)
    cfg.model.image_size = image_size
    return instantiate(cfg.model, _recursive_=True).eval()


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


def make_clip(folder: Path, frames: int, image_name: str) -> list:
    """Panning windows saved as JPEG; returns them read back with PIL (Meta's loader's pixels)."""
    import cv2
    from PIL import Image

    path = IMAGES / image_name
    if path.is_file():
        photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    else:
        photo = np.zeros((800, 1400, 3), np.uint8)
        photo[:] = np.linspace(30, 220, 1400, dtype=np.uint8)[None, :, None]
        cv2.circle(photo, (500, 400), 150, (200, 180, 40), -1)
    h, w = WINDOW
    photo = cv2.resize(photo, (max(w + 4 * frames, photo.shape[1]), max(h, photo.shape[0])))
    out = []
    for t in range(frames):
        x = 4 * t
        Image.fromarray(photo[:h, x:x + w]).save(folder / f"{t:05d}.jpg", quality=95)
        out.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    return out


def frame0_boxes(k: int, h: int = WINDOW[0], w: int = WINDOW[1]) -> np.ndarray:
    """``k`` boxes on frame 0: the middle third of the frame for one object, else a grid of
    boxes over the frame (XYXY pixels)."""
    if k == 1:
        return np.array([[w / 3, h / 3, 2 * w / 3, 2 * h / 3]], np.float32)
    side = int(np.ceil(np.sqrt(k)))
    bw, bh = w / side, h / side
    return np.array([[c * bw + bw / 4, r * bh + bh / 4, c * bw + 3 * bw / 4, r * bh + 3 * bh / 4]
                     for r in range(side) for c in range(side)][:k], np.float32)


def worker(args) -> None:
    _import_engine()
    import torch
    from PIL import Image

    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.set_num_threads(args.threads)
    folder = Path(args.clip)
    n = len(list(folder.glob("*.jpg")))
    model = build(args.model, args.image_size)  # the same random weights in every child
    times, masks, prep, rss = [], [], [], []  # rss: MiB after each frame
    if args.side == "meta":
        from sam2.build_sam import build_sam2_video_predictor

        ckpt = folder / "meta-checkpoint.pt"
        torch.save({"model": model.state_dict()}, ckpt)
        del model
        predictor = build_sam2_video_predictor(
            get_model_spec(args.model).config, str(ckpt), device="cpu",
            hydra_overrides_extra=[f"++model.image_size={args.image_size}"])
        predictor.fill_hole_area = 0
        loaded = _rss_mib()
        with torch.inference_mode():
            start = time.perf_counter()
            state = predictor.init_state(str(folder))
            init_s = time.perf_counter() - start
            start = time.perf_counter()  # frame 0: the prompts, then its output (init_state
            for k, box in enumerate(frame0_boxes(args.objects)):  # encoded the image)
                predictor.add_new_points_or_box(state, 0, k + 1, box=box)
            for _, _, video_masks in predictor.propagate_in_video(state):
                now = time.perf_counter()
                times.append(now - start)
                masks.append((video_masks[:, 0] > 0).numpy())
                rss.append(_rss_mib())
                start = time.perf_counter()
    else:
        from infer_segment_anything_2.engine.model.device import CPU
        from infer_segment_anything_2.engine.video.tracker import VideoTracker

        tracker = VideoTracker(model, CPU, fill_hole_area=0,
                               shortcuts=shortcuts_of(args.side.split(":")[1]))
        loaded, init_s = _rss_mib(), 0.0
        boxes = {k: (b.reshape(2, 2), np.array([2, 3], np.int32))
                 for k, b in enumerate(frame0_boxes(args.objects))}
        from infer_segment_anything_2.engine.image.convert import frame_tensor

        for t in range(n):
            frame = np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB"))
            start = time.perf_counter()
            result = tracker.track(frame, boxes if t == 0 else {})
            masks.append(result.masks(*frame.shape[:2]))
            times.append(time.perf_counter() - start)
            rss.append(_rss_mib())
            start = time.perf_counter()  # what Meta's init_state does ahead, timed apart
            frame_tensor(frame, model.image_size)
            prep.append(time.perf_counter() - start)
    np.save(args.save, np.packbits(np.stack(masks), axis=-1))
    print(json.dumps(dict(times=times, init_s=init_s, rss_loaded=loaded, rss_end=_rss_mib(),
                          rss=rss, prep_s=float(np.median(prep)) if prep else 0.0)))


def long_worker(args) -> None:
    """Ours alone over ``--long`` frames at 128x128 input: memory every 250 frames."""
    _import_engine()
    import torch
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.device import CPU
    from infer_segment_anything_2.engine.model.loader import load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec
    from infer_segment_anything_2.engine.video.tracker import VideoTracker

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(get_model_spec(args.model), True)
    cfg.model.image_size = 128
    tracker = VideoTracker(instantiate(cfg.model, _recursive_=True).eval(), CPU)
    frame = np.zeros((72, 128, 3), np.uint8)
    box = (np.array([[20, 20], [60, 50]], np.float32), np.array([2, 3], np.int32))
    rss, start = {}, time.perf_counter()
    with torch.no_grad():
        for t in range(args.long):
            frame[:] = 60
            frame[20:50, t % 60:t % 60 + 30] = 210
            tracker.track(frame, {0: box} if t == 0 else {})
            if t % 250 == 0 or t == args.long - 1:
                rss[t] = _rss_mib()
    print(json.dumps(dict(rss=rss, per_frame_s=(time.perf_counter() - start) / args.long)))


def floor_worker(args) -> None:
    """GFLOP per object per frame on frame ``--steady-from`` (memory full), Meta's arithmetic
    (shortcuts none) and ours (all), each part apart."""
    _import_engine()
    import torch
    from PIL import Image
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from infer_segment_anything_2.engine.image.convert import frame_tensor
    from infer_segment_anything_2.engine.model.device import CPU
    from infer_segment_anything_2.engine.video.tracker import VideoTracker

    torch.set_num_threads(args.threads)
    model = build(args.model, args.image_size).requires_grad_(False)
    folder = Path(args.clip)
    frames = [np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB"))
              for t in range(args.steady_from + 1)]
    boxes = {k: (b.reshape(2, 2), np.array([2, 3], np.int32))
             for k, b in enumerate(frame0_boxes(args.objects))}

    def counted(fn) -> dict:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), \
                FlopCounterMode(display=False) as counter:
            fn()
        return {name: sum(ops.values()) / 1e9 for name, ops in counter.get_flop_counts().items()}

    encoder = counted(lambda: model.forward_image(frame_tensor(frames[0], model.image_size)))
    totals, attention = {}, None
    for name in ("none", "all"):
        tracker = VideoTracker(model, CPU, fill_hole_area=0, shortcuts=shortcuts_of(name))
        with torch.no_grad():
            for t, frame in enumerate(frames[:-1]):
                tracker.track(frame, boxes if t == 0 else {})
        counts = counted(lambda: tracker.track(frames[-1]))
        totals[name] = counts["Global"]
        if name == "none":  # Meta's memory attention runs inside its module (class name)
            attention = counts["MemoryAttention"]
    k, enc = args.objects, encoder["Global"]
    meta_rest = totals["none"] - enc - attention
    print(json.dumps(dict(encoder=enc / k, decoder_and_memory_encoder=meta_rest / k,
                          attention_meta=attention / k,
                          attention_ours=(totals["all"] - enc - meta_rest) / k,
                          total_meta=totals["none"] / k, total_ours=totals["all"] / k)))


def _child(args, extra) -> dict:
    cmd = [sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
           "--objects", str(args.objects), "--image-size", str(args.image_size),
           "--steady-from", str(args.steady_from)] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default="truck.jpg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--objects", type=int, nargs="+", dest="counts", default=[1, 4, 16],
                    help="object counts to compare (boxes on frame 0), e.g. 1 4 16")
    ap.add_argument("--shortcuts", nargs="+", default=list(SHORTCUTS), choices=SHORTCUTS,
                    help="rows of ours: the memory attention's shortcuts (none, one, all)")
    ap.add_argument("--floor", action="store_true", help="GFLOP per object per frame")
    ap.add_argument("--image-size", type=int, default=1024,
                    help="the model's square input (smaller: a quick check)")
    ap.add_argument("--steady-from", type=int, default=8,
                    help="per frame: the median over frames from this one (8: memory full)")
    ap.add_argument("--long", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--long-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--floor-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.image_size < 64 or args.image_size % 64:
        ap.error("--image-size: a multiple of 64")
    if args.frames <= args.steady_from:
        ap.error("--frames: more than --steady-from")
    args.objects = args.counts[0]
    if args.long_worker:
        return long_worker(args)
    if args.floor_worker:
        return floor_worker(args)
    if args.side:
        return worker(args)
    tmp = Path(tempfile.mkdtemp(prefix="sam2-bench-video-"))
    make_clip(tmp, args.frames, args.image)
    report = {"source": provenance(), "frames": args.frames, "model": args.model, "threads": args.threads,
              "image_size": args.image_size, "runs": {}}
    print(f"{args.model} at {args.image_size}x{args.image_size}, {args.frames} frames of "
          f"{WINDOW[1]}x{WINDOW[0]}, {args.threads} threads; boxes on frame 0, then tracking")
    print(f"objects | side | first frame | per frame (frames >= {args.steady_from}, median) | "
          "per object | init_state | RSS loaded -> end | min mask IoU vs Meta | Meta / this")
    sides = ["meta"] + [f"ours:{name}" for name in args.shortcuts]
    for count in args.counts:
        args.objects = count
        run, masks = {}, {}
        for side in sides:
            save = tmp / f"{side.replace(':', '-')}.npy"
            run[side] = _child(args, ["--side", side, "--clip", str(tmp), "--save", str(save)])
            masks[side] = np.unpackbits(np.load(save), axis=-1)[..., :WINDOW[1]]
        for side in sides:
            r = run[side]
            inter = (masks["meta"] & masks[side]).sum(axis=(-2, -1))
            union = (masks["meta"] | masks[side]).sum(axis=(-2, -1))
            r["min_mask_iou"] = float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).min())
            r.update(steady_s=statistics.median(r["times"][args.steady_from:]))
            r.update(per_object_s=r["steady_s"] / count,
                     meta_over_this=run["meta"]["steady_s"] / r["steady_s"])
            print(f"{count} | {side} | {r['times'][0]:.2f} s | {r['steady_s']:.2f} s | "
                  f"{r['per_object_s']:.2f} s | {r['init_s']:.2f} s | {r['rss_loaded']:.0f} -> "
                  f"{r['rss_end']:.0f} MiB | {r['min_mask_iou']:.4f} | "
                  f"{r['meta_over_this']:.2f}")
        if args.floor:
            floor = run["floor"] = _child(args, ["--floor-worker", "--clip", str(tmp)])
            print(f"{count} objects, GFLOP per object per frame: encoder {floor['encoder']:.1f}, "
                  f"decoder + memory encoder {floor['decoder_and_memory_encoder']:.1f}, memory "
                  f"attention Meta {floor['attention_meta']:.1f} / ours "
                  f"{floor['attention_ours']:.1f}; total Meta {floor['total_meta']:.1f} / ours "
                  f"{floor['total_ours']:.1f} (floor ratio "
                  f"{floor['total_meta'] / floor['total_ours']:.2f})")
        report["runs"][count] = run
    if args.long:
        report["long"] = _child(args, ["--long-worker", "--long", str(args.long)])
        rss = report["long"]["rss"]
        print(f"ours over {args.long} frames at 128x128 input: RSS by frame "
              + ", ".join(f"{t}: {v:.0f} MiB" for t, v in rss.items())
              + f" ({report['long']['per_frame_s'] * 1e3:.0f} ms per frame)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
