"""Annotate images one after the other in this process, through the task's engine.

:class:`Annotator` loads the model once (:class:`engine.session.Sam2Session`, as the task does)
and turns a :class:`~.sources.WorkItem` into the store's record: box prompts go to
``segment_prompt`` (one mask per box, no multimask), no boxes to ``segment_automatic`` with the
task's automatic parameters (:func:`engine.automatic.automatic_params`). :func:`annotate_item`
is the per-image step every runner shares (the Ray workers and the Ikomia detector path too):
read, segment, annotations, or an error record. :func:`run_items` is the single-process loop and
:func:`finish` writes the COCO file and the errors report.
"""
from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..automatic import automatic_params
from ..image.prompts import Prompt, normalize_boxes
from ..parameters import MODEL_KEYS, parse_values
from ..session import ModelKey, Sam2Session
from .coco_writer import mask_annotations, write_coco
from .sources import WorkItem, image_boxes, read_image
from .store import PartStore

AUTOMATIC_CATEGORY = {"id": 1, "name": "object"}

# (masks (K, H, W) bool, SAM 2's scores (K,), category per mask (int id or class name),
#  detector score per mask or None)
SegmentResult = Tuple[np.ndarray, Sequence[float], Sequence[Any], Sequence[Optional[float]]]
Segmenter = Callable[[np.ndarray, Optional[Dict]], SegmentResult]


def parts_path(out: str) -> str:
    """The per-image store next to the output: ``OUT.parts.jsonl``."""
    return str(out) + ".parts.jsonl"


def errors_path(out: str) -> str:
    """The errors report next to the output: ``OUT.errors.json``."""
    return str(out) + ".errors.json"


class Annotator:
    """The engine's segmenter for a dataset: a :data:`Segmenter` over one loaded model.

    Args:
        values: task parameters (strings as Ikomia stores them, or typed), checked by
            :func:`engine.parameters.parse_values` (a bad one raises ``ParameterError``).
        weights_dir: where official checkpoints are downloaded (the plugin's ``weights/``).
    """

    def __init__(self, values: Mapping[str, Any], weights_dir: str):
        self.values = parse_values(values)
        self.session = Sam2Session(Path(weights_dir))
        self.session.load(ModelKey(**{k: self.values[k] for k in MODEL_KEYS}))
        self.automatic = automatic_params(self.values)

    def __call__(self, image: np.ndarray, boxes: Optional[Dict]) -> SegmentResult:
        """Segment an HWC RGB uint8 image: ``boxes`` (see :mod:`.sources`) or automatic mode
        (``None``); an image whose box list is empty gives no mask and is not encoded."""
        v = self.values
        scale = v["input_size_percent"] / 100.0
        if boxes is None:
            seg = self.session.segment_automatic(image, self.automatic, scale,
                                                 precision=v["precision"])
            return seg.masks, seg.scores, [AUTOMATIC_CATEGORY["id"]] * len(seg), [None] * len(seg)
        xyxy, categories, scores = image_boxes(boxes, *image.shape[:2])
        if not len(xyxy):
            return np.zeros((0, *image.shape[:2]), bool), [], [], []
        prompt = Prompt(boxes=normalize_boxes(xyxy, "boxes", allow_flat=True))
        seg = self.session.segment_prompt(image, prompt, scale, False, v["mask_threshold"],
                                          precision=v["precision"])
        objects = seg.object_index
        return (seg.masks, seg.scores, [categories[o] for o in objects],
                [scores[o] for o in objects])


def annotate_item(item: WorkItem, segment: Segmenter, fmt: str = "rle") -> Dict:
    """The store's record of one image: ``{"file_name", "width", "height", "annotations"}``,
    or ``{"file_name", "error"}`` when it cannot be read or segmented (the run goes on)."""
    try:
        image = read_image(item.path)
        masks, scores, categories, detector_scores = segment(image, item.boxes)
        anns = mask_annotations(masks, scores, categories, detector_scores, fmt)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 -- one bad image must not end the run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        place = f"{Path(where.filename).name}:{where.lineno}"
        return {"file_name": item.file_name, "error": f"{type(exc).__name__}: {exc} ({place})"}
    return {"file_name": item.file_name, "width": int(image.shape[1]),
            "height": int(image.shape[0]), "annotations": anns}


def progress_bar(total: int, done: int, enabled: bool = True):
    """A tqdm bar over images (rate in images/s, time left)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="img", disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)


def run_items(items: Sequence[WorkItem], segment: Segmenter, store: PartStore,
              fmt: str = "rle", progress: bool = True) -> int:
    """Annotate the items not yet in ``store``, appending each record as it is done; returns
    how many were annotated now."""
    todo = [item for item in items if item.file_name not in store]
    with progress_bar(len(items), len(items) - len(todo), progress) as bar:
        for item in todo:
            store.append(annotate_item(item, segment, fmt))
            bar.update()
    return len(todo)


def finish(out: str, items: Sequence[WorkItem], store: PartStore,
           categories: Optional[List[Dict]]) -> Dict[str, int]:
    """Write the COCO file (atomically) from the store, and the errors report (``OUT.errors.json``,
    removed when there is none). Returns counts: images, annotations, categories, errors,
    missing (images neither done nor failed, e.g. a run stopped early)."""
    counts = write_coco(out, [(i.image_id, i.file_name) for i in items], store,
                        categories)
    names = {i.file_name for i in items}
    errors = {k: v for k, v in store.errors().items() if k in names}
    report = errors_path(out)
    if errors:
        tmp = report + f".tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump([{"file_name": k, "error": v} for k, v in sorted(errors.items())], f,
                      indent=1)
        os.replace(tmp, report)
    elif os.path.exists(report):
        os.remove(report)
    counts["errors"] = len(errors)
    counts["missing"] = len(items) - counts["images"] - len(errors)
    return counts
