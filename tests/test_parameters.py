"""The parameter table (engine/parameters.py) and image conversion (engine/image/convert.py)."""
from __future__ import annotations

import numpy as np
import pytest

from infer_segment_anything_2.engine.image.convert import to_rgb_uint8
from infer_segment_anything_2.engine.model.table import MODELS
from infer_segment_anything_2.engine.parameters import (PARAMETERS, ParameterError,
                                                         default_values, parse_values,
                                                         unknown_keys)

SPEC_KEYS = ["model_name", "cuda", "input_size_percent", "apply_postprocessing", "input_box",
             "input_point", "input_point_label", "multimask_output", "points_per_side",
             "points_per_batch", "iou_thresh", "stability_score_thresh", "stability_score_offset",
             "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio",
             "crop_n_points_downscale_factor", "use_m2m"]


def test_every_specified_key_exists_with_its_default():
    assert set(SPEC_KEYS) <= set(PARAMETERS)
    values = parse_values({})
    expected = {"model_name": "sam2_hiera_small", "input_size_percent": 100,
                "apply_postprocessing": True, "input_box": "", "input_point": "",
                "input_point_label": "", "multimask_output": False, "points_per_side": 32,
                "points_per_batch": 64, "iou_thresh": 0.8, "stability_score_thresh": 0.95,
                "stability_score_offset": 1.0, "box_nms_thresh": 0.7, "crop_n_layers": 0,
                "crop_nms_thresh": 0.7, "crop_overlap_ratio": 512 / 1500,
                "crop_n_points_downscale_factor": 1, "use_m2m": False, "model_weight_file": "",
                "mask_threshold": 0.0}
    for key, value in expected.items():
        assert values[key] == value, key
        assert type(values[key]) is type(value), key
    assert isinstance(values["cuda"], bool)


def test_defaults_round_trip_as_strings():
    strings = default_values()
    assert all(isinstance(v, str) for v in strings.values())
    assert parse_values(strings) == parse_values({})


@pytest.mark.parametrize("text, value", [("True", True), ("true", True), ("1", True),
                                         ("yes", True), (" False ", False), ("0", False),
                                         ("off", False), (True, True), (False, False)])
def test_bool_values(text, value):
    assert PARAMETERS["multimask_output"].parse(text) is value


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_name_is_accepted(name):
    assert PARAMETERS["model_name"].parse(name) == name


NUMERIC = [k for k, p in PARAMETERS.items() if p.kind in ("int", "float")]


@pytest.mark.parametrize("key", NUMERIC)
def test_numeric_bounds_are_inclusive_and_checked(key):
    spec = PARAMETERS[key]
    assert spec.parse(str(spec.minimum)) == spec.minimum
    if not spec.exclusive_max:
        assert spec.parse(str(spec.maximum)) == spec.maximum
    for bad in (spec.minimum - 1, spec.maximum + 1):
        with pytest.raises(ParameterError, match="out of range") as info:
            spec.parse(str(bad))
        assert info.value.param == key and str(info.value).startswith(f"{key}:")
        assert spec.expected() in str(info.value)


@pytest.mark.parametrize("key", NUMERIC)
@pytest.mark.parametrize("bad", ["abc", "", "nan", "inf", "-inf", "1e999", "[1]", None, "0x10"])
def test_numeric_garbage_is_an_error_naming_the_key(key, bad):
    with pytest.raises(ParameterError) as info:
        PARAMETERS[key].parse(bad)
    assert info.value.param == key and str(info.value).startswith(f"{key}:")
    assert "Expected " + PARAMETERS[key].expected() in str(info.value)


@pytest.mark.parametrize("key", [k for k, p in PARAMETERS.items() if p.kind == "int"])
def test_integers_refuse_fractions_but_take_integral_floats(key):
    spec = PARAMETERS[key]
    with pytest.raises(ParameterError, match="an integer"):
        spec.parse(str(spec.minimum + 0.5))
    assert spec.parse(f"{spec.minimum:.1f}") == spec.minimum
    assert isinstance(spec.parse(f"{spec.minimum:.1f}"), int)


def test_special_ranges():
    assert PARAMETERS["mask_threshold"].parse("-2.5") == -2.5  # a logit: may be negative
    assert PARAMETERS["crop_overlap_ratio"].parse("0.99") == 0.99
    with pytest.raises(ParameterError, match="excluded"):
        PARAMETERS["crop_overlap_ratio"].parse("1")


@pytest.mark.parametrize("key, bad", [("model_name", "sam3"), ("model_name", "SAM2_HIERA_TINY"),
                                      ("cuda", "maybe"), ("use_m2m", "2"),
                                      ("multimask_output", "")])
def test_choice_and_bool_errors_list_what_is_expected(key, bad):
    with pytest.raises(ParameterError) as info:
        PARAMETERS[key].parse(bad)
    message = str(info.value)
    assert message.startswith(f"{key}:")
    if key == "model_name":
        assert all(name in message for name in MODELS)
    else:
        assert "True or False" in message


def test_parse_values_names_the_bad_parameter():
    with pytest.raises(ParameterError) as info:
        parse_values({"points_per_side": "16", "iou_thresh": "high"})
    assert info.value.param == "iou_thresh"
    values = parse_values({"points_per_side": "16", "iou_thresh": "0.5"})
    assert values["points_per_side"] == 16 and values["iou_thresh"] == 0.5


def test_unknown_keys_suggest_the_closest():
    assert unknown_keys(["input_points", "iou_thresh", "zzz"]) == {"input_points": "input_point",
                                                                  "zzz": None}


# ---------------------------------------------------------------------------------------------
# Images: what users have, to HWC RGB uint8
# ---------------------------------------------------------------------------------------------
def test_rgb_uint8_is_unchanged():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = to_rgb_uint8(img)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 1)])
def test_grayscale_is_repeated(shape):
    gray = np.arange(24, dtype=np.uint8).reshape(shape)
    out = to_rgb_uint8(gray)
    assert out.shape == (4, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray.reshape(4, 6))


def test_rgba_drops_alpha_and_gray_alpha_keeps_gray():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    np.testing.assert_array_equal(to_rgb_uint8(rgba)[0, 0], [10, 20, 30])
    gray_alpha = np.zeros((2, 2, 2), np.uint8)
    gray_alpha[..., 0], gray_alpha[..., 1] = 77, 255
    np.testing.assert_array_equal(to_rgb_uint8(gray_alpha)[1, 1], [77, 77, 77])


def test_uint16_keeps_the_top_eight_bits():
    img = np.array([[0, 257, 65535, 32896]], np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(img)[0, :, 0], [0, 1, 255, 128])


def test_float_in_unit_range_is_scaled():
    img = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_rgb_uint8(img)[0, :, 1], [0, 128, 255])


def test_float_in_byte_range_is_taken_as_is_and_clipped():
    img = np.array([[0.0, 100.4, 254.6, 300.0, -5.0, np.nan]], np.float64)
    np.testing.assert_array_equal(to_rgb_uint8(img)[0, :, 2], [0, 100, 255, 255, 0, 0])


def test_bool_is_black_and_white():
    img = np.array([[True, False]])
    np.testing.assert_array_equal(to_rgb_uint8(img)[0, :, 0], [255, 0])


@pytest.mark.parametrize("shape", [(0, 0), (0, 5, 3), (5, 0, 3), (5, 5, 0), (5,), (2, 2, 3, 1),
                                   ()])
def test_empty_or_misshapen_image_is_an_error_naming_image(shape):
    with pytest.raises(ParameterError) as info:
        to_rgb_uint8(np.zeros(shape, np.uint8))
    assert info.value.param == "image" and str(info.value).startswith("image:")
    assert str(shape).replace(" ", "") in str(info.value).replace(" ", "")


def test_one_pixel_image():
    assert to_rgb_uint8(np.full((1, 1), 9, np.uint8)).shape == (1, 1, 3)


def test_non_numeric_image_is_an_error_naming_image():
    with pytest.raises(ParameterError) as info:
        to_rgb_uint8(np.array([["a", "b"]], dtype=object))
    assert info.value.param == "image"


def test_video_parameters_defaults_and_errors():
    """Video mode's counts are integers >= 0 (0 = off), its IoU a number in [0, 1]; errors name
    the parameter."""
    values = parse_values({})
    assert {k: values[k] for k in PARAMETERS if k.startswith("video_")} == {
        "video_tracking": False, "video_seed_every": 0, "video_reapply_every": 0,
        "video_match_iou": 0.3, "video_max_objects": 32, "video_drop_after": 0}
    for key, bad in (("video_seed_every", "-1"), ("video_drop_after", "2.5"),
                     ("video_reapply_every", "often"), ("video_match_iou", "1.5"),
                     ("video_match_iou", "-0.1"), ("video_max_objects", "0")):
        with pytest.raises(ParameterError) as info:
            parse_values({key: bad})
        assert str(info.value).startswith(f"{key}:")
