"""Prompt parsing: the specification's strings (or Studio graphics) into one small dataclass.

Formats (pixels of the original image, x to the right, y down):
- ``input_point``: ``[x,y]`` or ``[[x,y],[x,y],...]``; or one list of points per object (groups):
  ``[[[x,y],[x,y]],[[x,y]]]``.
- ``input_point_label``: ``[1,0,...]``: 1 foreground, 0 background, one per point; with groups one
  list per group, ``[[1,0],[1]]``; empty means every point is foreground.
- ``input_box``: ``[x1,y1,x2,y2]`` or ``[[x1,y1,x2,y2],...]`` (XYXY).

Objects (what one mask, or one set of candidates, answers): with two or more point groups, object
i is group i, with box i when there are as many boxes as groups (no box, or that many, else an
error); otherwise one object per box, every box with all the points (SAM 2's B boxes x N points),
or one object for points alone. A single group counts as plain points.

Rules (documented in the README):
- Values must be finite numbers of at most 1e7 in magnitude; NaN / inf are refused.
- A box given with x2 < x1 or y2 < y1 is reordered (the same rectangle); a box of zero width or
  height is refused.
- Prompts outside the image are kept as given: SAM 2 accepts them (its positional encoding
  extrapolates), exactly as Meta's predictor does.
- At most :data:`MAX_PROMPTS` (10,000) points, labels or boxes per parameter, to bound memory;
  more are refused.
- Any malformed value raises :class:`PromptError` (a :class:`ParameterError`) whose message names
  the parameter and shows the expected format.
"""
from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..parameters import ParameterError, short_repr as _show

MAX_PROMPTS = 10_000  # points, boxes or labels in one parameter
MAX_TEXT = 2_000_000  # characters of one prompt parameter (10,000 boxes need ~400,000)
MAX_COORDINATE = 1e7  # pixels; larger values are typos, not images

POINT_FORMAT = ("[x,y] or [[x,y],[x,y],...] in pixels, e.g. [[500,375]]; one list per object "
                "for several objects, e.g. [[[500,375],[600,380]],[[100,90]]]")
LABEL_FORMAT = ("[1,0,...]: one label per point, 1 foreground, 0 background, e.g. [1,0]; with "
                "points in groups one list per group, e.g. [[1,0],[1]]")
SHARED = -1  # group of a point that every object gets
BOX_FORMAT = "[x1,y1,x2,y2] or [[x1,y1,x2,y2],...] in pixels, e.g. [[75,275,1725,850]]"


class PromptError(ParameterError):
    """A prompt parameter is malformed. ``param`` names it; the message shows the expected format."""


@dataclass(frozen=True)
class Prompt:
    """Parsed prompts.

    Attributes:
        points: ``(N, 2)`` float32, XY pixels (N may be 0).
        labels: ``(N,)`` int32, 1 foreground / 0 background.
        boxes: ``(B, 4)`` float32, XYXY pixels with x1 <= x2 and y1 <= y2 (B may be 0).
        groups: ``(N,)`` int32, the object group of each point: ``SHARED`` (-1) for a point every
            object gets, ``g >= 0`` for a point of group g only. Default: all shared.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    groups: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.groups is None:
            object.__setattr__(self, "groups", np.full(len(self.points), SHARED, np.int32))

    @property
    def is_empty(self) -> bool:
        return len(self.points) == 0 and len(self.boxes) == 0

    @property
    def num_groups(self) -> int:
        """Point groups (0 when every point is shared); one group is used as shared points."""
        return int(self.groups.max()) + 1 if len(self.groups) else 0

    @property
    def num_objects(self) -> int:
        """Objects predicted: one per group (two or more), else one per box, or one for points."""
        if self.is_empty:
            return 0
        return self.num_groups if self.num_groups >= 2 else max(len(self.boxes), 1)

    def check_objects(self) -> None:
        """Two or more point groups need no box or one box per group; else a PromptError."""
        n_groups, n_boxes = self.num_groups, len(self.boxes)
        if n_groups >= 2 and n_boxes not in (0, n_groups):
            raise PromptError("input_point", f"{n_groups} groups of points for {n_boxes} boxes "
                              f"(input_box, graphics and detections together): give one box per "
                              f"group, in the same order, or no box", POINT_FORMAT)

    def object_prompt(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Object ``i``'s prompt as SAM 2's prompt encoder takes it, in original-image pixels:
        its box as two corner points labelled 2 and 3 (first), then its points in the given
        order (shared points and those of group i). Returns ``(P, 2)`` float32, ``(P,)`` int32."""
        self.check_objects()
        grouped = self.num_groups >= 2
        pick = (self.groups == SHARED) | (self.groups == i) if grouped else slice(None)
        coords, labels = [self.points[pick]], [self.labels[pick]]
        if len(self.boxes):
            coords.insert(0, self.boxes[i].reshape(2, 2))
            labels.insert(0, np.array([2, 3], np.int32))
        return (np.concatenate(coords).astype(np.float32),
                np.concatenate(labels).astype(np.int32))

    def merged(self, other: "Prompt") -> "Prompt":
        """Points and boxes of both prompts (``self``'s first); ``other``'s groups are numbered
        after ``self``'s."""
        shift = np.where(other.groups >= 0, other.groups + self.num_groups, SHARED)
        return Prompt(np.concatenate([self.points, other.points]).astype(np.float32),
                      np.concatenate([self.labels, other.labels]).astype(np.int32),
                      np.concatenate([self.boxes, other.boxes]).astype(np.float32),
                      np.concatenate([self.groups, shift]).astype(np.int32))


def _load(text: Any, param: str, expected: str) -> Any:
    if not isinstance(text, str):
        return text
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise PromptError(param, f"a text of {len(text)} characters, at most {MAX_TEXT}", expected)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:  # tolerate Python literals such as "(10, 20)" or "[[1., 2.]]"
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError, OverflowError):
        raise PromptError(param, f"cannot read {_show(text)}", expected) from None


def _number(v: Any, i: int, param: str, expected: str) -> float:
    """One coordinate: a finite int or float of at most 1e7 in magnitude."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PromptError(param, f"entry {i} has a non-number {_show(v, 30)}", expected)
    try:
        value = float(v)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise PromptError(param, f"entry {i} has a non-finite value {_show(v, 30)} "
                          f"(NaN and infinity are not coordinates)", expected)
    if abs(value) > MAX_COORDINATE:
        raise PromptError(param, f"entry {i} has a huge value {_show(v, 30)} (at most "
                          f"{MAX_COORDINATE:g} in magnitude)", expected)
    return value


def _matrix(value: Any, width: int, param: str, expected: str) -> np.ndarray:
    """A flat list of ``width`` numbers or a list of them, as a finite ``(K, width)`` float32 array."""
    if value is None:
        return np.zeros((0, width), np.float32)
    if not isinstance(value, (list, tuple)):
        raise PromptError(param, f"got {type(value).__name__} {_show(value)}", expected)
    if len(value) == 0:
        return np.zeros((0, width), np.float32)
    rows = [value] if not isinstance(value[0], (list, tuple)) else list(value)
    if len(rows) > MAX_PROMPTS:
        raise PromptError(param, f"{len(rows)} entries, at most {MAX_PROMPTS}", expected)
    out = np.empty((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != width:
            raise PromptError(param, f"entry {i} is {_show(row)}, not {width} numbers", expected)
        for j, v in enumerate(row):
            out[i, j] = _number(v, i, param, expected)
    return out


def parse_points(text: Any) -> Tuple[np.ndarray, List[int]]:
    """``input_point`` to ``(N, 2)`` float32 XY pixels and the size of each group (``[N]`` for
    plain points: one group)."""
    value = _load(text, "input_point", POINT_FORMAT)
    if not (isinstance(value, (list, tuple)) and len(value)
            and isinstance(value[0], (list, tuple)) and len(value[0])
            and isinstance(value[0][0], (list, tuple))):
        points = _matrix(value, 2, "input_point", POINT_FORMAT)
        return points, [len(points)] if len(points) else []
    groups = []
    for g, group in enumerate(value):
        if not (isinstance(group, (list, tuple)) and len(group)
                and all(isinstance(p, (list, tuple)) for p in group)):
            raise PromptError("input_point", f"group {g} is {_show(group)}, not a list of "
                              f"[x,y] points", POINT_FORMAT)
        groups.append(_matrix(group, 2, "input_point", POINT_FORMAT))
    points = np.concatenate(groups)
    if len(points) > MAX_PROMPTS:
        raise PromptError("input_point", f"{len(points)} points, at most {MAX_PROMPTS}",
                          POINT_FORMAT)
    return points, [len(g) for g in groups]


def parse_boxes(text: Any) -> np.ndarray:
    """``input_box`` to ``(B, 4)`` float32 XYXY pixels, corners reordered, zero area refused."""
    boxes = _matrix(_load(text, "input_box", BOX_FORMAT), 4, "input_box", BOX_FORMAT)
    return normalize_boxes(boxes, "input_box")


def normalize_boxes(boxes: np.ndarray, param: str = "input_box",
                    allow_flat: bool = False) -> np.ndarray:
    """Reorder corners so x1 <= x2, y1 <= y2; a box with zero width or height is a PromptError
    unless ``allow_flat`` (a detector's box is taken as it is: SAM 2 accepts it)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                          np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    flat = np.nonzero((out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1]))[0]
    if len(flat) and not allow_flat:
        raise PromptError(param, f"box {int(flat[0])} {boxes[flat[0]].tolist()} has zero area "
                          f"(x1 = x2 or y1 = y2)", BOX_FORMAT)
    return out


def parse_labels(text: Any, num_points: int,
                 group_sizes: Optional[Sequence[int]] = None) -> np.ndarray:
    """``input_point_label`` to ``(N,)`` int32; empty means all foreground. Count must match, and
    with two or more point groups (``group_sizes``) the labels come in the same groups."""
    value = _load(text, "input_point_label", LABEL_FORMAT)
    if value is None:
        return np.ones((num_points,), np.int32)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PromptError("input_point_label", f"got {_show(value)}", LABEL_FORMAT)
    sizes = list(group_sizes or [])
    nested = bool(len(value)) and all(isinstance(v, (list, tuple)) for v in value)
    if len(sizes) >= 2 or (nested and len(value) >= 2):
        shape = [len(v) for v in value] if nested else f"{len(value)} labels in one list"
        if shape != sizes:
            points = (f"points in groups of {sizes}" if len(sizes) >= 2
                      else f"{num_points} points in one list")
            raise PromptError("input_point_label", f"labels shaped as {shape} for {points}",
                              LABEL_FORMAT)
        value = [v for group in value for v in group]
    elif nested:
        value = value[0]  # [[1,0]] is read as [1,0]
    if len(value) > MAX_PROMPTS:
        raise PromptError("input_point_label", f"{len(value)} labels, at most {MAX_PROMPTS}",
                          LABEL_FORMAT)
    labels = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in (0, 1):
            raise PromptError("input_point_label", f"label {_show(v, 30)} is not 0 or 1",
                              LABEL_FORMAT)
        labels.append(int(v))
    if len(labels) != num_points:
        raise PromptError("input_point_label", f"{len(labels)} labels for {num_points} points "
                          f"in input_point", LABEL_FORMAT)
    return np.asarray(labels, np.int32).reshape(-1)


def parse_prompt(input_point: Any = "", input_point_label: Any = "",
                 input_box: Any = "") -> Prompt:
    """Parse the three prompt parameters; raises :class:`PromptError` naming the bad one."""
    points, sizes = parse_points(input_point)
    labels = parse_labels(input_point_label, len(points), sizes)
    boxes = parse_boxes(input_box)
    prompt = Prompt(points, labels, boxes, _groups(sizes))
    prompt.check_objects()
    return prompt


def _groups(sizes: Sequence[int]) -> np.ndarray:
    """Group index per point for groups of ``sizes``; one group is plain (shared) points."""
    if len(sizes) < 2:
        return np.full(sum(sizes), SHARED, np.int32)
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def make_prompt(points: Sequence[Sequence[float]] = (), labels: Optional[Sequence[int]] = None,
                boxes: Sequence[Sequence[float]] = (),
                groups: Optional[Sequence[int]] = None) -> Prompt:
    """Build a :class:`Prompt` from Python sequences (e.g. Studio graphics), validated as above.

    ``groups``: one per point, ``SHARED`` (-1) or a group index ``0..G-1``; default all shared.
    """
    pts = _matrix(list(points), 2, "graphics points", POINT_FORMAT)
    lab = (np.ones(len(pts), np.int32) if labels is None
           else parse_labels(list(labels), len(pts)))
    bxs = normalize_boxes(_matrix(list(boxes), 4, "graphics boxes", BOX_FORMAT), "graphics boxes")
    grp = None if groups is None else np.asarray(groups, np.int32).reshape(-1)
    if grp is not None and (len(grp) != len(pts) or (len(grp) and grp.min() < SHARED)):
        raise PromptError("graphics points", f"{len(grp)} groups for {len(pts)} points",
                          POINT_FORMAT)
    return Prompt(pts, lab, bxs, grp)
