"""engine/decoder/readout.py: the hypernetwork MLPs run as one batched MLP."""
from __future__ import annotations

import torch
from sam2.modeling.sam2_utils import MLP

from infer_segment_anything_2.engine.decoder.readout import StackedMLPs, stackable


def test_stacked_mlps_equal_each_mlp_on_its_token(tiny_model):
    """The model's three multimask hypernetwork MLPs, each on its own token of a batch: the
    batched products give each module's output to float32 rounding."""
    mlps = list(tiny_model.sam_mask_decoder.output_hypernetworks_mlps[1:])
    assert stackable(mlps)
    x = torch.randn(5, len(mlps), 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.stack([m(x[:, i]) for i, m in enumerate(mlps)], dim=1)
        out = StackedMLPs(mlps)(x)
    assert out.shape == (5, 3, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_sigmoid_output_and_what_cannot_be_stacked():
    torch.manual_seed(0)
    heads = [MLP(8, 16, 4, 3, sigmoid_output=True) for _ in range(2)]
    x = torch.randn(3, 2, 8)
    with torch.no_grad():
        expected = torch.stack([m(x[:, i]) for i, m in enumerate(heads)], dim=1)
        torch.testing.assert_close(StackedMLPs(heads)(x), expected, rtol=1e-5, atol=1e-6)
    assert not stackable([MLP(8, 16, 4, 3), MLP(8, 16, 4, 2)])  # depths differ
    assert not stackable([MLP(8, 16, 4, 3), MLP(8, 16, 4, 3, sigmoid_output=True)])
    assert not stackable([MLP(8, 16, 4, 3), torch.nn.Linear(8, 4)])
    assert not stackable([])
