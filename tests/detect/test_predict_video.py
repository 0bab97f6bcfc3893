"""``edgeinfer predict DETECTOR --video FILE``: one line per frame with that frame's boxes in
frame pixels, equal to the in-process detector's on the same decoded frames (BlazeFace here,
quick; the converted ONNX and TFLite artifacts in test_predict_video_artifacts.py); a bad
video (not a video, empty, cut short, missing) is one line on stderr and exit 2.

Before this file's code, ``--video`` with a detector was refused ("not served for detectors
yet"), and a video cut short ended quietly after the frames it still had, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.data.datasets import sample_photos
from edgeinfer.runtime.detect.detector import Detector

FRAMES = 8


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """``frames`` (BGR, one size) as an MJPG AVI, the container OpenCV always writes."""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(np.ascontiguousarray(f))
    out.release()
    return path


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path`` (BGR), as the stream reads them."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            cap.release()
            return out
        out.append(f)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:  # noqa: ANN001
    """8 frames, 280x560: the astronaut's face twice (one mirrored), panning 8 px a frame."""
    a = sample_photos()["astronaut"]
    frames = []
    for i in range(FRAMES):
        face = a[20:300, 60 + 8 * i:340 + 8 * i]
        frames.append(np.concatenate([face, face[:, ::-1]], axis=1))
    return write_video(tmp_path_factory.mktemp("video") / "faces.avi", frames)


def _lines(capsys) -> list[dict]:  # noqa: ANN001
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_video_boxes_equal_the_detectors_frame_by_frame(faces, capsys) -> None:  # noqa: ANN001
    assert main(["predict", "blazeface:short_range", "--video", str(faces), "--json",
                 "--threads", "1"]) == 0
    lines = _lines(capsys)
    frames = decoded(faces)
    assert [x["frame"] for x in lines] == list(range(FRAMES)) == list(range(len(frames)))
    assert set(lines[0]) == {"frame", "fps", "latency_ms", "detections"}
    det = Detector.blazeface("short_range", threads=1)
    for line, bgr in zip(lines, frames, strict=True):
        want = det(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))  # BlazeFace eats RGB
        assert len(want) == 2  # both faces, every frame: not a test of empty lists
        assert line["detections"] == [json.loads(json.dumps(d.to_dict())) for d in want]
        # frame pixels: one face in each half of the 560-wide frame
        assert sorted(d["box"][0] < 280 < d["box"][2] for d in line["detections"]) \
            == [False, False]
        assert sorted(d["box"][2] <= 280 for d in line["detections"]) == [False, True]


def test_video_text_and_max_frames_with_images(faces, tmp_path, capsys) -> None:  # noqa: ANN001
    """Images first, then the frames, as for a classifier; --max-frames stops the video."""
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), sample_photos()["astronaut"])
    assert main(["predict", "blazeface:short_range", str(img), "--video", str(faces),
                 "--max-frames", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith(f"{img}: face (")
    for i, line in enumerate(out[1:]):
        assert line.startswith(f"frame {i:5d} ") and line.count("face (") == 2, line


@pytest.mark.parametrize("bad", ["not-a-video", "empty", "missing", "cut"])
def test_bad_video_is_one_line_exit_2(faces, tmp_path, capsys, bad: str) -> None:  # noqa: ANN001
    data = faces.read_bytes()
    path = tmp_path / f"{bad}.avi"
    if bad == "not-a-video":
        path.write_text("RIFF? no: a text file with a video's name\n" * 50)
    elif bad == "empty":
        path.write_bytes(b"")
    elif bad == "cut":  # the last frames and the index are gone; the header still says 8
        path.write_bytes(data[:len(data) * 6 // 10])
        assert 0 < len(decoded(path)) < FRAMES
    rc = main(["predict", "blazeface:short_range", "--video", str(path), "--json"])
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if not x.startswith("[edgeinfer]")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    if bad == "cut":  # the frames it had are printed, then the one line says it was cut
        assert "ended after" in lines[0] and "truncated" in lines[0], lines
        got = [json.loads(x)["frame"] for x in out.splitlines()]
        assert got == list(range(len(decoded(path))))
    else:
        assert "cannot open video" in lines[0] and out == "", lines


def test_a_cut_video_is_reported_for_a_classifier_too(faces, fashion_artifact, tmp_path,
                                                      capsys) -> None:  # noqa: ANN001
    """The check lives in the runtime's Stream, under both: a classifier's --video said
    nothing of the missing frames either (exit 0)."""
    data = faces.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) * 6 // 10])
    n = len(decoded(cut))
    rc = main(["predict", str(fashion_artifact), "--video", str(cut), "--json", "--top-k", "1"])
    out, err = capsys.readouterr()
    assert rc == 2 and f"ended after {n} of the {FRAMES} frames" in err, err
    assert len(out.splitlines()) == n  # the frames it had are still predicted
