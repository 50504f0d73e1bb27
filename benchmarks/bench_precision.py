"""bfloat16 against float32 on the CPU, ours against Meta under the same autocast, in one run.

Whether ``precision=auto`` may choose bfloat16 on a CPU with native bfloat16 (AVX512-BF16, AMX):
issue 29 asks for object scores within 0.02 of Meta's and mask IoU above 0.98 on the test clip,
ours and Meta's both under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Random weights of the
real architecture (seed 0, as ``tests/conftest.py``'s ``random_checkpoint``), the same on both
sides (Meta's builders load them from a saved checkpoint).

* ``video``: the task's video mode's tracker (``engine.video.tracker.VideoTracker``, shortcuts
  on) against Meta's ``SAM2VideoPredictor`` on the test clip (``tests/clips.py``, 120x160, holes
  not filled on either side), the scenario of ``tests/video/test_tracker.py``'s parity test: a
  box on the disc on frame 0 (object 1), a point on the square on frame 1 (object 2), a
  correction of object 1 (a foreground and a background point) on frame 3, tracking to the end.
  Per frame and object: the object score (logit) and the mask (the low-resolution logits
  upsampled to the frame, > 0), compared ours-bf16 / Meta-bf16, ours-bf16 / ours-f32 and
  Meta-bf16 / Meta-f32. Time per frame: ours float32 and bfloat16 alternate frame by frame in one
  process, so the ratio is measured under the same load.
* ``prompt``: ``engine.image.predictor.PromptPredictor`` against ``SAM2ImagePredictor`` on a
  photograph (``../shared/images``, else the clip's frame 0): predicted IoU and masks for a few
  prompts; time of the encoding and of a predict, float32 and bfloat16 alternating.
* ``automatic``: ``engine.automatic.generator.generate`` in bfloat16 against float32 on the
  photograph at 480 pixels wide, the IoU and stability filters at 0 (random weights pass few
  masks through Meta's), with NMS at Meta's 0.7 and with every candidate kept: mask count,
  masks matched by IoU (greedy), their predicted IoU; the time of a run, alternating.

Usage: .venv/bin/python benchmarks/bench_precision.py [--image-size 1024] [--frames 8]
       [--modes video prompt automatic] [--points-per-side 16] [--threads 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES, _import_engine  # noqa: E402
from bench_video import build  # noqa: E402
from provenance import provenance  # noqa: E402

MODEL = "sam2.1_hiera_tiny"
BOX = np.array([20, 35, 70, 85], np.float32)  # around the disc on frame 0 (tests/video)
SQUARE_POINT = np.array([[130, 25]], np.float32)  # on the square, frame 1
FIX_FRAME = 3
FIX_POINTS, FIX_LABELS = np.array([[75, 60], [30, 30]], np.float32), np.array([1, 0], np.int32)
PRECISIONS = ("float32", "bfloat16")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def frame_masks(logits, hw) -> np.ndarray:
    """``(N, 1, h, w)`` low-resolution logits -> ``(N, H, W)`` bool masks, as the tracker's."""
    import torch.nn.functional as F

    return (F.interpolate(logits.float(), size=hw, mode="bilinear",
                          align_corners=False)[:, 0] > 0).numpy()


def choice_of(precision: str):
    import torch

    from infer_segment_anything_2.engine.model.device import DeviceChoice

    return DeviceChoice.make(torch.device("cpu"), precision)


def meta_video(checkpoint: Path, folder: Path, size: int, precision: str, n: int) -> dict:
    """Meta's scores and masks ``{(obj, t): (score, mask)}`` for the scenario."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from clips import H, W
    from infer_segment_anything_2.engine.model.table import get_model_spec

    predictor = build_sam2_video_predictor(get_model_spec(MODEL).config, str(checkpoint),
                                           device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={size}"])
    predictor.fill_hole_area = 0
    predictor.add_all_frames_to_correct_as_cond = True
    with torch.inference_mode(), choice_of(precision).compute():
        state = predictor.init_state(str(folder))
        predictor.add_new_points_or_box(state, 0, 1, box=BOX)
        for _ in predictor.propagate_in_video(state, 0, max_frame_num_to_track=0):
            pass
        predictor.add_new_points_or_box(state, 1, 2, points=SQUARE_POINT,
                                        labels=np.array([1], np.int32))
        for _ in predictor.propagate_in_video(state, 1, max_frame_num_to_track=FIX_FRAME - 1):
            pass
        predictor.add_new_points_or_box(state, FIX_FRAME, 1, points=FIX_POINTS,
                                        labels=FIX_LABELS)
        for _ in predictor.propagate_in_video(state, FIX_FRAME):
            pass
    out = {}
    for obj in (0, 1):
        per = state["output_dict_per_obj"][obj]
        for t in range(n):
            o = per["cond_frame_outputs"].get(t) or per["non_cond_frame_outputs"].get(t)
            if o is not None:
                out[obj, t] = (float(o["object_score_logits"]),
                               frame_masks(o["pred_masks"], (H, W))[0])
    return out


def ours_video(model, frames: list) -> tuple:
    """Ours in both precisions, alternating frame by frame: ``({precision: {(obj, t): (score,
    mask)}}, {precision: [seconds per frame]})``."""
    import torch

    from clips import H, W
    from infer_segment_anything_2.engine.video.tracker import VideoTracker

    trackers = {p: VideoTracker(model, choice_of(p), num_frames=len(frames), fill_hole_area=0)
                for p in PRECISIONS}
    out = {p: {} for p in PRECISIONS}
    times = {p: [] for p in PRECISIONS}
    for t, frame in enumerate(frames):
        prompts = {}
        if t == 0:
            prompts[0] = (BOX.reshape(2, 2), np.array([2, 3], np.int32))
        if t == 1:
            prompts[1] = (SQUARE_POINT, np.array([1], np.int32))
        if t == FIX_FRAME:
            prompts[0] = (FIX_POINTS, FIX_LABELS)
        for p in (PRECISIONS if t % 2 == 0 else PRECISIONS[::-1]):  # neither always first
            start = time.perf_counter()
            with torch.inference_mode():
                result = trackers[p].track(frame, prompts)
            times[p].append(time.perf_counter() - start)
            masks = result.masks(H, W)
            for k, obj in enumerate(result.ids.tolist()):
                out[p][obj, t] = (float(result.object_scores[k]), masks[k])
    return out, times


def compare(a: dict, b: dict) -> list:
    """Rows ``(obj, t, score_a, score_b, |diff|, mask IoU, mask area a)`` over a's keys."""
    return [(obj, t, a[obj, t][0], b[obj, t][0], abs(a[obj, t][0] - b[obj, t][0]),
             iou(a[obj, t][1], b[obj, t][1]), int(a[obj, t][1].sum()))
            for obj, t in sorted(a, key=lambda k: (k[1], k[0]))]


def run_video(args, checkpoint: Path, report: dict) -> None:
    from clips import H, W, saved_clip

    folder = Path(tempfile.mkdtemp(prefix="sam2-bench-precision-"))
    frames = saved_clip(folder, args.frames)
    model = build(MODEL, args.image_size)
    ours, times = ours_video(model, frames)
    meta = {p: meta_video(checkpoint, folder, args.image_size, p, args.frames) for p in PRECISIONS}
    pairs = {"ours-bf16 vs Meta-bf16": (ours["bfloat16"], meta["bfloat16"]),
             "ours-bf16 vs ours-f32": (ours["bfloat16"], ours["float32"]),
             "Meta-bf16 vs Meta-f32": (meta["bfloat16"], meta["float32"]),
             "ours-f32 vs Meta-f32": (ours["float32"], meta["float32"])}
    print(f"\nvideo: the test clip ({args.frames} frames of {W}x{H}) at {args.image_size} input, "
          "2 objects (object 2 from frame 1), a correction on frame 3")
    report["video"] = {}
    for name, (a, b) in pairs.items():
        rows = compare(a, b)
        report["video"][name] = rows
        print(f"{name}: obj | frame | score | reference | |diff| | mask IoU | mask pixels")
        for obj, t, sa, sb, d, m, area in rows:
            print(f"  {obj + 1} | {t} | {sa:.4f} | {sb:.4f} | {d:.4f} | {m:.4f} | {area}")
        print(f"  max |score diff| {max(r[4] for r in rows):.4f}, min mask IoU "
              f"{min(r[5] for r in rows):.4f}")
    ratio = [f / b for f, b in zip(times["float32"][1:], times["bfloat16"][1:])]
    report["video_times"] = times
    print("time per frame (frames >= 1, median): float32 "
          f"{statistics.median(times['float32'][1:]):.2f} s, bfloat16 "
          f"{statistics.median(times['bfloat16'][1:]):.2f} s; float32 / bfloat16 per frame: "
          f"median {statistics.median(ratio):.2f} (min {min(ratio):.2f}, max {max(ratio):.2f})")


def test_image() -> np.ndarray:
    import cv2

    from clips import clip_frame

    path = IMAGES / "truck.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) if path.is_file() \
        else clip_frame(0)


def timed(fn) -> tuple:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run_prompt(args, checkpoint: Path, report: dict) -> None:
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from infer_segment_anything_2.engine.image.predictor import PromptPredictor
    from infer_segment_anything_2.engine.image.prompts import Prompt
    from infer_segment_anything_2.engine.model.table import get_model_spec

    image = test_image()
    h, w = image.shape[:2]
    prompts = {
        "point": dict(points=np.array([[w * 0.28, h * 0.31]], np.float32),
                      labels=np.array([1], np.int32)),
        "points fg+bg": dict(points=np.array([[w * 0.6, h * 0.5], [w * 0.2, h * 0.8]], np.float32),
                             labels=np.array([1, 0], np.int32)),
        "box": dict(boxes=np.array([[w * 0.1, h * 0.2, w * 0.7, h * 0.9]], np.float32)),
    }
    model = build(MODEL, args.image_size)
    size = args.image_size
    meta = SAM2ImagePredictor(build_sam2(get_model_spec(MODEL).config, str(checkpoint),
                                         device="cpu",
                                         hydra_overrides_extra=[f"++model.image_size={size}"]))
    meta._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8),
                           (size // 16, size // 16)]  # Meta's are written for 1024
    results, encode_s, predict_s = {}, {p: [] for p in PRECISIONS}, {p: [] for p in PRECISIONS}
    for rep in range(args.repeats):
        for p in (PRECISIONS if rep % 2 == 0 else PRECISIONS[::-1]):
            ours = PromptPredictor(model)
            _, s = timed(lambda: ours.set_image(image, device_choice=choice_of(p)))
            encode_s[p].append(s)
            for name, kw in prompts.items():
                for multimask in (False, True):
                    seg, s = timed(lambda: ours.predict(Prompt(**kw), multimask=multimask))
                    predict_s[p].append(s)
                    results["ours", p, name, multimask] = seg.scores, seg.masks
    for p in PRECISIONS:
        with torch.inference_mode(), choice_of(p).compute():
            meta.set_image(image)
            for name, kw in prompts.items():
                for multimask in (False, True):
                    masks, scores, _ = meta.predict(kw.get("points"), kw.get("labels"),
                                                    box=kw.get("boxes"), multimask_output=multimask)
                    order = np.argsort(-scores, kind="stable")  # ours: best first
                    results["meta", p, name, multimask] = scores[order], masks[order] > 0
    print(f"\nprompt mode: {w}x{h} image at {args.image_size} input")
    report["prompt"] = []
    for a, b in ((("ours", "bfloat16"), ("meta", "bfloat16")),
                 (("ours", "bfloat16"), ("ours", "float32")),
                 (("meta", "bfloat16"), ("meta", "float32"))):
        print(f"{'-'.join(a)} vs {'-'.join(b)}: prompt | multimask | max |IoU prediction diff| | "
              "min mask IoU | mask pixels")
        for name in prompts:
            for multimask in (False, True):
                sa, ma = results[a + (name, multimask)]
                sb, mb = results[b + (name, multimask)]
                d = float(np.abs(sa - sb).max())
                m = min(iou(x, y) for x, y in zip(ma, mb))
                report["prompt"].append(("-".join(a), "-".join(b), name, multimask, d, m))
                print(f"  {name} | {multimask} | {d:.4f} | {m:.4f} | "
                      f"{[int(x.sum()) for x in ma]}")
    report["prompt_times"] = dict(encode=encode_s, predict=predict_s)
    print("encoding, median: float32 {:.2f} s, bfloat16 {:.2f} s (float32 / bfloat16 {:.2f}); "
          "predict: float32 {:.3f} s, bfloat16 {:.3f} s ({:.2f})".format(
              *(statistics.median(encode_s[p]) for p in PRECISIONS),
              statistics.median(encode_s["float32"]) / statistics.median(encode_s["bfloat16"]),
              *(statistics.median(predict_s[p]) for p in PRECISIONS),
              statistics.median(predict_s["float32"]) / statistics.median(predict_s["bfloat16"])))


def matched(ref, low) -> tuple:
    """Greedy by IoU, each of ``ref``'s masks its own of ``low``'s: ``(IoUs, |score diffs|)``."""
    import torch

    a = torch.from_numpy(ref.masks.reshape(len(ref), -1)).float()
    b = torch.from_numpy(low.masks.reshape(len(low), -1)).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    ious = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)).numpy()
    free, out, diffs = list(range(len(low))), [], []
    for i in range(len(ref)):
        if not free:
            break
        best = int(np.argmax(ious[i, free]))
        out.append(float(ious[i, free[best]]))
        diffs.append(abs(float(ref.scores[i]) - float(low.scores[free.pop(best)])))
    return np.array(out), np.array(diffs)


def run_automatic(args, report: dict) -> None:
    import cv2

    from infer_segment_anything_2.engine.automatic.generator import AutomaticParams, generate

    photo = test_image()
    image = cv2.resize(photo, (480, 480 * photo.shape[0] // photo.shape[1]),
                       interpolation=cv2.INTER_AREA)  # masks at this size: cheap to compare
    model = build(MODEL, args.image_size)
    n = args.points_per_side
    print(f"\nautomatic mode: {image.shape[1]}x{image.shape[0]} image at {args.image_size} "
          f"input, {n}x{n} points, the IoU and stability filters at 0")
    report["automatic"] = {}
    for name, nms in (("NMS 0.7", 0.7), ("every candidate kept", 1.0)):
        params = AutomaticParams(points_per_side=n, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=nms)
        segs, times = {}, {p: [] for p in PRECISIONS}
        for rep in range(args.repeats):
            for p in (PRECISIONS if rep % 2 == 0 else PRECISIONS[::-1]):
                segs[p], s = timed(lambda: generate(model, image, params,
                                                    device_choice=choice_of(p)))
                times[p].append(s)
        ious, diffs = matched(segs["float32"], segs["bfloat16"])
        f32, bf16 = (statistics.median(times[p]) for p in PRECISIONS)
        report["automatic"][name] = dict(count_f32=len(segs["float32"]),
                                         count_bf16=len(segs["bfloat16"]),
                                         matched_iou=ious.tolist(), score_diff=diffs.tolist(),
                                         times=times)
        print(f"{name}: masks float32 {len(segs['float32'])}, bfloat16 {len(segs['bfloat16'])}; "
              f"bfloat16 / float32 matched IoU median {np.median(ious):.4f}, min "
              f"{ious.min():.4f}, {(ious > 0.98).mean():.0%} above 0.98; |IoU prediction diff| "
              f"max {diffs.max():.4f}; time per run, median: float32 {f32:.2f} s, bfloat16 "
              f"{bf16:.2f} s (float32 / bfloat16 {f32 / bf16:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", nargs="+", default=["video", "prompt", "automatic"],
                    choices=["video", "prompt", "automatic"])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="alternations (image modes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.frames <= FIX_FRAME:
        ap.error(f"--frames: more than {FIX_FRAME}")
    _import_engine()
    import torch

    from infer_segment_anything_2.engine.model.device import native_cpu_bfloat16

    torch.set_num_threads(args.threads)
    report = {"source": provenance(), "image_size": args.image_size, "threads": args.threads,
              "native_bfloat16": native_cpu_bfloat16(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    print(f"{MODEL}, random weights (seed 0), {args.threads} threads; CPU "
          f"{report['source']['machine'].get('cpu')}, capability {report['cpu_capability']}, "
          f"native bfloat16: {report['native_bfloat16']}")
    checkpoint = Path(tempfile.mkdtemp(prefix="sam2-bench-ckpt-")) / f"{MODEL}.pt"
    torch.save({"model": build(MODEL, 1024).state_dict()}, checkpoint)  # sizes share weights
    if "video" in args.modes:
        run_video(args, checkpoint, report)
    if "prompt" in args.modes:
        run_prompt(args, checkpoint, report)
    if "automatic" in args.modes:
        run_automatic(args, report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
