"""Offline video annotation: ours (the runner's engine path) against Meta's ``SAM2VideoPredictor``
on the same clip, with 1, 4 and 16 objects, in one run.

* **Ours**: the clip read lazily (:func:`engine.dataset.videos.open_video`, a frame folder), one
  box prompt per object on the middle frame, :class:`engine.video.offline.OfflinePropagation`
  with ``direction="both"`` (forward from the middle frame to the end, then backward to frame 0),
  the last result per track and frame kept.
* **Meta**: ``init_state`` on the frame folder, ``add_new_points_or_box`` for each box on the
  middle frame, ``propagate_in_video`` forward, then ``propagate_in_video(reverse=True)`` from the
  middle frame.

The clip: ``--frames`` windows (``--window``, 540x960 by default) panning slowly back and forth
over a photograph of ``../shared/images`` (truck.jpg by default; the benchmark is skipped when it
is absent). Frames are written losslessly (PNG data in files named ``00000.jpg``, the names
Meta's loader wants; both loaders read the content), so both sides get the same pixels. 2,000
frames at 540x960 take about 1.5 GB of disk.

Weights: random (seed 0) in the real architecture (``--model``) at ``--image-size`` input, with
the object-score head biased to "present" (+20 on its last bias), so that every object is tracked
on every frame. Per-frame work does not depend on the weights, but a real model scores objects
absent on some frames, and ours then stops a backward pass where Meta's reverse goes on to frame
0: with real weights ours does as much work or less, so the timings here bound ours from above.
Both sides skip hole filling (Meta's needs SAM 2's CUDA extension).

Each measurement runs in a fresh child process: wall time of the whole annotation (Meta's
``init_state`` included, and reported apart), frames per second (video frames / wall time), peak
RSS (the kernel's high-water mark, reset after the model is loaded) and its growth over the
loaded model. The children write masks of every ``stride``-th frame to disk as they come (never
held), and the parent compares them: min mask IoU ours vs Meta over those frames and objects, and
the share of identical masks.

Goals: no slower than Meta per object (fps ratio ours / Meta >= 1 at each object count), identical
masks (min IoU 1.0), peak memory flat in the video's length (ours' RSS growth at 2,000 frames
about that at 300) while Meta's grows with every frame (``init_state`` keeps every frame, 3 x S x
S float32, and every output). Meta is not run above ``--meta-max-frames``.

Usage: .venv/bin/python benchmarks/bench_annotate_video.py [--frames 300 2000]
       [--objects 1 4 16] [--image-size 1024] [--model sam2.1_hiera_tiny] [--window 540x960]
       [--threads 2] [--meta-max-frames 300] [--compare 50] [--json out.json]
A smoke test: --frames 20 --objects 1 --image-size 128 --window 120x160
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES, _import_engine, _rss_kib  # noqa: E402
from bench_video import frame0_boxes  # noqa: E402

PRESENT_BIAS = 20.0  # added to the object-score head's last bias: objects always present
SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def make_clip(folder: Path, frames: int, photo: np.ndarray, hw) -> None:
    """``frames`` windows of ``hw`` panning 2 pixels a frame, back and forth, over ``photo``
    (resized to at least the window), saved losslessly."""
    import cv2

    h, w = hw
    scale = max(h / photo.shape[0], (w + 64) / photo.shape[1], 1.0)
    if scale > 1.0:
        photo = cv2.resize(photo, (int(np.ceil(photo.shape[1] * scale)),
                                   int(np.ceil(photo.shape[0] * scale))))
    span = photo.shape[1] - w
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        x = (2 * t) % (2 * span)
        x = x if x <= span else 2 * span - x
        ok, data = cv2.imencode(".png", cv2.cvtColor(photo[:h, x:x + w], cv2.COLOR_RGB2BGR))
        (folder / f"{t:05d}.jpg").write_bytes(data.tobytes())


def save_weights(path: Path, model_name: str, image_size: int) -> None:
    """The random, present-biased checkpoint both sides load (Meta's format)."""
    _import_engine()
    import torch

    torch.manual_seed(0)
    model = _architecture(model_name, image_size)
    state = model.state_dict()
    state[SCORE_BIAS] += PRESENT_BIAS
    torch.save({"model": state}, path)


def _architecture(model_name: str, image_size: int):
    from hydra.utils import instantiate

    from infer_segment_anything_2.engine.model.loader import load_config
    from infer_segment_anything_2.engine.model.table import get_model_spec

    cfg = load_config(get_model_spec(model_name), True)
    cfg.model.image_size = image_size
    return instantiate(cfg.model, _recursive_=True).eval()


def worker(args) -> None:
    """Child: load one side, reset the high-water mark, annotate, report; masks to disk."""
    _import_engine()
    import torch

    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.set_num_threads(args.threads)
    folder = Path(args.clip)
    n = len(list(folder.glob("*.jpg")))
    mid = n // 2
    h, w = args.hw
    boxes = frame0_boxes(args.objects, h, w)
    out = open(args.save, "wb")

    def keep(t: int, masks: np.ndarray) -> None:  # (K, H, W) bool, ids 0..K-1 in order
        if t % args.stride == 0 or t == mid:
            out.write(np.int64(t).tobytes() + np.packbits(masks, axis=-1).tobytes())

    if args.side == "meta":
        from sam2.build_sam import build_sam2_video_predictor

        predictor = build_sam2_video_predictor(
            get_model_spec(args.model).config, args.weights, device="cpu",
            hydra_overrides_extra=[f"++model.image_size={args.image_size}"])
        predictor.fill_hole_area = 0
    else:
        from infer_segment_anything_2.engine.dataset.videos import VideoRef, open_video
        from infer_segment_anything_2.engine.model.device import CPU
        from infer_segment_anything_2.engine.video.offline import OfflinePropagation
        from infer_segment_anything_2.engine.video.offline_types import TrackPrompt

        model = _architecture(args.model, args.image_size)
        model.load_state_dict(torch.load(args.weights, weights_only=True)["model"])
    loaded = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    init_s, start = 0.0, time.perf_counter()
    with torch.inference_mode():
        if args.side == "meta":
            state = predictor.init_state(str(folder))
            init_s = time.perf_counter() - start
            for k, box in enumerate(boxes):
                predictor.add_new_points_or_box(state, mid, k + 1, box=box)
            for reverse in (False, True):
                for t, ids, logits in predictor.propagate_in_video(state, mid, reverse=reverse):
                    assert list(ids) == list(range(1, len(boxes) + 1))
                    keep(t, (logits[:, 0] > 0).numpy())
        else:
            frames = open_video(VideoRef("clip", str(folder), "frames"))
            prompts = {k: [TrackPrompt(mid, box=box)] for k, box in enumerate(boxes)}
            run = OfflinePropagation(model, CPU, frames, prompts, "both", fill_hole_area=0)
            for r in run.run():
                assert r.ids.tolist() == list(range(len(boxes)))
                keep(r.index, r.masks)
    wall = time.perf_counter() - start
    out.close()
    print(json.dumps(dict(wall_s=wall, init_s=init_s, frames=n, rss_loaded_mib=loaded / 1024,
                          peak_mib=_rss_kib("VmHWM") / 1024)))


def read_masks(path: Path, k: int, hw) -> dict:
    """frame -> (K, H, W) bool, the last record of each frame."""
    h, w = hw
    row = k * h * ((w + 7) // 8)
    data = path.read_bytes()
    out = {}
    for pos in range(0, len(data), 8 + row):
        t = int(np.frombuffer(data[pos:pos + 8], np.int64)[0])
        bits = np.frombuffer(data[pos + 8:pos + 8 + row], np.uint8).reshape(k, h, -1)
        out[t] = np.unpackbits(bits, axis=-1)[..., :w].astype(bool)
    return out


def compare(ours: dict, meta: dict) -> dict:
    assert ours.keys() == meta.keys(), "the sides kept different frames"
    a, b = np.stack([ours[t] for t in sorted(ours)]), np.stack([meta[t] for t in sorted(meta)])
    inter, union = (a & b).sum(axis=(-2, -1)), (a | b).sum(axis=(-2, -1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    same = (a == b).all(axis=(-2, -1))
    return dict(min_iou=float(iou.min()), identical=float(same.mean()),
                nonempty=float(a.any(axis=(-2, -1)).mean()), compared=int(a.shape[0]))


def _child(args, side: str, clip: Path, save: Path, count: int) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--clip", str(clip), "--save", str(save),
           "--weights", str(args.weights), "--model", args.model, "--image-size",
           str(args.image_size), "--window", args.window, "--threads", str(args.threads),
           "--objects", str(count), "--stride", str(args.stride)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{side} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[300, 2000])
    ap.add_argument("--objects", type=int, nargs="+", dest="counts", default=[1, 4, 16])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default="truck.jpg")
    ap.add_argument("--window", default="540x960", help="frame size HxW")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--meta-max-frames", type=int, default=300)
    ap.add_argument("--compare", type=int, default=50, help="frames compared per clip (about)")
    ap.add_argument("--json", default=None)
    for hidden in ("--side", "--clip", "--save", "--weights"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--stride", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        args.hw = tuple(int(v) for v in args.window.lower().split("x"))
        assert len(args.hw) == 2 and min(args.hw) > 0
    except (ValueError, AssertionError):
        ap.error(f"--window {args.window!r}: HxW, e.g. 540x960")
    if args.side:
        args.objects = args.counts[0]
        return worker(args)
    import cv2

    path = IMAGES / args.image
    if not path.is_file():
        print(f"skipped: {path} is absent (the developers' tree's ../shared/images)")
        return
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    tmp = Path(tempfile.mkdtemp(prefix="sam2-bench-annotate-video-"))
    args.weights = tmp / "present.pt"
    save_weights(args.weights, args.model, args.image_size)
    report = dict(model=args.model, image_size=args.image_size, window=args.window,
                  threads=args.threads, runs=[])
    print(f"{args.model} at {args.image_size}x{args.image_size} input (random weights, objects "
          f"scored present), {args.window} frames, {args.threads} threads; boxes on the middle "
          "frame, forward then backward")
    print("frames | objects | side | wall (init_state) | fps | fps x objects | peak RSS "
          "(growth) | min IoU vs Meta | identical")
    for n in args.frames:
        clip = tmp / f"clip{n}"
        make_clip(clip, n, photo, args.hw)
        args.stride = max(1, n // args.compare)
        for count in args.counts:
            sides = ("meta", "ours") if n <= args.meta_max_frames else ("ours",)
            run = {s: _child(args, s, clip, tmp / f"{s}.bin", count) for s in sides}
            if "meta" in run:
                run.update(compare(read_masks(tmp / "ours.bin", count, args.hw),
                                   read_masks(tmp / "meta.bin", count, args.hw)))
            for s in sides:
                r = run[s]
                r["fps"] = n / r["wall_s"]
                growth = r["peak_mib"] - r["rss_loaded_mib"]
                print(f"{n} | {count} | {s} | {r['wall_s']:.1f} s ({r['init_s']:.1f} s) | "
                      f"{r['fps']:.2f} | {r['fps'] * count:.2f} | {r['peak_mib']:.0f} MiB "
                      f"(+{growth:.0f}) | " + (f"{run['min_iou']:.4f} | {run['identical']:.3f}"
                                              if "meta" in run else "- | -"))
            if "meta" in run:
                run["fps_ours_over_meta"] = run["ours"]["fps"] / run["meta"]["fps"]
                print(f"{n} frames, {count} objects: fps ours / Meta = "
                      f"{run['fps_ours_over_meta']:.2f}; masks non-empty "
                      f"{run['nonempty']:.3f} of {run['compared']} frames x {count}")
            report["runs"].append(dict(frames=n, objects=count, **run))
    by = {}
    for r in report["runs"]:
        for s in ("meta", "ours"):
            if s in r:
                by.setdefault((s, r["objects"]), []).append(
                    (r["frames"], r[s]["peak_mib"] - r[s]["rss_loaded_mib"]))
    for (s, count), pts in sorted(by.items()):
        if len(pts) > 1:
            print(f"{s}, {count} objects: RSS growth by frames " +
                  ", ".join(f"{n}: {g:.0f} MiB" for n, g in pts))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
