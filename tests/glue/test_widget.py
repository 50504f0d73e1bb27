"""The Ikomia Studio widget, driven offscreen in a child process.

Qt runs in a subprocess (``QT_QPA_PLATFORM=offscreen``, a ``QApplication`` created first) so it
cannot interfere with the other tests. The child inherits the test environment (``HOME`` is the
temporary Ikomia root where conftest linked the plugin), runs every scenario below, and prints
what it observed as JSON; the tests here check those observations.

Like the parent, the child cannot resolve any host but the loopback (no network).

The Apply button pressed is Ikomia's own (the C++ ``CWorkflowTaskWidget`` calls our ``on_apply``).
What Studio does with ``emit_apply`` (hand the parameters to the task) is recorded by replacing
``emit_apply`` on the instance, except in the last scenario, which uses the real one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

MARK = "WIDGET-REPORT:"


# =============================================================================================
# Child process
# =============================================================================================
def _offline() -> None:
    """As in conftest (which the child does not import): only the loopback resolves."""
    import socket

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", None):
            raise socket.gaierror(socket.EAI_NONAME, f"no internet in tests ({host})")
        return real(host, *args, **kwargs)
    socket.getaddrinfo = loopback_only


def _child(config: dict) -> dict:
    _offline()
    plugins = Path(os.environ["HOME"]) / "Ikomia" / "Plugins" / "Python"
    sys.path.insert(0, str(plugins))
    import ikomia  # noqa: F401  (first, so PyQt6 binds to ikomia's Qt)
    from PyQt6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    report = {}
    for name, scenario in _SCENARIOS.items():
        try:
            report[name] = scenario(app, config)
        except Exception:
            report[name] = {"error": traceback.format_exc()}
    return report


def _new_widget(param=None):
    from infer_segment_anything_2.infer_segment_anything_2_widget import \
        InferSegmentAnything2WidgetFactory

    widget = InferSegmentAnything2WidgetFactory().create(param)
    widget.sent = []
    widget.emit_apply = widget.sent.append  # what Studio receives
    top = widget.qwidget()
    top.resize(480, 900)
    top.show()  # offscreen: nothing appears, but visibility is real
    return widget


def _press_apply(app, widget) -> None:
    from PyQt6.QtWidgets import QPushButton

    buttons = [b for b in widget.qwidget().findChildren(QPushButton) if b.text() == "Apply"]
    assert len(buttons) == 1, [b.text() for b in widget.qwidget().findChildren(QPushButton)]
    buttons[0].click()
    app.processEvents()


def _visible_errors(widget) -> dict:
    top = widget.qwidget()
    return {k: label.text() for k, label in widget.errors.items() if label.isVisibleTo(top)}


def _scenario_build(app, config):
    from PyQt6.QtCore import Qt
    from PyQt6.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

    from infer_segment_anything_2 import infer_segment_anything_2_widget as module

    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Factory
    from infer_segment_anything_2.infer_segment_anything_2_widget import \
        InferSegmentAnything2WidgetFactory
    import torch

    widget = _new_widget()
    combo = widget.controls["model_name"]
    ranges, tooltips, label_tips, sections, shown = {}, {}, {}, {}, {}
    for key, control in widget.controls.items():
        tooltips[key] = control.toolTip()
        label_tips[key] = widget.labels[key].toolTip()
        sections[key] = [g for g, s in widget.sections.items() if s.body.isAncestorOf(control)]
        shown[key] = widget._control_value(key)
        if isinstance(control, (QSpinBox, QDoubleSpinBox)):
            ranges[key] = [control.minimum(), control.maximum()]
    collapse = {}
    for group, section in widget.sections.items():
        before = section.body.isVisibleTo(widget.qwidget())
        section.toggle.click()
        after_one = section.body.isVisibleTo(widget.qwidget())
        section.toggle.click()
        collapse[group] = [before, after_one, section.body.isVisibleTo(widget.qwidget())]
    import socket
    try:
        socket.getaddrinfo("github.com", 443)
        offline = False
    except socket.gaierror:
        offline = True
    return {
        "home": os.environ["HOME"], "module": module.__file__, "offline": offline,
        "widget_factory_name": InferSegmentAnything2WidgetFactory().name,
        "task_factory_name": InferSegmentAnything2Factory().info.name,
        "keys": list(widget.controls),
        "sections": sections,
        "combo_is_combo": isinstance(combo, QComboBox),
        "models": [combo.itemText(i) for i in range(combo.count())],
        "model_tips": [combo.itemData(i, Qt.ItemDataRole.ToolTipRole)
                       for i in range(combo.count())],
        "tooltips": tooltips, "label_tooltips": label_tips, "ranges": ranges, "shown": shown,
        "cuda_enabled": widget.controls["cuda"].isEnabled(),
        "cuda_available": torch.cuda.is_available(),
        "collapse": collapse,
        "errors": _visible_errors(widget),
        "browse_button": "model_weight_file" in widget.browse_buttons,
    }


def _scenario_apply(app, config):
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Param

    param = InferSegmentAnything2Param()
    before = dict(param.values)
    widget = _new_widget(param)
    c = widget.controls
    c["model_name"].setCurrentText("sam2.1_hiera_tiny")
    c["model_weight_file"].setText(config["checkpoint"])
    c["input_size_percent"].setValue(50)
    c["apply_postprocessing"].setChecked(False)
    c["precision"].setCurrentText("bfloat16")
    c["input_point"].setText("[[10,20],[30,40]]")
    c["input_point_label"].setText("[1,0]")
    c["input_box"].setText("[0,0,50,60]")
    c["multimask_output"].setChecked(True)
    c["mask_threshold"].setValue(-2.5)
    c["points_per_side"].setValue(16)
    c["points_per_batch"].setValue(1)
    c["iou_thresh"].setValue(0.55)
    c["stability_score_thresh"].setValue(0.9)
    c["stability_score_offset"].setValue(2.0)
    c["box_nms_thresh"].setValue(0.6)
    c["crop_n_layers"].setValue(2)
    c["crop_nms_thresh"].setValue(0.65)
    c["crop_n_points_downscale_factor"].setValue(2)
    c["use_m2m"].setChecked(True)
    c["min_mask_region_area"].setValue(100)
    c["video_tracking"].setChecked(True)
    c["video_seed_every"].setValue(30)
    c["video_reapply_every"].setValue(5)
    c["video_match_iou"].setValue(0.4)
    c["video_max_objects"].setValue(64)
    c["video_drop_after"].setValue(60)
    _press_apply(app, widget)
    return {"before": before, "after": dict(param.values), "sent": len(widget.sent),
            "sent_is_param": bool(widget.sent) and widget.sent[0] is param,
            "errors": _visible_errors(widget)}


_BAD = [  # (fields to set, field expected to show the error, text expected in the message)
    ({"input_point": "[[10,20],[30]]"}, "input_point", "[x,y] or [[x,y],[x,y],...]"),
    ({"input_point": "10,20,30"}, "input_point", "[x,y] or [[x,y],[x,y],...]"),
    ({"input_point": "[[10,20]]", "input_point_label": "[1,0]"}, "input_point_label", "[1,0,...]"),
    ({"input_point": "[[10,20]]", "input_point_label": "[2]"}, "input_point_label", "[1,0,...]"),
    ({"input_box": "[1,2,3]"}, "input_box", "[x1,y1,x2,y2]"),
    ({"input_box": "[10,10,10,50]"}, "input_box", "zero area"),
    ({"input_box": "boxes please"}, "input_box", "[x1,y1,x2,y2]"),
    ({"input_point": "[[nan,1]]"}, "input_point", "[x,y]"),
    ({"model_weight_file": "/nonexistent/sam2.pt"}, "model_weight_file", "does not exist"),
]


def _scenario_bad_values(app, config):
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Param

    cases = []
    for fields, _, _ in _BAD:
        param = InferSegmentAnything2Param()
        param.values["input_point"] = "[[5,5]]"
        before = dict(param.values)
        widget = _new_widget(param)
        widget.sections["Prompt"].set_expanded(False)
        widget.sections["General"].set_expanded(False)
        for key, text in fields.items():
            widget.controls[key].setText(text)
        _press_apply(app, widget)
        refused = {"sent": len(widget.sent), "unchanged": param.values == before,
                   "errors": _visible_errors(widget),
                   "expanded": {g: s.expanded for g, s in widget.sections.items()}}
        # Put the default back in the wrong fields: now it is sent and the message goes away.
        for key in fields:
            widget.controls[key].setText(param.values[key])
        _press_apply(app, widget)
        cases.append({"refused": refused, "fixed_sent": len(widget.sent),
                      "fixed_errors": _visible_errors(widget)})
    return {"cases": cases}


def _scenario_stored_invalid(app, config):
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Param

    param = InferSegmentAnything2Param()
    param.values["points_per_side"] = "many"
    widget = _new_widget(param)
    shown = widget.controls["points_per_side"].value()
    errors = _visible_errors(widget)
    expanded = widget.sections["Automatic"].expanded
    _press_apply(app, widget)
    return {"shown": shown, "errors": errors, "automatic_expanded": expanded,
            "after": param.values["points_per_side"], "sent": len(widget.sent),
            "errors_after": _visible_errors(widget)}


def _scenario_untouched_apply(app, config):
    """Apply without touching anything sends exactly the stored strings."""
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Param

    param = InferSegmentAnything2Param()
    param.values.update({"crop_overlap_ratio": "0.123456789", "mask_threshold": "-0.0001"})
    before = dict(param.values)
    widget = _new_widget(param)
    _press_apply(app, widget)
    return {"before": before, "after": dict(param.values), "sent": len(widget.sent)}


def _scenario_parameters_changed(app, config):
    from infer_segment_anything_2.infer_segment_anything_2_process import \
        InferSegmentAnything2Param

    param = InferSegmentAnything2Param()
    widget = _new_widget(param)
    param.values.update({"input_box": "[1,2,30,40]", "crop_n_layers": "3",
                         "model_name": "sam2.1_hiera_large", "use_m2m": "True"})
    widget.on_parameters_changed()
    return {k: widget._control_value(k)
            for k in ("input_box", "crop_n_layers", "model_name", "use_m2m")}


def _scenario_draw_tools(app, config):
    from ikomia import core

    widget = _new_widget()
    calls = []
    widget.emit_set_graphics_category = lambda c: calls.append(["category", c])
    widget.emit_set_graphics_tool = lambda t: calls.append(["tool", str(t)])
    for name in ("foreground", "background", "box"):
        widget.draw_buttons[name].click()
    widget.object_spin.setValue(2)  # the points of object 2
    for name in ("foreground", "background", "box"):
        widget.draw_buttons[name].click()
    return {"calls": calls, "point": str(core.GraphicsShape.POINT),
            "rectangle": str(core.GraphicsShape.RECTANGLE)}


def _scenario_browse(app, config):
    from infer_segment_anything_2 import infer_segment_anything_2_widget as module

    calls, answers = [], [(config["checkpoint"], "PyTorch checkpoint (*.pt *.pth)"), ("", "")]

    class FakeDialog:  # the modal file dialog cannot be clicked offscreen: answer for the user
        @staticmethod
        def getOpenFileName(parent, caption, start, filters):
            calls.append([caption, start, filters])
            return answers[len(calls) - 1]

    real, module.QFileDialog = module.QFileDialog, FakeDialog
    try:
        widget = _new_widget()
        texts = []
        for _ in answers:  # a file chosen, then the dialog cancelled
            widget.browse_buttons["model_weight_file"].click()
            texts.append(widget.controls["model_weight_file"].text())
        _press_apply(app, widget)
    finally:
        module.QFileDialog = real
    return {"calls": calls, "texts": texts, "home": os.environ["HOME"],
            "sent": widget.sent[0].values["model_weight_file"] if widget.sent else None}


def _scenario_no_reload(app, config):
    """Studio's loop: Apply hands the parameters to the task, then the task runs."""
    import cv2
    from ikomia.dataprocess.workflow import Workflow

    wf = Workflow()
    task = wf.add_task(name="infer_segment_anything_2", auto_connect=True, public_hub=False,
                       private_hub=False)
    task.set_parameters({"model_name": "sam2.1_hiera_tiny",
                         "model_weight_file": config["checkpoint"], "input_point": "[[100,100]]"})
    task.get_input(0).set_image(cv2.imread(config["image"])[:, :, ::-1].copy())
    task.run()
    counts = [task.session.load_count]

    from infer_segment_anything_2.infer_segment_anything_2_widget import \
        InferSegmentAnything2WidgetFactory

    widget = InferSegmentAnything2WidgetFactory().create(task.get_param_object())
    widget.qwidget().show()
    received = []

    def studio_apply(param):  # what Studio does with the signal
        received.append(param.get_values())
        task.set_param_object(param)
    widget.emit_apply = studio_apply

    objects = [len(task.get_output(4).get_objects())]
    steps = [{"input_point": "", "input_box": "[[10,10,150,120],[160,90,300,230]]"},
             {"mask_threshold": -1.0}, {"multimask_output": True},
             {"apply_postprocessing": False}]
    for fields in steps:
        for key, value in fields.items():
            if isinstance(value, bool):
                widget.controls[key].setChecked(value)
            elif isinstance(value, float):
                widget.controls[key].setValue(value)
            else:
                widget.controls[key].setText(value)
        _press_apply(app, widget)
        task.run()
        counts.append(task.session.load_count)
        objects.append(len(task.get_output(4).get_objects()))
    # The real emit_apply (no receiver here) must not fail either.
    del widget.emit_apply
    widget.controls["input_point"].setText("[[120,80]]")
    _press_apply(app, widget)
    return {"counts": counts, "objects": objects, "received": len(received),
            "last_box": received[-1]["input_box"] if received else None,
            "real_emit_point": task.get_parameters()["input_point"]}


_SCENARIOS = {
    "build": _scenario_build,
    "apply": _scenario_apply,
    "bad_values": _scenario_bad_values,
    "stored_invalid": _scenario_stored_invalid,
    "untouched_apply": _scenario_untouched_apply,
    "parameters_changed": _scenario_parameters_changed,
    "draw_tools": _scenario_draw_tools,
    "browse": _scenario_browse,
    "no_reload": _scenario_no_reload,
}

if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    print(MARK + json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    sys.exit(0)


# =============================================================================================
# Tests (parent process)
# =============================================================================================
import pytest  # noqa: E402

from infer_segment_anything_2.engine.model.table import MODELS  # noqa: E402
from infer_segment_anything_2.engine.parameters import PARAMETERS, default_values  # noqa: E402
from infer_segment_anything_2.ikomia_prompts import UNNAMED, point_category  # noqa: E402


@pytest.fixture(scope="module")
def report(tiny_checkpoint, image_path, tmp_path_factory):
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               IKOMIA_AUTO_COMPLETION="0")
    config = {"checkpoint": str(tiny_checkpoint), "image": str(image_path)}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                          capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stderr[-4000:])
    return json.loads(lines[-1][len(MARK):])


def _ok(report, name):
    result = report[name]
    assert "error" not in result, result["error"]
    return result


def test_child_uses_the_private_ikomia_root(report):
    r = _ok(report, "build")
    assert r["home"] == os.environ["HOME"]  # conftest's temporary HOME, not the real one
    plugin_dir = Path(r["home"]) / "Ikomia" / "Plugins" / "Python" / "infer_segment_anything_2"
    assert Path(r["module"]).parent == plugin_dir
    assert r["offline"]


def test_every_parameter_has_a_control_in_its_section(report):
    r = _ok(report, "build")
    assert r["widget_factory_name"] == r["task_factory_name"] == "infer_segment_anything_2"
    assert r["keys"] == list(PARAMETERS)
    assert r["sections"] == {k: [p.group] for k, p in PARAMETERS.items()}
    assert r["browse_button"]


def test_model_list_comes_from_the_model_table(report):
    r = _ok(report, "build")
    assert r["combo_is_combo"]
    assert r["models"] == list(MODELS)
    assert r["model_tips"] == [m.description for m in MODELS.values()]


def test_tooltips_carry_the_table_help(report):
    r = _ok(report, "build")
    for key, spec in PARAMETERS.items():
        assert r["tooltips"][key].startswith(spec.help), key
        assert key in r["tooltips"][key]
        assert r["label_tooltips"][key].startswith(spec.help), key


def test_ranges_come_from_the_table(report):
    r = _ok(report, "build")
    numeric = {k: p for k, p in PARAMETERS.items() if p.kind in ("int", "float")}
    assert set(r["ranges"]) == set(numeric)
    for key, spec in numeric.items():
        low, high = r["ranges"][key]
        assert low == spec.minimum, key
        if spec.exclusive_max:
            assert spec.maximum - 0.01 < high < spec.maximum, key
        else:
            assert high == spec.maximum, key
    assert r["ranges"]["crop_n_layers"][0] == 0
    assert r["ranges"]["mask_threshold"][0] < 0
    assert r["ranges"]["points_per_batch"][0] == 1
    for key in ("iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
        assert r["ranges"][key] == [0, 1], key


def test_defaults_are_shown(report):
    r = _ok(report, "build")
    for key, spec in PARAMETERS.items():
        expected = spec.default_value()
        if key == "cuda" and not r["cuda_available"]:
            expected = False
        if spec.kind == "float":
            assert r["shown"][key] == pytest.approx(expected, abs=5e-4), key
        else:
            assert r["shown"][key] == expected, key
    assert r["errors"] == {}


def test_cuda_is_disabled_without_a_gpu(report):
    r = _ok(report, "build")
    assert r["cuda_enabled"] == r["cuda_available"]


def test_sections_collapse_and_expand(report):
    r = _ok(report, "build")
    assert r["collapse"] == {"General": [True, False, True], "Prompt": [True, False, True],
                             "Automatic": [False, True, False], "Video": [False, True, False]}


def test_apply_sends_every_changed_value(report, tiny_checkpoint):
    r = _ok(report, "apply")
    assert r["errors"] == {}
    assert r["sent"] == 1 and r["sent_is_param"]
    assert r["before"] == default_values()
    expected = dict(r["before"], **{
        "model_name": "sam2.1_hiera_tiny", "model_weight_file": str(tiny_checkpoint),
        "input_size_percent": "50", "apply_postprocessing": "False", "precision": "bfloat16",
        "input_point": "[[10,20],[30,40]]", "input_point_label": "[1,0]",
        "input_box": "[0,0,50,60]", "multimask_output": "True", "mask_threshold": "-2.5",
        "points_per_side": "16", "points_per_batch": "1", "iou_thresh": "0.55",
        "stability_score_thresh": "0.9", "stability_score_offset": "2.0",
        "box_nms_thresh": "0.6", "crop_n_layers": "2", "crop_nms_thresh": "0.65",
        "crop_n_points_downscale_factor": "2", "use_m2m": "True",
        "min_mask_region_area": "100", "video_tracking": "True", "video_seed_every": "30",
        "video_reapply_every": "5", "video_match_iou": "0.4", "video_max_objects": "64",
        "video_drop_after": "60"})
    assert r["after"] == expected
    # Everything but cuda and crop_overlap_ratio (left alone) changed: the test covers them all.
    assert {k for k in PARAMETERS if expected[k] == r["before"][k]} == {"cuda",
                                                                         "crop_overlap_ratio"}


@pytest.mark.parametrize("case", range(len(_BAD)))
def test_a_wrong_value_is_shown_next_to_its_field_and_not_sent(report, case):
    fields, key, text = _BAD[case]
    r = _ok(report, "bad_values")["cases"][case]
    refused = r["refused"]
    assert refused["sent"] == 0 and refused["unchanged"], fields
    assert list(refused["errors"]) == [key], refused["errors"]
    assert text in refused["errors"][key]
    assert key in refused["errors"][key]  # the message names the parameter
    assert refused["expanded"][PARAMETERS[key].group]  # its section opened to show it
    assert r["fixed_sent"] == 1 and r["fixed_errors"] == {}


def test_an_invalid_stored_value_shows_the_default_and_why(report):
    r = _ok(report, "stored_invalid")
    assert r["shown"] == PARAMETERS["points_per_side"].default_value()
    assert list(r["errors"]) == ["points_per_side"] and "many" in r["errors"]["points_per_side"]
    assert r["automatic_expanded"]
    assert r["sent"] == 1 and r["after"] == "32" and r["errors_after"] == {}


def test_untouched_apply_keeps_the_stored_strings(report):
    r = _ok(report, "untouched_apply")
    assert r["sent"] == 1 and r["after"] == r["before"]


def test_widget_follows_parameters_changed_on_the_task_side(report):
    assert _ok(report, "parameters_changed") == {"input_box": "[1,2,30,40]", "crop_n_layers": 3,
                                                 "model_name": "sam2.1_hiera_large",
                                                 "use_m2m": True}


def test_drawing_buttons_pick_the_studio_tool_and_category(report):
    r = _ok(report, "draw_tools")
    calls = r["calls"]
    tools = [r["point"], r["point"], r["rectangle"]] * 2
    assert [c[0] for c in calls] == ["category", "tool"] * 6
    assert [c[1] for c in calls[1::2]] == tools
    categories = [c[1] for c in calls[0::2]]
    # what the task reads from them: (label, group number), and boxes stay unnamed
    assert [point_category(c) for c in categories[:2]] == [(1, None), (0, None)]
    assert [point_category(c) for c in categories[3:5]] == [(1, 2), (0, 2)]
    assert categories[2].lower() in UNNAMED and categories[5].lower() in UNNAMED


def test_browse_button_fills_the_checkpoint_field(report, tiny_checkpoint):
    r = _ok(report, "browse")
    path = str(tiny_checkpoint)
    assert r["texts"] == [path, path]  # chosen, then kept when the dialog is cancelled
    assert r["calls"][0][1] == r["home"]  # empty field: starts in the home folder
    assert r["calls"][1][1] == str(tiny_checkpoint.parent)  # then where the file is
    assert "*.pt" in r["calls"][0][2]
    assert r["sent"] == path


def test_only_a_model_parameter_reloads_the_model(report):
    r = _ok(report, "no_reload")
    assert r["received"] == 4
    # run 1 loads; box, mask_threshold and multimask changes reuse it; apply_postprocessing reloads
    assert r["counts"] == [1, 1, 1, 1, 2]
    # the prompt changes reached the task: 1 object, then 2 boxes, then 2 boxes x 3 candidates
    assert r["objects"] == [1, 2, 2, 6, 6]
    assert r["last_box"] == "[[10,10,150,120],[160,90,300,230]]"
    assert r["real_emit_point"] == "[[120,80]]"
