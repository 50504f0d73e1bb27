"""GPU check: parity with Meta and speed on a CUDA machine, one command, one table.

For each model (random weights, seed 0) in the plugin's automatic precision (bfloat16 from
compute capability 8), on the engine alone (no Ikomia needed):

* prompt mode: our predictor against Meta's ``SAM2ImagePredictor`` on the same model object,
  both under the same autocast: largest predicted-IoU difference and smallest mask IoU over a few
  prompts; cold run (checkpoint load + encoding + one prompt), re-prompt on an image already set
  (median), ours against Meta's ``predict``;
* automatic mode, 32x32 points on the image, ours (``engine.automatic.generator.generate``) against Meta's
  ``SAM2AutomaticMaskGenerator.generate`` as its users call it (binary masks out), both encoding
  the image, in three regimes of the IoU filter:
  ``defaults`` (random weights pass nothing at 0.8: a bound), ``half pass`` (``iou_thresh`` at the
  median of the model's own predicted IoUs) and ``most pass`` (at their 10% quantile, stability
  filter off: what trained weights do, and more); time (median) and peak VRAM
  (``torch.cuda.max_memory_allocated``) of each, masks kept on each side. Meta's run is stopped
  between two of its batches once past ``--meta-limit`` seconds (60): its time is then a lower
  bound, printed ``> ...`` (the 10%-quantile regime, where it spends minutes deep-copying the
  run-length encodings of thousands of noisy random-weight masks), so that the whole check
  fits one 10-minute command;
* video tracking, ours (``engine.video.tracker``) against Meta's ``SAM2VideoPredictor`` under the same
  autocast on windows panning across the image (12 frames, a box on frame 0): object scores,
  mask IoU, time per frame (Meta's includes its ``init_state``, which loads the frames), VRAM;
* automatic parity on the same GPU path with the stand-in decoder of ``tests/standin.py`` (known
  discs, so the masks can be compared): counts and smallest matched mask IoU, with and without
  crops, and their times.

Rows: the large model first, then the tiny one, then the video rows of both.
The table is printed and written, with the raw numbers as JSON, to ``--out`` (default ``$OUT``
when set, else ``gpu_check_out``). On a CUDA machine without the ``sam2`` module and its pure
wheels, prepare them first (docs/precision-and-gpu.md, "The GPU check"). ``--device cpu
--quick`` runs the same checks small on a CPU (the test suite does, to keep this script working).

Usage: python3 benchmarks/gpu_check.py [--image .gpu/truck.jpg] [--models M ...]
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES, _import_engine  # noqa: E402
from bench_video import frame0_boxes  # noqa: E402

MODELS = ("sam2.1_hiera_large", "sam2.1_hiera_tiny")  # the rows: large first, then tiny


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=None, help="default: .gpu/truck.jpg, else "
                    "../shared/images/truck.jpg, else a synthetic picture")
    ap.add_argument("--models", nargs="+", default=None,
                    help="default: large then tiny (--quick: tiny)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="automatic runs timed (median)")
    ap.add_argument("--meta-limit", type=float, default=None,
                    help="seconds after which Meta's automatic run is stopped (between two of "
                         "its batches) and its time reported as a bound (default 60; --quick: "
                         "no limit)")
    ap.add_argument("--trace-every", type=float, default=120,
                    help="seconds between the stack traces written to stderr")
    ap.add_argument("--quick", action="store_true", help="small: tiny model, 8x8 points, "
                    "small image, one regime, no warm-up (for a CPU)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    args = ap.parse_args(argv)
    if args.quick:
        args.models = args.models or ["sam2.1_hiera_tiny"]
        args.points_per_side, args.repeats = 8, 1
    elif args.meta_limit is None:
        args.meta_limit = 60.0
    args.models = args.models or list(MODELS)
    return args


def _image(args):
    import cv2

    repo = Path(__file__).resolve().parents[1]
    for path in ([args.image] if args.image else [repo / ".gpu" / "truck.jpg",
                                                   IMAGES / "truck.jpg"]):
        if path and Path(path).is_file():
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            name = Path(path).name
            break
    else:
        rng = np.random.default_rng(1)
        image = np.zeros((600, 900, 3), np.uint8)
        image[:] = np.linspace(40, 200, 900, dtype=np.uint8)[None, :, None]
        for _ in range(12):
            x, y, r = (int(v) for v in rng.integers([0, 0, 20], [900, 600, 120]))
            cv2.circle(image, (x, y), r, tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        name = "synthetic"
    if args.quick:
        image = cv2.resize(image, (image.shape[1] // 4, image.shape[0] // 4),
                           interpolation=cv2.INTER_AREA)
    return image, name


class Rows(list):
    """The table's rows, each printed (with the time since the start) and saved as it comes,
    so that a run cut short by the machine's time limit still leaves what it measured."""

    def __init__(self, out: Path, raw: dict):
        super().__init__()
        self.out, self.raw, self.start = out, raw, time.perf_counter()

    def append(self, row):
        super().append(row)
        print(f"[{time.perf_counter() - self.start:6.1f} s] " + " | ".join(map(str, row)),
              flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps({"results": self.raw}, indent=1))

    def __iadd__(self, rows):
        for row in rows:
            self.append(row)
        return self


class Clock:
    """Wall time of GPU work: synchronises before reading the clock."""

    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self, fn, repeats=1, warmup=0):
        for _ in range(warmup):
            fn()
        times, out = [], None
        for _ in range(repeats):
            self.sync()
            start = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out


def _peak(device, fn):
    """``fn()`` and the peak GPU memory it allocated, in MiB (None on a CPU)."""
    import torch

    if device.type != "cuda":
        return fn(), None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.max_memory_allocated() / 2 ** 20


def _decoder_memory_row(tag, model, emb, dtype, device, sizes=(64, 256)):
    """A prompt's share of a decoder call's peak GPU memory (the growth from ``sizes[0]`` to
    ``sizes[1]`` prompts, after a first call that makes what the model keeps) against
    ``engine.automatic.on_device.bytes_per_prompt``, the model the memory budget uses."""
    import torch

    from infer_segment_anything_2.engine.automatic.on_device import bytes_per_prompt
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.decoder.prompts import point_embeddings

    label = "decoder memory per prompt: measured / the budget's model"
    try:
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats, dtype=dtype)
        peaks = []
        for bsz in (sizes[0],) + tuple(sizes):
            with torch.no_grad():
                sparse = point_embeddings(model.sam_prompt_encoder,
                                          torch.rand(bsz, 2, device=device) * model.image_size)
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                out = fast(sparse)
                torch.cuda.synchronize()
                peaks.append(torch.cuda.max_memory_allocated() - base)
                del out, sparse
        measured = (peaks[2] - peaks[1]) / (sizes[1] - sizes[0]) / 2 ** 20
        expected = bytes_per_prompt(emb.image_embed, dtype) / 2 ** 20
        return (tag, label, f"{measured:.1f} MiB", f"{expected:.1f} MiB",
                f"{measured / expected:.2f}x the model")
    except Exception as exc:  # a row, not a stop: the check goes on
        return (tag, label, f"failed: {type(exc).__name__}: {exc}"[:80], "", "")


def _match(ours, ref, device=None):
    """Smallest IoU of Meta's masks with their best match among ours (1.0 when none).

    Intersections as one matrix product on ``device`` (pixel counts are exact in float32 up to
    2**24 pixels per mask; 1800x1200 is 2.2e6): a loop of boolean ANDs over full-size masks took
    90 s for 147 masks on the GPU machine's CPU."""
    import torch

    if len(ref) == 0 or len(ours) == 0:
        return 1.0 if len(ref) == len(ours) else 0.0
    a = torch.from_numpy(ours.masks.reshape(len(ours), -1)).to(device, torch.float32)
    b = torch.from_numpy(ref.masks.reshape(len(ref), -1)).to(device, torch.float32)
    inter = b @ a.T  # (Meta's, ours)
    union = b.sum(1, keepdim=True) + a.sum(1)[None] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    return float(iou.max(dim=1).values.min())


class _OverTime(Exception):
    """Meta's run passed its time limit."""


def _meta_generator(model, params, choice, limit_s=None):
    """Meta's generator as its users call it (default output: binary masks), timed bare;
    returns a function giving its records, or None when it ran past ``limit_s`` seconds (it is
    then stopped before its next batch of points: its time is a lower bound)."""
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    kwargs = {k: v for k, v in params.__dict__.items() if k != "min_mask_region_area"}
    generator = SAM2AutomaticMaskGenerator(model, **kwargs)
    process_batch = generator._process_batch

    def run(image):
        start = time.perf_counter()

        def limited(*args, **kwargs):
            if limit_s is not None and time.perf_counter() - start > limit_s:
                raise _OverTime
            return process_batch(*args, **kwargs)
        generator._process_batch = limited
        try:
            with torch.no_grad(), choice.compute():
                return generator.generate(image)
        except _OverTime:
            return None
    return run


def _time_meta(clock, device, run, image, repeats, warm):
    """Median time, records and peak VRAM of Meta's ``run``. Its first run is the warm-up (or
    the timed run without warm-up and repeats); a run past the time limit is not repeated
    (records None: its time is a lower bound)."""
    t, (records, vram) = clock(lambda: _peak(device, lambda: run(image)))
    if records is None or (repeats <= 1 and warm == 0):
        return t, records, vram
    t, (records, vram) = clock(lambda: _peak(device, lambda: run(image)), repeats,
                               max(warm - 1, 0))
    return t, records, vram


class _Masks:
    """Meta's records as the parallel arrays :func:`_match` compares."""

    def __init__(self, records, hw):
        self.masks = (np.stack([r["segmentation"] for r in records]) if records
                      else np.zeros((0, *hw), bool))

    def __len__(self):
        return len(self.masks)


def check_model(name, args, image, device, rows, raw):
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    import standin
    from infer_segment_anything_2.engine.automatic.generator import AutomaticParams, generate
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.model.device import DeviceChoice
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec
    from infer_segment_anything_2.engine.image.predictor import PromptPredictor
    from infer_segment_anything_2.engine.image.prompts import make_prompt

    clock = Clock(device)
    spec = get_model_spec(name)
    torch.manual_seed(0)
    ckpt = Path(tempfile.mkdtemp(prefix="sam2-gpu-check-")) / spec.filename
    torch.save({"model": build_model(spec, None).state_dict()}, ckpt)
    choice = DeviceChoice.make(device, args.precision)
    tag = f"{name} ({str(choice.dtype).replace('torch.', '')})"
    h, w = image.shape[:2]
    pts = [[w * 0.28, h * 0.31], [w * 0.6, h * 0.5], [w * 0.45, h * 0.7]]

    # prompt mode: cold run, parity, re-prompt
    def cold():
        model = build_model(spec, ckpt, device)
        predictor = PromptPredictor(model)
        predictor.set_image(image, device_choice=choice)
        return model, predictor, predictor.predict(make_prompt([pts[0]], [1], []))
    cold_s, (model, ours, _) = clock(cold)
    meta = SAM2ImagePredictor(model)
    with torch.no_grad(), choice.compute():
        meta.set_image(image)
    prompts = [([pts[0]], [1], [], False), (pts[:2], [1, 0], [], False),
               ([], [], [[w * 0.1, h * 0.2, w * 0.7, h * 0.9]], False),
               ([pts[2]], [1], [[w * 0.3, h * 0.4, w * 0.6, h * 0.95]], True)]
    score_diff, mask_iou = 0.0, 1.0
    for points, labels, boxes, multi in prompts:
        seg = ours.predict(make_prompt(points, labels, boxes), multi)
        with torch.no_grad(), choice.compute():
            masks, scores, _ = meta.predict(np.array(points) if points else None,
                                            np.array(labels) if labels else None,
                                            box=np.array(boxes[0]) if boxes else None,
                                            multimask_output=multi)
        order = np.argsort(-scores, kind="stable")
        score_diff = max(score_diff, float(np.abs(seg.scores - scores[order]).max()))
        for mine, theirs in zip(seg.masks, masks[order] > 0):
            union = (mine | theirs).sum()
            mask_iou = min(mask_iou, float((mine & theirs).sum() / union) if union else 1.0)
    turn = iter(range(10 ** 6))
    ours_s, _ = clock(lambda: ours.predict(make_prompt([pts[next(turn) % 3]], [1], [])),
                      repeats=20, warmup=3)

    def meta_predict():
        with torch.no_grad(), choice.compute():
            return meta.predict(np.array([pts[next(turn) % 3]]), np.array([1]),
                                multimask_output=False)
    meta_s, _ = clock(meta_predict, repeats=20, warmup=3)
    rows += [(tag, "prompt parity: max |score diff|, min mask IoU", f"{score_diff:.4f}",
              f"{mask_iou:.3f}", ""),
             (tag, "cold run: load + encode + prompt", f"{cold_s * 1e3:.0f} ms", "", ""),
             (tag, "re-prompt, image set (median of 20)", f"{ours_s * 1e3:.1f} ms",
              f"{meta_s * 1e3:.1f} ms", f"{ours_s / meta_s:.2f}x Meta")]
    raw[tag] = dict(cold_s=cold_s, reprompt_s=ours_s, meta_predict_s=meta_s,
                    score_diff=score_diff, mask_iou=mask_iou)

    # automatic mode, random weights: the IoU filter's regimes from the model's own IoUs
    grid = ours.embedding
    fast = PointDecoder(model, grid.image_embed, grid.high_res_feats, dtype=choice.dtype)
    n = args.points_per_side
    xy = (torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="xy"), -1)
          .reshape(-1, 1, 2).float() + 0.5) / n * model.image_size
    with torch.no_grad(), choice.compute():
        sparse, _ = model.sam_prompt_encoder(points=(xy.to(device), torch.ones(
            len(xy), 1, dtype=torch.int, device=device)), boxes=None, masks=None)
        q, tokens, toks = fast.transformer(sparse)
        ious = fast.iou(q, tokens, toks).flatten().float().cpu().numpy()
    del fast, q, tokens, toks
    if device.type == "cuda":
        rows.append(_decoder_memory_row(tag, model, grid, choice.dtype, device))
    regimes = {"defaults": {}, "half pass": dict(pred_iou_thresh=float(np.quantile(ious, 0.5))),
               "most pass": dict(pred_iou_thresh=float(np.quantile(ious, 0.1)),
                                 stability_score_thresh=0.0)}
    if args.quick:
        regimes = {"most pass": regimes["most pass"]}
    warm = 0 if args.quick else 1
    for regime, extra in regimes.items():
        params = AutomaticParams(points_per_side=n, **extra)
        print(f"  {tag} automatic {regime} ...", flush=True)
        with torch.no_grad():
            t_ours, (seg, vram_ours) = clock(lambda: _peak(device, lambda: generate(
                model, image, params, device_choice=choice)), args.repeats, warm)
            meta_run = _meta_generator(model, params, choice, args.meta_limit)
            t_meta, records, vram_meta = _time_meta(clock, device, meta_run, image,
                                                    args.repeats, warm)
        bound = records is None  # Meta stopped at its time limit: its time is a lower bound
        ref = None if bound else _Masks(records, image.shape[:2])
        vram = (f", VRAM {vram_ours:.0f} / {vram_meta:.0f} MiB" if vram_ours is not None
                else "")
        meta_masks = "stopped" if bound else len(ref)
        rows.append((tag, f"automatic {n}x{n}, {regime}: masks {len(seg)} / {meta_masks}{vram}",
                     f"{t_ours * 1e3:.0f} ms", f"{'> ' if bound else ''}{t_meta * 1e3:.0f} ms",
                     f"{'> ' if bound else ''}{t_meta / t_ours:.1f}x faster"))
        raw[f"{tag} automatic {regime}"] = dict(
            params=extra, ours_s=t_ours, meta_s=t_meta, meta_time_is_bound=bound,
            masks=len(seg), meta_masks=None if bound else len(ref), vram_mib=vram_ours,
            meta_vram_mib=vram_meta, min_mask_iou=None if bound else _match(seg, ref, device))
    ours = meta = model = None  # free the GPU memory before the stand-in runs
    torch.cuda.empty_cache() if device.type == "cuda" else None

    # automatic parity with the stand-in decoder (same masks expected)
    model = build_model(spec, ckpt, device)
    standin.install(model, image_encoder=args.quick)
    for crops in (0, 1):
        params = AutomaticParams(points_per_side=n if not crops else max(4, n // 4),
                                 crop_n_layers=crops)
        with torch.no_grad():
            t_ours, seg = clock(lambda: generate(model, image, params, device_choice=choice),
                                args.repeats, warm)
            meta_run = _meta_generator(model, params, choice)
            t_meta, records = clock(lambda: meta_run(image), args.repeats, warm)
            ref = _Masks(records, image.shape[:2])
        least = _match(seg, ref, device)
        rows.append((tag, f"stand-in parity, {params.points_per_side}x{params.points_per_side}"
                     f"{', crops' if crops else ''}: masks {len(seg)} / {len(ref)}, min IoU "
                     f"{least:.3f}", f"{t_ours * 1e3:.0f} ms", f"{t_meta * 1e3:.0f} ms",
                     f"{t_meta / t_ours:.1f}x faster"))
        raw[f"{tag} stand-in crops={crops}"] = dict(ours_s=t_ours, meta_s=t_meta,
                                                    masks=len(seg), meta_masks=len(ref),
                                                    min_mask_iou=least)
    return spec, ckpt, choice, tag


def check_video(spec, ckpt, args, image, device, choice, tag, rows, raw, objects=1) -> None:
    """Video tracking, ours (``engine.video.tracker``, objects batched) against Meta's
    ``SAM2VideoPredictor`` (one object at a time) under the same autocast: ``objects`` boxes on
    frame 0 of windows panning across the image (JPEG for Meta's loader, read back for ours);
    object scores, mask IoU, time per frame and peak VRAM."""
    import torch
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.video.tracker import VideoTracker

    n = 3 if args.quick else 12
    h, w = image.shape[0] * 3 // 4, image.shape[1] * 3 // 4
    folder = Path(tempfile.mkdtemp(prefix="sam2-gpu-video-"))
    frames = []
    for t in range(n):
        x = (image.shape[1] - w) * t // max(n - 1, 1)
        Image.fromarray(image[:h, x:x + w]).save(folder / f"{t:05d}.jpg", quality=95)
        frames.append(np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")))
    boxes = frame0_boxes(objects, h, w)
    clock = Clock(device)
    predictor = build_sam2_video_predictor(spec.config, str(ckpt), device=str(device))
    predictor.fill_hole_area = 0

    def meta_run():
        with torch.inference_mode(), choice.compute():
            state = predictor.init_state(str(folder))
            for k, box in enumerate(boxes):
                predictor.add_new_points_or_box(state, 0, k + 1, box=box)
            masks = [(m[:, 0] > 0).cpu().numpy() for _, _, m in
                     predictor.propagate_in_video(state)]
        scores = []
        for k in range(objects):
            outs = state["output_dict_per_obj"][k]
            scores += [float((outs["cond_frame_outputs"].get(t) or
                              outs["non_cond_frame_outputs"][t])["object_score_logits"].float()
                             .reshape(-1)[0]) for t in range(n)]
        return scores, masks
    t_meta, ((ref_scores, ref_masks), vram_meta) = clock(lambda: _peak(device, meta_run))
    predictor = None  # its GPU memory freed before ours runs
    model = build_model(spec, ckpt, device)

    def ours_run():
        tracker = VideoTracker(model, choice, num_frames=n, fill_hole_area=0)
        prompts = {k: (b.reshape(2, 2), np.array([2, 3], np.int32)) for k, b in enumerate(boxes)}
        results = [tracker.track(f, prompts if t == 0 else {}) for t, f in enumerate(frames)]
        return ([float(r.object_scores[k]) for k in range(objects) for r in results],
                [r.masks(h, w) for r in results])
    t_ours, ((scores, masks), vram_ours) = clock(lambda: _peak(device, ours_run))
    score_diff = max(abs(a - b) for a, b in zip(scores, ref_scores))
    ious = [float((a & b).sum() / max((a | b).sum(), 1)) for fa, fb in zip(masks, ref_masks)
            for a, b in zip(fa, fb)]
    vram = f", VRAM {vram_ours:.0f} / {vram_meta:.0f} MiB" if vram_ours is not None else ""
    rows.append((tag, f"video, {objects} object(s), {n} frames {w}x{h}: max |object score diff| "
                 f"{score_diff:.4f}, "
                 f"min mask IoU {min(ious):.3f}{vram}", f"{t_ours / n * 1e3:.0f} ms/frame",
                 f"{t_meta / n * 1e3:.0f} ms/frame", f"{t_meta / t_ours:.2f}x Meta's speed"))
    raw[f"{tag} video" + (f" {objects} objects" if objects > 1 else "")] = dict(
        frames=n, objects=objects, ours_s=t_ours, meta_s=t_meta, score_diff=score_diff,
                               min_mask_iou=min(ious), vram_mib=vram_ours,
                               meta_vram_mib=vram_meta)


def main(argv=None) -> int:
    args = _args(argv)
    _import_engine()
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: use --device cpu --quick for a small run on the CPU")
        return 2
    torch.zeros(1, device=device)  # CUDA context and allocator ready before any timing
    image, image_name = _image(args)
    start = time.perf_counter()
    raw: dict = {}
    rows = Rows(Path(args.out), raw)
    # a stack trace every minute on stderr: where a slow run spends its time shows in the log
    faulthandler.dump_traceback_later(args.trace_every, repeat=True)
    checked = []
    for name in args.models:
        print(f"{name} ...", flush=True)
        checked.append(check_model(name, args, image, device, rows, raw))
        torch.cuda.empty_cache() if device.type == "cuda" else None
    for spec, ckpt, choice, tag in checked:  # the video rows come after the models' rows
        print(f"{spec.name} video ...", flush=True)
        for objects in (1, 2) if args.quick else (1, 16):  # 16: the GPU goal
            check_video(spec, ckpt, args, image, device, choice, tag, rows, raw, objects)
            torch.cuda.empty_cache() if device.type == "cuda" else None
        ckpt.unlink()
    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    head = (f"GPU check: {what}, torch {torch.__version__}, image {image_name} "
            f"{image.shape[1]}x{image.shape[0]}, random weights (seed 0), precision "
            f"{args.precision}, {time.perf_counter() - start:.0f} s")
    widths = [max(len(str(r[i])) for r in rows + [("model", "check", "ours", "Meta", "")])
              for i in range(5)]
    lines = [head, ""] + [" | ".join(str(c).ljust(wd) for c, wd in zip(r, widths)) for r in
                          [("model", "check", "ours", "Meta", "")] + rows]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text(text + "\n")
    (out / "gpu_check.json").write_text(json.dumps(
        {"header": head, "results": raw, "ikomia_imported": "ikomia" in sys.modules}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
