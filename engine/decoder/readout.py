"""The mask decoder's hypernetwork MLPs, all at once.

SAM 2's decoder turns each multimask token into a hypernetwork vector with a small MLP of its
own (``output_hypernetworks_mlps[i]``, three ``Linear`` layers with ReLU between), one module call
per token: three kernels per layer per token on a GPU. :class:`StackedMLPs` stacks the weights of
several such MLPs once per model (:func:`stacked`) and runs them as batched products: one ``baddbmm`` per layer for all the
tokens, whatever their number. Same function, to float32 rounding (only the batching of the
products changes).

Shapes: ``B`` prompts, ``M`` MLPs (one per token), ``C`` input channels.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .cache import per_model


def stacked(owner: torch.nn.Module, mlps: Sequence[torch.nn.Module]) -> "StackedMLPs":
    """:class:`StackedMLPs` of ``mlps`` (modules of ``owner``), made once per ``owner``."""
    params = [p for m in mlps for p in m.parameters()]
    return per_model(owner, "stacked_mlps", params, lambda: StackedMLPs(mlps))


def stackable(mlps: Sequence[torch.nn.Module]) -> bool:
    """True when ``mlps`` are SAM 2 ``MLP`` modules with the same layer shapes and activation
    (what :class:`StackedMLPs` needs)."""
    try:
        from sam2.modeling.sam2_utils import MLP
    except ImportError:  # pragma: no cover - sam2 is a requirement
        return False
    if not mlps or any(type(m) is not MLP for m in mlps):
        return False
    first = mlps[0]
    shapes = [tuple(layer.weight.shape) for layer in first.layers]
    return all(type(layer) is torch.nn.Linear and layer.bias is not None
               for m in mlps for layer in m.layers) and all(
        [tuple(layer.weight.shape) for layer in m.layers] == shapes
        and type(m.act) is type(first.act) and m.sigmoid_output == first.sigmoid_output
        for m in mlps)


class StackedMLPs:
    """Several MLPs of one shape applied each to its own token, in batched products.

    Args:
        mlps: ``M`` SAM 2 ``MLP`` modules (:func:`stackable` must be True); the weights are
            stacked in float32 once, on their device.
    """

    def __init__(self, mlps: Sequence[torch.nn.Module]):
        first = mlps[0]
        n_layers = len(first.layers)
        # (M, in, out) and (M, 1, out): token m's layer i is x @ W[m] + b[m]
        self.weights = [torch.stack([m.layers[i].weight.float() for m in mlps]).transpose(1, 2)
                        for i in range(n_layers)]
        self.biases = [torch.stack([m.layers[i].bias.float() for m in mlps]).unsqueeze(1)
                       for i in range(n_layers)]
        self.act = first.act
        self.sigmoid = first.sigmoid_output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, M, C)`` float32, token m for MLP m -> ``(B, M, out)`` float32."""
        y = x.transpose(0, 1)  # (M, B, C): the tokens as the batch of the products
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            y = torch.baddbmm(b, y, w)
            if i < last:
                y = torch.relu_(y) if type(self.act) is torch.nn.ReLU else self.act(y)
        if self.sigmoid:
            y = torch.sigmoid(y)
        return y.transpose(0, 1)
