"""Track everything: which automatic masks of a frame start new objects.

The rule (README, "Track everything"): masks are taken in the automatic mode's order (largest
first); a mask starts a new object when less than half of its pixels are covered by the objects
already there (the tracked objects' masks on this frame, the boxes of objects started on this
frame by prompts or detections, and the masks accepted before it). It follows that its IoU with
each of those masks is below 0.5: IoU >= 0.5 needs an intersection of at least
(|mask| + |other|) / 3 >= half of the mask. Larger masks come first, so the parts of an object
already tracked (a wheel of a tracked car) do not start objects of their own. Pure numpy.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

MAX_COVERED = 0.5  # a seed with at least this share of its pixels covered is not new


def new_seeds(candidates: np.ndarray, covered: Optional[np.ndarray] = None,
              limit: Optional[int] = None) -> List[int]:
    """Indices of ``candidates`` (``(N, H, W)`` bool, in priority order) that start objects.

    ``covered``: ``(H, W)`` bool, the pixels of the objects already there (None: nothing).
    ``limit``: at most this many seeds (None: no limit). Empty candidates never start objects.
    """
    n, h, w = candidates.shape
    taken = np.zeros((h, w), bool) if covered is None else covered.copy()
    chosen: List[int] = []
    for i in range(n):
        if limit is not None and len(chosen) >= limit:
            break
        mask = candidates[i]
        area = int(mask.sum())
        if area == 0 or int(np.count_nonzero(mask & taken)) >= MAX_COVERED * area:
            continue
        chosen.append(i)
        taken |= mask
    return chosen
