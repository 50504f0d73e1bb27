"""Device and precision choice (no GPU is lent here: CUDA is simulated)."""
from __future__ import annotations

import pytest
import torch

from infer_segment_anything_2.engine.loader import select_device


def test_cpu_runs_float32_without_autocast():
    choice = select_device(False)
    assert choice.device.type == "cpu" and choice.autocast_dtype is None


def test_cuda_requested_without_gpu_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(True).device.type == "cpu"


@pytest.mark.parametrize("capability,dtype", [((8, 6), torch.bfloat16), ((7, 5), torch.float16),
                                              ((6, 1), torch.float16), ((5, 2), None)])
def test_cuda_precision_follows_compute_capability(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    choice = select_device(True)
    assert choice.device.type == "cuda" and choice.autocast_dtype == dtype


def test_cuda_false_ignores_a_present_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(False).device.type == "cpu"
