"""`export triton`: a model repository whose config.pbtxt parses with Triton's own
ModelConfig schema (from tritonclient), with the model bytes and labels beside it."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from edgeinfer.cli import main
from edgeinfer.errors import ConfigError
from edgeinfer.serve.triton import export_triton


def test_config_parses_with_tritons_schema(fashion_artifact, predictor, tmp_path) -> None:
    out = export_triton(fashion_artifact, tmp_path / "repo", max_batch=16, instances=2)
    cfg = text_format.Parse(out.config.read_text(), mc.ModelConfig())
    assert cfg.name == "fashion" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 16
    (inp,) = cfg.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("frame", mc.TYPE_UINT8, [-1, -1, 3])
    assert inp.format == mc.ModelInput.FORMAT_NHWC
    (outp,) = cfg.output
    assert (outp.name, outp.data_type, list(outp.dims)) == ("probs", mc.TYPE_FP32, [10])
    assert outp.label_filename == "labels.txt"
    assert cfg.HasField("dynamic_batching")
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert cfg.parameters["edgeinfer.frame_color"].string_value == "BGR"
    assert out.model.read_bytes() == fashion_artifact.read_bytes()
    assert out.model == tmp_path / "repo" / "fashion" / "1" / "model.onnx"
    assert tuple(out.labels.read_text().splitlines()) == predictor.labels


def test_refusals(fashion_artifact, tmp_path) -> None:
    export_triton(fashion_artifact, tmp_path, name="m")
    with pytest.raises(ConfigError, match="already exists"):
        export_triton(fashion_artifact, tmp_path, name="m")
    export_triton(fashion_artifact, tmp_path, name="m", overwrite=True, kind="gpu")
    cfg = text_format.Parse((tmp_path / "m" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    with pytest.raises(ConfigError, match="name"):
        export_triton(fashion_artifact, tmp_path, name="../escape")
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 64)
    with pytest.raises(ConfigError, match="TFLite"):
        export_triton(fake, tmp_path)


def test_cli(fashion_artifact, tmp_path, capsys) -> None:
    assert main(["export", "triton", str(fashion_artifact), str(tmp_path), "--max-batch",
                 "4", "--instances", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fashion")
    cfg = text_format.Parse((tmp_path / "fashion" / "config.pbtxt").read_text(),
                            mc.ModelConfig())
    assert cfg.max_batch_size == 4 and cfg.instance_group[0].count == 3
    assert main(["export", "triton", str(tmp_path / "none.onnx"), str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_served_metadata_matches_the_triton_config(fashion_artifact, server, tmp_path,
                                                   fashion_frames, predictor) -> None:
    """What Triton would report for the exported config is what `edgeinfer serve` reports,
    so client code written against one (names, datatypes, shapes) runs against the other.
    Triton does not decode images: against Triton, send UINT8 frames, as here."""
    import numpy as np
    import tritonclient.http as triton

    out = export_triton(fashion_artifact, tmp_path)
    cfg = text_format.Parse(out.config.read_text(), mc.ModelConfig())
    dtype = {mc.TYPE_UINT8: "UINT8", mc.TYPE_FP32: "FP32"}
    batch = [-1] if cfg.max_batch_size > 0 else []
    as_triton = {
        "inputs": [{"name": t.name, "datatype": dtype[t.data_type], "shape": batch + list(t.dims)}
                   for t in cfg.input],
        "outputs": [{"name": t.name, "datatype": dtype[t.data_type],
                     "shape": batch + list(t.dims)} for t in cfg.output]}
    c = triton.InferenceServerClient(server.removeprefix("http://"))
    meta = c.get_model_metadata("fashion")
    assert {k: meta[k] for k in ("inputs", "outputs")} == as_triton
    # client code driven only by that metadata
    (inp_meta,), (out_meta,) = meta["inputs"], meta["outputs"]
    frames = np.ascontiguousarray(fashion_frames[0][:3])
    inp = triton.InferInput(inp_meta["name"], list(frames.shape), inp_meta["datatype"])
    inp.set_data_from_numpy(frames)
    res = c.infer("fashion", [inp], outputs=[triton.InferRequestedOutput(out_meta["name"])])
    np.testing.assert_array_equal(res.as_numpy(out_meta["name"]),
                                  np.stack([predictor.predict_probs(f) for f in frames]))
