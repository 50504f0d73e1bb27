"""Ikomia Studio widget for infer_segment_anything_2, built from the parameter table.

Every control comes from :data:`engine.parameters.PARAMETERS`: its section (``group``), its kind
(combo box, check box, spin box, text field), its range, its tooltip (``help``) and, for the model
combo, the model list (``choices``, taken from the model table). Nothing is typed twice.

Pressing Apply checks every value (prompts with :func:`engine.image.prompts.parse_prompt`); a wrong value
is shown in red under its field with the expected format and nothing is sent. Otherwise the
parameter strings are updated and sent with ``emit_apply``. The task keeps its model loaded and
reloads it only when a model parameter (``reload_model`` in the table) changed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

# ikomia first: its bundled Qt 6.2.4 libraries are then the ones PyQt6 binds to.
from ikomia import core, dataprocess
from ikomia.utils import qtconversion
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QGridLayout,
                             QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy, QSpinBox,
                             QToolButton, QVBoxLayout, QWidget)

from .engine.image import PromptError, parse_prompt
from .engine.model import MODELS, cuda_present, weight_file_problem
from .engine.parameters import PARAMETERS, ParameterError, ParamSpec
from .infer_segment_anything_2_process import InferSegmentAnything2Param

GROUPS = tuple(dict.fromkeys(p.group for p in PARAMETERS.values()))  # table order
FOLDED = ("Automatic", "Video")  # sections folded when the widget opens
FILE_KEYS = {"model_weight_file": "PyTorch checkpoint (*.pt *.pth);;All files (*)"}
ERROR_STYLE = "color: #c62828;"
FOREGROUND_CATEGORY = "foreground"
BACKGROUND_CATEGORY = "background"

_WORDS = {"iou": "IoU", "nms": "NMS", "thresh": "threshold", "m2m": "M2M", "cuda": "CUDA",
          "n": "N", "percent": "(%)", "use": "Use"}


def label_for(key: str) -> str:
    """A readable label from a parameter key: ``box_nms_thresh`` -> ``Box NMS threshold``."""
    words = [_WORDS.get(w, w) for w in key.split("_")]
    text = " ".join(w for w in words if w)
    return text[:1].upper() + text[1:]


def tooltip_for(spec: ParamSpec) -> str:
    """The table's one-line meaning, then the API key and the expected value."""
    return f"{spec.help}\n\nParameter {spec.key}: {spec.expected()}."


class CollapsibleSection(QWidget):
    """A title button with an arrow that shows or hides a grid of controls."""

    def __init__(self, title: str, expanded: bool = True, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        font = self.toggle.font()
        font.setBold(True)
        self.toggle.setFont(font)
        self.toggle.setStyleSheet("QToolButton { border: none; text-align: left; }")
        self.body = QWidget()
        self.grid = QGridLayout(self.body)
        self.grid.setContentsMargins(14, 2, 2, 6)
        self.grid.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self.set_expanded)
        self.set_expanded(expanded)

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()


class InferSegmentAnything2Widget(core.CWorkflowTaskWidget):
    """Parameters of infer_segment_anything_2 in three collapsible sections.

    Attributes:
        parameters: the :class:`InferSegmentAnything2Param` edited and sent on Apply.
        labels: key -> the label left of that control.
        controls: key -> the Qt control of that parameter.
        errors: key -> the red label under that control (hidden when the value is fine).
        sections: group name -> :class:`CollapsibleSection`.
    """

    def __init__(self, param, parent):
        core.CWorkflowTaskWidget.__init__(self, parent)
        self.parameters = param if param is not None else InferSegmentAnything2Param()
        self.has_cuda = cuda_present()
        self.controls: Dict[str, QWidget] = {}
        self.labels: Dict[str, QLabel] = {}
        self.errors: Dict[str, QLabel] = {}
        self.sections: Dict[str, CollapsibleSection] = {}
        self.browse_buttons: Dict[str, QPushButton] = {}
        self.draw_buttons: Dict[str, QPushButton] = {}
        self._loaded: Dict[str, Tuple[Any, Optional[str]]] = {}

        self.main_layout = QVBoxLayout()
        self.main_layout.setSpacing(4)
        for group in GROUPS:
            section = CollapsibleSection(group, expanded=group not in FOLDED)
            self.sections[group] = section
            self.main_layout.addWidget(section)
            row = 0
            for spec in (s for s in PARAMETERS.values() if s.group == group):
                row = self._add_parameter(section.grid, row, spec)
            if group == "Prompt":
                self._add_drawing_tools(section.grid, row)
        self.main_layout.addStretch(1)
        self._align_label_columns()
        self.load_values()
        self.set_layout(qtconversion.PyQtToQt(self.main_layout))

    # -- building ---------------------------------------------------------------------------
    def _align_label_columns(self) -> None:
        """Same label column width in every section, so the controls line up."""
        width = max(label.sizeHint().width() for label in self.labels.values())
        for section in self.sections.values():
            section.grid.setColumnMinimumWidth(0, width)

    def _add_parameter(self, grid: QGridLayout, row: int, spec: ParamSpec) -> int:
        label = QLabel(label_for(spec.key))
        control = self._make_control(spec)
        tip = tooltip_for(spec)
        if spec.key == "cuda" and not self.has_cuda:
            control.setEnabled(False)
            tip += "\nNo CUDA GPU is available here: the model runs on the CPU."
        label.setToolTip(tip)
        control.setToolTip(tip)
        grid.addWidget(label, row, 0)
        if spec.key in FILE_KEYS:
            browse = QPushButton("...")
            browse.setToolTip("Choose a local checkpoint file")
            browse.setFixedWidth(32)
            browse.clicked.connect(lambda _=False, k=spec.key: self._browse(k))
            box = QHBoxLayout()
            box.setContentsMargins(0, 0, 0, 0)
            box.addWidget(control)
            box.addWidget(browse)
            grid.addLayout(box, row, 1)
            self.browse_buttons[spec.key] = browse
        else:
            grid.addWidget(control, row, 1)
        error = QLabel()
        error.setStyleSheet(ERROR_STYLE)
        error.setWordWrap(True)
        error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        error.hide()
        grid.addWidget(error, row + 1, 1)
        self.labels[spec.key] = label
        self.controls[spec.key] = control
        self.errors[spec.key] = error
        return row + 2

    @staticmethod
    def _make_control(spec: ParamSpec) -> QWidget:
        if spec.kind == "choice":
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(choice)
                if spec.key == "model_name" and choice in MODELS:
                    combo.setItemData(combo.count() - 1, MODELS[choice].description,
                                      Qt.ItemDataRole.ToolTipRole)
            return combo
        if spec.kind == "bool":
            return QCheckBox()
        if spec.kind == "int":
            spin = QSpinBox()
            spin.setRange(int(spec.minimum if spec.minimum is not None else -2**31),
                          int(spec.maximum if spec.maximum is not None else 2**31 - 1)
                          - (1 if spec.exclusive_max else 0))
            return spin
        if spec.kind == "float":
            spin = QDoubleSpinBox()
            low = spec.minimum if spec.minimum is not None else -1e9
            high = spec.maximum if spec.maximum is not None else 1e9
            spin.setDecimals(3)
            spin.setSingleStep(0.01 if high - low <= 1 else 0.1)
            spin.setRange(low, high - (10 ** -spin.decimals() if spec.exclusive_max else 0))
            return spin
        edit = QLineEdit()
        edit.setClearButtonEnabled(True)
        edit.setPlaceholderText(spec.fmt or ("empty: official checkpoint"
                                             if spec.key in FILE_KEYS else ""))
        return edit

    def _add_drawing_tools(self, grid: QGridLayout, row: int) -> None:
        """Buttons that pick Studio's drawing tool and graphics category for prompts, and the
        object the next points belong to (0: every object; N: category ``object N`` or
        ``background N``, the points of object N)."""
        note = QLabel("Or draw on the image (graphics come first, then the fields above):")
        note.setWordWrap(True)
        grid.addWidget(note, row, 0, 1, 2)
        box = QHBoxLayout()
        self.object_spin = QSpinBox()
        self.object_spin.setRange(0, 999)
        self.object_spin.setSpecialValueText("all")
        self.object_spin.setPrefix("object ")
        self.object_spin.setToolTip("Points drawn next belong to this object (graphics category "
                                    "'object N' / 'background N'): object N is the N-th group "
                                    "of points, with the N-th box when there are as many boxes. "
                                    "'all': every object gets the points.")
        for name, text, tip, tool, category in (
                ("foreground", "Foreground point", "Draw foreground points (graphics category "
                 f"'{FOREGROUND_CATEGORY}', or 'object N')", core.GraphicsShape.POINT,
                 FOREGROUND_CATEGORY),
                ("background", "Background point", "Draw background points (graphics category "
                 f"'{BACKGROUND_CATEGORY}', or 'background N')", core.GraphicsShape.POINT,
                 BACKGROUND_CATEGORY),
                ("box", "Box", "Draw a rectangle: one object per box (ellipses and polygons "
                 "give their bounding box); a category other than the default names the object",
                 core.GraphicsShape.RECTANGLE, FOREGROUND_CATEGORY)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, t=tool, c=category: self._pick_tool(t, c))
            box.addWidget(button)
            self.draw_buttons[name] = button
        box.addWidget(self.object_spin)
        grid.addLayout(box, row + 1, 0, 1, 2)

    def _pick_tool(self, tool, category: str) -> None:
        number = self.object_spin.value()
        if number and tool == core.GraphicsShape.POINT:
            category = f"{'object' if category == FOREGROUND_CATEGORY else category} {number}"
        self.emit_set_graphics_category(category)
        self.emit_set_graphics_tool(tool)

    def _browse(self, key: str) -> None:
        edit = self.controls[key]
        start = str(Path(edit.text()).expanduser().parent) if edit.text() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self.qwidget(), "Choose a checkpoint", start,
                                              FILE_KEYS[key])
        if path:
            edit.setText(path)

    # -- values -----------------------------------------------------------------------------
    def _control_value(self, key: str) -> Any:
        control = self.controls[key]
        if isinstance(control, QComboBox):
            return control.currentText()
        if isinstance(control, QCheckBox):
            return control.isChecked()
        if isinstance(control, (QSpinBox, QDoubleSpinBox)):
            return control.value()
        return control.text()

    def _set_control(self, key: str, value: Any) -> None:
        control = self.controls[key]
        if isinstance(control, QComboBox):
            control.setCurrentText(str(value))
        elif isinstance(control, QCheckBox):
            control.setChecked(bool(value))
        elif isinstance(control, (QSpinBox, QDoubleSpinBox)):
            control.setValue(value)
        else:
            control.setText(str(value))

    def load_values(self) -> None:
        """Show ``self.parameters`` in the controls; an invalid stored value shows the default
        and its error."""
        self.clear_errors()
        for key, spec in PARAMETERS.items():
            text = self.parameters.values.get(key, spec.format(spec.default_value()))
            try:
                value, original = spec.parse(text), text
            except ParameterError as exc:
                value, original = spec.default_value(), None
                self.show_error(key, f"Stored value ignored. {exc}")
            if key == "cuda" and not self.has_cuda:
                value = False
            self._set_control(key, value)
            self._loaded[key] = (self._control_value(key), original)

    def collect_values(self) -> Dict[str, str]:
        """The strings to store. A control still showing what was loaded keeps the stored string
        (so e.g. 0.34133 is not rounded to the spin box's 3 decimals)."""
        out = {}
        for key, spec in PARAMETERS.items():
            value = self._control_value(key)
            shown, original = self._loaded.get(key, (None, None))
            out[key] = original if original is not None and value == shown else spec.format(value)
        return out

    def validate(self, values: Dict[str, str]) -> Dict[str, str]:
        """key -> message for every wrong value (empty when all are fine)."""
        problems = {}
        for key, spec in PARAMETERS.items():
            try:
                spec.parse(values[key])
            except ParameterError as exc:
                problems[key] = str(exc)
        path = values.get("model_weight_file", "").strip()
        if path and values.get("model_name") in MODELS:
            problem = weight_file_problem(path, MODELS[values["model_name"]])
            if problem:
                problems.setdefault("model_weight_file", problem)
        try:
            parse_prompt(values["input_point"], values["input_point_label"], values["input_box"])
        except PromptError as exc:
            problems.setdefault(exc.param, str(exc))
        return problems

    def show_error(self, key: str, message: str) -> None:
        label = self.errors[key]
        label.setText(message)
        label.show()
        section = self.sections[PARAMETERS[key].group]
        if not section.expanded:
            section.set_expanded(True)

    def clear_errors(self) -> None:
        for label in self.errors.values():
            label.clear()
            label.hide()

    # -- Ikomia -----------------------------------------------------------------------------
    def qwidget(self) -> Optional[QWidget]:
        """The QWidget Ikomia builds around our layout (scroll area and Apply button): for
        screenshots and offscreen tests."""
        top = self.main_layout.parentWidget()
        while top is not None and top.parentWidget() is not None:
            top = top.parentWidget()
        return top

    def on_apply(self) -> None:
        """Apply button: check, then store and send; a wrong value is shown and nothing is sent."""
        self.clear_errors()
        values = self.collect_values()
        problems = self.validate(values)
        for key, message in problems.items():
            self.show_error(key, message)
        if problems:
            return
        self.parameters.values.update(values)
        self.load_values()
        self.emit_apply(self.parameters)

    def on_parameters_changed(self) -> None:
        """Parameters changed on the task side: show them."""
        self.load_values()


class InferSegmentAnything2WidgetFactory(dataprocess.CWidgetFactory):
    """Builds the widget; ``name`` matches the task factory's ``info.name``."""

    def __init__(self):
        dataprocess.CWidgetFactory.__init__(self)
        self.name = "infer_segment_anything_2"

    def create(self, param):
        return InferSegmentAnything2Widget(param, None)
