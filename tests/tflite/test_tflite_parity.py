"""TFLite artifacts from the real converter: fp32 / fp16 / int8 parity on real data.

The converter's stored parity numbers are checked, and the fp32 numbers are recomputed
independently: the .tflite run by a bare LiteRT interpreter (not the edgeinfer backend)
against torch eval normalised by hand (not through the spec code under test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeinfer.converter.sources.from_torch import load_factory, load_weights
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.data.datasets import load_fashion_mnist, sample_photos
from edgeinfer.parity.runners import TorchRunner
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime import Predictor
from edgeinfer.spec import PreprocessSpec


def _torch_model(name: str) -> torch.nn.Module:
    ref = get_reference(name)
    model = load_factory(ref.factory())()
    load_weights(model, ref.weights())
    return model.eval()


def _bare_interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=2)


@pytest.fixture(scope="module")
def fashion_test():
    images, labels = load_fashion_mnist("test")
    return images, labels


@pytest.fixture(scope="module")
def fashion_torch_logits(fashion_test) -> np.ndarray:
    images, _ = fashion_test
    x = (images.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    with torch.inference_mode():
        return _torch_model("fashion")(torch.from_numpy(x[:, None])).double().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------- fp32
def test_fashion_fp32_matches_torch_on_all_10k_test_images(
        fashion_tflite, fashion_test, fashion_torch_logits) -> None:
    images, labels = fashion_test
    assert len(images) == 10_000
    p = fashion_tflite.metadata.parity
    tol = tolerance("tflite", "fp32")
    assert p["n"] == 10_000 and p["data"] == "fashion-test"
    assert p["top1_agreement"] == 1.0 and p["max_abs"] <= tol.max_abs
    # Independent recomputation: bare LiteRT, raw uint8 BGR frames, signature 'frame'.
    run = _bare_interpreter(fashion_tflite.path).get_signature_runner("frame")
    frames = np.repeat(images[..., None], 3, axis=-1)
    probs = np.concatenate([run(frame=frames[i:i + 1])["probs"] for i in range(len(frames))])
    ref = _softmax(fashion_torch_logits)
    assert (probs.argmax(1) == ref.argmax(1)).mean() == 1.0
    assert np.abs(probs - ref).max() <= tol.max_abs
    assert (probs.argmax(1) == labels).mean() >= 0.90


def test_effnet_fp32_matches_torch_on_the_photos(effnet_tflite) -> None:
    """Photos of several sizes: all take the host-side geometry step (the artifact's
    frame size is 224x224), which the parity check runs too."""
    p = effnet_tflite.metadata.parity
    tol = tolerance("tflite", "fp32")
    assert p["n"] == len(sample_photos()) == 6
    assert p["top1_agreement"] == 1.0 and p["max_abs"] <= tol.max_abs
    assert effnet_tflite.metadata.provenance["frame_size"] == [224, 224]
    # Independently through the Predictor, one photo at a time.
    spec = effnet_tflite.metadata.spec
    torch_run = TorchRunner(_torch_model("efficientnet-lite0"), spec, apply_softmax=True)
    pred = Predictor(effnet_tflite.path, threads=2)
    photos = sample_photos()
    for name, frame in photos.items():
        assert frame.shape[:2] != (224, 224), name  # really the host-step path
        got = pred.predict_probs(frame)
        ref = torch_run.run([frame])[0]
        assert got.argmax() == ref.argmax(), name
        assert np.abs(got - ref).max() <= tol.max_abs, name


def test_effnet_frames_of_the_fixed_size_run_the_whole_spec_in_the_graph(effnet_tflite) -> None:
    import cv2

    spec = effnet_tflite.metadata.spec
    torch_run = TorchRunner(_torch_model("efficientnet-lite0"), spec, apply_softmax=True)
    pred = Predictor(effnet_tflite.path, threads=2)
    assert pred.backend.frame_size == (224, 224)
    tol = tolerance("tflite", "fp32")
    for frame in list(sample_photos().values())[:3]:
        f224 = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
        got = pred.predict_probs(f224)
        ref = torch_run.run([f224])[0]
        assert got.argmax() == ref.argmax()
        # the in-graph resize (litert-torch's bicubic) vs OpenCV's on float data
        assert np.abs(got - ref).max() <= tol.max_abs


# ---------------------------------------------------------------------------- fp16
def test_fashion_fp16(fashion_tflite, fashion_tflite_fp16) -> None:
    p = fashion_tflite_fp16.metadata.parity
    tol = tolerance("tflite", "fp16")
    assert p["n"] == 10_000
    assert p["top1_agreement"] >= tol.min_top1 and p["max_abs"] <= tol.max_abs
    assert p["vs_onnx_fp32"]["top1_agreement"] >= tol.min_top1
    assert p["accuracy_artifact"] >= p["accuracy_source"] - 0.002
    assert fashion_tflite_fp16.metadata.provenance["quantize"] == "fp16"
    fp32_size = fashion_tflite.path.stat().st_size
    assert fashion_tflite_fp16.path.stat().st_size < 0.6 * fp32_size


# ---------------------------------------------------------------------------- int8
def test_fashion_int8_agreement_and_accuracy(fashion_tflite, fashion_tflite_int8,
                                             fashion_test) -> None:
    p = fashion_tflite_int8.metadata.parity
    assert p["n"] == 10_000
    assert p["vs_onnx_fp32"]["top1_agreement"] >= 0.99
    assert p["accuracy_artifact"] >= p["accuracy_source"] - 0.01
    cal = fashion_tflite_int8.metadata.provenance["calibration"]
    assert cal["data"] == "fashion-train" and cal["n"] == 256  # disjoint from the test set
    # Recompute agreement with the fp32 .tflite through the Predictor.
    images, labels = fashion_test
    idx = np.arange(0, 10_000, 5)
    q = Predictor(fashion_tflite_int8.path, threads=2)
    f = Predictor(fashion_tflite.path, threads=2)
    pq = np.stack([q.predict_probs(images[i]) for i in idx])
    pf = np.stack([f.predict_probs(images[i]) for i in idx])
    assert (pq.argmax(1) == pf.argmax(1)).mean() >= 0.99
    assert (pq.argmax(1) == labels[idx]).mean() >= (pf.argmax(1) == labels[idx]).mean() - 0.01
    assert fashion_tflite_int8.path.stat().st_size < 0.4 * fashion_tflite.path.stat().st_size


def test_int8_keeps_the_preprocessing_and_softmax_in_float(fashion_tflite_int8) -> None:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(fashion_tflite_int8.path.read_bytes(), 0)
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for sg in m.subgraphs:
        kinds = []
        for op in sg.operators:
            code = max(m.operatorCodes[op.opcodeIndex].builtinCode,
                       m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)
            out = sg.tensors[op.outputs[0]]
            kinds.append((ops[code], out.type, out.name.decode()))
        # the prefix ops (QUANTIZE, named after its input, is where int8 begins)
        prefix = [k for k in kinds if "edgeinfer_prefix" in k[2] and k[0] != "QUANTIZE"]
        assert prefix and all(t == schema.TensorType.FLOAT32 for _, t, _ in prefix)
        convs = [t for o, t, name in kinds if o in ("CONV_2D", "FULLY_CONNECTED")
                 and "edgeinfer_prefix" not in name]
        assert convs and all(t == schema.TensorType.INT8 for t in convs)  # full integer
        assert kinds[-1][0] == "SOFTMAX" and kinds[-1][1] == schema.TensorType.FLOAT32
        assert "QUANTIZE" in [o for o, _, _ in kinds]


def test_the_int8_prefix_output_is_read_before_its_quantize(fashion_tflite_int8,
                                                            fashion_test) -> None:
    """The QUANTIZE after the prefix keeps the prefix's scope: the stage reader must follow
    it back to the float tensor. Reading the int8 tensor instead made verify and check fail
    every int8 .tflite at the preprocessing stage (1.1e4 grey levels; found by the arm64 run)."""
    from edgeinfer.parity.prefix import prefix_runner
    from edgeinfer.parity.stages import preprocessing_stage

    spec = fashion_tflite_int8.metadata.spec
    frames = [np.repeat(f[..., None], 3, axis=-1) for f in fashion_test[0][:20]]
    pixels, _ = prefix_runner(fashion_tflite_int8.path.read_bytes()).run(frames)
    stage = preprocessing_stage(spec, frames, pixels)
    assert stage.passed and stage.max_abs < 0.01, stage.summary()


def test_spec_is_the_bundled_one(fashion_tflite) -> None:
    spec = PreprocessSpec.from_json(get_reference("fashion").spec_path.read_text())
    assert fashion_tflite.metadata.spec == spec
