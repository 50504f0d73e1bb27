"""The SAM 2 engine: plain Python over PyTorch and Meta's ``sam2`` package, no Ikomia import.

Packages, from the bottom up (a package imports only those above it in this list, and the
shared modules):

* :mod:`.model` -- the model table, verified checkpoint downloads, the loader, device and
  precision;
* :mod:`.image` -- prompt parsing, image conversion, the prompt predictor and its embedding
  cache, mask utilities, results, COCO RLE;
* :mod:`.decoder` -- SAM 2's mask decoder reordered for many point prompts on one image;
* :mod:`.automatic` -- automatic mask generation (masks for everything);
* :mod:`.video` -- video tracking, streamed one frame per call;
* :mod:`.dataset` -- a folder of images annotated to one COCO file, resumable, in one process
  or on Ray Data actors (it also imports :mod:`.session`).

Shared modules: :mod:`.parameters` (the task's parameter table and :class:`ParameterError`),
:mod:`.cancel` (stop requests) and :mod:`.session` (one loaded model serving every mode; it may
import every package).
"""
