"""Annotate on Ray Data actors: a local Ray instance or a cluster (Ray is imported only here,
only when called; ``requirements-ray.txt``).

The driver builds a dataset of the images not yet in the store (one row per image: its
``file_name``, path, id and boxes as JSON), and ``map_batches`` sends it to a pool of
``workers`` actors of :class:`AnnotateWorker` (``__init__`` loads the model once, ``__call__``
annotates a batch with :func:`.runner.annotate_item`, the same step as the single process).
Records are appended to the store as their batches come back, so the run resumes like the
single-process one. A worker that dies is restarted by Ray and its batch retried (Ray Data's
defaults for actor pools, ``max_restarts=-1`` and ``max_task_retries=-1``); a record that would
arrive twice is dropped by the store.

Workers import the plugin from the same folder as the driver (on a cluster, install it at the
same path on every machine): the worker class and :func:`_import_package` travel by value and
register the plugin's package from that folder before anything else of it is imported.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

_PARTS = __name__.split(".")
_PACKAGE = ".".join(_PARTS[:-1])  # this package, e.g. infer_segment_anything_2.engine.dataset
_TOP, _TOP_DIR = _PARTS[0], str(Path(__file__).resolve().parents[len(_PARTS) - 2])


def _import_package(top: str, top_dir: str, package: str):
    """Import ``package`` in a worker, its top-level package registered from ``top_dir`` (the
    worker's ``sys.path`` may not find it, e.g. in a checkout folder of another name, or find
    the plugin's entry module of the same name first)."""
    if not hasattr(sys.modules.get(top), "__path__"):
        spec = importlib.util.spec_from_file_location(
            top, os.path.join(top_dir, "__init__.py"), submodule_search_locations=[top_dir])
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        spec.loader.exec_module(module)
    return importlib.import_module(package)


class AnnotateWorker:
    """One Ray actor: the model loaded once, then batches of rows annotated.

    ``crash_once``: a drill for fault tolerance (tests): when set and that file does not exist,
    the first batch creates it and the worker process exits at once, as a crash would."""

    def __init__(self, top: str, top_dir: str, package: str, values: Dict[str, str],
                 weights_dir: str, fmt: str, threads: int, crash_once: str = ""):
        runner = _import_package(top, top_dir, package + ".runner")
        self.sources = importlib.import_module(package + ".sources")
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.annotate_item = runner.annotate_item
        self.segment = runner.Annotator(values, weights_dir)
        self.fmt, self.crash_once = fmt, crash_once

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        if self.crash_once and not os.path.exists(self.crash_once):
            Path(self.crash_once).write_text(str(os.getpid()))
            os._exit(1)
        records = []
        for name, path, image_id, boxes in zip(batch["file_name"], batch["path"],
                                               batch["image_id"], batch["boxes"]):
            item = self.sources.WorkItem(str(name), str(path), int(image_id),
                                         json.loads(str(boxes)))
            records.append(json.dumps(self.annotate_item(item, self.segment, self.fmt)))
        return {"file_name": list(batch["file_name"]), "record": records}


def run_items_ray(items: Sequence, values: Dict[str, str], weights_dir: str, store,
                  fmt: str = "rle", address: Optional[str] = None, workers: int = 2,
                  cuda: bool = False, threads: int = 0, batch_size: int = 1,
                  progress: bool = True, crash_once: str = "") -> int:
    """Annotate the items not yet in ``store`` on ``workers`` Ray actors, appending each record
    as its batch comes back; returns how many images were annotated now.

    ``address``: ``None`` or ``"local"`` starts a local Ray instance (unless one is already
    initialised in this process), else the cluster's address (``ray://host:10001`` or
    ``host:6379``). ``cuda``: one GPU per actor. ``threads``: torch threads per CPU actor
    (0: the machine's cores divided by ``workers``)."""
    import ray

    from .runner import progress_bar

    todo = [item for item in items if item.file_name not in store]
    if not todo:
        return 0
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "", "local") else address,
                 include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    rows = [{"file_name": i.file_name, "path": i.path, "image_id": i.image_id,
             "boxes": json.dumps(i.boxes)} for i in todo]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        AnnotateWorker, batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=1 if cuda else 0, num_cpus=1 if cuda else threads,
        fn_constructor_kwargs=dict(top=_TOP, top_dir=_TOP_DIR, package=_PACKAGE,
                                   values=dict(values), weights_dir=str(weights_dir), fmt=fmt,
                                   threads=0 if cuda else threads, crash_once=crash_once))
    # Ray Data's actor pools restart a dead actor and retry its tasks by default (2.60:
    # max_restarts=-1, max_task_retries=-1; passing them is deprecated): tested with a kill.
    with progress_bar(len(items), len(items) - len(todo), progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for record in batch["record"]:
                store.append(json.loads(str(record)))
                bar.update()
    return len(todo)
