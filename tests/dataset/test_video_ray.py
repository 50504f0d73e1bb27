"""annotate.py --videos on Ray Data actors (the session's local Ray instance): with a worker
killed mid-video (after a checkpoint), replaced and its video redone, each video is written once
and the files are identical to the single process's."""
from __future__ import annotations

import json

import pytest

import video_run_helpers
from video_run_helpers import make_videos, model_values, small_model_config, use_small_model
from infer_segment_anything_2.annotate import WEIGHTS_DIR
from infer_segment_anything_2.engine.dataset.video_finish import finish_videos
from infer_segment_anything_2.engine.dataset.video_model import VideoConfig, build_annotator
from infer_segment_anything_2.engine.dataset.video_runner import VideoJob, run_videos
from infer_segment_anything_2.engine.dataset.video_store import video_store
from infer_segment_anything_2.engine.dataset.videos import list_videos

FORMATS = ["ytvis", "coco-video"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, present_checkpoint):
    """Two videos with MOT tracks, and the single-process output (one torch thread)."""
    root = make_videos(tmp_path_factory.mktemp("ray-videos"))
    refs = list_videos(str(root / "videos"))
    config = VideoConfig(tuple(sorted(model_values(present_checkpoint).items())),
                         str(WEIGHTS_DIR), tuple(r.name for r in refs),
                         prompts=("mot", str(root / "mot"), None))
    jobs = [VideoJob(r.name, r) for r in refs]
    out = str(root / "single.json")
    with small_model_config(), video_store(out) as store:
        run_videos(jobs, build_annotator(config), store, out, progress=False)
        finish_videos(out, FORMATS, [j.name for j in jobs], store)
    return root, config, jobs


def run_on_ray(job, name, **kwargs):
    from infer_segment_anything_2.engine.dataset.video_ray import run_videos_ray
    import ray

    ray.cloudpickle.register_pickle_by_value(video_run_helpers)  # the workers' setup, by value
    root, config, jobs = job
    out = str(root / name)
    with video_store(out) as store:
        done = run_videos_ray(jobs, config, store, out, workers=2, threads=1, progress=False,
                              checkpoint_every=2, setup=use_small_model, **kwargs)
        finish_videos(out, FORMATS, [j.name for j in jobs], store)
    lines = [json.loads(line)["video"] for line in
             (root / (name + ".parts.jsonl")).read_text().splitlines()]
    return root / name, done, lines


def test_ray_equals_one_process_with_a_worker_killed_mid_video(ray_instance, job, tmp_path):
    """One Ray run for both properties (Ray and its actors are slow to start): the files are
    the single process's although a worker died mid-video and its video was redone."""
    marker = tmp_path / "crashed"
    out, done, lines = run_on_ray(job, "ray.json", crash_once=str(marker))
    assert marker.exists()  # a worker did exit after writing a checkpoint
    assert done == 2 and sorted(lines) == ["a", "sub/b"]  # each video once in the store
    assert out.read_bytes() == (job[0] / "single.json").read_bytes()
    assert (job[0] / "ray.coco-video.json").read_bytes() == \
        (job[0] / "single.coco-video.json").read_bytes()
