"""Where users see detection on the command line: ``predict blazeface:VARIANT IMAGE --json``
prints the Detector's boxes in the image's pixels; bad input is one line and exit 2;
``info`` names the task of a real (fashion) artifact and of the same artifact carrying a
detector's settings."""

from __future__ import annotations

import json

import cv2
import onnx
import pytest

from edgeinfer.artifact import KEY_DETECTION, KEY_TASK
from edgeinfer.cli import main
from edgeinfer.data.datasets import sample_photos
from edgeinfer.runtime.detect import blazeface
from edgeinfer.runtime.detect.detector import Detector


@pytest.fixture(scope="module")
def photos(tmp_path_factory):  # noqa: ANN001, ANN201
    d = tmp_path_factory.mktemp("photos")
    a = sample_photos()["astronaut"]
    cv2.imwrite(str(d / "astronaut.png"), a)
    cv2.imwrite(str(d / "portrait.jpg"), a[:, 90:390])
    cv2.imwrite(str(d / "coffee.png"), sample_photos()["coffee"])
    return d


def test_predict_json_prints_the_detectors_boxes(photos, capsys) -> None:  # noqa: ANN001
    files = [str(photos / n) for n in ("astronaut.png", "portrait.jpg", "coffee.png")]
    assert main(["predict", "blazeface:short_range", *files, "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    det = Detector.blazeface("short_range")
    assert [x["image"] for x in lines] == files
    for line, f in zip(lines, files, strict=True):
        want = det(f)
        assert len(line["detections"]) == len(want)
        for got, w in zip(line["detections"], want, strict=True):
            assert got["box"] == pytest.approx(list(w.box), abs=1e-3)
            assert got["score"] == w.score and got["label"] == "face"
    # one face in the full photo, at the astronaut's face (top middle of the 512x512 frame)
    (face,) = lines[0]["detections"]
    x0, y0, x1, y1 = face["box"]
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200
    # the portrait crop starts 90 px further right: the same face, 90 px further left
    (face2,) = lines[1]["detections"]
    assert face2["box"][0] == pytest.approx(x0 - 90, abs=3)
    assert lines[2]["detections"] == []


@pytest.mark.parametrize("argv, match", [
    (["blazeface:short_range", "MISSING"], "does not exist"),
    (["blazeface:short_range", "BAD"], ""),
    (["blazeface:mid_range", "GOOD"], "unknown BlazeFace variant"),
    (["blazeface:short_range"], "IMAGE"),
    # the video opens before any image prints (it was refused: "--video is not served")
    (["blazeface:short_range", "GOOD", "--video", "MISSING"], "cannot open video"),
    (["blazeface:short_range", "GOOD", "--tta", "hflip"], "--tta hflip"),  # was ignored
])
def test_predict_bad_input_is_one_line_exit_2(photos, tmp_path, capsys, argv,  # noqa: ANN001
                                              match: str) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    subst = {"MISSING": str(tmp_path / "missing.png"), "BAD": str(bad),
             "GOOD": str(photos / "astronaut.png")}
    rc = main(["predict", *[subst.get(a, a) for a in argv], "--json"])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if not x.startswith("[edgeinfer]")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1 and match in lines[0]
    assert out == ""


def _with_task(src, dst, task: str, detection: str | None) -> None:  # noqa: ANN001
    m = onnx.load(str(src))
    m.metadata_props.add(key=KEY_TASK, value=task)
    if detection is not None:
        m.metadata_props.add(key=KEY_DETECTION, value=detection)
    onnx.save(m, str(dst))


def test_info_names_the_task(fashion_artifact, tmp_path, capsys) -> None:  # noqa: ANN001
    assert main(["info", str(fashion_artifact)]) == 0
    assert "task:       classify\n" in capsys.readouterr().out
    det = tmp_path / "detector.onnx"
    _with_task(fashion_artifact, det, "detect", blazeface.description()[2].to_json())
    assert main(["info", str(det)]) == 0
    out = capsys.readouterr().out
    assert ("task:       detect (fit pad_resize, SSD anchors (strides [8, 16, 16, 16]), "
            "weighted NMS across classes IoU 0.3 score > 0.5 top-k all)") in out
    assert main(["info", str(det), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["task"] == "detect" and meta["detection"]["nms"]["iou_threshold"] == 0.3


@pytest.mark.parametrize("task, detection", [("detect", '{"fit": "squash"}'),
                                             ("detect", None), ("pose", None)])
def test_info_on_a_damaged_task_is_one_line(fashion_artifact, tmp_path, capsys, task,  # noqa: ANN001
                                            detection) -> None:
    bad = tmp_path / "bad.onnx"
    _with_task(fashion_artifact, bad, task, detection)
    assert main(["info", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
