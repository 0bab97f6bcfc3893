"""The detection task in the artifact contract: round trip through the stored props, the
classifier default when the key is absent, and damaged values refused as ModelError."""

from __future__ import annotations

import json

import pytest

from edgeinfer.artifact import KEY_DETECTION, KEY_TASK, ArtifactMetadata
from edgeinfer.detect_spec import DetectionSpec, NmsSpec
from edgeinfer.errors import ModelError
from edgeinfer.spec import PreprocessSpec

SSD = {"kind": "ssd", "strides": [8, 16, 16, 16], "anchor_offset": [0.5, 0.5],
       "interpolated_scale_aspect_ratio": 1.0, "box_scale": 128.0, "raw_score_limit": 80.0,
       "keypoints": 6}


def _meta(**kw: object) -> ArtifactMetadata:
    return ArtifactMetadata(spec=PreprocessSpec(size=(128, 128)), labels=("face",), **kw)


def test_detector_round_trip_and_classifier_default() -> None:
    det = DetectionSpec(fit="pad_resize", decoder=SSD,
                        nms=NmsSpec(iou_threshold=0.3, score_threshold=0.5, top_k=None,
                                    weighted=True))
    props = _meta(task="detect", detection=det).to_props()
    assert props[KEY_TASK] == "detect"
    back = ArtifactMetadata.from_props(props)
    assert back.task == "detect" and back.detection == det
    assert back.to_dict()["detection"]["nms"]["weighted"] is True
    plain = _meta().to_props()
    assert KEY_TASK not in plain and KEY_DETECTION not in plain
    assert ArtifactMetadata.from_props(plain).task == "classify"
    assert ArtifactMetadata.from_props(plain).detection is None


@pytest.mark.parametrize("task, detection, match", [
    ("segment", None, "unknown task"),
    ("detect", None, "without detection settings"),
    ("classify", {"fit": "stretch"}, "task 'classify'"),
    ("detect", {"fit": "squash"}, "detection.fit"),
    ("detect", {"fit": "stretch", "nms": {"iou_threshold": 1.5}}, "iou_threshold"),
    ("detect", {"nms": {"top_k": 0}}, "top_k"),
    ("detect", {"nms": {"top_k": True}}, "top_k"),
    ("detect", {"nms": []}, "nms must be"),
    ("detect", {"decoder": {"kind": "yolo"}}, "decoder"),
    ("detect", {"decoder": {**SSD, "strides": []}}, "strides"),
    ("detect", {"decoder": {**SSD, "box_scale": "128"}}, "box_scale"),
    ("detect", {"decoder": {"kind": "boxes", "box_format": "xywh"}}, "box_format"),
    ("detect", {"anchors": 3}, "unknown field"),
    ("detect", [1, 2], "JSON object"),
])
def test_damaged_task_is_a_model_error(task: str, detection: object, match: str) -> None:
    props = _meta().to_props()
    props[KEY_TASK] = task
    if detection is not None:
        props[KEY_DETECTION] = json.dumps(detection)
    with pytest.raises(ModelError, match=match):
        ArtifactMetadata.from_props(props, "x.onnx")


def test_detection_json_that_is_not_json_is_a_model_error() -> None:
    props = {**_meta().to_props(), KEY_TASK: "detect", KEY_DETECTION: "{fit:"}
    with pytest.raises(ModelError, match="damaged"):
        ArtifactMetadata.from_props(props)
