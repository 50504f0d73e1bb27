"""engine/session.py: one loaded model shared by both modes; stop requests during encoding."""
from __future__ import annotations

import numpy as np
import pytest

from infer_segment_anything_2.engine.automatic.generator import AutomaticParams
from infer_segment_anything_2.engine.cancel import GenerationCancelled
from infer_segment_anything_2.engine.image.prompts import parse_prompt
from infer_segment_anything_2.engine.session import ModelKey, Sam2Session

from conftest import synthetic_image


@pytest.fixture(scope="module")
def session(tiny_checkpoint, tmp_path_factory):
    s = Sam2Session(tmp_path_factory.mktemp("weights"))
    s.load(ModelKey("sam2.1_hiera_tiny", model_weight_file=str(tiny_checkpoint)))
    return s


class BlockCounter:
    """Counts the image encoder's trunk blocks run; ``stop_after(n)`` is a ``should_stop``."""

    def __init__(self, model):
        self.blocks = 0
        self.polls = 0
        self._handles = [b.register_forward_hook(self._count)
                         for b in model.image_encoder.trunk.blocks]

    def _count(self, *_):
        self.blocks += 1

    def stop_after(self, n: int):
        def should_stop() -> bool:
            self.polls += 1
            return self.blocks >= n
        return should_stop

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@pytest.mark.parametrize("mode", ["automatic", "prompt"])
def test_stop_during_encoding_then_next_run_encodes(session, mode):
    """The encoder is most of a CPU run: a stop request ends it after the block that is running,
    leaves no cached embedding, and the next run encodes the image again."""
    image = synthetic_image(96, 80, seed=21 if mode == "automatic" else 22)
    params = AutomaticParams(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    prompt = parse_prompt("[[40, 30]]", "[1]", "")

    def run(should_stop=None):
        if mode == "automatic":
            return session.segment_automatic(image, params, should_stop=should_stop)
        return session.segment_prompt(image, prompt, should_stop=should_stop)

    n_blocks = len(session.model.image_encoder.trunk.blocks)
    encodes = session.predictor.encode_count
    counter = BlockCounter(session.model)
    try:
        with pytest.raises(GenerationCancelled):
            run(counter.stop_after(2))
        assert counter.blocks == 2 < n_blocks  # the remaining blocks never ran
        assert session.predictor.embedding is None
        assert session.predictor.encode_count == encodes
        counter.blocks = 0
        seg = run()
    finally:
        counter.remove()
    assert counter.blocks == n_blocks
    assert session.predictor.encode_count == encodes + 1
    assert seg.image_shape == image.shape[:2] and len(seg) >= 1
    # the hooks are gone: no stop check is left on the model
    assert all(not b._forward_pre_hooks for b in session.model.image_encoder.trunk.blocks)


def test_cached_embedding_is_not_encoded_again(session):
    image = synthetic_image(64, 64, seed=23)
    prompt = parse_prompt("[[10, 10]]", "[1]", "")
    assert session.set_image(image) is True
    encodes = session.predictor.encode_count
    first = session.segment_prompt(image, prompt)
    auto = session.segment_automatic(image, AutomaticParams(points_per_side=2))
    again = session.segment_prompt(image, prompt)
    assert session.predictor.encode_count == encodes
    np.testing.assert_array_equal(first.masks, again.masks)
    assert auto.image_shape == (64, 64)
