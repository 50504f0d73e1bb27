"""Which automatic masks start objects (``engine/video/seeding.py``)."""
from __future__ import annotations

import numpy as np

from infer_segment_anything_2.engine.video.seeding import new_seeds


def _box(y1, x1, y2, x2, hw=(40, 60)):
    m = np.zeros(hw, bool)
    m[y1:y2, x1:x2] = True
    return m


def test_covered_masks_and_parts_do_not_start_objects():
    car, wheel, dog, half_on_car = (_box(5, 5, 25, 35), _box(18, 8, 25, 15), _box(5, 40, 20, 55),
                                    _box(5, 25, 25, 45))
    empty = np.zeros((40, 60), bool)
    candidates = np.stack([car, wheel, dog, half_on_car, empty])
    assert new_seeds(candidates) == [0, 2]  # the wheel is inside the car; 3 is half covered
    tracked = _box(0, 0, 30, 36)  # the car is already an object
    assert new_seeds(candidates, tracked) == [2]
    assert new_seeds(candidates, limit=1) == [0]


def test_a_seed_less_than_half_covered_has_iou_below_one_half_with_each_object():
    rng = np.random.default_rng(0)
    for _ in range(200):
        masks = rng.random((6, 12, 12)) < rng.random((6, 1, 1))
        tracked = masks[3:]
        for i in new_seeds(masks[:3], tracked.any(axis=0)):
            m = masks[i]
            for other in tracked:
                iou = (m & other).sum() / max((m | other).sum(), 1)
                assert iou < 0.5
