"""The offline propagation's memory over a long video (``engine/video/offline_memory.py``): only the
outputs SAM 2 reads are kept, bounded prompted frames included, so resident memory is flat."""
from __future__ import annotations

import numpy as np
import torch

import standin
from rss import rss_mib
from clips import small_model
from infer_segment_anything_2.engine.model.device import CPU
from infer_segment_anything_2.engine.video.offline import OfflinePropagation
from infer_segment_anything_2.engine.video.offline_types import TrackPrompt


class Repeat:
    """A frame source (``engine/video/offline_types.FrameSource``) of ``n`` frames of one
    picture, counting the frames handed out: no frame is held."""

    def __init__(self, n: int, frame: np.ndarray):
        self.hw, self.names = frame.shape[:2], [f"{t:05d}.jpg" for t in range(n)]
        self.frame, self.decoded = frame, 0

    def __len__(self):
        return len(self.names)

    def iterate(self, indices):
        for t in indices:
            self.decoded += 1
            yield t, self.frame


def test_resident_memory_is_flat_over_2000_frames_with_a_box_on_every_frame():
    """Two MOT-like tracks boxed on every one of 2,000 frames (where Meta's predictor keeps every
    output and attends every prompted frame, growing without bound): the outputs kept after frame
    1,900 are as many as after frame 200 (both with the look-ahead's 16 prompted frames ahead),
    and RSS within 20 MiB of it. The tiny model at a 128 input with the stand-ins of
    ``tests/standin.py`` (real memory encoder and attention; with every output kept, measured:
    3,834 outputs instead of 434 and RSS +895 MiB between the two frames)."""
    n = 2000
    model = small_model(128)
    standin.install(model)
    source = Repeat(n, np.full((96, 128, 3), 90, np.uint8))
    box = np.array([10, 10, 50, 40], np.float32)
    prompts = {i: [TrackPrompt(t, box=box + 8 * i) for t in range(n)] for i in (1, 2)}
    propagation = OfflinePropagation(model, CPU, source, prompts)
    kept, rss, frames = {}, {}, 0
    with torch.no_grad():
        for result in propagation.run():
            frames += 1
            if result.index in (200, 1900) and not result.reverse:
                assert result.masks.any(axis=(1, 2)).all()
                kept[result.index] = propagation.kept_outputs()
                rss[result.index] = rss_mib()
    assert frames == n and source.decoded == n  # forward from frame 0: no backward sweep
    assert kept[1900] == kept[200] <= 2 * (2 * propagation.max_cond + 2 * propagation.horizon)
    assert rss[1900] - rss[200] < 20, f"RSS grew from {rss[200]:.0f} to {rss[1900]:.0f} MiB"
