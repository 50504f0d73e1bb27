"""Device discipline without a GPU: two ways to run engine code "on an accelerator" on a CPU.

:func:`fake_cuda` -- PyTorch's ``FakeTensorMode`` with CUDA tensors (no data, shapes and dtypes
only) and CUDA's own autocast policy turned on. It raises on any CPU/CUDA mix and checks dtypes
exactly as a GPU would (for example an in-place op whose output dtype autocast changed), but it
cannot run code whose shapes depend on data (``nonzero``, boolean indexing, ``.item()``).

:func:`fake_accelerator` -- real computation for the rest: a tensor subclass (:class:`Accel`)
that holds a CPU tensor but reports the ``meta`` device, and a dispatch mode that runs every
operation on the CPU data and refuses an operation that mixes accelerator tensors with CPU
tensors of one or more dimensions (0-dim CPU tensors are allowed, as CUDA allows them; so are
CPU index tensors for indexing). Factories given the accelerator device (``device=x.device``)
make accelerator tensors; ``.cpu()`` brings data back (counted in ``transfers``); ``.numpy()`` on
an accelerator tensor fails, as on CUDA. Operations that make the host wait for the device
(``.item()``, ``bool()``, ``.tolist()``, ``nonzero``, ``unique``, boolean indexing, torchvision's
``nms``, ``repeat_interleave`` by a tensor, ``bincount``) are counted in ``syncs``, by name in
``sync_kinds``; every operation on accelerator tensors other than views and allocations (a
kernel launch on a GPU) in ``ops``; ``F.scaled_dot_product_attention`` counts as one (CUDA's fused
attention kernel), not as the math fallback's parts that the meta device would dispatch.
``waits`` = ``syncs + transfers``: the host waits for the device (the CPU proxy of
``benchmarks/bench_dispatch.py``). ``live_bytes`` / ``peak_bytes``: the memory the accelerator
tensors made inside the mode hold (each storage once, however many views), now and at most since
:meth:`_AcceleratorMode.reset_peak` -- what a GPU's caching allocator would have to provide.
"""
from __future__ import annotations

import contextlib
import copy
import weakref
from collections import Counter
from typing import Iterator
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

ACCEL = torch.device("meta")
_MIX_ALLOWED = {"copy_", "_to_copy"}
_INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}
# operations that launch no kernel on a GPU (besides views)
_NO_KERNEL = {"empty", "empty_strided", "empty_like", "new_empty", "detach", "alias", "lift_fresh",
              "_unsafe_view", "set_"}
# the output's size or value is read by the host (CUDA's nms copies its overlap mask to the host)
_SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim",
            "unique_consecutive", "_unique", "nms", "bincount", "histc"}


class DeviceMixError(RuntimeError):
    """An operation mixed accelerator tensors with CPU tensors."""


class Accel(torch.Tensor):
    """A CPU tensor (``elem``) that reports the accelerator device."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        r = torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(),
            dtype=elem.dtype, device=ACCEL, requires_grad=elem.requires_grad)
        r.elem = elem
        return r

    def __repr__(self):
        return f"Accel({self.elem!r})"

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"accelerator tensor used outside fake_accelerator(): {func}")


def _on_accel(device) -> bool:
    return device is not None and torch.device(device).type == ACCEL.type


class _AcceleratorMode(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.syncs = 0
        self.transfers = 0
        self.ops = 0
        self.sync_kinds: Counter = Counter()
        # memory held by accelerator tensors made inside the mode: storage -> [bytes, refs]
        self._storages: dict = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        # False inside a fused kernel (attention): its parts are neither launched nor kept
        self.counting = True

    def reset_peak(self) -> int:
        """Start a new peak from the bytes live now (returned)."""
        self.peak_bytes = self.live_bytes
        return self.live_bytes

    def _hold(self, t: "Accel") -> None:
        """Count ``t``'s storage as live until every accelerator tensor on it is gone."""
        storage = t.elem.untyped_storage()
        key = storage.data_ptr()
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [storage.nbytes(), 0]
            self.live_bytes += entry[0]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._storages[key]
            self.live_bytes -= entry[0]

    @property
    def waits(self) -> int:
        """Host waits for the device: syncs and copies to the host."""
        return self.syncs + self.transfers

    def _sync(self, kind: str) -> None:
        self.syncs += 1
        self.sync_kinds[kind] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        accel, plain = [], []

        def unwrap(t):
            if isinstance(t, Accel):
                accel.append(t)
                return t.elem
            if isinstance(t, torch.Tensor):
                plain.append(t)
            return t

        cpu_args, cpu_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        name = func.overloadpacket.__name__
        to_accel = _on_accel(kwargs.get("device"))
        if (accel or to_accel) and not func.is_view and name not in _NO_KERNEL \
                and self.counting:
            self.ops += 1
        if to_accel:
            cpu_kwargs["device"] = torch.device("cpu")
        elif name == "_to_copy" and accel and kwargs.get("device") is not None:
            self.transfers += 1  # to the CPU
            self.sync_kinds["to_cpu"] += 1
            return func(*cpu_args, **cpu_kwargs)
        if name == "copy_" and accel and not isinstance(args[0], Accel):
            self.transfers += 1  # into a CPU tensor
            self.sync_kinds["to_cpu"] += 1
        if any(p.device == ACCEL for p in plain):
            raise DeviceMixError(f"{func}: a tensor was made on the accelerator without data")
        if accel and plain and name not in _MIX_ALLOWED:
            mixed = [p for p in plain if p.dim() > 0]
            if name in _INDEXING and isinstance(args[0], Accel):
                mixed = [p for p in mixed if p.is_floating_point()]  # CPU indices are fine
            if mixed:
                raise DeviceMixError(
                    f"{func} mixes accelerator tensors with CPU tensors of shapes "
                    f"{[tuple(p.shape) for p in mixed]}")
        if accel and name in _SYNCING:
            self._sync(name)  # the host waits for a value or a data-dependent size
        elif accel and name in _INDEXING and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                for i in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple))
                          else ())):
            self._sync("boolean index")
        elif accel and name == "repeat_interleave" and kwargs.get("output_size") is None \
                and isinstance(args[0], Accel) and (len(args) == 1 or torch.is_tensor(args[1])):
            self._sync(name)  # the output's size is the repeats' sum
        out = func(*cpu_args, **cpu_kwargs)
        if not (accel or to_accel):
            return out
        if func._schema.is_mutable and args and isinstance(args[0], Accel):
            return args[0]
        return tree_map(lambda t: self._wrap(t) if isinstance(t, torch.Tensor) else t, out)

    def _wrap(self, t: torch.Tensor) -> "Accel":
        a = Accel(t)
        if t.numel() and self.counting:
            self._hold(a)
        return a

    def fused(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` computed as one kernel: one operation, and only its outputs'
        memory (a fused attention kernel never writes its scores)."""
        self.counting = False
        try:
            out = fn(*args, **kwargs)
        finally:
            self.counting = True
        self.ops += 1
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, Accel) and t.numel():
                self._hold(t)
        return out


@contextlib.contextmanager
def fake_accelerator() -> Iterator[_AcceleratorMode]:
    """Run engine code on the fake accelerator (the ``meta`` device, see the module docstring);
    yields the mode, whose ``syncs`` and ``transfers`` count host round trips."""
    real_tolist, real_tensor, real_as_tensor = torch.Tensor.tolist, torch.tensor, torch.as_tensor

    def tolist(self):
        return real_tolist(self.cpu() if isinstance(self, Accel) else self)

    # torch.tensor / torch.as_tensor(..., device=) build their result without dispatching:
    # build on the CPU, then move
    def tensor(data, *args, device=None, **kwargs):
        t = real_tensor(data, *args, **kwargs)
        return t if device is None else t.to(device)

    def as_tensor(data, dtype=None, device=None):
        t = real_as_tensor(data, dtype=dtype)
        return t if device is None else t.to(device)

    # the computation is the CPU's: static OpenMP teams, as DeviceChoice.compute() gives CPU runs
    # (Ikomia, imported by other tests, turns them dynamic; bfloat16 products then go wrong)
    from infer_segment_anything_2.engine.model.device import static_openmp_teams

    mode = _AcceleratorMode()
    real_sdpa = F.scaled_dot_product_attention

    def sdpa(*args, **kwargs):
        # CUDA runs it as one fused kernel (flash or memory-efficient attention); on the meta
        # device PyTorch would decompose it into the math fallback's ~8 operations
        if any(isinstance(a, Accel) for a in list(args) + list(kwargs.values())):
            return mode.fused(real_sdpa, *args, **kwargs)
        return real_sdpa(*args, **kwargs)

    with mock.patch.object(torch.Tensor, "tolist", tolist), \
            mock.patch.object(torch, "tensor", tensor), \
            mock.patch.object(torch, "as_tensor", as_tensor), \
            mock.patch.object(F, "scaled_dot_product_attention", sdpa), \
            static_openmp_teams(), mode:
        yield mode


def model_on_accelerator(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose parameters and buffers are accelerator tensors (call inside
    :func:`fake_accelerator`)."""
    return copy.deepcopy(model).to(ACCEL)


@contextlib.contextmanager
def fake_cuda(capability=(9, 0)) -> Iterator[object]:
    """``FakeTensorMode`` with CUDA's autocast policy available (a GPU of ``capability``); yields
    the mode. Copy a model before (``copy.deepcopy`` fails inside) and move the copy with
    ``.to("cuda")`` inside."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with mock.patch.object(torch.cuda.amp.common, "amp_definitely_not_available",
                           lambda: False), \
            mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: True), \
            mock.patch.object(torch.cuda, "get_device_capability", lambda *a, **k: capability), \
            FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode
