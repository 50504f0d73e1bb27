"""Long runs: 200 runs of one task mixing modes and images keep outputs and memory steady."""
from __future__ import annotations

import gc
import itertools


from conftest import make_task, synthetic_image


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def test_200_runs_alternating_modes_and_images(tiny_checkpoint):
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side="4", points_per_batch="16")
    images = [synthetic_image(96, 128, seed=s) for s in range(3)]
    prompts = itertools.cycle([
        {"input_point": "[[40,30]]", "input_box": "", "multimask_output": "False"},
        {"input_point": "[[40,30],[90,70]]", "input_point_label": "[1,0]", "input_box": "",
         "multimask_output": "True"},
        {"input_point": "", "input_point_label": "", "input_box": "[[10,10,60,50],[50,40,120,90]]",
         "multimask_output": "False"},
        {"input_point": "", "input_point_label": "", "input_box": "[10,10,60,50]",
         "multimask_output": "True"},
        {"input_point": "", "input_point_label": "", "input_box": ""},  # automatic
    ])
    counts, samples = set(), []
    for run in range(200):
        params = next(prompts)
        algo.set_parameters(params)
        image = images[(run // 10) % len(images)]
        wf.run_on(array=image)
        counts.add(algo.get_output_count())
        assert algo.get_output(1).get_mask().shape == image.shape[:2]
        multimask = params.get("multimask_output") == "True" and (
            params["input_point"] or params["input_box"])
        assert algo.get_output(2).is_data_available() == bool(multimask)
        if run in (39, 199):
            gc.collect()
            samples.append(rss_bytes())
    assert counts == {5}
    assert algo.session.load_count == 1
    # the embedding is computed once per image change, not once per run
    assert algo.session.predictor.encode_count <= 20 + 1
    warm, end = samples
    assert end < warm * 1.10, f"RSS grew from {warm / 2**20:.0f} MiB to {end / 2**20:.0f} MiB"
