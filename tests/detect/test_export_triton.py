"""``export triton`` of a detector artifact (the converted bundled fashion-detector): the
config.pbtxt parses with Triton's own ModelConfig schema and describes the outputs the
model really writes.

* NMS in the graph (convert's default): one frame per request; the config's names, types
  and shapes are what ``edgeinfer serve`` reports, and the exported model.onnx run the way
  Triton's onnxruntime backend runs it (a plain session, the config's input and outputs)
  answers exactly what ``edgeinfer serve`` answers on real frames.
* NMS in edgeinfer's runtime: the config exports the raw outputs as they are (batched) and
  says - in its comment, its parameters and a one-line note - that Triton does not run the
  NMS; the client that does (ArtifactDetector.suppress) gets the in-process detections.

Before this file's code, exporting a detector was refused ("is an edgeinfer detector
artifact"): tests/serve/test_detect_artifact.py asserted it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from edgeinfer.cli import main
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from edgeinfer.serve.triton import export_triton

pytestmark = pytest.mark.slow  # converts and gates the detector twice (~30 s each)

DTYPE = {mc.TYPE_UINT8: "UINT8", mc.TYPE_FP32: "FP32", mc.TYPE_INT64: "INT64"}


@pytest.fixture(scope="module")
def frames():  # noqa: ANN201
    from edgeinfer.converter.detect_frames import parity_frames

    return parity_frames(per_aspect=2)


def _convert(tmp_path_factory, frames, nms: str) -> Path:  # noqa: ANN001
    from edgeinfer.converter.detect_convert import convert_detector

    out = tmp_path_factory.mktemp("det") / f"det_{nms}.onnx"
    return convert_detector("fashion-detector", out, frames=frames, nms=nms,
                            progress=lambda *_a, **_k: None)[0]


@pytest.fixture(scope="module")
def graph_nms(tmp_path_factory, frames) -> Path:  # noqa: ANN001
    return _convert(tmp_path_factory, frames, "graph")


@pytest.fixture(scope="module")
def runtime_nms(tmp_path_factory, frames) -> Path:  # noqa: ANN001
    return _convert(tmp_path_factory, frames, "runtime")


def _parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_graph_nms_config_is_what_serve_speaks(graph_nms, frames, tmp_path) -> None:  # noqa: ANN001
    import tritonclient.http as triton

    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.server import serve_in_thread

    out = export_triton(graph_nms, tmp_path / "repo", max_batch=16, instances=2)
    cfg = _parse(out.config)
    assert cfg.name == "det_graph" and cfg.backend == "onnxruntime" and out.note is None
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    (inp,) = cfg.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("frame", mc.TYPE_UINT8,
                                                         [1, -1, -1, 3])
    assert [(o.name, o.data_type, list(o.dims), o.label_filename) for o in cfg.output] == [
        ("boxes", mc.TYPE_FP32, [-1, 4], ""), ("scores", mc.TYPE_FP32, [-1], ""),
        ("classes", mc.TYPE_INT64, [-1], "")]  # not a classification output
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    p = {k: v.string_value for k, v in cfg.parameters.items()}
    assert p["edgeinfer.task"] == "detect" and p["edgeinfer.nms"] == "graph"
    assert p["edgeinfer.postprocess"] == "none" and p["edgeinfer.frame_color"] == "BGR"
    det = ArtifactDetector(graph_nms, threads=1)
    assert tuple(out.labels.read_text().splitlines()) == det.labels
    assert out.model.read_bytes() == graph_nms.read_bytes()

    # the model as Triton's onnxruntime backend runs it: a session, the config's names
    sess = ort.InferenceSession(str(out.model), providers=["CPUExecutionProvider"])
    names = [o.name for o in cfg.output]
    with serve_in_thread([graph_nms], ServeConfig(port=0, threads=1)) as url:
        c = triton.InferenceServerClient(url.removeprefix("http://"))
        meta = c.get_model_metadata("det_graph")
        as_triton = {  # max_batch_size 0: the dims are the whole shape
            "inputs": [{"name": t.name, "datatype": DTYPE[t.data_type], "shape": list(t.dims)}
                       for t in cfg.input],
            "outputs": [{"name": t.name, "datatype": DTYPE[t.data_type],
                         "shape": list(t.dims)} for t in cfg.output]}
        assert {k: meta[k] for k in ("inputs", "outputs")} == as_triton
        found = 0
        for f in frames:
            x = np.ascontiguousarray(f.image[None])  # BGR, as the config says
            inp = triton.InferInput("frame", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)
            res = c.infer("det_graph", [inp])
            got = dict(zip(names, sess.run(names, {"frame": x}), strict=True))
            for n, o in zip(names, cfg.output, strict=True):
                assert DTYPE[o.data_type] == {"float32": "FP32", "int64": "INT64"}[
                    str(got[n].dtype)]
                assert got[n].ndim == len(o.dims)
                np.testing.assert_array_equal(got[n], res.as_numpy(n))
            found += len(got["boxes"])
    assert found >= len(frames)  # the pasted items are found: not a test of empty lists


def test_runtime_nms_config_says_triton_does_not_run_it(runtime_nms, frames, tmp_path,
                                                        capsys) -> None:  # noqa: ANN001
    repo = tmp_path / "repo"
    assert main(["export", "triton", str(runtime_nms), str(repo), "--max-batch", "4"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(repo / "det_runtime")
    notes = [x for x in err.splitlines() if "note:" in x]
    assert len(notes) == 1 and "runtime" in notes[0] and "nms='graph'" in notes[0], err
    text = (repo / "det_runtime" / "config.pbtxt").read_text()
    assert "Triton does NOT run them" in text
    cfg = _parse(repo / "det_runtime" / "config.pbtxt")
    p = {k: v.string_value for k, v in cfg.parameters.items()}
    assert p["edgeinfer.nms"] == "runtime" and p["edgeinfer.postprocess"] == "client"
    assert cfg.max_batch_size == 4 and cfg.HasField("dynamic_batching")
    assert [(o.name, o.data_type) for o in cfg.output] == [("boxes", mc.TYPE_FP32),
                                                           ("scores", mc.TYPE_FP32)]
    det = ArtifactDetector(runtime_nms, threads=1)
    a = len(det.labels)
    assert [list(o.dims) for o in cfg.output] == [[400, 4], [400, a]]

    # the raw outputs have the config's shapes, batched; the NMS the config leaves to the
    # client turns them into the in-process detections
    sess = ort.InferenceSession(str(repo / "det_runtime" / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    same = [f.image for f in frames if f.image.shape == frames[0].image.shape][:2]
    boxes, scores = sess.run(["boxes", "scores"], {"frame": np.stack(same)})
    assert boxes.shape == (len(same), 400, 4) and scores.shape == (len(same), 400, a)
    for i, img in enumerate(same):
        b, s, c = det.suppress(boxes[i], scores[i], img.shape[:2])
        w = det.arrays(img)
        assert len(w[0]) > 0
        np.testing.assert_allclose(b, w[0], atol=1e-3)
        np.testing.assert_array_equal(c, w[2])
