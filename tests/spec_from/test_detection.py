"""spec_from for transformers detection processors (issue 28, point 2): the pixel spec and
the detector's fit derived from the processor, proven against its ``pixel_values`` and its
``post_process_object_detection`` on real frames of three aspects; a fit edgeinfer cannot
express is refused by name; a deliberately wrong derivation is caught by the proof.

The quick tests read config dicts only (no transformers import); everything that builds a
processor is slow-marked (importing transformers costs 10-40 s on the shared cores).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgeinfer import SpecError
from edgeinfer.converter.spec_from import detect_proof as DP
from edgeinfer.converter.spec_from import detection as DET
from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.parity.tolerances import tolerance

# PekingU/rtdetr_r18vd's preprocessor_config.json (the hub commit that added it; D-FINE's
# ustc-community checkpoints ship the same class and sizes: transformers has no D-FINE
# processor)
RTDETR_HUB = {"do_convert_annotations": True, "do_normalize": False, "do_pad": False,
              "do_rescale": True, "do_resize": True, "format": "coco_detection",
              "image_mean": [0.485, 0.456, 0.406], "image_processor_type":
              "RTDetrImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 2,
              "rescale_factor": 0.00392156862745098, "size": {"height": 640, "width": 640}}
DETR_DEFAULT = {"image_processor_type": "DetrImageProcessor", "do_pad": True, "do_resize": True,
                "size": {"shortest_edge": 800, "longest_edge": 1333}, "resample": 2,
                "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225]}


def test_rtdetr_config_reads_as_a_stretch_with_the_post_processing_convention() -> None:
    d = DET.derive_detection(RTDETR_HUB)
    s, det = d.spec, d.detection
    assert s.size == (640, 640) and s.resize == "stretch" and s.interpolation == "linear"
    assert s.antialias and s.model_color == "RGB" and s.frame_color == "BGR"
    assert s.mean == (0.0,) and s.std == (1.0,) and s.scale == pytest.approx(1 / 255)
    assert det.fit == "stretch"
    assert det.decoder == {"kind": "boxes", "box_format": "cxcywh", "normalized": True}
    assert det.nms.iou_threshold == 1.0 and det.nms.score_threshold == 0.5
    assert d.read["post_process_object_detection"]["scores"] == "sigmoid"
    assert d.to_dict()["detection"] == det.to_dict()  # what convert stores


def test_detr_default_resize_and_pad_is_refused_by_name() -> None:
    with pytest.raises(SpecError) as e:
        DET.derive_detection(DETR_DEFAULT)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert "DetrImageProcessor size {'shortest_edge': 800, 'longest_edge': 1333}" in msg
    assert "bottom-right" in msg and "fixed input" in msg


@pytest.mark.parametrize("change, named", [
    ({"size": {"max_height": 640, "max_width": 640}}, "max_height"),
    ({"size": {"height": 800, "width": 800}, "pad_size": {"height": 1024, "width": 1024}},
     "do_pad=True pad_size"),
    ({"size": 800}, "size=800"),
    ({"image_processor_type": "RfDetrImageProcessor", "size": {"height": 560, "width": 560}},
     "RfDetrImageProcessor: its post_process_object_detection is not one"),
])
def test_inexpressible_steps_are_refused_by_name(change: dict, named: str) -> None:
    with pytest.raises(SpecError, match=named.replace("(", r"\(").replace("[", r"\[")):
        DET.derive_detection(DETR_DEFAULT | change)


def test_a_fixed_size_detr_config_is_expressible() -> None:
    d = DET.derive_detection(DETR_DEFAULT | {"size": {"height": 800, "width": 1066}})
    assert d.spec.size == (800, 1066) and d.detection.fit == "stretch"
    assert d.read["post_process_object_detection"]["scores"] == "softmax"
    assert any("do_pad" in n for n in d.notes)


def test_aspect_frames_are_real_portrait_landscape_and_square() -> None:
    fs = DP.aspect_frames()
    kinds = {"portrait" if f.shape[0] > f.shape[1] else "landscape" if f.shape[0] <
             f.shape[1] else "square" for f in fs}
    assert len(fs) == 18 and kinds == {"portrait", "landscape", "square"}
    assert all(f.dtype == np.uint8 and f.std() > 10 for f in fs)  # photo content


# --- with transformers: the proof ------------------------------------------------------

TB = tolerance("detect_boxes", "fp32")


def _t():
    return pytest.importorskip("transformers")


@pytest.mark.slow  # imports transformers and runs 5 processors (~30 s on two shared cores)
@pytest.mark.parametrize("name, kw", [
    ("RTDetrImageProcessorPil", {}),
    ("DetrImageProcessorPil", {"size": {"height": 800, "width": 800}}),
    ("ConditionalDetrImageProcessorPil", {"size": {"height": 800, "width": 1066}}),
    ("DeformableDetrImageProcessorPil", {"size": {"height": 640, "width": 640}}),
    ("YolosImageProcessorPil", {"size": {"height": 512, "width": 864}}),
])
def test_each_expressible_processor_is_proven_pixels_and_boxes(name: str, kw: dict) -> None:
    from edgeinfer.converter.spec_from import derive_detection

    d = derive_detection(getattr(_t(), name)(**kw))
    p = d.proof
    assert p["proven"] and p["class"] == name and p["frames"] == 18
    assert p["max_grey_levels"] <= 1.5 and p["mean_grey_levels"] <= 0.35
    b = p["boxes"]
    assert b["proven"] and b["frames"] == 18 and b["detections"] > 100
    assert b["max_box_px"] <= TB.max_abs and b["max_score"] <= 1e-4
    assert d.to_dict()["proof"]["boxes"] == b and d.to_dict()["detection"]["fit"] == "stretch"


@pytest.mark.slow  # imports transformers
def test_detr_processor_at_its_defaults_is_refused_by_name() -> None:
    from edgeinfer.converter.spec_from import derive_detection

    with pytest.raises(SpecError, match=r"DetrImageProcessor size .*shortest_edge.*800"):
        derive_detection(_t().DetrImageProcessorPil())


@pytest.mark.slow  # imports transformers
def test_the_rtdetr_hub_config_file_is_built_and_proven(tmp_path) -> None:
    import json

    from edgeinfer.converter.spec_from import derive_detection

    _t()
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(RTDETR_HUB))
    d = derive_detection(tmp_path)
    assert d.proof["boxes"]["max_box_px"] <= TB.max_abs and d.spec.size == (640, 640)


def _proven_rtdetr():
    """The hub config's derivation with its processor (unproven): what prove_detection
    takes."""
    return replace(DET.derive_detection(RTDETR_HUB), pipeline=_t().RTDetrImageProcessorPil())


@pytest.mark.slow  # imports transformers
@pytest.mark.parametrize("wrong, step", [
    ({"fit": "letterbox"}, "the inverse of fit letterbox"),
    ({"decoder": {"kind": "boxes", "box_format": "xyxy", "normalized": True}}, "decoder xyxy"),
    ({"decoder": {"kind": "boxes", "box_format": "cxcywh", "normalized": False}},
     "decoder cxcywh, the inverse"),
])
def test_a_wrong_box_mapping_is_caught_by_the_box_proof(wrong: dict, step: str) -> None:
    """The pixel proof alone (what a classifier spec gets, the check before) accepts each
    of these: the spec's pixels are right. The box proof names the step and the figure."""
    d = _proven_rtdetr()
    bad = replace(d, detection=DetectionSpec(**(d.detection.to_dict() | wrong)))
    before = DP.pixel_proof.prove(bad, list(DP.aspect_frames()))
    assert before.proof["proven"]  # accepted without the box half
    with pytest.raises(SpecError) as e:
        DP.prove_detection(bad)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and step in msg and "px from the processor's" in msg
    px = float(msg.split("boxes up to ")[1].split(" px")[0])
    assert px > 10 * TB.max_abs  # tens of pixels, not rounding


@pytest.mark.slow  # imports transformers
def test_a_wrong_scoring_rule_is_caught() -> None:
    d = _proven_rtdetr()
    rule = dict(d.read["post_process_object_detection"], scores="softmax")
    bad = replace(d, read=d.read | {"post_process_object_detection": rule})
    with pytest.raises(SpecError, match=r"post_process_object_detection: scores \(softmax"):
        DP.prove_detection(bad)


@pytest.mark.slow  # imports transformers
def test_a_letterboxed_pixel_spec_is_caught_by_the_pixel_proof() -> None:
    d = _proven_rtdetr()
    bad = replace(d, spec=replace(d.spec, resize="letterbox"),
                  detection=DetectionSpec(**(d.detection.to_dict() | {"fit": "letterbox"})))
    with pytest.raises(SpecError, match=r"RTDetrImageProcessorPil.*grey levels on average"):
        DP.prove_detection(bad)


@pytest.mark.slow  # imports transformers
def test_the_users_frames_are_used_when_given() -> None:
    from edgeinfer.converter.spec_from import derive_detection

    frames = list(DP.aspect_frames())[::3]
    d = derive_detection(_t().RTDetrImageProcessorPil(), frames=frames)
    assert d.proof["frames_from"] == "parity frames" and d.proof["boxes"]["frames"] == 6


@pytest.mark.slow  # imports transformers
def test_the_classifier_reading_still_refuses_a_detection_processor_and_points_here() -> None:
    from edgeinfer.converter.spec_from import derive

    with pytest.raises(SpecError, match=r"a processor for object detection, not for an image "
                       r"classifier.*spec_from\.derive_detection"):
        derive(_t().RTDetrImageProcessorPil())
