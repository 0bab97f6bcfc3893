"""``edgeinfer predict det.onnx|det.tflite --video FILE`` on the converted bundled detector:
every frame's boxes, in frame pixels, equal the in-process ``ArtifactDetector``'s on the same
decoded frames. The video: real frames (the bundled photos with Fashion-MNIST *test* items
pasted, detect_frames.make_frame) at 480x640 - the TFLite artifact's fixed ``frame``
signature - and at 270x360 (the host letterbox + ``resized`` signature)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.converter.detect_frames import make_frame
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from tests.detect.test_predict_video import decoded, write_video

pytestmark = pytest.mark.slow  # converts and gates the detector: ~30 s ONNX, ~65 s TFLite

FRAMES = 6


@pytest.fixture(scope="module", params=["onnx", "tflite"])
def artifact(request, tmp_path_factory) -> Path:  # noqa: ANN001
    from edgeinfer.converter.detect_convert import convert_detector
    from edgeinfer.converter.detect_frames import parity_frames

    out = tmp_path_factory.mktemp("det") / f"fashion_detector.{request.param}"
    return convert_detector("fashion-detector", out, frames=parity_frames(per_aspect=2),
                            progress=lambda *_a, **_k: None)[0]


@pytest.fixture(scope="module", params=[(480, 640), (270, 360)], ids=["640x480", "360x270"])
def video(request, tmp_path_factory) -> Path:  # noqa: ANN001
    from edgeinfer.data.datasets import load_fashion_mnist, sample_photos

    h, w = request.param
    photos = list(sample_photos().values())
    items, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(31)
    frames = [make_frame(photos[i % len(photos)], items, labels, rng, ratio=h / w,
                         long_side=w).image for i in range(FRAMES)]
    assert {f.shape for f in frames} == {(h, w, 3)}
    return write_video(tmp_path_factory.mktemp("v") / f"items_{w}x{h}.avi", frames)


def test_artifact_video_boxes_equal_in_process(artifact, video, capsys) -> None:  # noqa: ANN001
    assert main(["predict", str(artifact), "--video", str(video), "--json",
                 "--threads", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    frames = decoded(video)
    assert [x["frame"] for x in lines] == list(range(FRAMES)) == list(range(len(frames)))
    det = ArtifactDetector(artifact, threads=1)
    found = 0
    for line, bgr in zip(lines, frames, strict=True):
        x = bgr if det.spec.frame_color == "BGR" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        want = det(x)
        found += len(want)
        assert line["detections"] == [json.loads(json.dumps(d.to_dict())) for d in want]
        h, w = bgr.shape[:2]
        for d in line["detections"]:  # frame pixels, not the detector's input's
            x0, y0, x1, y1 = d["box"]
            assert -1 <= x0 < x1 <= w + 1 and -1 <= y0 < y1 <= h + 1, (d, bgr.shape)
    assert found >= FRAMES  # the pasted items are found: not a test of empty lists
