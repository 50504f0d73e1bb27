"""benchmarks/plots.py: the plots of docs/performance.md are drawn from the data files next to
them (what the benchmarks write with --json), and the benchmarks' files are what it reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
pytest.importorskip("matplotlib")  # an optional dependency of the benchmarks (a test one here)

import plots  # noqa: E402


def _data(name: str) -> dict:
    return json.loads((REPO / "docs" / f"{name}.json").read_text())


def test_each_plot_of_docs_has_its_data_a_source_and_a_link():
    performance = (REPO / "docs" / "performance.md").read_text()
    for name in plots.FIGURES:
        assert (REPO / "docs" / f"{name}.png").is_file(), name
        source = _data(name)["source"]
        if isinstance(source, dict):  # written by the benchmark's --json (provenance.py)
            assert source["command"].startswith("benchmarks/") and source["date"], name
            assert source["machine"]["cpu"] and source["machine"]["nproc"], name
        else:  # written by hand from a published table
            assert len(source) > 50, name
        assert f"({name}.png)" in performance and f"({name}.json)" in performance, name


def test_video_memory_is_drawn_from_the_published_figures():
    fig = plots.video_memory_figure(_data("video_memory"))
    left, right = fig.axes
    meta, ours = left.lines
    assert list(meta.get_xdata()) == [0, 24] and list(meta.get_ydata()) == [862, 1601]
    assert list(ours.get_xdata()) == [0, 24] and list(ours.get_ydata()) == [712, 1122]
    (long,) = right.lines
    assert list(long.get_xdata()) == [0, 250, 500, 750, 1000, 1250, 1500, 1750, 1999]
    assert list(long.get_ydata()) == [762] + [740] * 8


def test_a_rerun_of_bench_video_draws_every_frame():
    """bench_video's --json keeps each side's RSS after every frame: the plot draws them all."""
    run = {"meta": {"rss_loaded": 800.0, "rss_end": 990.0, "rss": [850.0, 900.0, 990.0]},
           "ours": {"rss_loaded": 700.0, "rss_end": 720.0, "rss": [710.0, 720.0, 720.0]}}
    fig = plots.video_memory_figure({"frames": 3, "model": "m", "runs": {"4": run, "1": run}})
    (ax,) = fig.axes
    assert [list(line.get_ydata()) for line in ax.lines] == [[800, 850, 900, 990],
                                                             [700, 710, 720, 720]]
    assert list(ax.lines[0].get_xdata()) == [0, 1, 2, 3]


def test_bench_annotate_json_is_what_the_plot_reads():
    import bench_annotate

    data = bench_annotate.report(12, {2: (0.02, 0.03), 1: (0.09, 0.1)}, 2, 1, (0.12, 0.19), 36.0,
                                 1.9, [2.0, 2.1])
    assert data["source"]["command"] and data["images"] == 12
    assert data["source"]["machine"]["niceness"] == os.nice(0)
    fig = plots.annotate_throughput_figure(data)
    (ax,) = fig.axes
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.02, 0.09, 0.12, 0.03, 0.1, 0.19]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["one process,\n2 torch threads", "one process,\n1 torch thread",
                      "Ray,\n2 workers x 1 torch thread"]
    published = plots.annotate_throughput_figure(_data("annotate_throughput"))
    assert [round(p.get_height(), 6) for p in published.axes[0].patches] == \
        [0.022, 0.091, 0.126, 0.022, 0.092, 0.187]


def _automatic_lines(fig) -> dict:
    (ax,) = fig.axes
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.lines}


def test_automatic_time_is_drawn_from_its_data_file():
    data = _data("automatic_time")
    rows = data["sweep"]
    points = [r["points_per_side"] for r in rows]
    assert points == sorted(points) and len(points) >= 3 and points[0] == 4
    assert {(r["image"], r["model"], r["mode"]) for r in rows} == \
        {("truck", "sam2.1_hiera_tiny", "random")}
    assert all(r["ratio"] == round(r["meta_cpu_s"] / r["ours_cpu_s"], 3) for r in rows)
    assert all(r["threads"] == 1 and r["masks_ours"] == r["masks_meta"] == 0 for r in rows)
    assert "a bound" in data["regime"] and "random weights" in data["regime"]
    assert data["source"]["command"].split()[0] == "benchmarks/bench_automatic.py"
    fig = plots.automatic_time_figure(data)
    lines = _automatic_lines(fig)
    assert lines["Meta's SAM2AutomaticMaskGenerator"] == (points, [r["meta_cpu_s"] for r in rows])
    assert lines["ours"] == (points, [r["ours_cpu_s"] for r in rows])
    assert lines["image encoder (in both)"] == (points, [r["encoder_cpu_s"] for r in rows])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == [f"{r['ratio']:.1f}x" for r in rows]
    assert ax.get_yscale() == "log" and "a bound" in ax.get_title()
    performance = (REPO / "docs" / "performance.md").read_text()
    quoted = performance[performance.index("(automatic_time.png)"):]
    quoted = " ".join(" ".join(quoted.split("\n\n")[:3]).split())  # its caption and paragraph
    for r in rows:  # the figures quoted next to the plot are the data file's
        assert f"{r['ratio']:.1f}x" in quoted and f"{r['meta_cpu_s']:.1f}" in quoted, r
        assert f"{r['ours_cpu_s']:.1f}" in quoted, r


def test_bench_automatic_sweep_is_what_the_plot_reads():
    import automatic_sweep

    def side(cpu, masks, encoder):
        return {"cpu_s": cpu, "wall_s": 2 * cpu, "n_masks": masks, "shared_cpu_s": encoder,
                "torch_threads": 2, "load_avg": [1.0, 1.0, 1.0]}

    results = [{"image": "cars", "model": "m", "mode": "pass50", "points_per_side": 8,
                "ours": side(2.0, 3, 1.5), "meta": side(9.0, 4, 1.6)},
               {"image": "cars", "model": "m", "mode": "pass50", "points_per_side": 4,
                "ours": side(1.6, 1, 1.5), "meta": side(3.2, 1, 1.5)},
               {"image": "cars", "model": "m", "mode": "pass50", "points_per_side": 16,
                "ours": side(3.0, 5, 1.5), "meta": {"error": "killed"}}]
    rows = automatic_sweep.sweep(results)
    assert [(r["points_per_side"], r["ratio"], r["masks_ours"], r["masks_meta"]) for r in rows] \
        == [(8, 4.5, 3, 4), (4, 2.0, 1, 1)]  # the failed grid size is left out
    assert [(r["ours_wall_s"], r["wall_ratio"], r["encoder_cpu_s"]) for r in rows] == \
        [(4.0, 4.5, 1.5), (3.2, 2.0, 1.5)]
    data = {"sweep": rows, "regime": automatic_sweep.regime(["pass50"])}
    fig = plots.automatic_time_figure(data)
    lines = _automatic_lines(fig)
    assert lines["ours"] == ([4, 8], [1.6, 2.0]) and lines[
        "Meta's SAM2AutomaticMaskGenerator"] == ([4, 8], [3.2, 9.0])
    (ax,) = fig.axes
    assert "bound" not in ax.get_title() and "2 torch threads" in ax.get_title()
    assert "a bound" in automatic_sweep.regime(["random"])


def test_the_command_writes_every_png_and_names_a_bad_folder(tmp_path):
    script = str(REPO / "benchmarks" / "plots.py")
    done = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in plots.FIGURES)
    bad = subprocess.run([sys.executable, script, "--data", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("--data:")
