"""Prompt strings (engine/image/prompts.py): every format of the specification, the documented edge
rules, and an error naming the parameter and showing the format for each malformed value."""
from __future__ import annotations

import re

import numpy as np
import pytest

from infer_segment_anything_2.engine.parameters import ParameterError
from infer_segment_anything_2.engine.image.prompts import (BOX_FORMAT, LABEL_FORMAT, MAX_PROMPTS,
                                                      POINT_FORMAT, SHARED, Prompt, PromptError,
                                                      make_prompt, parse_prompt)


# ---------------------------------------------------------------------------------------------
# The specification's formats
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["[500,375]", "[[500,375]]", " [ 500 , 375 ] ", "(500, 375)",
                                  "[500.0, 375.0]", "[[500,\n375]]"])
def test_one_point_formats(text):
    prompt = parse_prompt(input_point=text)
    np.testing.assert_array_equal(prompt.points, [[500, 375]])
    np.testing.assert_array_equal(prompt.labels, [1])  # labels omitted: foreground
    assert prompt.boxes.shape == (0, 4) and prompt.num_objects == 1


def test_several_points_with_labels():
    prompt = parse_prompt("[[10,20],[30.5,40]]", "[1,0]")
    np.testing.assert_array_equal(prompt.points, [[10, 20], [30.5, 40]])
    np.testing.assert_array_equal(prompt.labels, [1, 0])
    assert prompt.points.dtype == np.float32 and prompt.labels.dtype == np.int32


@pytest.mark.parametrize("labels, expected", [("[0]", [0]), ("0", [0]), ("[[0]]", [0]),
                                              ("", [1]), ("  ", [1])])
def test_label_formats(labels, expected):
    np.testing.assert_array_equal(parse_prompt("[5,5]", labels).labels, expected)


@pytest.mark.parametrize("text, expected", [
    ("[75,275,1725,850]", [[75, 275, 1725, 850]]),
    ("[[75,275,1725,850]]", [[75, 275, 1725, 850]]),
    ("[[0,0,10,10],[20,20,30,40]]", [[0, 0, 10, 10], [20, 20, 30, 40]]),
])
def test_box_formats(text, expected):
    prompt = parse_prompt(input_box=text)
    np.testing.assert_array_equal(prompt.boxes, expected)
    assert prompt.points.shape == (0, 2) and prompt.num_objects == len(expected)


def test_points_and_boxes_combined():
    prompt = parse_prompt("[[1,2],[3,4]]", "[1,0]", "[0,0,10,10]")
    assert prompt.points.shape == (2, 2) and prompt.boxes.shape == (1, 4)
    assert not prompt.is_empty


def test_empty_strings_mean_no_prompt():
    assert parse_prompt("", "", "").is_empty
    assert parse_prompt("[]", "[]", "[]").is_empty


# ---------------------------------------------------------------------------------------------
# Documented rules for unusual values
# ---------------------------------------------------------------------------------------------
def test_prompts_outside_the_image_are_kept():
    prompt = parse_prompt("[[-50, 99999]]", "", "[-10,-10,5000,6000]")
    np.testing.assert_array_equal(prompt.points, [[-50, 99999]])
    np.testing.assert_array_equal(prompt.boxes, [[-10, -10, 5000, 6000]])


def test_reversed_box_corners_are_reordered():
    np.testing.assert_array_equal(parse_prompt(input_box="[50,60,10,20]").boxes, [[10, 20, 50, 60]])
    np.testing.assert_array_equal(parse_prompt(input_box="[10,60,50,20]").boxes, [[10, 20, 50, 60]])


@pytest.mark.parametrize("box", ["[10,10,10,50]", "[10,10,50,10]", "[[0,0,5,5],[3,3,3,3]]"])
def test_zero_area_box_is_an_error(box):
    with pytest.raises(PromptError, match="zero area") as info:
        parse_prompt(input_box=box)
    assert info.value.param == "input_box" and BOX_FORMAT in str(info.value)


@pytest.mark.parametrize("param, text", [
    ("input_point", "[NaN, 1]"), ("input_point", "[Infinity, 1]"), ("input_point", "[1e999, 1]"),
    ("input_point", "[1, -Infinity]"), ("input_point", "[nan, 1]"), ("input_point", "[1, 2e7]"),
    ("input_box", "[0, 0, NaN, 5]"), ("input_box", "[0, 0, 1e400, 5]"),
])
def test_nan_inf_and_huge_values_are_errors(param, text):
    with pytest.raises(PromptError) as info:
        parse_prompt(**{param: text})
    assert info.value.param == param and str(info.value).startswith(param + ":")


def test_ten_thousand_points_allowed_more_refused():
    points = ",".join(f"[{i % 640},{i // 640}]" for i in range(MAX_PROMPTS))
    labels = ",".join("1" if i % 3 else "0" for i in range(MAX_PROMPTS))
    prompt = parse_prompt(f"[{points}]", f"[{labels}]")
    assert prompt.points.shape == (MAX_PROMPTS, 2) and prompt.labels.sum() == 6666
    with pytest.raises(PromptError, match="10001 entries, at most 10000") as info:
        parse_prompt(f"[{points},[1,1]]")
    assert info.value.param == "input_point"
    with pytest.raises(PromptError, match="at most 10000") as info:
        parse_prompt(f"[{points}]", f"[{labels},1]")
    assert info.value.param == "input_point_label"


def test_ten_thousand_boxes_allowed_more_refused():
    boxes = ",".join(f"[{i},{i},{i + 5},{i + 7}]" for i in range(MAX_PROMPTS))
    assert parse_prompt(input_box=f"[{boxes}]").boxes.shape == (MAX_PROMPTS, 4)
    with pytest.raises(PromptError, match="at most 10000") as info:
        parse_prompt(input_box=f"[{boxes},[0,0,1,1]]")
    assert info.value.param == "input_box"


# ---------------------------------------------------------------------------------------------
# Malformed values: an error naming the parameter and showing the format
# ---------------------------------------------------------------------------------------------
COMMON_BAD = ["abc", "[1,2", "[[1,2]]]", "{'x': 1}", '"[1,2]"', "[true, 1]", "[None, 1]",
              "[1, 'a']", "1+2j", "[" * 5000, "[1" + "0" * 400 + ", 1]", "[1" + "0" * 5000 + ", 1]",
              "[[1,2],3]", "[1,[2,3]]", "b'12'", "{1, 2}"]


@pytest.mark.parametrize("text", COMMON_BAD + ["[1]", "[1,2,3]", "[[1,2],[3]]", "5"])
def test_malformed_point(text):
    with pytest.raises(PromptError) as info:
        parse_prompt(input_point=text)
    assert info.value.param == "input_point"
    assert str(info.value).startswith("input_point:") and POINT_FORMAT in str(info.value)


@pytest.mark.parametrize("text", COMMON_BAD + ["[1,2,3]", "[1,2,3,4,5]", "[[1,2,3,4],[1,2]]",
                                  "[[[1,2,3,4]]]"])
def test_malformed_box(text):
    with pytest.raises(PromptError) as info:
        parse_prompt(input_box=text)
    assert info.value.param == "input_box"
    assert str(info.value).startswith("input_box:") and BOX_FORMAT in str(info.value)


@pytest.mark.parametrize("points, labels, problem", [
    ("[5,5]", "[2]", "not 0 or 1"), ("[5,5]", "[-1]", "not 0 or 1"),
    ("[5,5]", "[0.5]", "not 0 or 1"), ("[5,5]", "[true]", "not 0 or 1"),
    ("[5,5]", '["1"]', "not 0 or 1"), ("[5,5]", "[NaN]", "not 0 or 1"),
    ("[5,5]", "abc", "cannot read"), ("[5,5]", "{}", "got {}"),
    ("[5,5]", "[1,0]", "2 labels for 1 points"), ("[[1,1],[2,2]]", "[1]", "1 labels for 2 points"),
    ("", "[1]", "1 labels for 0 points"), ("[5,5]", "[[1],[0]]", "for 1 points in one list"),
])
def test_malformed_label(points, labels, problem):
    with pytest.raises(PromptError, match=problem.replace("{", r"\{").replace("}", r"\}")) as info:
        parse_prompt(points, labels)
    assert info.value.param == "input_point_label"
    assert str(info.value).startswith("input_point_label:") and LABEL_FORMAT in str(info.value)


def test_prompt_error_is_a_parameter_error():
    assert issubclass(PromptError, ParameterError) and issubclass(PromptError, ValueError)


def test_long_bad_text_is_shortened_in_the_message():
    with pytest.raises(PromptError) as info:
        parse_prompt(input_point="x" * 100_000)
    assert len(str(info.value)) < 300


# ---------------------------------------------------------------------------------------------
# Studio graphics and helpers
# ---------------------------------------------------------------------------------------------
def test_make_prompt_from_graphics():
    prompt = make_prompt([[1, 2], (3, 4)], [1, 0], [[10, 20, 5, 8]])
    np.testing.assert_array_equal(prompt.points, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(prompt.labels, [1, 0])
    np.testing.assert_array_equal(prompt.boxes, [[5, 8, 10, 20]])
    assert make_prompt().is_empty
    np.testing.assert_array_equal(make_prompt([[1, 2]]).labels, [1])


def test_make_prompt_refuses_degenerate_graphics():
    with pytest.raises(PromptError, match="graphics boxes"):
        make_prompt(boxes=[[5, 5, 5, 9]])
    with pytest.raises(PromptError, match="graphics points"):
        make_prompt(points=[[float("nan"), 1]])


def test_merged_puts_the_first_prompt_first():
    a = parse_prompt("[10,20]", "", "[0,0,100,50]")
    b = make_prompt([[1, 1]], [0], [[5, 6, 7, 8]])
    merged = a.merged(b)
    assert isinstance(merged, Prompt)
    np.testing.assert_array_equal(merged.points, [[10, 20], [1, 1]])
    np.testing.assert_array_equal(merged.labels, [1, 0])
    np.testing.assert_array_equal(merged.boxes, [[0, 0, 100, 50], [5, 6, 7, 8]])


# ---------------------------------------------------------------------------------------------
# Several objects, each with its own points
# ---------------------------------------------------------------------------------------------
def test_point_groups_make_one_object_each():
    prompt = parse_prompt("[[[10,20],[30,40]],[[50,60]]]", "[[1,0],[1]]")
    np.testing.assert_array_equal(prompt.points, [[10, 20], [30, 40], [50, 60]])
    np.testing.assert_array_equal(prompt.labels, [1, 0, 1])
    np.testing.assert_array_equal(prompt.groups, [0, 0, 1])
    assert prompt.num_groups == 2 and prompt.num_objects == 2
    coords, labels = prompt.object_prompt(0)
    np.testing.assert_array_equal(coords, [[10, 20], [30, 40]])
    np.testing.assert_array_equal(labels, [1, 0])
    coords, labels = prompt.object_prompt(1)  # not padded to the other group's length
    np.testing.assert_array_equal(coords, [[50, 60]])
    np.testing.assert_array_equal(labels, [1])


def test_point_groups_with_one_box_each_and_labels_omitted():
    prompt = parse_prompt("[[[10,20]],[[50,60],[70,80]]]", "", "[[0,0,40,40],[45,45,90,90]]")
    np.testing.assert_array_equal(prompt.labels, [1, 1, 1])
    assert prompt.num_objects == 2
    coords, labels = prompt.object_prompt(1)  # the box's corners first, then its group
    np.testing.assert_array_equal(coords, [[45, 45], [90, 90], [50, 60], [70, 80]])
    np.testing.assert_array_equal(labels, [2, 3, 1, 1])


def test_one_group_is_plain_points_and_every_box_gets_them():
    prompt = parse_prompt("[[[10,20],[30,40]]]", "[[1,0]]", "[[0,0,40,40],[45,45,90,90]]")
    assert prompt.num_groups == 0 and prompt.num_objects == 2
    np.testing.assert_array_equal(prompt.groups, [SHARED, SHARED])
    for i in range(2):
        coords, labels = prompt.object_prompt(i)
        np.testing.assert_array_equal(labels, [2, 3, 1, 0])


@pytest.mark.parametrize("points, labels, boxes, param, problem", [
    ("[[[1,2]],[[3,4]],[[5,6]]]", "", "[[0,0,9,9],[1,1,8,8]]", "input_point",
     "3 groups of points for 2 boxes"),
    ("[[[1,2]],[[3,4]]]", "", "[0,0,9,9]", "input_point", "2 groups of points for 1 boxes"),
    ("[[[1,2]],[[3,4]]]", "[1,1]", "", "input_point_label",
     "shaped as 2 labels in one list for points in groups of [1, 1]"),
    ("[[[1,2]],[[3,4]]]", "[[1],[1],[0]]", "", "input_point_label", "shaped as [1, 1, 1]"),
    ("[[[1,2],[5,5]],[[3,4]]]", "[[1],[1,0]]", "", "input_point_label", "shaped as [1, 2]"),
    ("[[[1,2]],[3,4]]", "", "", "input_point", "group 1 is [3, 4], not a list of [x,y]"),
    ("[[[1,2]],[]]", "", "", "input_point", "group 1 is []"),
    ("[[[1,2,3]]]", "", "", "input_point", "not 2 numbers"),
])
def test_groups_that_do_not_match_are_errors(points, labels, boxes, param, problem):
    with pytest.raises(PromptError, match=re.escape(problem)) as info:
        parse_prompt(points, labels, boxes)
    assert info.value.param == param
    assert (POINT_FORMAT if param == "input_point" else LABEL_FORMAT) in str(info.value)


def test_merged_numbers_the_second_prompt_groups_after_the_first():
    drawn = make_prompt([[1, 1], [2, 2], [3, 3]], [1, 1, 0], groups=[0, SHARED, 1])
    typed = parse_prompt("[[[5,5]],[[6,6]]]")
    merged = drawn.merged(typed)
    np.testing.assert_array_equal(merged.groups, [0, SHARED, 1, 2, 3])
    assert merged.num_objects == 4
    coords, _ = merged.object_prompt(2)  # group 2 and the shared point, in the given order
    np.testing.assert_array_equal(coords, [[2, 2], [5, 5]])
    with pytest.raises(PromptError, match="4 groups of points for 1 boxes"):
        merged.merged(parse_prompt(input_box="[0,0,9,9]")).object_prompt(0)
