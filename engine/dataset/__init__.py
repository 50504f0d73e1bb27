"""Annotate a dataset: a folder (or list) of images to a COCO instances file, resumable, in one
process or on Ray Data actors.

Entry points: :func:`list_images` / :func:`read_coco_boxes` / :func:`read_yolo_boxes` /
:func:`work_items` (:mod:`.sources`: what to annotate, ids ``1..N`` from the sorted list, boxes
from files), :class:`Annotator` (:mod:`.runner`: the task's engine,
:class:`engine.session.Sam2Session`, box prompts or automatic mode), :func:`run_items` (one
process) or :func:`.ray_runner.run_items_ray` (Ray, imported only when called), :class:`PartStore`
(:mod:`.store`: one JSON line per image, fsynced, deduplicated by file name) and :func:`finish`
(:mod:`.runner`: the COCO file of :mod:`.coco_writer`, RLE or polygons, written atomically, and
the errors report).
``annotate.py`` at the plugin's root is the command line; ``ikomia_annotate.py`` (glue) runs an
Ikomia detector before the task.

Coordinates: COCO ``bbox`` is XYWH floats of the mask's pixels; boxes given to the engine are
XYXY pixels (``x2 = x + w``, as the task reads a detection).

Videos (``annotate.py --videos``): :mod:`.videos` (what to annotate, frames read lazily),
:mod:`.video_prompts` / :mod:`.video_mot` (prompts' files), :mod:`.video_new_tracks` (a
detector's or seeding's tracks), :mod:`.video_runner` (one video's frame results to its tracks,
checkpoints, resume; the single-process loop), :mod:`.video_model` (the runner over the loaded
model and :class:`engine.video.offline.OfflinePropagation`), :mod:`.video_ray` (one video per
Ray task), :mod:`.video_store` (the per-video store and checkpoints), :mod:`.video_finish` (the
final files from the store, by :mod:`.video_writers` / :mod:`.video_davis`).

May import: :mod:`engine.model`, :mod:`engine.image`, :mod:`engine.automatic`,
:mod:`engine.parameters`, :mod:`engine.session`, :mod:`engine.video`.
"""
from .coco_writer import FORMATS, mask_annotations, mask_polygons, write_coco
from .runner import (AUTOMATIC_CATEGORY, Annotator, annotate_item, errors_path, finish,
                     parts_path, run_items)
from .sources import (BoxFile, WorkItem, list_images, read_coco_boxes, read_image,
                      read_yolo_boxes, read_yolo_names, work_items)
from .store import PartStore

__all__ = ["FORMATS", "mask_annotations", "mask_polygons", "write_coco", "AUTOMATIC_CATEGORY",
           "Annotator", "annotate_item", "errors_path", "finish", "parts_path", "run_items",
           "BoxFile", "WorkItem", "list_images", "read_coco_boxes", "read_image",
           "read_yolo_boxes", "read_yolo_names", "work_items", "PartStore"]
