"""engine/model/device.py: device and precision choice (no GPU is lent here: CUDA is simulated)."""
from __future__ import annotations

import pytest
import torch

from infer_segment_anything_2.engine.model.device import (PRECISIONS, DeviceChoice, resolve_precision,
                                                    select_device)
from infer_segment_anything_2.engine.parameters import PARAMETERS, ParameterError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)


def test_cpu_unless_cuda_is_asked_for_and_present(monkeypatch):
    assert select_device(False) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(True) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(True) == CUDA
    assert select_device(False) == CPU


@pytest.mark.parametrize("capability,dtype", [
    ((9, 0), torch.bfloat16), ((8, 6), torch.bfloat16), ((8, 0), torch.bfloat16),
    ((7, 5), torch.float16), ((7, 0), torch.float16),
    ((6, 1), None), ((6, 0), None), ((5, 2), None)])
def test_auto_precision_follows_compute_capability(monkeypatch, capability, dtype):
    """bfloat16 from Ampere, float16 on 7.x (tensor cores), float32 below (most 6.x cards run
    float16 slower than float32)."""
    gpu(monkeypatch, capability)
    assert resolve_precision("auto", CUDA) is dtype
    assert DeviceChoice.make(select_device(True), "auto").autocast_dtype is dtype


@pytest.mark.parametrize("capability,flags,dtype", [
    ("AVX512", "fpu avx2 avx512f avx512_bf16", torch.bfloat16),
    ("AVX512", "fpu avx2 avx512f amx_bf16 amx_tile", torch.bfloat16),
    ("AVX512", "fpu avx2 avx512f", None),  # AVX512 without its bfloat16 instructions
    ("AVX2", "fpu avx2 avx512f avx512_bf16", None),  # the kernels run AVX2 code: emulated
    ("DEFAULT", "", None)])
def test_auto_on_the_cpu_is_bfloat16_where_it_is_native(monkeypatch, capability, flags, dtype):
    """Unpinned (the suite pins float32 in conftest), auto on the CPU follows the CPU: bfloat16
    only with a bfloat16 instruction set and PyTorch's kernels at their AVX512 level."""
    from infer_segment_anything_2.engine.model import device

    monkeypatch.delenv(device.CPU_AUTO_ENV)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset(flags.split()))
    device.native_cpu_bfloat16.cache_clear()
    try:
        assert resolve_precision("auto", CPU) is dtype
        assert DeviceChoice.make(CPU, "auto").exact_cpu is (dtype is None)
    finally:
        device.native_cpu_bfloat16.cache_clear()


def test_this_cpus_flags_are_read_and_the_pin_is_checked(monkeypatch):
    """On this machine: the flags come from /proc/cpuinfo, auto unpinned is bfloat16 exactly
    when this CPU has native bfloat16; the pin's values apply and a bad one names the variable."""
    from infer_segment_anything_2.engine.model import device

    flags = device._cpu_flags()
    assert "fpu" in flags or not __import__("os").path.exists("/proc/cpuinfo")
    monkeypatch.delenv(device.CPU_AUTO_ENV)
    native = device.native_cpu_bfloat16()
    assert native is (bool(flags & device.NATIVE_BF16_FLAGS)
                      and str(torch.backends.cpu.get_cpu_capability()).startswith("AVX512"))
    assert resolve_precision("auto", CPU) is (torch.bfloat16 if native else None)
    monkeypatch.setenv(device.CPU_AUTO_ENV, "bfloat16")
    assert resolve_precision("auto", CPU) is torch.bfloat16
    monkeypatch.setenv(device.CPU_AUTO_ENV, "float32")
    assert resolve_precision("auto", CPU) is None
    monkeypatch.setenv(device.CPU_AUTO_ENV, "fp8")
    with pytest.raises(ValueError, match="^SAM2_CPU_AUTO_PRECISION: unknown value 'fp8'"):
        resolve_precision("auto", CPU)


def test_auto_is_pinned_to_float32_on_the_cpu_and_explicit_choices_apply_everywhere(
        monkeypatch):
    assert resolve_precision("auto", CPU) is None  # the suite's pin (conftest)
    gpu(monkeypatch, (9, 0))
    for device in (CPU, CUDA):
        assert resolve_precision("float32", device) is None
        assert resolve_precision("bfloat16", device) is torch.bfloat16
        assert resolve_precision("float16", device) is torch.float16


def test_a_bad_precision_names_the_parameter():
    with pytest.raises(ValueError, match="^precision: .*auto, float32, bfloat16, float16"):
        resolve_precision("fp8", CPU)
    spec = PARAMETERS["precision"]
    assert spec.default_value() == "auto" and spec.choices == PRECISIONS
    assert not spec.reload_model
    with pytest.raises(ParameterError) as err:
        spec.parse("half")
    assert str(err.value).startswith("precision: unknown value 'half'. Expected one of auto, ")


@pytest.mark.parametrize("precision,dtype", [("bfloat16", torch.bfloat16),
                                             ("float16", torch.float16)])
def test_cpu_low_precision_is_cpu_autocast_undone_on_exit(precision, dtype):
    choice = DeviceChoice.make(CPU, precision)
    assert choice.dtype is dtype and not choice.exact_cpu
    with choice.compute():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is dtype
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is dtype
    assert not torch.is_autocast_enabled("cpu")
    plain = DeviceChoice.make(CPU, "float32")
    assert plain.exact_cpu and plain.dtype is torch.float32
    with plain.compute():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("capability,tf32", [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_tf32_for_float32_products_from_ampere_undone_on_exit(monkeypatch, capability, tf32):
    gpu(monkeypatch, capability)
    before = torch.get_float32_matmul_precision()
    choice = DeviceChoice(CUDA, None)  # float32: no autocast to enter
    assert choice.tf32 is tf32
    with choice.compute():
        assert torch.get_float32_matmul_precision() == ("high" if tf32 else before)
    assert torch.get_float32_matmul_precision() == before


def test_cache_key_tells_precisions_apart():
    keys = {DeviceChoice.make(CPU, p).key() for p in ("auto", "float32", "bfloat16", "float16")}
    assert len(keys) == 3  # auto is float32 on the CPU (the suite's pin)


def test_cpu_runs_have_static_openmp_teams_even_after_ikomia_turned_them_dynamic():
    """Ikomia's OpenCV turns OpenMP's dynamic teams on in the libgomp PyTorch uses; PyTorch's
    bfloat16 CPU products then leave outputs unwritten (NaN or garbage). ``compute()`` turns
    them off for the run and back after."""
    from ikomia import core  # noqa: F401  (loads Ikomia's OpenCV)

    from infer_segment_anything_2.engine.model.device import _openmp_runtimes

    runtimes = _openmp_runtimes()
    if not runtimes:
        pytest.skip("no OpenMP runtime found in /proc/self/maps")
    for lib in runtimes:
        lib.omp_set_dynamic(1)  # as Ikomia leaves it (checked: omp_get_dynamic() == 1)
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 128)
    choice = DeviceChoice(CPU, torch.bfloat16)
    for _ in range(20):
        x = torch.randn(2, 256, 4096).transpose(1, 2)  # as the decoder's image tokens
        with torch.no_grad(), choice.compute():
            assert all(lib.omp_get_dynamic() == 0 for lib in runtimes)
            y = lin(x)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), lin(x), atol=0.1, rtol=0.02)
    assert all(lib.omp_get_dynamic() == 1 for lib in runtimes)
