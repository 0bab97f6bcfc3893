"""Serving .tflite files: metadata, frame sizes, damaged files, threads, bring-your-own."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.cli import main
from edgeinfer.converter.sources.from_torch import load_factory, load_weights
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.parity.runners import ArtifactRunner, TorchRunner
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime import Predictor
from edgeinfer.runtime.metadata import read_metadata
from edgeinfer.runtime.tflite_backend import TFLiteBackend, read_props
from edgeinfer.spec import PreprocessSpec

FASHION_SPEC = PreprocessSpec.from_json(get_reference("fashion").spec_path.read_text())


@pytest.fixture(scope="module")
def fashion_frames() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_fashion_mnist("test")
    return np.repeat(images[:400, :, :, None], 3, axis=-1), labels[:400]


def _fashion_torch() -> TorchRunner:
    ref = get_reference("fashion")
    model = load_factory(ref.factory())()
    load_weights(model, ref.weights())
    return TorchRunner(model.eval(), FASHION_SPEC, apply_softmax=True)


# ---------------------------------------------------------------------------- metadata
def test_metadata_is_embedded_and_read_back(fashion_tflite) -> None:
    path = fashion_tflite.path
    meta = read_metadata(path)
    assert isinstance(meta, ArtifactMetadata)
    assert meta.spec == FASHION_SPEC
    labels = get_reference("fashion").labels_path.read_text().split("\n")
    assert list(meta.labels) == [v.strip() for v in labels if v.strip()]
    assert meta.provenance["format"] == "tflite" and meta.provenance["frame_size"] == [28, 28]
    assert meta.parity["n"] == 10_000 and meta.parity["top1_agreement"] == 1.0
    # one file: nothing next to it is needed
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    props = read_props(path.read_bytes())
    assert json.loads(props["edgeinfer.labels"]) == list(meta.labels)


def test_cli_info_reads_a_tflite_artifact(fashion_tflite, capsys) -> None:
    assert main(["info", str(fashion_tflite.path)]) == 0
    out = capsys.readouterr().out
    assert "GRAY 28x28" in out and "T-shirt/top" in out and "on 10000 frames" in out
    assert main(["info", "--json", str(fashion_tflite.path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["provenance"]["format"] == "tflite" and d["spec"]["size"] == [28, 28]


def test_predictor_serves_tflite(fashion_tflite, fashion_frames) -> None:
    frames, labels = fashion_frames
    p = Predictor(fashion_tflite.path, threads=1)
    assert p.provider == "litert:xnnpack"
    assert p.labels[0] == "T-shirt/top" and len(p.labels) == 10
    top = p.predict(frames[0], top_k=3)
    assert len(top) == 3 and top[0].probability >= top[1].probability >= top[2].probability
    batch = p.predict_batch(list(frames[:50]), top_k=1)
    single = [p.predict(f, top_k=1) for f in frames[:50]]
    assert batch == single
    with pytest.raises(ConfigError):
        Predictor(fashion_tflite.path, providers="cuda")
    with pytest.raises(ConfigError, match="spec="):
        Predictor(fashion_tflite.path, spec=FASHION_SPEC)


def test_other_frame_sizes_take_the_documented_host_step(fashion_tflite, fashion_frames) -> None:
    """The fashion artifact is fixed at 28x28; a 56x70 frame goes through the spec's
    reference geometry on the host and the 'resized' signature, and still matches torch."""
    frames, _ = fashion_frames
    big = [cv2.resize(f, (70, 56), interpolation=cv2.INTER_LINEAR) for f in frames[:40]]
    runner = ArtifactRunner(fashion_tflite.path.read_bytes())
    assert runner.backend.frame_size == (28, 28)
    got = runner.run(big)
    ref = _fashion_torch().run(big)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.abs(got - ref).max() <= tolerance("tflite", "fp32").max_abs
    # the Predictor takes the same path
    p = Predictor(fashion_tflite.path)
    assert np.abs(p.predict_probs(big[0]) - got[0]).max() < 1e-6


def test_xnnpack_off_gives_the_same_probabilities(fashion_tflite, fashion_frames) -> None:
    frames, _ = fashion_frames
    a = TFLiteBackend(fashion_tflite.path, threads=1).run(frames[:64])
    b = TFLiteBackend(fashion_tflite.path, threads=1, xnnpack=False).run(frames[:64])
    assert np.abs(a - b).max() < 1e-5


# ---------------------------------------------------------------------------- damaged
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "zeroed-middle"])
def test_damaged_tflite_is_a_one_line_model_error(fashion_tflite, tmp_path, damage) -> None:
    data = fashion_tflite.path.read_bytes()
    bad = {
        "truncated": data[: len(data) // 3],
        "garbage": data[:8] + bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8)),
        "empty": b"",
        "zeroed-middle": data[:64] + bytes(len(data) - 128) + data[-64:],
    }[damage]
    p = tmp_path / "bad.tflite"
    p.write_bytes(bad)
    for call in (lambda: Predictor(p), lambda: read_metadata(p)):
        with pytest.raises(ModelError) as e:
            call()
        assert "\n" not in str(e.value) and str(p) in str(e.value)
    assert main(["info", str(p)]) == 2


def test_missing_file_and_onnx_renamed(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Predictor(tmp_path / "nope.tflite")
    # The content decides, not the name: protobuf bytes named .tflite are tried as ONNX.
    p = tmp_path / "model.tflite"
    p.write_bytes(b"\x08\x07\x12\x04onnx-ish protobuf bytes")
    with pytest.raises(ModelError, match="as an ONNX model"):
        Predictor(p)
    p.write_bytes(b"\x00garbage that is neither")
    with pytest.raises(ModelError, match="neither ONNX"):
        Predictor(p)


# ---------------------------------------------------------------------------- threads
@pytest.mark.parametrize("pool_size", [1, 2])
def test_concurrent_calls_equal_sequential(fashion_tflite, fashion_frames, pool_size) -> None:
    frames, _ = fashion_frames
    backend = TFLiteBackend(fashion_tflite.path, threads=1, pool_size=pool_size)
    pred = Predictor.from_backend(backend, source=str(fashion_tflite.path))
    expected = [pred.predict_probs(f) for f in frames]
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            order = np.random.default_rng(t).permutation(len(frames))
            got = {}
            for i in order:
                got[int(i)] = pred.predict_probs(frames[i])
            results[t] = [got[i] for i in range(len(frames))]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in range(8):
        for a, b in zip(results[t], expected, strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- bring your own
def test_byo_tflite_without_spec_says_what_is_missing(plain_fashion_tflite) -> None:
    with pytest.raises(ModelError) as e:
        Predictor(plain_fashion_tflite)
    msg = str(e.value)
    assert "no edgeinfer metadata" in msg and "spec=" in msg and "labels=" in msg
    assert "float32 [1, 1, 28, 28]" in msg and "\n" not in msg
    with pytest.raises(ModelError, match="no edgeinfer metadata"):
        read_metadata(plain_fashion_tflite)


def test_byo_tflite_with_spec_and_labels(plain_fashion_tflite, fashion_frames) -> None:
    frames, _ = fashion_frames
    labels = [f"class{i}" for i in range(10)]
    p = Predictor(plain_fashion_tflite, spec=FASHION_SPEC, labels=labels)
    assert p.labels == tuple(labels)
    got = np.stack([p.predict_probs(f) for f in frames[:100]])
    ref = _fashion_torch().run(list(frames[:100]))  # logits -> softmax applied on the host
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert np.abs(got - ref).max() <= tolerance("tflite", "fp32").max_abs
    assert p.predict(frames[0], top_k=1)[0].label == labels[int(ref[0].argmax())]
    # spec as a dict works too; without labels, class indices are the labels
    q = Predictor(plain_fashion_tflite, spec=FASHION_SPEC.to_dict())
    assert q.labels[:2] == ("0", "1")


def test_byo_tflite_with_a_wrong_spec(plain_fashion_tflite) -> None:
    nhwc = PreprocessSpec.from_dict({**FASHION_SPEC.to_dict(), "layout": "NHWC"})
    with pytest.raises(ModelError, match=r"takes float32 \[1, 1, 28, 28\].*NHWC"):
        Predictor(plain_fashion_tflite, spec=nhwc)
    with pytest.raises(ConfigError, match="3 labels"):
        Predictor(plain_fashion_tflite, spec=FASHION_SPEC, labels=["a", "b", "c"])
    with pytest.raises(ConfigError):
        Predictor(plain_fashion_tflite, spec={"size": [28]})


def test_spec_and_labels_are_refused_for_onnx(fashion_artifact) -> None:
    with pytest.raises(ConfigError, match="tflite"):
        Predictor(fashion_artifact, spec=FASHION_SPEC)


# ---------------------------------------------------------------------------- lean runtime
def test_tflite_backend_imports_no_converter_libraries() -> None:
    code = ("import sys, edgeinfer.runtime.tflite_backend, edgeinfer.runtime.metadata; "
            "bad = [m for m in ('torch', 'tensorflow', 'litert_torch', 'onnx', "
            "'ai_edge_quantizer') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stdout + r.stderr


def test_probabilities_are_float32_and_sum_to_one(fashion_tflite, fashion_frames) -> None:
    frames, _ = fashion_frames
    probs = TFLiteBackend(fashion_tflite.path).run(frames[:16])
    assert probs.dtype == np.float32 and probs.shape == (16, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert torch.from_numpy(probs).isfinite().all()
