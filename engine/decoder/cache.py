"""What the decoder derives from a model's weights once, kept with the model.

Folded attention matrices, stacked hypernetwork weights and the dense positional encoding depend
only on the weights: made for every image they would cost kernels per image for nothing. They are
kept per module (weakly: they go with the model) and made again when a weight they were made from
is replaced or changed in place (its identity or its version counter differs).
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, Sequence, Tuple, TypeVar

import torch

T = TypeVar("T")

_KEPT: "weakref.WeakKeyDictionary[torch.nn.Module, Dict[str, Tuple[tuple, object]]]" = \
    weakref.WeakKeyDictionary()


def per_model(owner: torch.nn.Module, name: str, sources: Sequence[torch.Tensor],
              make: Callable[[], T]) -> T:
    """``make()``, computed once per ``owner`` and ``name`` while ``sources`` (the weights it
    reads) are the same tensors with the same versions; without gradients."""
    key = tuple((id(t), t._version) for t in sources)
    kept = _KEPT.setdefault(owner, {})
    hit = kept.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[return-value]
    with torch.no_grad():
        value = make()
    kept[name] = (key, value)
    return value
