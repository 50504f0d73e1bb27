"""Prompts from the task's Ikomia inputs (glue): Studio graphics and upstream detections.

Objects are numbered in this order: graphics boxes (drawing order), ``input_box``, then the
detections (the detector's order). Each box gets a name: a detection's class label, a graphics
rectangle's category when one is set, else ``object i`` (i = the object's number, from 1).
Boxes and points with NaN or infinite coordinates (a detector's bad box, and the rectangle Ikomia
draws for it on the graphics input) are left out, with one message per kind in
:attr:`NamedPrompt.skipped` that the task logs as a warning.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from ikomia import core

from .engine.image.prompts import SHARED, Prompt, make_prompt, normalize_boxes

# Graphics categories that make a point a background (negative) prompt, case-insensitive.
BACKGROUND_CATEGORIES = {"background", "negative", "bg", "0", "exclude"}
# "object 2", "background 2", "fg 2", "bg #2": the point belongs to object group 2.
_GROUP_CATEGORY = re.compile(r"^(?P<word>[a-z]+)\s*#?\s*(?P<number>\d+)$")
# Categories that do not name a box: Studio's default, and the widget's foreground tool.
UNNAMED = {"", "default", "foreground"}


@dataclass
class NamedPrompt:
    """A prompt and what the outputs need about its boxes.

    Attributes:
        prompt: the engine's prompt.
        box_names: one per box of ``prompt``: a class name, or "" for an unnamed box.
        box_confidences: one per box: the detector's confidence, or None when not a detection.
        detections_connected: a detection input is connected (or was set by ``set_input``).
        skipped: what was left out, one message per kind (the task logs them as warnings).
    """

    prompt: Prompt = field(default_factory=Prompt)
    box_names: List[str] = field(default_factory=list)
    box_confidences: List[Optional[float]] = field(default_factory=list)
    detections_connected: bool = False
    skipped: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.prompt.boxes)  # boxes given without names: unnamed, not detections
        self.box_names = list(self.box_names) or [""] * n
        self.box_confidences = list(self.box_confidences) or [None] * n

    def merged(self, other: "NamedPrompt") -> "NamedPrompt":
        """``self``'s prompts and boxes first, then ``other``'s."""
        return NamedPrompt(self.prompt.merged(other.prompt), self.box_names + other.box_names,
                           self.box_confidences + other.box_confidences,
                           self.detections_connected or other.detections_connected,
                           self.skipped + other.skipped)

    def object_names(self, default: bool = True) -> List[str]:
        """One name per object of the prompt (see the module docstring); with ``default``
        False an unnamed object's name is "" (video mode names it by its id)."""
        n = self.prompt.num_objects
        names = self.box_names if len(self.prompt.boxes) == n else [""] * n
        return [name or (f"object {i + 1}" if default else "") for i, name in enumerate(names)]

    def object_confidences(self) -> List[Optional[float]]:
        """The detector's confidence per object, None for an object that is not a detection."""
        n = self.prompt.num_objects
        return list(self.box_confidences) if len(self.prompt.boxes) == n else [None] * n


def point_category(category: str) -> Tuple[int, Optional[int]]:
    """A graphics point's category as (label, group number or None): ``background`` words give
    label 0; ``object 2`` / ``background 2`` put the point in object group 2."""
    text = category.strip().lower()
    match = _GROUP_CATEGORY.match(text)
    if match:
        return (0 if match["word"] in BACKGROUND_CATEGORIES else 1), int(match["number"])
    return (0 if text in BACKGROUND_CATEGORIES else 1), None


def detections_prompt(detections, own_input) -> NamedPrompt:
    """Box prompts from a ``CObjectDetectionIO``: one object per detection, XYXY from its
    ``x, y, w, h`` box, named by its label, with its confidence; a box with NaN or infinite
    values is left out (one message in ``skipped``).

    ``own_input`` is the input object the task made: any other object there means a detector is
    connected (Ikomia puts the upstream output in its place), even when it found nothing.
    """
    if detections is None:
        return NamedPrompt()
    connected = detections is not own_input
    objects = detections.get_objects() if detections.is_data_available() else []
    good = [o for o in objects if _finite(o.box)]
    skipped = [f"{len(objects) - len(good)} detection(s) with NaN or infinite coordinates: "
               f"skipped"] if len(good) < len(objects) else []
    boxes = normalize_boxes([[x, y, x + w, y + h] for x, y, w, h in (o.box for o in good)],
                            "detections", allow_flat=True)
    return NamedPrompt(Prompt(boxes=boxes), [o.label for o in good],
                       [float(o.confidence) for o in good], connected or bool(len(objects)),
                       skipped)


def video_detections(detections, own_input) -> Tuple[List[List[float]], List[str], List[float]]:
    """A ``CObjectDetectionIO``'s detections as they are, bad boxes included (video mode checks
    them itself and skips bad boxes with a warning; the graphics input's copies of them are
    recognised by these): continuous XYXY boxes from ``x, y, w, h``, class names, confidences."""
    if detections is None or not detections.is_data_available():
        return [], [], []
    objects = detections.get_objects()
    boxes = [[float(x), float(y), float(x) + float(w), float(y) + float(h)]
             for x, y, w, h in (o.box for o in objects)]
    return boxes, [o.label for o in objects], [float(o.confidence) for o in objects]


def graphics_prompt(graphics, skip: Optional[NamedPrompt] = None) -> NamedPrompt:
    """Prompts drawn in Studio (see the README): points (category ``background`` = negative,
    ``object N`` / ``background N`` = group N), rectangles, and the bounding box of ellipses and
    polygons. Rectangles that repeat a box of ``skip`` with its name (what Ikomia draws for a
    detector's output when it connects it to the graphics input too, NaN where the detection
    has NaN) are left out; other items with NaN or infinite coordinates are left out with one
    message in ``skipped``."""
    if graphics is None or not graphics.is_data_available():
        return NamedPrompt()
    points, labels, numbers, boxes, names = [], [], [], [], []
    bad = 0
    for item in graphics.get_items():
        kind = item.get_type()
        if kind == core.GraphicsItem.POINT:
            if not _finite([item.point.x, item.point.y]):
                bad += 1
                continue
            label, number = point_category(item.get_category())
            points.append([item.point.x, item.point.y])
            labels.append(label)
            numbers.append(number)
            continue
        if kind in (core.GraphicsItem.RECTANGLE, core.GraphicsItem.ELLIPSE):
            box = [item.x, item.y, item.x + item.width, item.y + item.height]
        elif kind in (core.GraphicsItem.POLYGON, core.GraphicsItem.POLYLINE):
            xy = np.array([[p.x, p.y] for p in item.points], np.float32)
            if not len(xy):
                continue
            box = [float(v) for v in (*xy.min(axis=0), *xy.max(axis=0))]
        elif kind == core.GraphicsItem.COMPLEX_POLYGON:
            x, y, w, h = item.get_bounding_rect()
            box = [x, y, x + w, y + h]
        else:  # text and anything else: no prompt
            continue
        name = item.get_category().strip()
        name = "" if name.lower() in UNNAMED else name
        if kind == core.GraphicsItem.RECTANGLE and skip is not None and _repeats(box, name, skip):
            continue
        if not _finite(box):
            bad += 1
            continue
        boxes.append(box)
        names.append(name)
    groups = _group_indices(numbers)
    skipped = [f"{bad} graphics item(s) with NaN or infinite coordinates: skipped"] if bad else []
    return NamedPrompt(make_prompt(points, labels, boxes, groups), names, skipped=skipped)


def _finite(values) -> bool:
    return bool(np.isfinite(np.asarray(values, np.float64)).all())


def _repeats(box: List[float], name: str, other: NamedPrompt) -> bool:
    """True when ``other`` has a box equal to ``box`` (to 1e-3 pixel, NaN where it has NaN)
    with the name ``name``."""
    if not len(other.prompt.boxes):
        return False
    theirs, ours = other.prompt.boxes, np.asarray(box, np.float32)
    with np.errstate(invalid="ignore"):
        close = np.abs(theirs - ours) <= 1e-3
    same = np.all(close | (np.isnan(theirs) & np.isnan(ours)), axis=1)
    return any(s and n == name for s, n in zip(same, other.box_names))


def _group_indices(numbers: List[Optional[int]]) -> List[int]:
    """Group numbers as written (``object 3``, ``object 7``) to indices 0, 1, ... in numeric
    order; points without a number are shared by every object."""
    order = {n: i for i, n in enumerate(sorted({n for n in numbers if n is not None}))}
    return [SHARED if n is None else order[n] for n in numbers]
