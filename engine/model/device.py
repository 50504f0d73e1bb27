"""Where the model runs and in which precision.

Two independent choices:

* the **device**, fixed when the model is loaded (``cuda`` parameter): CUDA when asked for and
  present, else the CPU;
* the **precision** of a run (``precision`` parameter), which never reloads the model: ``auto``
  picks bfloat16 on CUDA GPUs of compute capability >= 8 (Ampere and later), float16 on 7.x
  (tensor cores; most 6.x cards run float16 slower than float32) and float32 below; on the CPU
  bfloat16 where it is native (AVX512-BF16 or AMX with PyTorch's AVX512 kernels,
  :func:`native_cpu_bfloat16`: measured with ``benchmarks/bench_precision.py``, tracking 1.6x and
  the encoder 1.45x faster, scores within 0.002 of Meta's under the same autocast and masks IoU
  above 0.99 against float32), else float32 (emulated bfloat16 is ~7x slower). The environment
  variable :data:`CPU_AUTO_ENV` (``float32`` or ``bfloat16``) overrides the CPU's choice: the
  test suite pins float32 with it, so that its float32 parities hold on every CPU.
  ``bfloat16`` and ``float16`` also apply on the CPU (``torch.autocast("cpu")``), which is how the
  GPU's dtype paths are tested without a GPU.

A run executes inside :meth:`DeviceChoice.compute`: autocast to the chosen dtype (the model's own
modules then follow PyTorch's autocast policy, exactly as Meta's predictor runs them) and, on CUDA
GPUs of compute capability >= 8, TF32 for the float32 matrix products that remain, as Meta's
examples do. The engine's own arithmetic does not rely on autocast: it casts explicitly (see
``engine/decoder/point_decoder.py``).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
from dataclasses import dataclass
from typing import ContextManager, FrozenSet, Iterator, List, Optional, Tuple

import torch

PRECISIONS: Tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _capability(device: torch.device) -> Tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # x86 flags of bfloat16 arithmetic


def _cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags: ``/proc/cpuinfo``'s ``flags`` line (Linux), else the bfloat16
    ones PyTorch's own probes find (``torch.cpu._is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``: private, absent from some versions); empty when neither answers."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    found = set()
    for flag, probe in probes.items():
        try:
            if getattr(torch.cpu, probe)():
                found.add(flag)
        except Exception:  # absent in this torch, or the probe failed: not found
            continue
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def native_cpu_bfloat16() -> bool:
    """The CPU does bfloat16 arithmetic natively and PyTorch's CPU kernels use it: a bfloat16
    flag (AVX512-BF16 or AMX-BF16, :data:`NATIVE_BF16_FLAGS`) and PyTorch's kernels at their
    AVX512 level (``torch.backends.cpu.get_cpu_capability()``; ``ATEN_CPU_CAPABILITY=avx2`` or
    a build without them leaves bfloat16 emulated, slower than float32). Asked once per process.
    """
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return False
    return capability.upper().startswith("AVX512") and bool(_cpu_flags() & NATIVE_BF16_FLAGS)


CPU_AUTO_ENV = "SAM2_CPU_AUTO_PRECISION"  # float32 | bfloat16: what ``auto`` means on the CPU


def cpu_auto_dtype() -> Optional[torch.dtype]:
    """What ``precision=auto`` runs on the CPU: :data:`CPU_AUTO_ENV` when set, else bfloat16
    where it is native (:func:`native_cpu_bfloat16`) and float32 (``None``) elsewhere.

    Raises:
        ValueError: :data:`CPU_AUTO_ENV` is set to something else (the message names it).
    """
    forced = os.environ.get(CPU_AUTO_ENV, "").strip().lower()
    if forced:
        if forced not in ("float32", "bfloat16"):
            raise ValueError(f"{CPU_AUTO_ENV}: unknown value {forced!r}; expected float32 or "
                             "bfloat16 (or unset: bfloat16 where the CPU has it natively)")
        return _DTYPES[forced]
    return torch.bfloat16 if native_cpu_bfloat16() else None


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` on ``device`` (``None``: plain float32).

    Raises:
        ValueError: an unknown precision (the message names ``precision`` and the choices).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: unknown value {precision!r}; expected one of "
                         f"{', '.join(PRECISIONS)}")
    if precision != "auto":
        return _DTYPES[precision]
    if device.type == "cpu":
        return cpu_auto_dtype()
    if device.type != "cuda":
        return None
    major = _capability(device)[0]
    return torch.bfloat16 if major >= 8 else torch.float16 if major == 7 else None


def cuda_present() -> bool:
    """A CUDA GPU can be used (False, not an error, with a broken CUDA runtime)."""
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # e.g. a driver too old for the runtime
        return False


def select_device(cuda: bool) -> torch.device:
    """CUDA when ``cuda`` is asked for and a GPU is present, else the CPU."""
    return torch.device("cuda") if cuda and cuda_present() else torch.device("cpu")


@functools.lru_cache(maxsize=1)
def _openmp_runtimes() -> Tuple[ctypes.CDLL, ...]:
    """The OpenMP runtimes loaded in this process (Linux: from ``/proc/self/maps``)."""
    libs: List[ctypes.CDLL] = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if re.search(r"/lib(g|i)omp[^/]*\.so", line)})
    except OSError:  # not Linux
        return ()
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            lib.omp_get_dynamic.restype = ctypes.c_int
            libs.append(lib)
        except (OSError, AttributeError):
            continue
    return tuple(libs)


@contextlib.contextmanager
def static_openmp_teams() -> Iterator[None]:
    """OpenMP's dynamic team sizes off in this thread for the duration, as before after.

    Ikomia's OpenCV (``ikomia/lib/libopencv_core``) shares PyTorch's ``libgomp`` and turns
    ``omp_set_dynamic`` on; PyTorch's CPU kernels for bfloat16 products then get fewer threads
    than they split the work for, and leave parts of their outputs unwritten (measured: NaN in
    about half of a bfloat16 ``nn.Linear``'s outputs with 2 threads once ``ikomia`` is imported,
    none with dynamic teams off or with 1 thread).
    """
    libs = _openmp_runtimes()
    before = [lib.omp_get_dynamic() for lib in libs]
    for lib in libs:
        lib.omp_set_dynamic(0)
    try:
        yield
    finally:
        for lib, value in zip(libs, before):
            lib.omp_set_dynamic(value)


def autocast_off(device: torch.device) -> ContextManager:
    """A context where autocast is off on ``device`` (the engine's explicitly typed code)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class DeviceChoice:
    """A device and the precision of the runs on it.

    Attributes:
        device: where the model's tensors are.
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16``, or ``None`` for float32.
    """

    device: torch.device
    autocast_dtype: Optional[torch.dtype] = None

    @classmethod
    def make(cls, device: torch.device, precision: str = "auto") -> "DeviceChoice":
        """``device`` with ``precision`` resolved (:func:`resolve_precision`)."""
        return cls(torch.device(device), resolve_precision(precision, torch.device(device)))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the large matrix products: the autocast dtype, else float32."""
        return self.autocast_dtype or torch.float32

    @property
    def exact_cpu(self) -> bool:
        """CPU in float32: the engine may use its CPU-tuned rearrangements, which are exact to
        float32 rounding (they lose digits in lower precision and suit no GPU)."""
        return self.device.type == "cpu" and self.autocast_dtype is None

    @property
    def tf32(self) -> bool:
        """float32 products run as TF32 (CUDA, compute capability >= 8)."""
        return self.device.type == "cuda" and _capability(self.device)[0] >= 8

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        """The context a run executes in: autocast to :attr:`autocast_dtype` (none for
        float32), where :attr:`tf32` TF32 float32 matrix products, and on the CPU static OpenMP
        teams (:func:`static_openmp_teams`); all undone on exit."""
        with contextlib.ExitStack() as stack:
            if self.device.type == "cpu":
                stack.enter_context(static_openmp_teams())
            if self.tf32:
                before = torch.get_float32_matmul_precision()
                torch.set_float32_matmul_precision("high")
                stack.callback(torch.set_float32_matmul_precision, before)
            if self.autocast_dtype is not None and torch.amp.is_autocast_available(
                    self.device.type):
                stack.enter_context(torch.autocast(device_type=self.device.type,
                                                   dtype=self.autocast_dtype))
            yield

    def key(self) -> Tuple[str, str]:
        """What the embedding cache keys on: device type and dtype."""
        return self.device.type, str(self.dtype)


CPU = DeviceChoice(torch.device("cpu"))
