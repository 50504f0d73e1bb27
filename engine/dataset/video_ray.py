"""Annotate videos on Ray Data actors: one video per task (Ray is imported only here, only when
called; ``requirements-ray.txt``).

As the image path (:mod:`.ray_runner`, whose :func:`~.ray_runner._import_package` the workers
use): the driver makes a dataset of the videos not yet in the store (one row per video: its
name, path and kind), ``map_batches`` with ``batch_size=1`` sends each to a pool of ``workers``
:class:`VideoWorker` actors (the model loaded once per actor by
:func:`.video_model.build_annotator` from the run's :class:`.video_model.VideoConfig`, passed
as plain values), and each record is appended to the store as it comes back. The records are
the single process's (:func:`.video_runner.safe_annotate`, the same step), and the final files
are written from the store in name order, so the output is identical to one process's.

A worker that dies is restarted by Ray and its video retried (Ray Data's actor pools:
``max_restarts=-1``, ``max_task_retries=-1``): the retry resumes from the video's last
checkpoint (``OUT.checkpoints/``, written by the workers: on a cluster, put OUT on a folder the
workers share, else a retried video starts over), and a record that would arrive twice is
dropped by the store, so each video appears once.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .ray_runner import _PACKAGE, _TOP, _TOP_DIR, _import_package


class VideoWorker:
    """One Ray actor: the model loaded once, then one video per call.

    ``setup``: called first, once the plugin's package is importable (e.g. logging, or the
    tests' smaller model). ``crash_once``: a drill for fault tolerance (tests): when set and
    that file does not exist, the first checkpoint written creates it and the worker process
    exits at once, mid-video."""

    def __init__(self, top: str, top_dir: str, package: str, config: Dict, out: str,
                 checkpoint_every: int, threads: int, crash_once: str = "",
                 setup: Optional[Callable[[], None]] = None):
        model = _import_package(top, top_dir, package + ".video_model")
        if setup is not None:
            setup()
        self.runner = importlib.import_module(package + ".video_runner")
        self.videos = importlib.import_module(package + ".videos")
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.annotator = model.build_annotator(model.VideoConfig(**config))
        self.out, self.every, self.crash_once = out, checkpoint_every, crash_once

    def _checkpointed(self) -> None:
        if self.crash_once and not os.path.exists(self.crash_once):
            Path(self.crash_once).write_text(str(os.getpid()))
            os._exit(1)

    def __call__(self, batch: Dict) -> Dict[str, list]:
        records = []
        for name, path, kind in zip(batch["video"], batch["path"], batch["kind"]):
            job = self.runner.VideoJob(str(name), self.videos.VideoRef(str(name), str(path),
                                                                       str(kind)))
            records.append(json.dumps(self.runner.safe_annotate(
                job, self.annotator, out=self.out, checkpoint_every=self.every,
                on_checkpoint=self._checkpointed)))
        return {"video": list(batch["video"]), "record": records}


def run_videos_ray(jobs: Sequence, config, store, out: str, address: Optional[str] = None,
                   workers: int = 2, cuda: bool = False, threads: int = 0,
                   progress: bool = True, checkpoint_every: int = 500,
                   report: Callable[[str, str], None] = lambda name, error: None,
                   crash_once: str = "", setup: Optional[Callable[[], None]] = None) -> int:
    """Annotate the videos of ``jobs`` (:class:`.video_runner.VideoJob` over
    :class:`.videos.VideoRef`) not yet in ``store`` on ``workers`` Ray actors, appending each
    record as it comes back (``report(name, error)`` for a bad video); returns how many videos
    were run now. ``address``, ``cuda``, ``threads``: as :func:`.ray_runner.run_items_ray`;
    ``setup``, ``crash_once``: as :class:`VideoWorker`'s."""
    import ray

    from .video_model import estimated_length
    from .video_runner import progress_bar

    todo = [job for job in jobs if job.name not in store]
    if not todo:
        return 0
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "", "local") else address,
                 include_dashboard=False, log_to_driver=False)
    for module in (__name__, _import_package.__module__):  # the workers' code, by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    passes = 2 if config.direction == "both" else 1
    shares = {}
    for job in jobs:
        try:
            shares[job.name] = estimated_length(job.ref) * passes
        except Exception:  # noqa: BLE001 -- reported when the video is run
            shares[job.name] = 0
    rows = [{"video": j.name, "path": j.ref.path, "kind": j.ref.kind} for j in todo]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        VideoWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=1 if cuda else 0, num_cpus=1 if cuda else threads,
        fn_constructor_kwargs=dict(top=_TOP, top_dir=_TOP_DIR, package=_PACKAGE,
                                   config=dataclasses.asdict(config), out=str(out),
                                   checkpoint_every=int(checkpoint_every),
                                   threads=0 if cuda else threads, crash_once=crash_once,
                                   setup=setup))
    total = sum(shares.values())
    with progress_bar(total, total - sum(shares[j.name] for j in todo), progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for name, text in zip(batch["video"], batch["record"]):
                record = json.loads(str(text))
                if store.append(record) and "error" in record:
                    report(str(name), record["error"])
                bar.update(shares.get(str(name), 0))
    return len(todo)
