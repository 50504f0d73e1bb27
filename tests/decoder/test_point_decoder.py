"""engine/decoder/point_decoder.py and engine/decoder/upscaling.py: the reordered mask decoder against the model's own,
in both formulations (the CPU's exact one and the one GPUs and low precisions use), in float32,
bfloat16 and float16, and under CUDA's autocast policy on fake CUDA tensors."""
from __future__ import annotations

import copy

import pytest
import torch

from fake_accelerator import fake_cuda
from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder, supports
from infer_segment_anything_2.engine.model.device import DeviceChoice
from infer_segment_anything_2.engine.image.predictor import ImageEmbedding

LOW = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def random_inputs(model, bsz: int, seed: int, device="cpu"):
    """A random embedding (as good as an encoded image for checking the algebra, and cheaper)
    and the sparse embeddings of ``bsz`` random points."""
    gen = torch.Generator().manual_seed(seed)
    emb = ImageEmbedding(torch.randn(1, 256, 64, 64, generator=gen).to(device),
                         [torch.randn(1, 32, 256, 256, generator=gen).to(device),
                          torch.randn(1, 64, 128, 128, generator=gen).to(device)],
                         (64, 64), (64, 64))
    coords = (torch.rand(bsz, 1, 2, generator=gen) * 1024).to(device)
    labels = torch.ones(bsz, 1, dtype=torch.int, device=device)
    with torch.no_grad():
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    return emb, sparse, dense


def model_decoder(model, emb, sparse, dense):
    """The model's own multimask decoder (what Meta's generator calls)."""
    with torch.no_grad():
        logits, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=emb.image_embed, image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=sparse.shape[0] > 1,
            high_res_features=emb.high_res_feats)
    return logits.float(), iou.float()


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "plain"])
@pytest.mark.parametrize("bsz", [1, 5])
def test_point_decoder_matches_model_decoder(tiny_model, exact, bsz):
    """Both formulations compute the model's multimask decoder output to float32 rounding, for
    one prompt and a batch, points anywhere in the frame."""
    assert supports(tiny_model)
    emb, sparse, dense = random_inputs(tiny_model, bsz, seed=3)
    ref_logits, ref_iou = model_decoder(tiny_model, emb, sparse, dense)
    fast = PointDecoder(tiny_model, emb.image_embed, emb.high_res_feats, exact=exact)
    assert fast.exact is exact
    logits, iou = fast(sparse)
    assert logits.shape == ref_logits.shape == (bsz, 3, 256, 256)
    assert logits.dtype == iou.dtype == torch.float32
    scale = ref_logits.abs().max().item()
    assert (logits - ref_logits).abs().max().item() <= 1e-4 * max(scale, 1.0)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-5)


def test_exact_formulation_only_on_the_cpu_in_float32(tiny_model):
    emb, _, _ = random_inputs(tiny_model, 1, seed=3)
    assert PointDecoder(tiny_model, emb.image_embed, emb.high_res_feats).exact
    for dtype in LOW.values():
        assert not PointDecoder(tiny_model, emb.image_embed, emb.high_res_feats, dtype).exact


@pytest.mark.parametrize("precision", list(LOW))
def test_low_precision_matches_the_model_decoder_under_autocast(tiny_model, precision):
    """In bfloat16 / float16 the predicted IoU stays within 0.02 of the model's decoder run
    under the same autocast (measured: < 0.003) and of float32; the low-resolution masks agree
    with float32 on nearly every pixel (masks from random weights are fragile: only a loose
    bound)."""
    dtype = LOW[precision]
    emb, sparse, dense = random_inputs(tiny_model, 4, seed=5)
    ref32_logits, ref32_iou = model_decoder(tiny_model, emb, sparse, dense)
    # compute(): autocast, and static OpenMP teams (see engine.model.device.static_openmp_teams)
    with DeviceChoice(torch.device("cpu"), dtype).compute():
        ref_logits, ref_iou = model_decoder(tiny_model, emb, sparse, dense)
        fast = PointDecoder(tiny_model, emb.image_embed, emb.high_res_feats, dtype)
        logits, iou = fast(sparse)  # autocast on around it changes nothing
    assert logits.dtype == iou.dtype == torch.float32
    assert (iou - ref_iou).abs().max().item() < 0.02
    assert (iou - ref32_iou).abs().max().item() < 0.02
    agree = ((logits > 0) == (ref32_logits > 0)).float().mean().item()
    assert agree > 0.95, agree
    assert (logits - ref_logits).abs().max().item() < 0.1 * ref_logits.abs().max().item()


def test_point_decoder_not_used_for_other_decoders(tiny_model):
    class Other(torch.nn.Module):
        pass

    fake = type("M", (), {"sam_mask_decoder": Other()})()
    assert supports(tiny_model) and not supports(fake)
    other_upscaling = copy.deepcopy(tiny_model)
    up = other_upscaling.sam_mask_decoder.output_upscaling
    up[3] = torch.nn.ConvTranspose2d(up[3].in_channels, up[3].out_channels, 3, stride=2)
    assert not supports(other_upscaling)
    deeper = copy.deepcopy(tiny_model)  # the factored form is SAM 2's two layers
    layers = deeper.sam_mask_decoder.transformer.layers
    layers.append(copy.deepcopy(layers[1]))
    assert not supports(deeper)
    shorter = copy.deepcopy(tiny_model)
    shorter.sam_mask_decoder.output_upscaling = torch.nn.Sequential(
        *list(shorter.sam_mask_decoder.output_upscaling)[:3])
    assert not supports(shorter)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "plain"])
def test_point_decoder_early_iou_filter_equals_full_decoding_then_filter(tiny_model,
                                                                         monkeypatch, exact):
    """decode_above(t) == full decoding then ``iou > t``: same candidates, same order, same
    logits and IoU; only prompts with a kept candidate are upscaled."""
    emb, sparse, _ = random_inputs(tiny_model, 9, seed=4)
    fast = PointDecoder(tiny_model, emb.image_embed, emb.high_res_feats, exact=exact)
    logits, iou = fast(sparse)
    flat_logits, flat_iou = logits.flatten(0, 1), iou.flatten()
    upscaled = []
    original = fast.upscale

    def spy(keys, *args):
        upscaled.append(len(keys))
        return original(keys, *args)

    monkeypatch.setattr(fast, "upscale", spy)
    median = flat_iou.median().item()
    for thresh in (median, flat_iou.sort().values[-2].item(), flat_iou.max().item(),
                   flat_iou.min().item() - 1.0):
        upscaled.clear()
        index, kept_logits, kept_iou = fast.decode_above(sparse, thresh)
        expected = torch.nonzero(flat_iou > thresh)[:, 0]
        assert torch.equal(index, expected)
        assert torch.equal(kept_iou, flat_iou[expected])
        assert kept_logits.shape == (len(expected), 256, 256)
        torch.testing.assert_close(kept_logits, flat_logits[expected], rtol=0, atol=1e-5)
        prompts_with_survivor = len(torch.unique(expected // 3))
        assert upscaled == ([prompts_with_survivor] if len(expected) else [])
    # the median splits the candidates: some pass, some do not, and some prompts are skipped
    passed = flat_iou > median
    assert 0 < passed.sum() < len(passed)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_cuda_autocast_policy_on_fake_cuda_tensors(tiny_model, precision):
    """On (fake) CUDA tensors, under CUDA's own autocast policy (which differs from the CPU's:
    layer norms and softmaxes come out in float32 there): no CPU tensor meets a CUDA one and
    every dtype fits, for the decoder's construction, transformer, IoU head and upscaling, and
    the outputs are float32 CUDA tensors of the right shapes."""
    dtype = {"float32": torch.float32, **LOW}[precision]
    model = copy.deepcopy(tiny_model)
    with fake_cuda(), torch.no_grad():
        model = model.to("cuda")
        emb, sparse, _ = random_inputs(model, 3, seed=6, device="cuda")
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            fast = PointDecoder(model, emb.image_embed, emb.high_res_feats, dtype)
            assert not fast.exact
            logits, iou = fast(sparse)
            q, tokens, image = fast.transformer(sparse)
            hyper = fast.hyper(q, tokens, image)
            picked = fast.upscale(image.keys(), hyper, torch.tensor([0, 2], device="cuda"),
                                  torch.tensor([1, 0], device="cuda"))
    assert logits.device.type == iou.device.type == "cuda"
    assert logits.shape == (3, 3, 256, 256) and iou.shape == (3, 3)
    assert logits.dtype == iou.dtype == picked.dtype == torch.float32
    assert picked.shape == (2, 256, 256)


def test_fake_cuda_catches_a_device_mix(tiny_model):
    """The fake CUDA check fails on the kind of bug it is there for."""
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

    model = copy.deepcopy(tiny_model)
    with fake_cuda(), torch.no_grad():
        model = model.to("cuda")
        emb, sparse, _ = random_inputs(model, 2, seed=6, device="cuda")
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats)
        with pytest.raises(FakeTensorDeviceMismatchError):
            fast(sparse.cpu())
