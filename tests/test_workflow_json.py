"""What an Ikomia user meets besides the API call: factory info, workflow JSON, the HUB test.

- The factory's ``info`` (what Studio and the HUB show) is complete and its icon exists.

- A workflow containing the task saves to JSON and loads back with the same parameter strings,
  and the loaded workflow runs.
- ``infer_segment_anything_2_test.py`` (the HUB's ``test(t, data_dict)``) passes on a real image,
  and its checks and status do report a failure.
"""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from conftest import PLUGIN_NAME, REPO, SHARED_IMAGES, make_task
from infer_segment_anything_2.engine.parameters import PARAMETERS, default_values, parse_values

PROMPTS = {"input_point": "[[60,50],[200,120]]", "input_point_label": "[1,0]",
           "input_box": "[[20,30,180,200]]"}


def test_factory_info_is_complete():
    from ikomia import core
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Factory

    info = InferSegmentAnything2Factory().info
    assert info.name == PLUGIN_NAME
    assert info.path == "Plugins/Python/Segmentation"
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.version)
    assert info.short_description and len(info.description) > len(info.short_description)
    assert info.authors.startswith("Ravi, Nikhila") and "Feichtenhofer" in info.authors
    assert info.article == "SAM 2: Segment Anything in Images and Videos"
    assert info.year == 2024 and "2408.00714" in info.article_url
    assert info.license == "Apache-2.0"
    for link in (info.repository, info.original_repository, info.documentation_link):
        assert link.startswith("https://github.com/")
    assert "SAM" in info.keywords
    assert info.algo_type == core.AlgoType.INFER
    assert set(info.algo_tasks.split(",")) == {"SEMANTIC_SEGMENTATION", "INSTANCE_SEGMENTATION"}
    assert info.min_ikomia_version == "0.16.0"
    assert re.fullmatch(r"3\.\d+(\.\d+)?", info.min_python_version)
    hw = info.hardware_config
    assert hw.min_cpu >= 1 and hw.min_ram >= 3 and not hw.gpu_required and hw.min_vram >= 1

    icon = cv2.imread(str(REPO / info.icon_path), cv2.IMREAD_UNCHANGED)
    assert icon is not None and icon.shape[2] == 4  # PNG with transparency
    assert icon.shape[0] == icon.shape[1] <= 256
    assert (REPO / info.icon_path).stat().st_size < 32_000


def test_icon_is_the_one_the_script_draws():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_icon", REPO / "scripts" / "make_icon.py")
    make_icon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icon)
    committed = cv2.imread(str(REPO / "icons" / "icon.png"), cv2.IMREAD_UNCHANGED)
    drawn = make_icon.draw(committed.shape[0])
    assert drawn.shape == committed.shape
    assert np.abs(drawn.astype(int) - committed.astype(int)).mean() < 1.0


def non_default_values(checkpoint) -> dict:
    """A valid string for every parameter, each different from its default."""
    out = {}
    for key, spec in PARAMETERS.items():
        default = spec.default_value()
        if spec.kind == "choice":
            value = next(c for c in reversed(spec.choices) if c != default)
        elif spec.kind == "bool":
            value = str(not default)
        elif spec.kind == "int":
            value = str(int(default + 1 if default < spec.maximum else default - 1))
        elif spec.kind == "float":
            value = "-1.25" if key == "mask_threshold" else "0.123456789"
        elif spec.kind == "prompt":
            value = PROMPTS[key]
        else:
            value = str(checkpoint)
        out[key] = value
    return out


def _loaded_task(path):
    from ikomia.dataprocess.workflow import Workflow

    wf = Workflow()
    wf.load(str(path))
    task = wf.find_task(PLUGIN_NAME, 0)
    assert not isinstance(task, list), f"{PLUGIN_NAME} is not in the loaded workflow"
    return wf, task


def test_non_default_values_cover_every_parameter(tiny_checkpoint):
    values = non_default_values(tiny_checkpoint)
    assert set(values) == set(PARAMETERS)
    parse_values(values)  # all valid
    assert all(values[k] != d for k, d in default_values().items())


def test_workflow_json_round_trip_keeps_every_parameter(tmp_path, tiny_checkpoint, image_path):
    values = non_default_values(tiny_checkpoint)
    values.update(model_name="sam2.1_hiera_tiny", cuda="False")  # runnable here
    wf, task = make_task(**values)
    path = tmp_path / "sam2_workflow.json"
    wf.save(str(path))

    saved = json.loads(path.read_text())
    ours = [t["task_data"] for t in saved["tasks"] if t["task_data"]["name"] == PLUGIN_NAME]
    assert len(ours) == 1
    assert {p["name"]: p["value"] for p in ours[0]["parameters"]} == values

    wf2, task2 = _loaded_task(path)
    assert type(task2).__name__ == type(task).__name__
    assert task2.get_parameters() == values
    assert task2.get_param_object().values == values
    assert parse_values(task2.get_param_object().values)["mask_threshold"] == -1.25

    # The loaded workflow runs: one box with two points, three candidates (multimask_output;
    # video mode, also loaded as set, has one mask per object: turned off for this image).
    task2.set_parameters({"video_tracking": "False"})
    wf2.run_on(path=str(image_path))
    height, width = cv2.imread(str(image_path)).shape[:2]
    assert task2.get_output(1).get_mask().shape == (height, width)
    assert len(task2.get_output(4).get_objects()) == 3


def test_saving_again_after_loading_gives_the_same_file(tmp_path, tiny_checkpoint):
    wf, _ = make_task(**non_default_values(tiny_checkpoint))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    wf.save(str(first))
    wf2, _ = _loaded_task(first)
    wf2.save(str(second))

    def params(p):
        tasks = json.loads(p.read_text())["tasks"]
        return [{q["name"]: q["value"] for q in t["task_data"]["parameters"]} for t in tasks]
    assert params(second) == params(first)


# ---------------------------------------------------------------------------------------------
# HUB test convention
# ---------------------------------------------------------------------------------------------
def _hub():
    from infer_segment_anything_2 import infer_segment_anything_2_test
    return infer_segment_anything_2_test


@pytest.fixture(scope="module")
def hub_image(tmp_path_factory):
    """A real photograph when the developers' shared images are present, else the synthetic one."""
    from conftest import synthetic_image

    real = SHARED_IMAGES / "cars.jpg"
    if real.is_file():
        return real
    path = tmp_path_factory.mktemp("hub") / "shapes.png"
    cv2.imwrite(str(path), synthetic_image()[:, :, ::-1])
    return path


def _data_dict(image):
    return {"images": {"detection": {"coco": str(image)}}}


def test_hub_test_passes_on_a_real_image(tiny_checkpoint, hub_image):
    hub = _hub()
    _, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint)
    results = list(hub.test(task, _data_dict(hub_image)))
    height, width = cv2.imread(str(hub_image)).shape[:2]
    assert len(results) == len(hub.scenarios(height, width)) == 5
    for params, status in results:
        assert status == "OK", status
        assert params["model_weight_file"] == str(tiny_checkpoint)  # the runner's model is kept
    # The task saw the real image (RGB) and the last scenario's parameters.
    assert task.get_input(0).get_image().shape == (height, width, 3)
    assert task.get_parameters()["points_per_side"] == "8"
    assert task.get_parameters()["input_point"] == ""

    # Its checks can fail: the outputs of a one-object run against wrong expectations.
    task.set_parameters({"input_point": f"[[{width // 2},{height // 2}]]", "points_per_side": "32"})
    task.run()
    assert hub.check_outputs(task, (height, width), 1, 1) == ""
    assert "for 2 objects" in hub.check_outputs(task, (height, width), 2, 1)
    assert "output 2" in hub.check_outputs(task, (height, width), 1, 3)
    assert "mask" in hub.check_outputs(task, (height + 1, width), 1, 1)


def test_hub_test_reports_a_failed_run(tmp_path, hub_image):
    _, task = make_task(model_name="sam2.1_hiera_tiny",
                        model_weight_file=tmp_path / "missing.pt")
    results = list(_hub().test(task, _data_dict(hub_image)))
    assert results and all(status != "OK" and "model_weight_file" in status
                           for _, status in results)


def test_hub_test_refuses_an_unreadable_image(tmp_path):
    _, task = make_task()
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        next(_hub().test(task, _data_dict(tmp_path / "missing.jpg")))


def test_hub_image_is_given_as_rgb(tiny_checkpoint, tmp_path):
    """cv2 reads BGR; the task must receive RGB (a pure red image stays red)."""
    red = np.zeros((64, 80, 3), np.uint8)
    red[:, :, 2] = 255  # BGR red on disk
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), red)
    _, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint)
    next(_hub().test(task, _data_dict(path)))
    image = task.get_input(0).get_image()
    assert image[..., 0].min() == 255 and image[..., 1:].max() == 0
