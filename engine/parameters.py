"""The plugin's parameters: one table with key, type, default, range, group and meaning.

Ikomia passes parameters as strings. The glue keeps those strings and asks this table to parse
them, so a bad value fails at run time with :class:`ParameterError` naming the key and the
expected format, and the next good value works. The Studio widget and the README read the same
table for tooltips, ranges and documentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .model.device import PRECISIONS, cuda_present
from .model.table import DEFAULT_MODEL, MODELS


class ParameterError(ValueError):
    """A parameter value is malformed or out of range; ``param`` is its key."""

    def __init__(self, param: str, problem: str, expected: str):
        self.param = param
        self.expected = expected
        super().__init__(f"{param}: {problem}. Expected {expected}.")


def short_repr(value: Any, limit: int = 60) -> str:
    """A short ``repr`` of any value for error messages; never raises."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    ``kind`` is one of ``"bool" "int" "float" "str" "choice" "prompt"``; ``minimum``/``maximum``
    bound numbers (inclusive unless ``exclusive_max``); ``default`` may be a callable.
    """

    key: str
    kind: str
    default: Any
    group: str
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_max: bool = False
    choices: Tuple[str, ...] = ()
    fmt: str = ""
    reload_model: bool = False

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def expected(self) -> str:
        if self.fmt:
            return self.fmt
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind in ("int", "float"):
            what = "an integer" if self.kind == "int" else "a number"
            lo = "" if self.minimum is None else f"{self.minimum:g}"
            hi = "" if self.maximum is None else f"{self.maximum:g}"
            if lo and hi:
                return f"{what} from {lo} to {hi}{' (excluded)' if self.exclusive_max else ''}"
            if lo:
                return f"{what} >= {lo}"
            return what
        return "a string"

    def parse(self, text: Any) -> Any:
        """Parse a string (or an already typed value) into this parameter's type, checked."""
        raw = text.strip() if isinstance(text, str) else text
        if self.kind in ("str", "prompt"):
            return "" if raw is None else str(raw)
        if self.kind == "choice":
            if raw not in self.choices:
                raise ParameterError(self.key, f"unknown value {short_repr(raw)}", self.expected())
            return raw
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            word = str(raw).lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ParameterError(self.key, f"got {short_repr(raw)}", self.expected())
        try:
            number = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(self.key, f"got {short_repr(raw)}", self.expected()) from None
        if not math.isfinite(number):
            raise ParameterError(self.key, f"got {short_repr(raw)}", self.expected())
        if self.kind == "int":
            if number != int(number):
                raise ParameterError(self.key, f"got {short_repr(raw)}", self.expected())
            number = int(number)
        if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and (number > self.maximum or (
                    self.exclusive_max and number >= self.maximum))):
            raise ParameterError(self.key, f"{number} is out of range", self.expected())
        return number

    def format(self, value: Any) -> str:
        """The string Ikomia stores for ``value``."""
        return str(value)


_G, _P, _A, _V = "General", "Prompt", "Automatic", "Video"

PARAMETERS: Dict[str, ParamSpec] = {p.key: p for p in (
    ParamSpec("model_name", "choice", DEFAULT_MODEL, _G,
              "SAM 2 / SAM 2.1 model: tiny, small, base_plus or large encoder.",
              choices=tuple(MODELS), reload_model=True),
    ParamSpec("model_weight_file", "str", "", _G,
              "Local checkpoint (.pt) used instead of the download; model_name gives its architecture.",
              reload_model=True),
    ParamSpec("cuda", "bool", cuda_present, _G,
              "Run on the GPU (CUDA) when one is present, else on the CPU.", reload_model=True),
    ParamSpec("precision", "choice", "auto", _G,
              "Precision of the computations: auto = bfloat16 on GPUs of compute capability >= 8, "
              "float16 on 7.x, float32 on older GPUs; on the CPU bfloat16 where it is native "
              "(AVX512-BF16, AMX), else float32; float32, bfloat16 or float16 "
              "to choose (also on the CPU). Changing it re-encodes the image, not the model.",
              choices=PRECISIONS),
    ParamSpec("input_size_percent", "int", 100, _G,
              "Resize the image to this percentage before inference (saves memory); masks come "
              "back at full size.", minimum=1, maximum=100),
    ParamSpec("apply_postprocessing", "bool", True, _G,
              "SAM 2's dynamic multimask: when a single mask is asked for and it is unstable, "
              "use the best of the three candidates instead.", reload_model=True),
    ParamSpec("input_point", "prompt", "", _P,
              "Point prompts in pixels: [x,y] or [[x,y],[x,y],...]; one list per object for "
              "several objects, each with its own points: [[[x,y],[x,y]],[[x,y]]].",
              fmt="[x,y] or [[x,y],[x,y],...] or [[[x,y],[x,y]],[[x,y]]]"),
    ParamSpec("input_point_label", "prompt", "", _P,
              "One label per point, 1 foreground, 0 background: [1,0,...], or one list per "
              "object when the points are in groups: [[1,0],[1]]. Empty: all foreground.",
              fmt="[1,0,...] or [[1,0],[1]]"),
    ParamSpec("input_box", "prompt", "", _P,
              "Box prompts in pixels, XYXY: [x1,y1,x2,y2] or [[x1,y1,x2,y2],...]; one object per box.",
              fmt="[x1,y1,x2,y2] or [[x1,y1,x2,y2],...]"),
    ParamSpec("multimask_output", "bool", False, _P,
              "Return three candidate masks per object (outputs 1, 2, 3, best score first)."),
    ParamSpec("mask_threshold", "float", 0.0, _P,
              "Logit threshold that turns mask logits into masks (0 = probability 0.5; may be "
              "negative to grow masks).", minimum=-100.0, maximum=100.0),
    ParamSpec("points_per_side", "int", 32, _A,
              "Grid of points_per_side x points_per_side point prompts over the image.",
              minimum=1, maximum=256),
    ParamSpec("points_per_batch", "int", 64, _A,
              "Points decoded at once: higher is faster, lower uses less memory.",
              minimum=1, maximum=4096),
    ParamSpec("iou_thresh", "float", 0.8, _A,
              "Keep masks whose predicted IoU (mask quality) is above this.", minimum=0, maximum=1),
    ParamSpec("stability_score_thresh", "float", 0.95, _A,
              "Keep masks whose stability score (IoU of the mask at two cut-offs) is above this.",
              minimum=0, maximum=1),
    ParamSpec("stability_score_offset", "float", 1.0, _A,
              "Shift of the logit cut-off used to compute the stability score.",
              minimum=0, maximum=100),
    ParamSpec("box_nms_thresh", "float", 0.7, _A,
              "Box IoU above which duplicate masks are removed (non-maximum suppression).",
              minimum=0, maximum=1),
    ParamSpec("crop_n_layers", "int", 0, _A,
              "Also run on crops of the image: layer i has (2^i)^2 crops. 0 = no crops.",
              minimum=0, maximum=4),
    ParamSpec("crop_nms_thresh", "float", 0.7, _A,
              "Box IoU above which duplicate masks between crops are removed.", minimum=0, maximum=1),
    ParamSpec("crop_overlap_ratio", "float", 512 / 1500, _A,
              "Overlap of neighbouring crops, as a fraction of the crop size in the first layer.",
              minimum=0, maximum=1, exclusive_max=True),
    ParamSpec("crop_n_points_downscale_factor", "int", 1, _A,
              "Points per side in crop layer n are divided by this to the power n.",
              minimum=1, maximum=64),
    ParamSpec("use_m2m", "bool", False, _A,
              "Refine each mask once more, prompting with its own low-resolution mask."),
    ParamSpec("min_mask_region_area", "int", 0, _A,
              "Remove islands and fill holes smaller than this many pixels (0 = off).",
              minimum=0, maximum=10**8),
    ParamSpec("video_tracking", "bool", False, _V,
              "Video: successive runs are successive frames of one video; the objects are "
              "tracked from frame to frame with SAM 2's memory (prompts are taken on the frame "
              "where they appear or change; detections are matched to the objects; a new frame "
              "size starts a new video)."),
    ParamSpec("video_seed_every", "int", 0, _V,
              "Track everything: on frame 0 and every N frames the automatic mode (Automatic "
              "parameters) runs on the frame and each mask not covered by an object starts a "
              "new one. 0 = off.", minimum=0, maximum=10**6),
    ParamSpec("video_reapply_every", "int", 0, _V,
              "Re-apply the detections matched to objects as box prompts every N frames (for "
              "tracks that drift). 0 = never: the memory tracks them.", minimum=0, maximum=10**6),
    ParamSpec("video_match_iou", "float", 0.3, _V,
              "Box IoU a detection needs with an object's mask box, or with the box of the "
              "detection last matched to it, to be that object (else it starts a new object).",
              minimum=0, maximum=1),
    ParamSpec("video_max_objects", "int", 32, _V,
              "Objects of a video at most; new ones past it are not started (one warning per "
              "video).", minimum=1, maximum=1000),
    ParamSpec("video_drop_after", "int", 0, _V,
              "Drop an object absent this many frames in a row (its id is not reused). 0 = "
              "never.", minimum=0, maximum=10**6),
)}

MODEL_KEYS = tuple(k for k, p in PARAMETERS.items() if p.reload_model)


def default_values() -> Dict[str, str]:
    """Every parameter's default, as the strings Ikomia stores."""
    return {k: p.format(p.default_value()) for k, p in PARAMETERS.items()}


def parse_values(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Parse and check every known parameter; the first bad one raises :class:`ParameterError`."""
    return {k: p.parse(values.get(k, p.default_value())) for k, p in PARAMETERS.items()}


def unknown_keys(keys) -> Dict[str, Optional[str]]:
    """Keys that are not parameters, each with the closest known key (or None)."""
    import difflib

    return {k: next(iter(difflib.get_close_matches(k, PARAMETERS, n=1)), None)
            for k in keys if k not in PARAMETERS}

