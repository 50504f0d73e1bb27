"""engine/decoder/prompts.py: the prompt encoder's outputs the automatic mode reads, with few
kernels, against the module itself."""
from __future__ import annotations

import torch

from fake_accelerator import ACCEL, fake_accelerator, model_on_accelerator
from infer_segment_anything_2.engine.decoder.prompts import dense_pe, point_embeddings


def test_point_embeddings_equal_the_prompt_encoders(tiny_model):
    """Foreground points anywhere in the input frame (edges and corners included): the
    encoder's sparse embeddings (point row and padding row), to float32 rounding."""
    enc = tiny_model.sam_prompt_encoder
    coords = torch.rand(50, 2, generator=torch.Generator().manual_seed(4)) * 1024
    coords[:4] = torch.tensor([[0.0, 0.0], [1023.0, 1023.0], [0.0, 1023.0], [511.5, 0.25]])
    with torch.no_grad():
        expected, _ = enc(points=(coords[:, None], torch.ones(50, 1, dtype=torch.int)),
                          boxes=None, masks=None)
        ours = point_embeddings(enc, coords)
    assert ours.shape == expected.shape == (50, 2, 256)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert torch.equal(ours[:, 1], expected[:, 1])  # the padding row is the learnt vector


def test_few_kernels_and_dense_pe_made_once(tiny_model):
    """On the fake accelerator: 11 operations for any number of points; the dense positional
    encoding equals ``get_dense_pe()`` and costs nothing after the first call, until a weight
    it reads changes."""
    with fake_accelerator() as mode, torch.no_grad():
        model = model_on_accelerator(tiny_model)
        enc = model.sam_prompt_encoder
        for n in (4, 400):
            coords = torch.rand(n, 2).to(ACCEL) * 1024
            before = mode.ops
            point_embeddings(enc, coords)
            assert mode.ops - before <= 11, mode.ops - before
        first = dense_pe(enc)
        before = mode.ops
        again = dense_pe(enc)
        assert again is first and mode.ops == before
        assert torch.equal(first.cpu(), enc.get_dense_pe().cpu())
        enc.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)  # changed in place
        changed = dense_pe(enc)
        assert changed is not first
        assert torch.equal(changed.cpu(), enc.get_dense_pe().cpu())
