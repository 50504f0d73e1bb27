"""The plots of docs/performance.md, drawn from the data files next to them in docs/.

    python benchmarks/plots.py                 # docs/<name>.json -> docs/<name>.png
    python benchmarks/plots.py --out /tmp/p    # the same PNGs elsewhere

Each data file is what a benchmark writes with ``--json`` (its ``source`` says which run):

- ``video_memory.json``: ``benchmarks/bench_video.py --frames 24 --long 2000 --json ...``:
  resident memory against frames, ours against Meta's ``propagate_in_video``, and ours over a
  long video;
- ``annotate_throughput.json``: ``benchmarks/bench_annotate.py --images 12 --json ...``:
  images per second of one process and of Ray workers;
- ``automatic_time.json``: ``benchmarks/bench_automatic.py --points-per-side 4 8 16 --json ...``
  (the full command is in its ``source``): automatic mode's seconds against ``points_per_side``,
  ours against Meta's ``SAM2AutomaticMaskGenerator``, in the regime its ``regime`` states.

matplotlib is needed (``pip install -r benchmarks/requirements.txt``); the plugin does not use it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
OURS, META = "#1f77b4", "#d62728"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plots.py needs matplotlib: pip install -r benchmarks/requirements.txt")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def video_memory_figure(data: dict):
    """Left: RSS (MiB) against frames tracked, each side from the model loaded (frame 0) to the
    last frame (every frame when the run kept them, else its two ends). Right: ours over the
    long run (``data["long"]["rss"]``: frame -> MiB), when there is one."""
    plt = _pyplot()
    long = data.get("long", {}).get("rss")
    fig, axes = plt.subplots(1, 2 if long else 1, figsize=(10 if long else 5.5, 3.6),
                             squeeze=False)
    run = data["runs"][min(data["runs"], key=int)]
    ax = axes[0][0]
    for side, colour, name in (("meta", META, "Meta's propagate_in_video"),
                               ("ours", OURS, "ours (video_tracking)")):
        r = run[side]
        per_frame = r.get("rss") or []
        frames = [0] + (list(range(1, len(per_frame) + 1)) if per_frame else [data["frames"]])
        values = [r["rss_loaded"]] + (per_frame or [r["rss_end"]])
        # two ends only: dashed, as nothing was measured between them
        ax.plot(frames, values, "o--" if len(frames) == 2 else "-", color=colour, label=name)
        ends_only = len(frames) == 2
    ax.set(xlabel="frames tracked (0: model loaded)", ylabel="resident memory (MiB)",
           title=f"{data['model']}, {data['frames']} frames of 960x540", ylim=(0, None))
    if ends_only:
        ax.text(0.02, 0.96, "measured after loading and after the last frame",
                transform=ax.transAxes, fontsize=8, va="top")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    if long:
        ax = axes[0][1]
        frames = sorted(long, key=int)
        ax.plot([int(f) for f in frames], [long[f] for f in frames], "o-", color=OURS,
                label="ours (video_tracking)")
        ax.set(xlabel="frame", ylabel="resident memory (MiB)", ylim=(0, 1.2 * max(long.values())),
               title=f"ours over {int(frames[-1]) + 1} frames (128x128 input)")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def annotate_throughput_figure(data: dict):
    """Images per second of each run (whole run and steady state), labelled by workers x
    torch threads."""
    plt = _pyplot()
    runs = data["runs"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    x = range(len(runs))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [r["whole_img_s"] for r in runs], width,
           label="whole run (loads included)", color="#9ecae1")
    ax.bar([i + width / 2 for i in x], [r["steady_img_s"] for r in runs], width,
           label="steady state", color=OURS)
    ax.set_xticks(list(x), [r["label"].replace(", ", ",\n") for r in runs], fontsize=8)
    ax.set(ylabel="images per second",
           title=f"annotate.py, {data['images']} images, {data['cores']} cores")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def automatic_time_figure(data: dict):
    """CPU seconds of one ``generate`` call (image encoding included) against
    ``points_per_side``, ours and Meta's, log-log, one pair of lines per (image, model, mode) of
    ``data["sweep"]`` (``benchmarks/automatic_sweep.py``); each grid size labelled with
    Meta / ours, and our image encoder's CPU seconds (the part both generators share) dotted.
    The title says when the regime is a bound (random weights at the default thresholds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    groups: dict[tuple, list[dict]] = {}
    for row in data["sweep"]:
        groups.setdefault((row["image"], row["model"], row["mode"]), []).append(row)
    styles = ("o-", "s--", "^-.", "d:")
    for (image, model, mode), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["points_per_side"])
        style = styles[len(ax.lines) // 3 % len(styles)]
        tag = f" ({image}, {model}, {mode})" if len(groups) > 1 else ""
        points = [r["points_per_side"] for r in rows]
        ax.plot(points, [r["meta_cpu_s"] for r in rows], style, color=META,
                label="Meta's SAM2AutomaticMaskGenerator" + tag)
        ax.plot(points, [r["ours_cpu_s"] for r in rows], style, color=OURS, label="ours" + tag)
        ax.plot(points, [r["encoder_cpu_s"] for r in rows], ":", color="grey",
                label="image encoder (in both)" + tag)
        for r in rows:
            ax.annotate(f"{r['ratio']:.1f}x", (r["points_per_side"], r["meta_cpu_s"]),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 1.6)  # room for the ratios above Meta's points
    ticks = sorted({r["points_per_side"] for r in data["sweep"]})
    ax.set_xticks(ticks, [f"{n}x{n}" for n in ticks])
    ax.minorticks_off()
    ax.set(xlabel="points_per_side (grid of prompts; labels: Meta's time / ours)",
           ylabel="CPU seconds per image (log)")
    first = data["sweep"][0]
    bound = all(mode == "random" for _, _, mode in groups)
    ax.set_title(f"automatic mode, {first['model']}, {first['image']}, "
                 f"{first['threads']} torch thread{'s' * (first['threads'] != 1)}" +
                 ("\nrandom weights, default thresholds: few or no prompts pass, a bound"
                  if bound else ""), fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


FIGURES = {"video_memory": video_memory_figure,
           "annotate_throughput": annotate_throughput_figure,
           "automatic_time": automatic_time_figure}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DOCS, help="folder of the data files "
                        "(default: docs/)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the PNGs (default: "
                        "the data folder)")
    args = parser.parse_args(argv)
    out = args.out or args.data
    if not args.data.is_dir():
        print(f"--data: {args.data} is not a folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FIGURES if not (args.data / f"{name}.json").is_file()]
    if missing:
        print(f"--data: no {', '.join(n + '.json' for n in missing)} in {args.data}",
              file=sys.stderr)
        return 2
    for name, figure in FIGURES.items():
        fig = figure(json.loads((args.data / f"{name}.json").read_text()))
        fig.savefig(out / f"{name}.png", dpi=110, metadata={"Software": None})
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
