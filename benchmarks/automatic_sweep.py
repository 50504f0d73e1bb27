"""The data file of ``bench_automatic.py --points-per-side N1 N2 ... --json PATH``.

``sweep(results)`` turns the benchmark's rows (one per image x model x mode x grid, each with
both generators' measurements) into the rows ``benchmarks/plots.py`` draws: per grid size,
the CPU and wall seconds of each generator (one ``generate`` call, image encoding included), the
ratio Meta / ours, the masks each kept and the image encoder's share. ``regime(modes)`` states
what the decoder mode means for the figures (with random weights they are a bound, not what
users meet), in words written into the file.
"""
from __future__ import annotations

# What each decoder mode of bench_automatic.py means for a time against points_per_side.
REGIMES = {
    "random": "random weights (seed 0) at the default thresholds (pred_iou_thresh 0.8, "
              "stability_score_thresh 0.95): few or no prompts pass the IoU filter, which "
              "trained weights never give (most grid points land on something), so ours skips "
              "the upscaling of nearly every prompt and neither generator keeps a mask. The "
              "speed-up is a bound (an upper one for ours), not what users meet; the 50%-pass "
              "regime of docs/performance.md is the realistic one.",
    "pass50": "random weights (seed 0), pred_iou_thresh at the median of the model's own "
              "predicted IoUs over the grid: half of the candidates pass, as with trained "
              "weights; random weights' stability is low, so no mask survives the stability "
              "filter (the final masks are not timed).",
    "pass90": "random weights (seed 0), pred_iou_thresh at the 10% quantile of the model's own "
              "predicted IoUs over the grid: 90% of the candidates pass; no mask survives the "
              "stability filter.",
    "standin": "the stand-in prompt encoder and decoder of tests/standin.py (known discs) on the "
               "real image encoder: the decoder is not ours, a bound on the post-processing.",
}


def regime(modes: list[str]) -> str:
    """The regime statement for the data file: one sentence per decoder mode measured."""
    return " ".join(f"{mode}: {REGIMES[mode]}" for mode in modes)


def sweep(results: list[dict]) -> list[dict]:
    """One row per measured (image, model, mode, points_per_side) with both sides measured:
    ``ours_cpu_s``, ``meta_cpu_s`` (CPU seconds of one ``generate`` call, all the process's
    threads: with 1 torch thread, close to the wall time on an idle core), ``ratio``
    (meta_cpu_s / ours_cpu_s), the wall seconds and their ratio (``*_wall_s``, ``wall_ratio``),
    ``masks_ours``, ``masks_meta``, ``encoder_cpu_s`` (ours: the image encoder's CPU seconds),
    ``threads`` (torch's) and the load average at the end of each side's run. Rows where a side
    failed are left out."""
    rows = []
    for r in results:
        ours, meta = r.get("ours", {}), r.get("meta", {})
        if "cpu_s" not in ours or "cpu_s" not in meta:
            continue
        rows.append({"image": r["image"], "model": r["model"], "mode": r["mode"],
                     "points_per_side": r["points_per_side"],
                     "ours_cpu_s": round(ours["cpu_s"], 3), "meta_cpu_s": round(meta["cpu_s"], 3),
                     "ratio": round(meta["cpu_s"] / ours["cpu_s"], 3),
                     "ours_wall_s": round(ours["wall_s"], 3),
                     "meta_wall_s": round(meta["wall_s"], 3),
                     "wall_ratio": round(meta["wall_s"] / ours["wall_s"], 3),
                     "masks_ours": ours["n_masks"], "masks_meta": meta["n_masks"],
                     "encoder_cpu_s": round(ours.get("shared_cpu_s", 0.0), 3),
                     "threads": ours.get("torch_threads"),
                     "load_avg_ours": ours.get("load_avg"), "load_avg_meta": meta.get("load_avg")})
    return rows
