"""benchmarks/plots.py: the plots of docs/performance.md are drawn from the data files next to
them (what the benchmarks write with --json), and the benchmarks' files are what it reads."""
from __future__ import annotations

import json
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
        assert len(_data(name)["source"]) > 50, name
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


def test_the_command_writes_both_pngs_and_names_a_bad_folder(tmp_path):
    script = str(REPO / "benchmarks" / "plots.py")
    done = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in plots.FIGURES)
    bad = subprocess.run([sys.executable, script, "--data", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("--data:")
