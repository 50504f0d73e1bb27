"""engine/decoder/lowrank.py and engine/decoder/factored.py: the CPU's factored second layer against the model's
own decoder and against the tokens written out, on a model whose layer norms have non-trivial
gains and biases (random initialisation leaves them at 1 and 0, which would hide every term
that carries them)."""
from __future__ import annotations

import copy

import pytest
import torch

from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
from infer_segment_anything_2.engine.decoder.factored import FactoredTokens
from test_point_decoder import model_decoder, random_inputs


@pytest.fixture(scope="module")
def normed_model(tiny_model):
    """The tiny model with every mask-decoder layer norm's gain and bias drawn at random."""
    model = copy.deepcopy(tiny_model)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for module in model.sam_mask_decoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.5 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=gen))
    return model


def both(model, bsz: int, seed: int):
    emb, sparse, dense = random_inputs(model, bsz, seed=seed)
    exact = PointDecoder(model, emb.image_embed, emb.high_res_feats)
    plain = PointDecoder(model, emb.image_embed, emb.high_res_feats, exact=False)
    assert exact.exact and exact.factored is not None and not plain.exact
    return emb, sparse, dense, exact, plain


def test_factored_decoder_equals_the_model_decoder(normed_model):
    """Logits and predicted IoU of the factored path equal the model's decoder (measured: IoU
    within 1e-7, logits within 2e-6 of a scale of 3)."""
    emb, sparse, dense, exact, _ = both(normed_model, 6, seed=21)
    ref_logits, ref_iou = model_decoder(normed_model, emb, sparse, dense)
    logits, iou = exact(sparse)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-5)
    scale = ref_logits.abs().max().item()
    assert (logits - ref_logits).abs().max().item() <= 1e-4 * max(scale, 1.0)


def test_factors_give_the_written_tokens_and_their_statistics(normed_model):
    """The factors rebuild the tokens the plain formulation writes; the means and inverse
    deviations computed from pieces equal the layer norms' own; the first convolution read from
    the factors equals the convolution of the written tokens, also after selecting prompts."""
    _, sparse, _, exact, plain = both(normed_model, 5, seed=22)
    with torch.no_grad():
        _, _, factored = exact.transformer(sparse)
        _, _, written = plain.transformer(sparse)
        assert isinstance(factored, FactoredTokens) and len(factored) == 5
        keys = written.keys()
        lay = factored.layers
        x1 = torch.baddbmm(lay.x0, factored.p.transpose(1, 2), factored.v)
        x2 = torch.baddbmm(lay.norm_a(x1), factored.p2.transpose(1, 2), factored.v2)
        torch.testing.assert_close(lay.norm_f(x2), keys, rtol=0, atol=1e-4)
        for x, mean, rstd, norm in ((x1, factored.m1, factored.r1, lay.norm_a),
                                    (x2, factored.m2, factored.r2, lay.norm_f)):
            var, ref_mean = torch.var_mean(x, dim=-1, unbiased=False)
            torch.testing.assert_close(mean, ref_mean, rtol=0, atol=1e-5)
            torch.testing.assert_close(rstd, torch.rsqrt(var + norm.eps), rtol=1e-4, atol=0)
        conv = exact.upscale.first(keys)
        torch.testing.assert_close(factored.conv1(0, 5), conv, rtol=0, atol=1e-4)
        picked = factored.select(torch.tensor([1, 4]))
        torch.testing.assert_close(picked.conv1(1, 2), conv[4:5], rtol=0, atol=1e-4)


def test_factored_iou_and_masks_equal_the_written_path(normed_model):
    """IoU read-out and upscaled masks from the factors equal the plain formulation's (both
    float32 on the CPU): the final attention's expansion and conv1 together."""
    _, sparse, _, exact, plain = both(normed_model, 4, seed=23)
    logits, iou = exact(sparse)
    ref_logits, ref_iou = plain(sparse)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-4 * ref_logits.abs().max())


def test_final_attention_from_factors_equals_the_written_path(normed_model):
    """All output tokens after the final attention, compared directly (the IoU head and the
    masks damp some of its terms: the one carrying beta_a only varies with the pixels through
    r2, which spreads 3% here). Measured: 2.4e-6 of a scale of 9.3; dropping that term: 5.7e-4."""
    _, sparse, _, exact, plain = both(normed_model, 4, seed=23)
    with torch.no_grad():
        rows = slice(0, sparse.shape[1] + 6)
        out = exact.final_tokens(*exact.transformer(sparse), rows)
        ref = plain.final_tokens(*plain.transformer(sparse), rows)
    assert out.shape == ref.shape == (4, sparse.shape[1] + 6, 256)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-5 * ref.abs().max().item())
