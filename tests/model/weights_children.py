"""The fake checkpoint of ``test_weights.py`` and what its child processes run (``tests/child.py``).

The children load this file by path, so both sides build the same deterministic payload here.
"""
from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

from child import reply, wait_for_parent
from infer_segment_anything_2.engine.model.table import ModelSpec
from infer_segment_anything_2.engine.model.weights import ensure_checkpoint

PAYLOAD = random.Random(2).randbytes(2_500_000 + 123)  # more than two 1 MiB chunks
OFFICIAL_URL = "https://dl.example.invalid/segment_anything_2/fake_model.pt"
SPEC = ModelSpec("fake_model", "configs/none.yaml", OFFICIAL_URL, len(PAYLOAD),
                 hashlib.sha256(PAYLOAD).hexdigest(), 1.0)


def download_when_told(folder: str, url: str) -> None:
    """Say "ready", wait for the parent's go (so that two children start together), download,
    answer ``[outcome, path or error, seconds]``."""
    reply("ready")
    wait_for_parent()
    start = time.monotonic()
    try:
        path = ensure_checkpoint(SPEC, Path(folder), url=url, timeout=10)
        reply(["ok", str(path), time.monotonic() - start])
    except BaseException as exc:  # reported to the parent, which fails the test
        reply(["error", repr(exc), time.monotonic() - start])


def download_forever(folder: str, url: str) -> None:
    """Download from a server that stalls (the parent kills this process meanwhile)."""
    reply("started")
    ensure_checkpoint(SPEC, Path(folder), url=url, timeout=60)
