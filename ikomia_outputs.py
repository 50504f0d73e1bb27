"""Ikomia glue: the task's outputs are made once and reset in place before every run.

Ikomia keeps every IO object handed to ``add_output`` / ``set_output`` alive as long as the task,
also after ``set_output`` has replaced it, with its data: a task that sets fresh outputs on every
run grows by one output per replaced output per run (with noisy 1920x1080 masks, gigabytes in a
hundred runs; ../shared/notes/ikomia-0.16.md). So the task makes its outputs in its constructor
and :func:`reset_outputs` empties them before each run (and after a stop); nothing else in the
plugin may call ``set_output`` or make an IO object per run.

A reset output is indistinguishable from a fresh one of its type (checked with Ikomia 0.16.1,
``tests/glue/test_outputs.py``): ``is_data_available()`` False, no mask, no class names or
colours, no polygons, no objects, the same ``to_json()``. What it takes:

- ``CSemanticSegmentationIO``: ``clear_data()`` drops the mask, class names and colours but keeps
  the polygons Ikomia computed from the last mask (``get_polygons()``, ``to_json()``, and the
  outlines Studio draws); ``set_mask()`` recomputes them, so an empty (0x0) mask first replaces
  them by none, then ``clear_data()`` drops that mask and the colours ``set_mask`` filled in. An
  all-zero mask of the image's size would not do: Ikomia outlines it with one polygon around the
  whole image and reports data available.
- Every other output (``CInstanceSegmentationIO``: objects, merged mask and their graphics;
  ``CImageIO``): ``clear_data()`` alone leaves it as fresh.
"""
from __future__ import annotations

import numpy as np
from ikomia import dataprocess

_NO_MASK = np.zeros((0, 0), np.uint8)  # a mask Ikomia draws no polygon for


def reset_output(output) -> None:
    """Empty one Ikomia output in place, to the state of a freshly made one of its type."""
    if isinstance(output, dataprocess.CSemanticSegmentationIO):
        output.set_mask(_NO_MASK)  # replaces the last mask's polygons (clear_data keeps them)
    output.clear_data()


def reset_outputs(task) -> None:
    """Empty every output of ``task`` in place (never replaced: see the module's docstring)."""
    for output in task.get_outputs():
        reset_output(output)
