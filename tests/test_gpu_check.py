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
    for key in (f"{tag} video", f"{tag} video 2 objects"):  # ours batched, Meta one by one
        video = results[key]
        assert video["score_diff"] < 1e-3 and video["min_mask_iou"] > 0.99, key
    table = (tmp_path / "gpu_check.txt").read_text()
    assert "re-prompt" in table and "stand-in parity" in table


def test_meta_is_stopped_at_its_time_limit(tiny_model):
    """The check bounds Meta's pathological regimes: past the limit its run stops before its
    next batch of points (None: the time is a lower bound); without a limit it runs whole."""
    import importlib.util

    import numpy as np

    from infer_segment_anything_2.engine.automatic import AutomaticParams
    from infer_segment_anything_2.engine.model.device import CPU

    spec = importlib.util.spec_from_file_location("gpu_check",
                                                  REPO / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    params = AutomaticParams(points_per_side=2, points_per_batch=2, pred_iou_thresh=0.0,
                             stability_score_thresh=0.0)
    image = np.zeros((64, 96, 3), np.uint8)
    assert gpu_check._meta_generator(tiny_model, params, CPU, limit_s=0.0)(image) is None
    records = gpu_check._meta_generator(tiny_model, params, CPU, limit_s=None)(image)
    assert isinstance(records, list) and len(records) > 0
