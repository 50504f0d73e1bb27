"""The plugin in the real Ikomia runtime: the specification's examples, outputs, errors, caching."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import iou, make_task, synthetic_image
from infer_segment_anything_2.engine.image.predictor import PromptPredictor
from infer_segment_anything_2.engine.image.prompts import parse_prompt

MASK_OUTPUTS = (1, 2, 3)
INSTANCE_OUTPUT = 4


@pytest.fixture(scope="module")
def big_image():
    """Larger than 500 px on both sides, for the specification's point [[500,500]]."""
    return synthetic_image(600, 760, seed=3)


def mask_of(task, index):
    out = task.get_output(index)
    return out.get_mask() if out.is_data_available() else None


def test_example_1_automatic_masks(tiny_task, image_path, tiny_model, image):
    """The specification's first example, with thresholds that keep masks of random weights:
    the instances are Meta's generator's masks and scores, and the label map paints them large
    first."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from meta_reference import generate_with_meta
    from infer_segment_anything_2.engine.automatic.generator import AutomaticParams

    wf, algo = tiny_task
    # random weights' masks all span the image: their boxes coincide, so NMS keeps one unless off
    keep = {"points_per_side": "4", "iou_thresh": "0.0", "stability_score_thresh": "0.0",
            "box_nms_thresh": "1.0"}
    algo.set_parameters(keep)
    wf.run_on(path=str(image_path))
    overlay = algo.get_image_with_mask()
    assert overlay.shape == (240, 320, 3)
    label_map = mask_of(algo, 1)
    assert label_map.shape == (240, 320) and label_map.dtype == np.uint8
    objects = algo.get_output(INSTANCE_OUTPUT).get_objects()
    ref = generate_with_meta(tiny_model, image, AutomaticParams(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0))
    assert len(objects) == len(ref) == 3 * 16
    for obj, mask, score in zip(objects, ref.masks, ref.scores):  # both by decreasing area
        assert iou(obj.mask.astype(bool), mask) > 0.99
        assert obj.confidence == pytest.approx(float(score), abs=1e-5)
    painted = np.zeros_like(label_map)
    for i, mask in enumerate(ref.masks):  # larger masks first, smaller ones on top
        painted[mask] = i + 1
    assert (painted == label_map).mean() > 0.99
    assert len(np.unique(label_map)) > 3
    assert not algo.get_output(2).is_data_available()


def test_example_2_one_point_three_masks(tiny_checkpoint, tiny_model, big_image):
    wf, algo = make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint)
    algo.set_parameters({"input_size_percent": "100", "input_point": "[[500,500]]",
                         "multimask_output": "True"})
    wf.run_on(array=big_image)
    img_output = algo.get_output(0)
    masks = [algo.get_output(i) for i in MASK_OUTPUTS]
    shown = img_output.get_image_with_mask(masks[1])
    assert shown.shape == big_image.shape
    ref = PromptPredictor(tiny_model)
    ref.set_image(big_image)
    seg = ref.predict(parse_prompt("[[500,500]]"), multimask=True)
    for rank, out in enumerate(masks):
        assert iou(out.get_mask() == 1, seg.masks[rank]) > 0.999
    instances = algo.get_output(INSTANCE_OUTPUT)
    scores = [obj.confidence for obj in instances.get_objects()]
    assert scores == pytest.approx(list(seg.scores), rel=1e-5)
    assert scores == sorted(scores, reverse=True)


def test_example_3_explore_outputs(tiny_task, image_path):
    wf, algo = tiny_task
    algo.set_parameters({"input_box": "[[40,30,200,150],[150,100,300,220]]"})
    wf.run_on(path=str(image_path))
    kinds = []
    for output in algo.get_outputs():
        assert str(output)
        data = json.loads(output.to_json())
        kinds.append(type(output).__name__)
        assert isinstance(data, dict)
    assert kinds == ["CImageIO", "CSemanticSegmentationIO", "CSemanticSegmentationIO",
                     "CSemanticSegmentationIO", "CInstanceSegmentationIO"]
    detections = json.loads(algo.get_output(INSTANCE_OUTPUT).to_json())["detections"]
    assert [d["label"] for d in detections] == ["object 1", "object 2"]
    assert json.loads(algo.get_output(1).to_json())["classes"] == ["background", "object 1",
                                                                    "object 2"]


def test_two_boxes_give_one_label_per_box(tiny_task, tiny_model, image):
    wf, algo = tiny_task
    algo.set_parameters({"input_box": "[[40,30,200,150],[150,100,300,220]]"})
    wf.run_on(array=image)
    label_map = mask_of(algo, 1)
    ref = PromptPredictor(tiny_model)
    ref.set_image(image)
    seg = ref.predict(parse_prompt(input_box="[[40,30,200,150],[150,100,300,220]]"))
    expected = np.zeros(label_map.shape, np.uint8)
    expected[seg.masks[0]] = 1
    expected[seg.masks[1]] = 2  # assigned, not added: overlap shows the later box
    np.testing.assert_array_equal(label_map, expected)


def test_outputs_do_not_pile_up_and_prompts_reuse_the_embedding(tiny_task, image):
    wf, algo = tiny_task
    counts = []
    for params in ({"input_point": "[[100,80]]", "multimask_output": "True"},
                   {"input_point": "[[120,90]]", "multimask_output": "False"},
                   {"input_box": "[40,30,200,150]", "input_point": ""}):
        algo.set_parameters(params)
        wf.run_on(array=image)
        counts.append(algo.get_output_count())
        if params.get("multimask_output") != "True":
            assert not algo.get_output(2).is_data_available()
            assert not algo.get_output(3).is_data_available()
    assert counts == [5, 5, 5]
    assert algo.session.load_count == 1
    assert algo.session.predictor.encode_count == 1
    assert algo.get_output(INSTANCE_OUTPUT).get_object_count() == 1


def test_model_parameters_reload_the_model_others_do_not(tiny_task, image):
    wf, algo = tiny_task
    algo.set_parameters({"input_point": "[[100,80]]"})
    wf.run_on(array=image)
    algo.set_parameters({"mask_threshold": "-1.0", "multimask_output": "True",
                         "points_per_side": "16", "input_size_percent": "50"})
    wf.run_on(array=image)
    assert algo.session.load_count == 1
    assert algo.session.predictor.encode_count == 2  # input size changed: encoded again
    algo.set_parameters({"apply_postprocessing": "False"})
    wf.run_on(array=image)
    assert algo.session.load_count == 2


@pytest.fixture(scope="module")
def shared_task(tiny_checkpoint):
    return make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint,
                     input_point="[[100,80]]")


@pytest.mark.parametrize("key,value", [
    ("input_point", "[[100,80"),
    ("input_point", "[1,2,3]"),
    ("input_point", "hello"),
    ("input_point", "[[nan, 3]]"),
    ("input_point_label", "[1,0,1]"),
    ("input_point_label", "[2]"),
    ("input_box", "[1,2,3]"),
    ("input_box", "[[10,10,10,50]]"),
    ("points_per_side", "many"),
    ("iou_thresh", "1.5"),
    ("input_size_percent", "0"),
    ("model_name", "sam3_hiera_huge"),
    ("multimask_output", "maybe"),
    ("crop_n_layers", "-1"),
])
def test_malformed_value_names_the_parameter_and_next_run_works(shared_task, image, key, value):
    wf, algo = shared_task
    good = algo.get_parameters()
    algo.set_parameters({key: value})
    with pytest.raises(RuntimeError) as err:
        wf.run_on(array=image)
    assert f"{key}:" in str(err.value)
    assert "Expected" in str(err.value)
    for i in range(1, 5):
        assert not algo.get_output(i).is_data_available()
    algo.set_parameters(good)
    wf.run_on(array=image)
    assert algo.get_output(1).is_data_available()
    assert algo.session.load_count == 1  # the model and the embedding survived the error
    assert algo.session.predictor.encode_count == 1


def test_misspelled_parameter_key_is_an_error():
    _, algo = make_task()
    with pytest.raises(ValueError, match="did you mean 'iou_thresh'"):
        algo.set_parameters({"iou_thres": "0.5"})


def test_missing_checkpoint_file_is_a_clear_error(image):
    wf, algo = make_task(model_name="sam2_hiera_tiny", model_weight_file="/nonexistent/x.pt",
                         input_point="[[10,10]]")
    with pytest.raises(RuntimeError, match="model_weight_file: /nonexistent/x.pt does not exist"):
        wf.run_on(array=image)


def test_parameters_round_trip_as_strings():
    _, algo = make_task()
    values = algo.get_parameters()
    assert values["model_name"] == "sam2_hiera_small"
    assert values["iou_thresh"] == "0.8"
    assert float(values["crop_overlap_ratio"]) == pytest.approx(512 / 1500)
    assert values["input_point"] == "" and values["multimask_output"] == "False"
    algo.set_parameters({"input_box": "[1,2,3,4]"})
    assert algo.get_parameters()["input_box"] == "[1,2,3,4]"
