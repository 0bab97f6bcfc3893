"""``edgeinfer watch blazeface:VARIANT VIDEO``: the boxes of every frame of a real video (the
astronaut's face, two close-up crops side by side, panning), equal to the Detector's on the
same decoded frames; ``--overlay`` writes frames with the boxes drawn where they are; bad
input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.data.datasets import sample_photos
from edgeinfer.runtime.detect.detector import Detector
from edgeinfer.runtime.overlay import BOX, draw_boxes

FRAMES = 6


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:  # noqa: ANN001
    """6 MJPG frames, 280x560 (BGR as OpenCV writes them): two faces, panning 8 px a frame."""
    a = sample_photos()["astronaut"]
    path = tmp_path_factory.mktemp("video") / "faces.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (560, 280))
    assert w.isOpened()
    for i in range(FRAMES):
        face = a[20:300, 60 + 8 * i:340 + 8 * i]
        w.write(np.ascontiguousarray(np.concatenate([face, face[:, ::-1]], axis=1)))
    w.release()
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(f)


def test_watch_prints_and_draws_the_detectors_boxes(video, tmp_path, capsys) -> None:  # noqa: ANN001
    over = tmp_path / "overlay"
    assert main(["watch", "blazeface:short_range", str(video), "--json", "--threads", "1",
                 "--overlay", str(over), "--overlay-every", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    frames = _decoded(video)
    assert [x["frame"] for x in lines] == list(range(FRAMES)) == list(range(len(frames)))
    det = Detector.blazeface("short_range", threads=1)
    for line, bgr in zip(lines, frames, strict=True):
        want = det(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))  # the stream converts BGR -> RGB
        assert len(want) == 2
        assert line["detections"] == [json.loads(json.dumps(d.to_dict())) for d in want]
    # one frame in two drawn (frames 1, 3, 5), with the boxes where the detector put them
    assert sorted(p.name for p in over.iterdir()) == [f"frame_{i:06d}.png" for i in (1, 3, 5)]
    img = cv2.imread(str(over / "frame_000003.png"))
    assert img.shape == frames[3].shape  # 560 wide: not enlarged
    for d in lines[3]["detections"]:
        x0, y0, x1, y1 = (round(v) for v in d["box"])
        edge = img[(y0 + y1) // 2, x0 - 1:x0 + 2]  # the left edge, half-way down
        assert (np.abs(edge.astype(int) - BOX).sum(axis=1) < 60).any(), edge


def test_draw_boxes_scales_with_an_enlarged_frame() -> None:
    """A frame narrower than the overlay's minimum is enlarged by a whole factor; the box is
    drawn at the enlarged coordinates."""
    from edgeinfer.runtime.detect.detector import Detection

    frame = np.full((60, 100, 3), 40, np.uint8)
    img = draw_boxes(frame, [Detection((20.0, 30.0, 60.0, 50.0), 0.9, "face", 0)])
    assert img.shape == (300, 500, 3)  # 5x
    assert tuple(img[200, 100]) == BOX  # the left edge at x = 20 * 5, half-way down the box
    assert tuple(img[200, 200]) == (40, 40, 40)  # inside: untouched


@pytest.mark.parametrize("argv, match", [
    (["blazeface:mid_range", "VIDEO"], "unknown BlazeFace variant"),
    (["blazeface:short_range", "VIDEO", "--monitor"], "for classifiers"),
    (["blazeface:short_range", "MISSING.avi"], ""),
])
def test_watch_bad_input_is_one_line_exit_2(video, capsys, argv, match) -> None:  # noqa: ANN001
    argv = [str(video) if a == "VIDEO" else a for a in argv]
    assert main(["watch", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
