"""Ikomia glue for SAM 2: parameters, task and factory. The SAM logic lives in ``engine``."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from ikomia import core, dataprocess

from .engine.automatic import automatic_params, count_steps
from .engine.cancel import GenerationCancelled
from .engine.image import (Prompt, Segmentation, label_map, paint_order_large_first, parse_prompt,
                           to_rgb_uint8)
from .engine.parameters import PARAMETERS, MODEL_KEYS, default_values, \
    parse_values, unknown_keys
from .engine.session import ModelKey, Sam2Session
from .engine.video import VideoOptions, clean_detections
from .ikomia_outputs import reset_outputs
from .ikomia_prompts import NamedPrompt, detections_prompt, graphics_prompt, video_detections

logger = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PLUGIN_DIR / "weights"
NUM_MASK_OUTPUTS = 3  # outputs 1..3: best mask / candidates 2 and 3 with multimask_output
MAX_LABEL = 255  # Ikomia's label maps are uint8 and its colour table has 256 classes (0: background)
DETECTIONS_INPUT = 2


class InferSegmentAnything2Param(core.CWorkflowTaskParam):
    """Parameters as the strings Ikomia stores; :meth:`parsed` checks and types them."""

    def __init__(self):
        core.CWorkflowTaskParam.__init__(self)
        self.values: Dict[str, str] = default_values()

    def set_values(self, param_map) -> None:
        self.values.update({k: str(v) for k, v in dict(param_map).items() if k in PARAMETERS})

    def get_values(self) -> Dict[str, str]:
        return dict(self.values)

    def parsed(self) -> Dict:
        """Typed values; raises :class:`ParameterError` naming the first bad parameter."""
        return parse_values(self.values)


class InferSegmentAnything2(dataprocess.CSemanticSegmentationTask):
    """SAM 2 on one image: prompt mode with prompts, automatic mode without.

    Inputs: 0 image, 1 graphics (prompts drawn in Studio), 2 object detections (optional: each
    detection is a box prompt). Outputs: 0 image, 1 mask (label map), 2 and 3 the other multimask
    candidates (empty without multimask), 4 instance segmentation (every predicted mask with its
    box and score).
    """

    def __init__(self, name, param):
        dataprocess.CSemanticSegmentationTask.__init__(self, name)
        # Every IO object is made here, once: Ikomia keeps all that a task was ever given alive,
        # so runs reset them in place (ikomia_outputs) and never hand it new ones.
        # Input 2: detections from an upstream detector (optional): one box prompt per object.
        self._own_detections = dataprocess.CObjectDetectionIO()
        self.add_input(self._own_detections)
        for _ in range(NUM_MASK_OUTPUTS - 1):
            self.add_output(dataprocess.CSemanticSegmentationIO())
        self.add_output(dataprocess.CInstanceSegmentationIO())
        self.set_param_object(copy.deepcopy(param) if param is not None
                              else InferSegmentAnything2Param())
        self.session = Sam2Session(WEIGHTS_DIR)
        self.last_result = None  # Segmentation of the latest run (scores: SAM 2's predicted IoU)
        self._last_automatic = False
        self._stop_requested = False

    @property
    def last_automatic_result(self):
        """The latest run's Segmentation when it ran in automatic mode, else None."""
        return self.last_result if self._last_automatic else None

    def get_progress_steps(self) -> int:
        """Automatic mode: one step per decoder batch of points over all crops, plus one for the
        outputs; prompt mode: 1. Known from the parameters alone (called before ``run``)."""
        try:
            values = self.get_param_object().parsed()
            named = self._prompts(values)
            if values["video_tracking"] or not named.prompt.is_empty or \
                    named.detections_connected:
                return 1
            return count_steps(automatic_params(values)) + 1
        except Exception:  # bad parameters: run() reports them
            return 1

    def set_parameters(self, params) -> None:
        """As Ikomia's, but a key that is not a parameter is an error instead of being ignored."""
        unknown = unknown_keys(dict(params))
        if unknown:
            hints = "; ".join(f"{k!r}" + (f" (did you mean {m!r}?)" if m else "")
                              for k, m in unknown.items())
            raise ValueError(f"Unknown parameter {hints}. Parameters of "
                             f"infer_segment_anything_2: {', '.join(PARAMETERS)}")
        super().set_parameters({k: str(v) for k, v in dict(params).items()})

    def reset_video(self) -> None:
        """Video mode: the next run starts a new video (memory cleared, prompts applied again)."""
        self.session.video.reset()

    def stop(self) -> None:
        """Ask a running ``run`` to end: automatic mode polls the flag between decoder chunks and
        image-encoder blocks, so it ends within one chunk and leaves no outputs."""
        super().stop()
        self._stop_requested = True

    # -- inputs -------------------------------------------------------------------------------
    def _prompts(self, values: Dict) -> NamedPrompt:
        """Graphics (input 1), then the prompt parameters, then the detections (input 2); in
        video mode without the detections, which are matched to the objects instead
        (:meth:`_segment`). Left out, with a message in ``skipped``: detections and graphics
        with NaN or infinite coordinates (the detector's rectangles on the graphics silently)."""
        # the detections as they are, bad ones included: to recognise their rectangles in the
        # graphics (which Ikomia draws there when it connects a detector)
        boxes, classes, _ = video_detections(self.get_input(DETECTIONS_INPUT),
                                             self._own_detections)
        drawn = graphics_prompt(self.get_input(1), skip=NamedPrompt(
            Prompt(boxes=np.asarray(boxes, np.float32).reshape(-1, 4)), classes))
        typed = NamedPrompt(parse_prompt(values["input_point"], values["input_point_label"],
                                         values["input_box"]))
        named = drawn.merged(typed)
        if not values["video_tracking"]:
            named = named.merged(detections_prompt(self.get_input(DETECTIONS_INPUT),
                                                   self._own_detections))
        named.prompt.check_objects()
        return named

    # -- outputs ------------------------------------------------------------------------------
    def _set_label_output(self, index: int, mask: np.ndarray, names: List[str]) -> None:
        colors = [[0, 0, 0]] + [_color(i)[:3] for i in range(len(names) - 1)]
        out = self.get_output(index)
        out.set_class_names(names)
        out.set_class_colors(colors)
        out.set_mask(mask)

    def _write_outputs(self, seg: Segmentation, named: Optional[NamedPrompt], height: int,
                       width: int) -> None:
        """Label maps and instances; ``named`` is None in automatic mode."""
        if named is None:
            if len(seg) > MAX_LABEL:
                _warn_label_limit(len(seg), "masks")
            order = paint_order_large_first(seg.masks)
            names = ["background"] + [f"mask {i + 1}" for i in range(min(len(seg), MAX_LABEL))]
            self._set_label_output(1, label_map(seg.masks, order=order, shape=(height, width),
                                                max_label=MAX_LABEL), names)
            labels = ["mask"] * len(seg)
            self._write_instances(seg, np.zeros(len(seg), int), labels, seg.scores)
            return
        objects = named.object_names()
        classes = list(dict.fromkeys(objects))  # one label per class name, in object order
        class_of = np.array([classes.index(n) for n in objects], int).reshape(-1)
        if len(classes) > MAX_LABEL:
            _warn_label_limit(len(classes), "classes")
        names = (["background"] + classes)[:MAX_LABEL + 1]
        for rank in range(int(seg.candidate.max()) + 1 if len(seg) else 1):
            pick = np.nonzero(seg.candidate == rank)[0]
            mask = label_map(seg.masks[pick], labels=class_of[seg.object_index[pick]] + 1,
                             shape=(height, width), max_label=MAX_LABEL)
            self._set_label_output(1 + rank, mask, names)
        multi = len(seg) and int(seg.candidate.max()) > 0
        labels = [objects[o] + (f" candidate {c + 1}" if multi else "")
                  for o, c in zip(seg.object_index, seg.candidate)]
        detected = named.object_confidences()
        scores = [s if detected[o] is None else detected[o]
                  for o, s in zip(seg.object_index, seg.scores)]
        self._write_instances(seg, class_of[seg.object_index], labels, scores)

    def _write_video_outputs(self, seg: Segmentation) -> None:
        """Video mode: the object of id k (from 0) is label k + 1 and instance id k on every
        frame, with its name; an object absent from the frame keeps its id with an empty mask."""
        video = self.session.video
        ids = seg.object_index.astype(int)
        top = int(ids.max()) + 1 if len(ids) else 0
        names = _unique([video.name_of(i) for i in range(top)])  # label k + 1: id k
        if top > MAX_LABEL:
            _warn_label_limit(top, "object ids")
        self._set_label_output(1, label_map(seg.masks, labels=ids + 1, shape=seg.image_shape,
                                            max_label=MAX_LABEL),
                               ["background"] + names[:MAX_LABEL])
        self._write_instances(seg, ids, [names[i] for i in ids], seg.scores, ids)

    def _write_instances(self, seg: Segmentation, class_index: np.ndarray, labels: List[str],
                         confidences, ids: Optional[np.ndarray] = None) -> None:
        """Instance output: mask i with its inclusive box, class, label and confidence, as
        instance ``ids[i]`` (default: i)."""
        out = self.get_output(1 + NUM_MASK_OUTPUTS)
        out.init(self.name, 0, *seg.image_shape[::-1])
        for i in range(len(seg)):
            x1, y1, x2, y2 = (float(v) for v in seg.boxes[i])  # inclusive: width x2 - x1 + 1
            w, h = (x2 - x1 + 1, y2 - y1 + 1) if seg.masks[i].any() else (0.0, 0.0)
            k = i if ids is None else int(ids[i])
            out.add_object(k, 0, int(class_index[i]), labels[i], float(confidences[i]),
                           x1, y1, w, h, seg.masks[i].astype(np.uint8), _color(k))

    # -- run ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.begin_task_run()
        self._stop_requested = False
        reset_outputs(self)
        self.last_result, self._last_automatic = None, False
        values = self.get_param_object().parsed()
        image = to_rgb_uint8(self.get_input(0).get_image())
        named = self._prompts(values)
        for message in named.skipped:
            logger.warning("infer_segment_anything_2: %s", message)
        video = values["video_tracking"]
        automatic = not video and named.prompt.is_empty and not named.detections_connected
        if not video:  # a run outside video mode ends the video
            self.session.video.reset()
        self.session.load(ModelKey(**{k: values[k] for k in MODEL_KEYS}))
        try:  # a stop during the model load skips the segmentation
            seg = None if self._stop_requested else self._segment(image, named, automatic, values)
        except GenerationCancelled:
            seg = None
        if self._stop_requested:  # stopped: no outputs, and the workflow's own stop handling
            reset_outputs(self)
            logger.info("infer_segment_anything_2: stopped by the user, no outputs")
        else:
            if video:
                self._write_video_outputs(seg)
            else:
                self._write_outputs(seg, None if automatic else named, *image.shape[:2])
            self.last_result, self._last_automatic = seg, automatic
            self.emit_step_progress()
        self.end_task_run()

    def _segment(self, image: np.ndarray, named: NamedPrompt, automatic: bool,
                 values: Dict) -> Segmentation:
        scale = values["input_size_percent"] / 100.0
        should_stop = lambda: self._stop_requested  # noqa: E731
        precision = values["precision"]
        if values["video_tracking"]:
            boxes, classes, confidences = video_detections(self.get_input(DETECTIONS_INPUT),
                                                           self._own_detections)
            detections, problems = clean_detections(boxes, classes, confidences, image.shape[:2])
            for problem in problems:
                logger.warning("infer_segment_anything_2: %s", problem)
            return self.session.track_video(
                image, named.prompt, named.object_names(default=False), values["mask_threshold"],
                should_stop, precision, detections, _video_options(values),
                automatic_params(values) if values["video_seed_every"] else None)
        if named.prompt.is_empty and not automatic:  # a detector found nothing: no object
            return Segmentation.empty(*image.shape[:2])
        if not automatic:
            return self.session.segment_prompt(image, named.prompt, scale,
                                               values["multimask_output"],
                                               values["mask_threshold"], should_stop, precision)
        return self.session.segment_automatic(
            image, automatic_params(values), scale,
            on_batch=lambda done, total: self.emit_step_progress(), should_stop=should_stop,
            precision=precision)


def _video_options(values: Dict) -> VideoOptions:
    """The video parameters (``video_<field>``) as the engine's options."""
    return VideoOptions(**{f: values["video_" + f] for f in VideoOptions.__dataclass_fields__})


def _warn_label_limit(count: int, what: str) -> None:
    logger.warning("%d %s are not in the label maps, which hold at most %d labels (every mask is "
                   "in the instance segmentation output)", count - MAX_LABEL, what, MAX_LABEL)


def _unique(names: List[str]) -> List[str]:
    """Names made distinct: a repeated name gets the object's number ("car", "car 2")."""
    seen = {n for i, n in enumerate(names) if n in names[:i]}
    return [n if n not in seen or names.index(n) == i else f"{n} {i + 1}"
            for i, n in enumerate(names)]


def _color(i: int) -> List[int]:
    """A stable, well-spread RGBA colour for instance ``i`` (golden-ratio hue steps)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
    return [int(r * 255), int(g * 255), int(b * 255), 255]


class InferSegmentAnything2Factory(dataprocess.CTaskFactory):
    """Creates the task; ``info`` is what Ikomia Studio and the HUB show."""

    def __init__(self):
        dataprocess.CTaskFactory.__init__(self)
        info = self.info
        info.name = "infer_segment_anything_2"
        info.short_description = "Inference for Segment Anything Model 2 (SAM 2 and SAM 2.1)."
        info.description = ("Segment Anything Model 2 (SAM 2 and SAM 2.1, Meta) on images. Prompt "
                            "mode: masks for the objects given by points (foreground or "
                            "background) and boxes, as parameters or drawn in Ikomia Studio. "
                            "Automatic mode (no prompt): masks for everything in the image. "
                            "Outputs a label mask per candidate and an instance segmentation "
                            "with boxes and scores. Video tracking (video_tracking): the prompted "
                            "objects are tracked through the frames of a video with SAM 2's "
                            "memory.")
        info.path = "Plugins/Python/Segmentation"
        info.version = "2.0.0"
        info.icon_path = "icons/icon.png"
        info.authors = ("Ravi, Nikhila and Gabeur, Valentin and Hu, Yuan-Ting and Hu, Ronghang and "
                        "Ryali, Chaitanya and Ma, Tengyu and Khedr, Haitham and Radle, Roman and "
                        "Rolland, Chloe and Gustafson, Laura and Mintun, Eric and Pan, Junting and "
                        "Alwala, Kalyan Vasudev and Carion, Nicolas and Wu, Chao-Yuan and "
                        "Girshick, Ross and Dollar, Piotr and Feichtenhofer, Christoph")
        info.article = "SAM 2: Segment Anything in Images and Videos"
        info.journal = "arXiv:2408.00714"
        info.year = 2024
        info.article_url = "https://arxiv.org/abs/2408.00714"
        info.license = "Apache-2.0"
        info.documentation_link = "https://github.com/Ikomia-hub/infer_segment_anything_2#readme"
        info.repository = "https://github.com/Ikomia-hub/infer_segment_anything_2"
        info.original_repository = "https://github.com/facebookresearch/sam2"
        info.keywords = ("SAM, SAM2, SAM 2.1, segment anything, Meta, prompt, point, box, "
                         "automatic mask generation, zero-shot, instance segmentation, video, "
                         "tracking")
        info.algo_type = core.AlgoType.INFER
        info.algo_tasks = "SEMANTIC_SEGMENTATION,INSTANCE_SEGMENTATION"
        info.min_ikomia_version = "0.16.0"
        info.min_python_version = "3.10.0"
        # Peak RSS of a whole run in one process (python + torch + ikomia + model + run +
        # outputs), CPU, random weights of the real architectures, benchmarks/bench_memory.py
        # (2026-11-30, torch 2.14.1, ikomia 0.16.1):
        # - prompt mode, 1920x1080 or 4000x3000: tiny 1.6 GiB, small 1.6-1.7, base_plus 1.9,
        #   large 2.6-2.8;
        # - automatic mode keeps low-resolution logits until the end and makes full-size masks
        #   only for the masks it returns, so memory grows with the masks returned times the
        #   image size: ~150 masks (stand-in decoder, what trained weights give) at 1920x1080:
        #   small 1.9 GiB, large 2.8; at 4000x3000: small 4.9 GiB, large 5.6 (random weights,
        #   which return no mask: 1.6 / 2.7-2.8).
        # 6 GB covers 12-megapixel photos in automatic mode with any model; Full-HD needs 3.
        # VRAM measured on an H200 (benchmarks/gpu_check.py, README "Precision and GPUs"): the
        # tiny model in bfloat16 peaks at 2.2 GiB of PyTorch allocations in automatic mode
        # (32x32 points, 1800x1200), plus the CUDA context; larger models not measured yet.
        info.hardware_config.min_cpu = 2
        info.hardware_config.min_ram = 6
        info.hardware_config.gpu_required = False
        info.hardware_config.min_vram = 3

    def create(self, param=None):
        return InferSegmentAnything2(self.info.name, param)
