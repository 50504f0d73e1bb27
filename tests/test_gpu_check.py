"""benchmarks/gpu_check.py stays runnable for the next session that has a GPU: the same checks,
small, on the CPU, without Ikomia (the GPU machine has none)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_gpu_check_runs_on_the_cpu_without_ikomia(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"),
                           "--device", "cpu", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not data["ikomia_imported"]
    results = data["results"]
    tag = "sam2.1_hiera_tiny (float32)"
    prompt = results[tag]
    assert prompt["score_diff"] < 1e-4 and prompt["mask_iou"] > 0.99
    assert prompt["cold_s"] > 0 and prompt["reprompt_s"] > 0 and prompt["meta_predict_s"] > 0
    auto = results[f"{tag} automatic most pass"]
    assert auto["masks"] == auto["meta_masks"] and auto["min_mask_iou"] > 0.98
    for crops in (0, 1):
        standin = results[f"{tag} stand-in crops={crops}"]
        assert standin["masks"] == standin["meta_masks"] > 3
        assert standin["min_mask_iou"] > 0.98
    table = (tmp_path / "gpu_check.txt").read_text()
    assert "re-prompt" in table and "stand-in parity" in table
