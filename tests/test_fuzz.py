"""Property-based tests (hypothesis): arbitrary prompt strings and parameter values either parse or
raise ParameterError (PromptError is one) naming the parameter; never another exception, never a
hang. Then the same through the real Ikomia task, followed by a valid run that must work."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from conftest import make_task, synthetic_image
from infer_segment_anything_2.engine.parameters import PARAMETERS, ParameterError, parse_values
from infer_segment_anything_2.engine.image.prompts import MAX_PROMPTS, Prompt, PromptError, parse_prompt

PROMPT_KEYS = ("input_point", "input_point_label", "input_box")
NUMERIC_KEYS = tuple(k for k, p in PARAMETERS.items() if p.kind in ("int", "float"))
# Generous deadline: these run on 2 shared cores; a real hang would still exceed it by far.
PURE = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------------------------
# No subnormal floats: once ikomia's libraries are loaded the CPU flushes them to zero (fast-math),
# and hypothesis refuses to generate them then.
numbers = st.one_of(st.integers(-2000, 2000), st.integers(), st.floats(allow_subnormal=False),
                    st.integers(10 ** 300, 10 ** 400),  # beyond float: OverflowError territory
                    st.sampled_from([0, 1, -1, 0.5, 1e7, 1e8, 10 ** 30]))
atoms = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=4))
json_values = st.recursive(atoms, lambda inner: st.lists(inner, max_size=6), max_leaves=24)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)  # NaN / Infinity appear as in JavaScript


def _rows(width: int, max_rows: int = 8):
    """Lists of ``width`` small numbers: mostly valid prompts, some with a wrong width."""
    coord = st.one_of(st.integers(-100, 700),
                      st.floats(-100, 700, allow_nan=False, allow_subnormal=False))
    row = st.lists(coord, min_size=width - 1, max_size=width + 1)
    return st.one_of(row, st.lists(row, min_size=0, max_size=max_rows))


prompt_texts = st.one_of(
    st.text(max_size=60),
    json_values.map(_dumps),
    st.from_regex(r"\A[\[\]\(\)0-9,.\s\-eE+naNI]{0,60}\Z"),
    st.integers(1, 5000).map(lambda depth: "[" * depth + "1,2" + "]" * depth),  # deep nesting
    _rows(2).map(_dumps), _rows(4).map(_dumps),
    st.lists(st.sampled_from([0, 1, 2, -1, 0.5, True]), max_size=6).map(_dumps),
    _rows(2).map(lambda v: str(v).replace("[", "(").replace("]", ")")),  # Python tuples
)
parameter_values = st.one_of(
    st.text(max_size=30), numbers, numbers.map(str), st.booleans(), st.none(),
    st.lists(numbers, max_size=3), st.sampled_from(["nan", "inf", "-inf", "1e999", "", " 1 ",
                                                    "0x1", "1_0", "True", "1.0", "-0"]),
)


def _valid(prompt: Prompt) -> None:
    """What a parsed prompt guarantees to the predictor."""
    assert prompt.points.ndim == 2 and prompt.points.shape[1] == 2
    assert prompt.boxes.ndim == 2 and prompt.boxes.shape[1] == 4
    assert prompt.labels.shape == (len(prompt.points),)
    assert set(np.unique(prompt.labels).tolist()) <= {0, 1}
    assert np.isfinite(prompt.points).all() and np.isfinite(prompt.boxes).all()
    assert (prompt.boxes[:, 2] > prompt.boxes[:, 0]).all()
    assert (prompt.boxes[:, 3] > prompt.boxes[:, 1]).all()
    assert len(prompt.points) <= MAX_PROMPTS and len(prompt.boxes) <= MAX_PROMPTS


def _names(error: ParameterError, key: str) -> None:
    assert error.param == key
    assert str(error).startswith(f"{key}: ") and "Expected " in str(error)


# --- engine level -----------------------------------------------------------------------------
@PURE
@given(key=st.sampled_from(PROMPT_KEYS), text=prompt_texts)
def test_one_prompt_parameter_parses_or_names_itself(key, text):
    others = {"input_point": "[[1,2],[3,4]]"} if key == "input_point_label" else {}
    try:
        prompt = parse_prompt(**{**others, key: text})
    except PromptError as error:
        _names(error, key)
    else:
        _valid(prompt)


@PURE
@given(point=prompt_texts, label=prompt_texts, box=prompt_texts)
def test_all_prompt_parameters_at_once(point, label, box):
    try:
        _valid(parse_prompt(point, label, box))
    except PromptError as error:
        assert error.param in PROMPT_KEYS
        _names(error, error.param)


@PURE
@given(key=st.sampled_from(NUMERIC_KEYS), value=parameter_values)
def test_numeric_parameter_parses_in_range_or_names_itself(key, value):
    spec = PARAMETERS[key]
    try:
        number = spec.parse(value)
    except ParameterError as error:
        _names(error, key)
        assert spec.expected() in str(error)
    else:
        assert type(number) is (int if spec.kind == "int" else float)
        assert math.isfinite(number) and spec.minimum <= number <= spec.maximum
        assert not (spec.exclusive_max and number >= spec.maximum)


@PURE
@given(values=st.dictionaries(st.sampled_from(tuple(PARAMETERS)), parameter_values, max_size=6))
def test_parse_values_parses_or_names_a_given_parameter(values):
    try:
        parsed = parse_values(values)
    except ParameterError as error:
        assert error.param in values  # defaults are always valid
        _names(error, error.param)
    else:
        assert set(parsed) == set(PARAMETERS)


# --- through the Ikomia task ------------------------------------------------------------------
IMAGE = synthetic_image(48, 64, seed=3)
BASE = {"input_point": "[[20,20]]", "input_point_label": "", "input_box": "[5,5,40,30]",
        "multimask_output": "False", "mask_threshold": "0.0"}


@pytest.fixture(scope="module")
def fuzz_task(tiny_checkpoint):
    """One workflow for all examples (the image embedding is computed once and cached)."""
    wf, task = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                         points_per_side=2)
    _valid_run(wf, task)
    return wf, task


def _valid_run(wf, task) -> None:
    task.set_parameters(BASE)
    wf.run_on(array=IMAGE)
    mask = task.get_output(1).get_mask()
    assert mask.shape == IMAGE.shape[:2]


def _expected_error(params) -> str:
    """The parameter the engine finds wrong in ``params`` (empty when all are valid)."""
    try:
        values = parse_values(params)
        parse_prompt(values["input_point"], values["input_point_label"], values["input_box"])
    except ParameterError as error:
        return error.param
    return ""


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(PROMPT_KEYS), text=prompt_texts,
       extra=st.fixed_dictionaries({}, optional={
           "multimask_output": st.sampled_from(["True", "False", "true", "0", "maybe"]),
           "mask_threshold": st.sampled_from(["-1.5", "0", "2", "0.25", "-8", "nan"])}))
def test_task_runs_or_names_the_parameter_then_works_again(fuzz_task, key, text, extra):
    wf, task = fuzz_task
    params = {**BASE, **extra, key: text}
    if key == "input_point_label":
        params["input_point"] = "[[20,20],[30,40]]"
    if key == "input_box":  # keep a point so that the run stays in (fast) prompt mode
        params["input_point"] = "[[20,20]]"
    if key == "input_point":
        params["input_point_label"] = ""
    # Thousands of decoded boxes would only make this test slow, not test anything more.
    assume(len(text) < 2000)
    expected = _expected_error(params)
    event(f"error names {expected}" if expected else "valid run")
    task.set_parameters(params)
    try:
        wf.run_on(array=IMAGE)
    except Exception as error:  # Ikomia re-raises the task's error as a RuntimeError
        assert expected, f"a valid input failed: {params!r}: {error}"
        assert f"{expected}: " in str(error)
        _valid_run(wf, task)  # the task works again on the next run
    else:
        assert not expected, f"{expected} was accepted: {params[expected]!r}"
        assert task.get_output(1).get_mask().shape == IMAGE.shape[:2]
