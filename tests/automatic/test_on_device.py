"""engine/automatic/on_device.py: the GPU path's memory model and its kernels per decoder call,
measured on the fake accelerator (``tests/fake_accelerator.py``: real computation on the CPU, the
memory accelerator tensors hold and the operations launched counted)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import synthetic_image

sys.path.insert(0, str(Path(__file__).parents[1]))
from dispatch_counter import accelerator_model, count_ours, one_thread, warm_up  # noqa: E402
from fake_accelerator import ACCEL, fake_accelerator, model_on_accelerator  # noqa: E402

from infer_segment_anything_2.engine.automatic import AutomaticParams, on_device  # noqa: E402
from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder  # noqa: E402
from infer_segment_anything_2.engine.image.predictor import (  # noqa: E402
    ImageEmbedding, decode)


@pytest.fixture(scope="module", autouse=True)
def threads():
    with one_thread():  # the shared 2-core machine: see dispatch_counter.one_thread
        yield


def _peak_per_prompt(model, run, sizes=(4, 12)) -> float:
    """Bytes per prompt of a decoder call's peak: the peak's growth from ``sizes[0]`` to
    ``sizes[1]`` prompts, divided by the difference (what the call's fixed part does not
    explain), after a first call (which makes the folded attention weights the model then
    keeps). ``run(coords, labels)`` decodes on the fake accelerator."""
    gen = torch.Generator().manual_seed(5)
    peaks = []
    with fake_accelerator() as mode, torch.no_grad():
        for bsz in (sizes[0],) + tuple(sizes):  # the first call makes what the model keeps
            coords = (torch.rand(bsz, 1, 2, generator=gen) * 1024).to(ACCEL)
            labels = torch.ones(bsz, 1, dtype=torch.int).to(ACCEL)
            base = mode.reset_peak()
            out = run(coords, labels)
            peaks.append(mode.peak_bytes - base)
            del out
    peaks = peaks[1:]
    return (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])


@pytest.fixture(scope="module")
def on_accelerator(tiny_model):
    """The model on the fake accelerator and a random image embedding there."""
    gen = torch.Generator().manual_seed(2)
    with fake_accelerator(), torch.no_grad():
        model = model_on_accelerator(tiny_model)
        emb = ImageEmbedding(torch.randn(1, 256, 64, 64, generator=gen).to(ACCEL),
                             [torch.randn(1, 32, 256, 256, generator=gen).to(ACCEL),
                              torch.randn(1, 64, 128, 128, generator=gen).to(ACCEL)],
                             (64, 64), (64, 64))
    return model, emb


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_memory_per_prompt_bounds_the_point_decoders_peak(on_accelerator, dtype):
    """A prompt's share of a batched call's peak memory is what ``bytes_per_prompt`` says, to
    10%: never more (the budget's calls fit), not much less (no call wasted). The call frees its
    image tokens before the upscaling and writes no float32 temporaries the size of them, so a
    prompt costs 3 such tensors in float32, not the 6 it cost before."""
    model, emb = on_accelerator

    def run(coords, labels):
        sparse, _ = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        fast = PointDecoder(model, emb.image_embed, emb.high_res_feats, dtype=dtype)
        return fast(sparse)

    measured = _peak_per_prompt(model, run)
    model_bytes = on_device.bytes_per_prompt(emb.image_embed, dtype)
    assert measured <= model_bytes <= 1.1 * measured, (measured / 2**20, model_bytes / 2**20)
    assert measured <= 3.1 * 64 * 64 * 256 * 4


def test_memory_per_prompt_bounds_the_model_decoders_peak(on_accelerator):
    """Other decoders run the model's own ``SAMMaskDecoder``, which repeats the image per
    prompt: its estimate bounds its peak too."""
    model, emb = on_accelerator
    measured = _peak_per_prompt(model, lambda c, lb: decode(model, emb, c, lb, True))
    model_bytes = on_device.bytes_per_prompt(emb.image_embed, point_decoder=False)
    assert measured <= model_bytes <= 1.1 * measured, (measured / 2**20, model_bytes / 2**20)


def test_operations_per_decoder_call(tiny_model, monkeypatch):
    """A decoder call of the GPU path launches at most 95 operations (the whole grid's prompts
    are embedded once per crop, the IoU and mask tokens share one final attention, the three
    hypernetwork MLPs run as one batched MLP, a single call's outputs are not copied): measured
    as the growth from one call to four for the same 8x8 grid, the budget set to a quarter of it."""
    import cv2

    model = accelerator_model(tiny_model)
    image = cv2.resize(synthetic_image(120, 180), (180, 120))
    warm_up(model, image)
    per_prompt = on_device.bytes_per_prompt(torch.zeros(1, 256, 64, 64))
    ops = {}
    for calls in (1, 4):
        monkeypatch.setattr(on_device, "DECODE_BYTES", per_prompt * 64 // calls)
        counts = count_ours(model, image, AutomaticParams(points_per_side=8, points_per_batch=1))
        ops[calls] = counts.ops
        assert counts.waits <= 5
    per_call = (ops[4] - ops[1]) / 3
    assert 60 <= per_call <= 95, ops
