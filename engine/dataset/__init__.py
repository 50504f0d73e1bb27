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

Videos (``annotate.py --videos``): :func:`list_videos` / :func:`open_video` (:mod:`.videos`,
:mod:`.video_file`: video files and frame folders, frames decoded lazily and exactly,
:class:`VideoError` naming the video), prompt files (:func:`read_ytvis_prompts` of
:mod:`.video_prompts`, :func:`read_mot_prompts` of :mod:`.video_mot`, :func:`check_prompts`),
and the writers over :mod:`.video_tracks`' types (:func:`write_videos` with
:data:`VIDEO_FORMATS`: YouTube-VIS labels and results, COCO with tracks in
:mod:`.video_writers`, DAVIS PNGs in :mod:`.video_davis`).

Coordinates: COCO ``bbox`` is XYWH floats of the mask's pixels; boxes given to the engine are
XYXY pixels (``x2 = x + w``, as the task reads a detection).

The video run (``annotate.py --videos``): :mod:`.video_new_tracks` (a detector's or seeding's
tracks), :mod:`.video_runner` (one video's frame results to its tracks, checkpoints, resume; the
single-process loop), :mod:`.video_model` (the runner over the loaded model and
:class:`engine.video.offline.OfflinePropagation`), :mod:`.video_ray` (one video per Ray task),
:mod:`.video_store` (the per-video store and checkpoints), :mod:`.video_finish` (the final files
from the store).

May import: :mod:`engine.model`, :mod:`engine.image`, :mod:`engine.automatic`,
:mod:`engine.parameters`, :mod:`engine.session`, :mod:`engine.video`.
"""
from .coco_writer import FORMATS, mask_annotations, mask_polygons, write_coco
from .runner import (AUTOMATIC_CATEGORY, Annotator, annotate_item, errors_path, finish,
                     parts_path, run_items)
from .sources import (BoxFile, WorkItem, list_images, read_coco_boxes, read_image,
                      read_yolo_boxes, read_yolo_names, work_items)
from .store import PartStore
from .video_mot import read_mot_prompts
from .video_prompts import VideoPrompts, check_prompts, read_ytvis_prompts
from .video_tracks import TrackResult, VideoInfo
from .video_writers import FORMATS as VIDEO_FORMATS
from .video_writers import write_videos
from .videos import VideoError, VideoRef, list_videos, open_video, video_info

__all__ = ["FORMATS", "mask_annotations", "mask_polygons", "write_coco", "AUTOMATIC_CATEGORY",
           "Annotator", "annotate_item", "errors_path", "finish", "parts_path", "run_items",
           "BoxFile", "WorkItem", "list_images", "read_coco_boxes", "read_image",
           "read_yolo_boxes", "read_yolo_names", "work_items", "PartStore", "read_mot_prompts",
           "VideoPrompts", "check_prompts", "read_ytvis_prompts", "TrackResult", "VideoInfo",
           "VIDEO_FORMATS", "write_videos", "VideoError", "VideoRef", "list_videos",
           "open_video", "video_info"]
