"""Prompt-mode speed: a re-prompt through the Ikomia Workflow against the cold run and against
Meta's ``SAM2ImagePredictor.predict`` on an image already set, in one process.

Targets (issue 3): re-prompt <= 5% of the cold run; re-prompt <= 1.5x Meta's predict.

Usage: .venv/bin/python benchmarks/bench_prompt.py [--image ../shared/images/truck.jpg]
       [--model sam2.1_hiera_tiny] [--repeats 5]
Random weights (fixed seed) are used: speed does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "infer_segment_anything_2"


def setup_ikomia_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="sam2-bench-home-"))
    os.environ["HOME"] = str(home)
    os.environ["IKOMIA_AUTO_COMPLETION"] = "0"
    plugins = home / "Ikomia" / "Plugins" / "Python"
    plugins.mkdir(parents=True)
    (plugins / PLUGIN).symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(plugins))
    return home


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=str(REPO.parent / "shared" / "images" / "truck.jpg"))
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not Path(args.image).is_file():
        print(f"skipped: {args.image} not found (../shared/images is only in the developers' tree)")
        return 0

    setup_ikomia_home()
    import cv2
    import numpy as np
    import torch

    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    spec = get_model_spec(args.model)
    torch.manual_seed(0)
    ckpt = Path(tempfile.mkdtemp(prefix="sam2-bench-ckpt-")) / f"{spec.name}.pt"
    torch.save({"model": build_model(spec, None).state_dict()}, ckpt)
    image = cv2.imread(args.image)[:, :, ::-1].copy()
    h, w = image.shape[:2]
    points = [[w * 0.28, h * 0.31], [w * 0.6, h * 0.5], [w * 0.45, h * 0.7]]

    from ikomia.dataprocess.workflow import Workflow

    wf = Workflow()
    algo = wf.add_task(name=PLUGIN, auto_connect=True, public_hub=False, private_hub=False)
    algo.set_parameters({"model_name": spec.name, "model_weight_file": str(ckpt),
                         "input_point": str([points[0]])})
    start = time.perf_counter()
    wf.run_on(array=image)
    cold = time.perf_counter() - start

    turn = iter(range(10 ** 6))

    def reprompt():
        algo.set_parameters({"input_point": str([points[next(turn) % len(points)]])})
        wf.run_on(array=image)

    reprompt()  # warm-up
    ours = timed(reprompt, args.repeats)
    assert algo.session.predictor.encode_count == 1, "the re-prompt runs re-encoded the image"

    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    meta = SAM2ImagePredictor(build_sam2(spec.config, str(ckpt), device="cpu"))
    meta.set_image(image)
    labels = np.array([1])
    meta_turn = iter(range(10 ** 6))

    def meta_predict():
        meta.predict(np.array([points[next(meta_turn) % len(points)]]), labels,
                     multimask_output=False)

    meta_predict()
    theirs = timed(meta_predict, args.repeats)

    print(f"image {Path(args.image).name} {w}x{h}, model {spec.name}, CPU threads "
          f"{torch.get_num_threads()}, {args.repeats} repeats (median)")
    print(f"cold run (load + encode + decode) through Workflow: {cold:8.3f} s")
    print(f"re-prompt run through Workflow:                     {ours:8.3f} s")
    print(f"Meta SAM2ImagePredictor.predict, image already set:  {theirs:8.3f} s")
    print(f"ratio re-prompt / cold run:   {ours / cold:6.3f}  (target <= 0.05)")
    print(f"ratio re-prompt / Meta predict: {ours / theirs:6.2f}  (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
