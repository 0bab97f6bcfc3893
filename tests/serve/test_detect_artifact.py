"""A converted detector artifact (the bundled fashion-detector, ``convert_detector``) plugs
into the same serving path as BlazeFace: ``edgeinfer serve det.onnx`` serves it by its file
stem with boxes / scores / classes (no keypoints), and a tritonclient round trip on real
parity frames (photos with Fashion-MNIST test items pasted) equals the in-process
``ArtifactDetector`` exactly; ``edgeinfer bench det.onnx`` times it (no framework
pipeline known: said in a note)."""

from __future__ import annotations

import json

import pytest
import tritonclient.http as triton

from edgeinfer.cli import main
from edgeinfer.runtime.detect import is_detector
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread
from tests.serve.conftest import assert_oip_detections

pytestmark = pytest.mark.slow  # converts and gates a detector (~25 s on two cores)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):  # noqa: ANN001, ANN201
    from edgeinfer.converter.detect_convert import convert_detector
    from edgeinfer.converter.detect_frames import parity_frames

    frames = parity_frames(per_aspect=2)
    out = tmp_path_factory.mktemp("det") / "fashion_detector.onnx"
    path, _ = convert_detector("fashion-detector", out, frames=frames)
    return path, frames


def test_served_artifact_equals_the_in_process_detector(converted, fashion_artifact) -> None:  # noqa: ANN001
    path, frames = converted
    assert is_detector(path) and not is_detector(fashion_artifact)
    det = ArtifactDetector(path, threads=1)
    with serve_in_thread([path, fashion_artifact], ServeConfig(port=0, threads=1)) as url:
        c = triton.InferenceServerClient(url.removeprefix("http://"))
        meta = c.get_model_metadata("fashion_detector")
        assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "classes"]
        found = assert_oip_detections(c, "fashion_detector", det, [f.image for f in frames])
        assert found >= len(frames)  # the pasted items are found: not a test of empty lists


def test_bench_times_the_artifact(converted, tmp_path, capsys) -> None:  # noqa: ANN001
    path, _ = converted
    out = tmp_path / "b.json"
    assert main(["bench", str(path), "--threads", "1", "--runs", "4", "--warmup", "1",
                 "--rounds", "1", "--json", str(out), "-q"]) == 0
    report = json.loads(out.read_text())
    # against the torch pipeline the artifact came from (before G's detect_own: no framework
    # case, a note), on the bench's frames in the artifact's own colour order: it finds
    # what the in-process detector finds on the same frame
    from edgeinfer.check.bench.detect_own import own_frames

    frames = own_frames()
    assert report["notes"] == [] and len(report["results"]) == len(frames)
    for row in report["results"]:
        assert set(row["latency_ms"]) == {"edgeinfer.e2e", "torch.e2e"}, row
        want = len(ArtifactDetector(path)(frames[row["frame"]]))
        assert want > 0 and row["detections"] == want, (row["frame"], want)


# export triton takes detectors now (tests/detect/test_export_triton.py)
@pytest.mark.parametrize("argv", [["monitor", "ART", "DIR"]])
def test_classifier_only_commands_name_the_detector(converted, tmp_path, capsys, argv) -> None:  # noqa: ANN001
    """They said "not an edgeinfer artifact ... convert it with `edgeinfer convert` first"
    of an artifact edgeinfer had converted."""
    path, _ = converted
    subst = {"ART": str(path), "OUT": str(tmp_path / "repo"), "DIR": str(tmp_path)}
    assert main([subst.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "is an edgeinfer detector artifact" in err and "not an edgeinfer" not in err
