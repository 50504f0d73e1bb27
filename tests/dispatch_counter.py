"""The CPU proxy of GPU throughput: device operations (kernel launches on a GPU) and host waits
per image of an automatic run, ours against Meta's ``SAM2AutomaticMaskGenerator``.

Both generators run on the fake accelerator of ``tests/fake_accelerator.py`` (the GPU path, real
computation on the CPU), which counts every operation on accelerator tensors (``ops``) and every
time the host would wait for a GPU (``waits``: ``.item()``, ``bool()``, ``nonzero``, boolean
indexing, ``unique``, torchvision's ``nms``, copies to the host...). The image encoder is the same
model code in both: its share is counted apart (``encoder_ops``, ``encoder_waits``) so that the
generators' own work can be compared too. Used by ``tests/automatic/test_dispatch.py`` and
``benchmarks/bench_dispatch.py``.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fake_accelerator import ACCEL, fake_accelerator, model_on_accelerator  # noqa: E402


@dataclass
class Counts:
    """What one generator run dispatched."""

    ops: int = 0
    waits: int = 0
    encoder_ops: int = 0
    encoder_waits: int = 0
    masks: int = 0
    kinds: Dict[str, int] = field(default_factory=dict)
    peak_bytes: int = 0  # accelerator memory at most held at once, above what was held before

    @property
    def generator_ops(self) -> int:
        """Operations outside the image encoder."""
        return self.ops - self.encoder_ops

    @property
    def generator_waits(self) -> int:
        return self.waits - self.encoder_waits


@contextlib.contextmanager
def _counting(model) -> Iterator[Counts]:
    """Counts of the run inside, with the image encoder's share from hooks on
    ``model.image_encoder`` (called once per crop by both generators)."""
    counts = Counts()
    marks: List[tuple] = []
    with fake_accelerator() as mode, torch.no_grad():
        base = mode.reset_peak()
        pre = model.image_encoder.register_forward_pre_hook(
            lambda *a: marks.append((mode.ops, mode.waits)))

        def post(*a):
            ops, waits = marks.pop()
            counts.encoder_ops += mode.ops - ops
            counts.encoder_waits += mode.waits - waits
        hook = model.image_encoder.register_forward_hook(post)
        try:
            yield counts
        finally:
            pre.remove()
            hook.remove()
        counts.ops, counts.waits, counts.kinds = mode.ops, mode.waits, dict(mode.sync_kinds)
        counts.peak_bytes = mode.peak_bytes - base


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread inside (the counts do not depend on it): on a shared, oversubscribed
    2-core machine two OpenMP threads make every small op wait for a descheduled partner
    (measured 5-10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def accelerator_model(model):
    """A copy of ``model`` on the fake accelerator (for :func:`count_ours`, :func:`count_meta`)."""
    with fake_accelerator(), torch.no_grad():
        return model_on_accelerator(model)


def warm_up(model, image: np.ndarray) -> None:
    """Encode ``image`` once and decode one point: the first encoding in a process runs about 90
    more operations than the next ones (the model's caches), and our decoder folds its attention
    weights once per model (about 40 operations), which would count against the first image."""
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.image.predictor import encode_image
    from infer_segment_anything_2.engine.model.device import DeviceChoice

    with fake_accelerator(), torch.no_grad():
        emb = encode_image(model, image, device_choice=DeviceChoice(ACCEL))
        point = torch.full((1, 1, 2), 512.0, device=ACCEL)
        sparse, _ = model.sam_prompt_encoder(
            points=(point, torch.ones(1, 1, dtype=torch.int, device=ACCEL)), boxes=None,
            masks=None)
        PointDecoder(model, emb.image_embed, emb.high_res_feats)(sparse)


def count_ours(model, image: np.ndarray, params) -> Counts:
    """``engine.automatic.generate`` of ``image`` with ``model`` (on the fake accelerator)."""
    from infer_segment_anything_2.engine.automatic import generate
    from infer_segment_anything_2.engine.model.device import DeviceChoice

    with _counting(model) as counts:
        seg = generate(model, image, params, device_choice=DeviceChoice(ACCEL))
    counts.masks = len(seg)
    return counts


def count_meta(model, image: np.ndarray, params) -> Counts:
    """Meta's ``SAM2AutomaticMaskGenerator.generate`` as its users call it (binary masks out),
    with ``min_mask_region_area`` 0 (its CUDA extension is not here)."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    kwargs = {k: v for k, v in params.__dict__.items() if k != "min_mask_region_area"}
    # built outside the fake accelerator: its transforms are TorchScript-compiled, which the
    # accelerator's patched torch.as_tensor cannot be
    generator = SAM2AutomaticMaskGenerator(model, **kwargs)
    with _counting(model) as counts:
        records = generator.generate(image)
    counts.masks = len(records)
    return counts


def iou_quantile(model, image: np.ndarray, points_per_side: int, q: float) -> float:
    """The ``q`` quantile of the predicted IoUs of the whole-image grid's candidates (``model``
    on the CPU): a ``pred_iou_thresh`` that ``1 - q`` of them pass (random weights' IoUs are
    low: the default 0.8 passes none)."""
    from infer_segment_anything_2.engine.automatic import amg
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.image.predictor import encode_image, resize_for_input

    small = resize_for_input(image, 1.0)
    h, w = small.shape[:2]
    emb = encode_image(model, small)
    fast = PointDecoder(model, emb.image_embed, emb.high_res_feats)
    xy = torch.as_tensor(amg.point_grid(points_per_side) * np.array([[w, h]]),
                         dtype=torch.float32)
    xy = xy / torch.tensor([w, h], dtype=torch.float32) * model.image_size
    with torch.no_grad():
        sparse, _ = model.sam_prompt_encoder(points=(xy[:, None], torch.ones(
            len(xy), 1, dtype=torch.int)), boxes=None, masks=None)
        q_tok, tokens, image_tokens = fast.transformer(sparse)
        ious = fast.iou(q_tok, tokens, image_tokens).flatten()
    return float(np.quantile(ious.numpy(), q))
