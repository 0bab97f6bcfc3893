"""OnnxBackend: session settings, providers and fallback, damaged and non-edgeinfer models."""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeinfer import Predictor
from edgeinfer.artifact import KEY_LABELS, KEY_SPEC
from edgeinfer.errors import ConfigError, ModelError, ProviderError
from edgeinfer.runtime.backend import Backend
from edgeinfer.runtime.onnx_backend import OnnxBackend, default_threads, resolve_providers

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TRT = "TensorrtExecutionProvider" in ort.get_available_providers()


def test_backend_runs_the_artifact(fashion_artifact, photo) -> None:
    b = OnnxBackend(fashion_artifact)
    assert isinstance(b, Backend)
    assert b.provider == "CPUExecutionProvider"
    assert len(b.input_shape) == 4 and b.input_shape[3] == 3
    assert KEY_SPEC in b.metadata_props()
    probs = b.run(np.stack([photo, photo[:, ::-1]]))
    assert probs.shape == (2, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_session_settings(fashion_artifact) -> None:
    b = OnnxBackend(fashion_artifact, threads=1)
    assert b.threads == 1
    opts = b.session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert OnnxBackend(fashion_artifact).threads == default_threads()


def test_default_threads_is_affinity_capped_at_4() -> None:
    assert default_threads() == max(1, min(len(os.sched_getaffinity(0)), 4))


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_thread_counts(fashion_artifact, bad) -> None:
    with pytest.raises(ConfigError, match="threads"):
        OnnxBackend(fashion_artifact, threads=bad)


# ------------------------------------------------------------------------- providers
def test_provider_names() -> None:
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers("CUDA") == ["CUDAExecutionProvider"]
    assert resolve_providers(["tensorrt", "cuda", "cpu"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    for bad in ("tpu", ["cpu", "npu"], [], [3]):
        with pytest.raises(ConfigError):
            resolve_providers(bad)


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime build has CUDA")
def test_missing_provider_raises(fashion_artifact) -> None:
    with pytest.raises(ProviderError, match="cuda not available.*allow_fallback=True"):
        OnnxBackend(fashion_artifact, providers="cuda")
    with pytest.raises(ProviderError):
        Predictor(fashion_artifact, providers="cuda")


@pytest.mark.skipif(HAS_CUDA or HAS_TRT, reason="this onnxruntime build has a GPU provider")
def test_fallback_to_cpu_is_reported(fashion_artifact, photo) -> None:
    with pytest.warns(RuntimeWarning, match="cuda not available"):
        b = OnnxBackend(fashion_artifact, providers="cuda", allow_fallback=True)
    assert b.provider == "CPUExecutionProvider"
    assert "cuda" in b.fallback_reason
    with pytest.warns(RuntimeWarning, match="tensorrt, cuda not available"):
        p = Predictor(fashion_artifact, providers=["tensorrt", "cuda"], allow_fallback=True,
                      trt_fp16=True)
    assert p.provider == "CPUExecutionProvider"
    assert len(p.predict(photo)) == 5


def test_cpu_reports_no_fallback(fashion_artifact) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = OnnxBackend(fashion_artifact, providers="cpu", allow_fallback=True)
    assert b.fallback_reason is None


def test_trt_options_need_tensorrt(fashion_artifact, tmp_path) -> None:
    with pytest.raises(ConfigError, match="tensorrt"):
        OnnxBackend(fashion_artifact, trt_fp16=True)
    with pytest.raises(ConfigError, match="tensorrt"):
        OnnxBackend(fashion_artifact, providers="cuda", trt_cache_dir=tmp_path)


# ------------------------------------------------------------------------- damaged models
def _damaged(kind: str, artifact, tmp_path):
    data = artifact.read_bytes()
    p = tmp_path / f"{kind}.onnx"
    if kind == "missing":
        return tmp_path / "missing.onnx"
    if kind == "directory":
        return tmp_path
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "half":
        p.write_bytes(data[: len(data) // 2])
    elif kind == "tail_cut":
        p.write_bytes(data[:-100])
    elif kind == "head_cut":
        p.write_bytes(data[1000:])
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    elif kind == "text":
        p.write_text("definitely not a model\n" * 50)
    elif kind == "jpeg":
        p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    return p


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "half", "tail_cut",
                                  "head_cut", "random", "text", "jpeg"])
def test_damaged_model_files(fashion_artifact, tmp_path, kind) -> None:
    path = _damaged(kind, fashion_artifact, tmp_path)
    for make in (OnnxBackend, Predictor):
        with pytest.raises(ModelError) as e:
            make(path)
        msg = str(e.value)
        assert "\n" not in msg and len(msg) < 500, msg


def _save(model: onnx.ModelProto, path) -> str:
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


def test_valid_onnx_with_other_inputs_is_not_an_artifact(tmp_path) -> None:
    g = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    path = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]),
                 tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match="not an edgeinfer artifact.*edgeinfer convert"):
        Predictor(path)


def _frame_model(out_name: str = "probs") -> onnx.ModelProto:
    """A valid model with the artifact's I/O contract (mean colour -> softmax), no metadata."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    g = helper.make_graph(
        [helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
         helper.make_node("Softmax", ["m"], [out_name], axis=1)], "frame_only",
        [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 3])],
        initializer=[axes])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_frame_model_without_metadata_is_not_an_artifact(tmp_path) -> None:
    path = _save(_frame_model(), tmp_path / "nometa.onnx")
    assert OnnxBackend(path).run(np.zeros((1, 4, 4, 3), np.uint8)).shape == (1, 3)
    with pytest.raises(ModelError, match="no edgeinfer metadata"):
        Predictor(path)


def test_wrong_output_name_is_not_an_artifact(tmp_path) -> None:
    path = _save(_frame_model("scores"), tmp_path / "scores.onnx")
    with pytest.raises(ModelError, match="not an edgeinfer artifact.*'probs'"):
        OnnxBackend(path)


def test_label_count_mismatch(fashion_artifact, tmp_path) -> None:
    model = onnx.load(str(fashion_artifact))
    for prop in model.metadata_props:
        if prop.key == KEY_LABELS:
            prop.value = '["a", "b", "c"]'
    path = tmp_path / "labels.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="outputs 10 classes but its metadata has 3 labels"):
        Predictor(path)


def test_damaged_metadata(fashion_artifact, tmp_path) -> None:
    model = onnx.load(str(fashion_artifact))
    for prop in model.metadata_props:
        if prop.key == KEY_SPEC:
            prop.value = "{not json"
    path = tmp_path / "meta.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="spec is not valid JSON"):
        Predictor(path)


def test_inference_errors_are_model_errors(fashion_artifact) -> None:
    b = OnnxBackend(fashion_artifact)
    with pytest.raises(ModelError, match="inference failed"):
        b.run(np.zeros((1, 8, 8, 3), np.float32))  # the session wants uint8
    with pytest.raises(ModelError, match="inference failed"):
        b.run(np.zeros((1, 8, 8, 5), np.uint8))
