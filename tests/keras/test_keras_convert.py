"""Keras sources end to end: .keras, legacy .h5, SavedModel and in-memory models -> artifacts.

Every artifact is compared, independently of the converter's own gate, with the Keras
model as its user runs it (``model(x, training=False)`` behind the reference
preprocessing) on real Fashion-MNIST test frames fed as raw uint8.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import onnx
import pytest

import edgeinfer
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.runners_keras import KerasRunner
from edgeinfer.parity.stats import compare
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.metadata import read_metadata

from .conftest import H5_FILE, KERAS_FILE, LABELS_FILE, SPEC_FILE


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _independent_parity(model, spec, artifact, frames, kind: str = "onnx"):
    ref = KerasRunner(model, spec, apply_softmax=False).run(frames.frames)
    out = ArtifactRunner(str(artifact)).run(frames.frames)
    return compare(ref, out, tolerance(kind, "fp32"), reference="keras", target=kind)


@pytest.mark.parametrize("path", [KERAS_FILE, H5_FILE], ids=["keras", "h5"])
def test_model_file_to_onnx(path, tmp_path, keras_model, keras_spec, test_frames):
    out = tmp_path / "fashion-keras.onnx"
    res = edgeinfer.convert(path, out, spec=SPEC_FILE, labels=LABELS_FILE,
                            parity_data="builtin:fashion-test", parity_limit=400)
    ops = _ops(out)
    assert "BatchNormalization" not in ops
    prov = res.metadata.provenance
    assert prov["framework"] == "keras" and prov["tensorflow_version"]
    assert prov["model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["batchnorm_in_source"] == 5 and prov["batchnorm_left"] == 0
    # the BN after the DepthwiseConv2D arrives as Mul+Add and is folded into the conv
    assert prov["conv_affine_ops_folded"] == 2
    # Rescaling(1/255) is lifted into the artifact's spec: one canonical preprocessing graph
    assert prov["preprocessing_layers"]["lifted_into_spec"] == ["rescale (Rescaling)"]
    assert res.metadata.spec.std == (255.0,) and prov["spec_given"]["std"] == [1.0]
    cmp = _independent_parity(keras_model, keras_spec, out, test_frames)
    assert cmp.passed, cmp.summary()
    assert cmp.top1_agreement == 1.0
    assert res.metadata.parity["accuracy_source"] == res.metadata.parity["accuracy_artifact"]


@pytest.mark.slow  # scripts/test --full (minutes on two shared cores)
def test_in_memory_models_twice_in_one_process(tmp_path, keras_model, keras_spec, test_frames):
    """keras.Model and torch nn.Module objects, each converted twice in one process."""
    from edgeinfer.converter.sources.from_torch import build_from_factory, load_weights

    hashes = []
    for i in range(2):
        out = tmp_path / f"k{i}.onnx"
        res = edgeinfer.convert(keras_model, out, spec=keras_spec, labels=LABELS_FILE,
                                parity_data="builtin:fashion-test", parity_limit=200)
        prov = res.metadata.provenance
        assert prov["source"] == "keras.Model object" and "Functional" in prov["class"]
        hashes.append(prov["weights_sha256"])
        assert _independent_parity(keras_model, keras_spec, out, test_frames).top1_agreement == 1.0
    assert hashes[0] == hashes[1]

    ref = get_reference("fashion")
    module = build_from_factory(ref.factory())
    load_weights(module, ref.weights())
    torch_hashes = []
    for i in range(2):
        res = edgeinfer.convert(module, tmp_path / f"t{i}.onnx", spec=ref.spec_path,
                                parity_data="builtin:fashion-test", parity_limit=200)
        assert res.metadata.provenance["framework"] == "torch"
        assert res.parity.passed and res.parity.top1_agreement == 1.0
        torch_hashes.append(res.metadata.provenance["weights_sha256"])
    assert torch_hashes[0] == torch_hashes[1]


@pytest.mark.slow  # a third Keras conversion (SavedModel export), ~40 s of the quick lane
def test_savedmodel_directory(tmp_path, keras_model, keras_spec, test_frames):
    sm = tmp_path / "saved_model"
    keras_model.export(str(sm), format="tf_saved_model", verbose=False)
    out = tmp_path / "sm.onnx"
    res = edgeinfer.convert(sm, out, spec=SPEC_FILE, labels=LABELS_FILE,
                            parity_data="builtin:fashion-test", parity_limit=200)
    assert res.metadata.provenance["model_format"] == "saved_model"
    assert "BatchNormalization" not in _ops(out)
    assert _independent_parity(keras_model, keras_spec, out, test_frames).top1_agreement == 1.0
    # the opaque SavedModel already ends in a softmax: TFLite must not add a second one
    tfl = tmp_path / "sm.tflite"
    edgeinfer.convert(sm, tfl, spec=SPEC_FILE, parity_data="builtin:fashion-test",
                      parity_limit=100)
    assert _independent_parity(keras_model, keras_spec, tfl, test_frames, "tflite").passed


@pytest.mark.slow  # a TFLite conversion (litert-torch traces it): the quick lane converts ONNX only
def test_tflite_fp32_keeps_the_artifact_contract(tmp_path, keras_model, keras_spec, test_frames):
    """Frame size fixed at 56x56: 56x56 frames run the in-graph TF resize ('frame'),
    the 28x28 test frames take the host step into 'resized'; both must match Keras."""
    out = tmp_path / "fashion-keras.tflite"
    res = edgeinfer.convert(KERAS_FILE, out, spec=SPEC_FILE, labels=LABELS_FILE,
                            parity_data="builtin:fashion-test", parity_limit=200,
                            frame_size=(56, 56))
    assert res.parity.passed
    backend = open_backend(str(out))
    assert type(backend).__name__ == "TFLiteBackend"
    meta = read_metadata(str(out))
    assert meta.provenance["framework"] == "keras" and meta.spec == res.metadata.spec
    cmp = _independent_parity(keras_model, keras_spec, out, test_frames, kind="tflite")
    assert cmp.passed and cmp.top1_agreement == 1.0, cmp.summary()
    big = [cv2.resize(f, (56, 56), interpolation=cv2.INTER_LINEAR) for f in test_frames.frames[:32]]
    ref = KerasRunner(keras_model, keras_spec, apply_softmax=False).run(big)
    got = ArtifactRunner(str(out)).run(big)
    assert np.abs(ref - got).max() <= tolerance("tflite", "fp32").max_abs


def test_labelled_folder_gives_accuracy_in_convert_check_and_report(tmp_path, keras_model,
                                                                   keras_spec):
    """A folder with one subfolder per class (named after labels.txt), real PNGs."""
    from edgeinfer.check.ladder.report import markdown
    from edgeinfer.check.ladder.run import run_ladder
    from edgeinfer.data.datasets import FASHION_LABELS, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    folder = tmp_path / "labelled"
    chosen = []
    for cls in (1, 5, 7, 8, 9):  # folder names must be file names: no "T-shirt/top" here
        d = folder / FASHION_LABELS[cls]
        d.mkdir(parents=True)
        for i in np.flatnonzero(labels == cls)[:12]:
            cv2.imwrite(str(d / f"{i}.png"), images[i])
            chosen.append((i, cls))
    out = tmp_path / "lab.onnx"
    res = edgeinfer.convert(KERAS_FILE, out, spec=SPEC_FILE, labels=LABELS_FILE,
                            parity_data=str(folder))
    par = res.metadata.parity
    frames = [cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR) for i, _c in sorted(chosen)]
    truth = np.array([c for _i, c in sorted(chosen)])
    want = float((KerasRunner(keras_model, keras_spec, False).run(frames).argmax(-1)
                  == truth).mean())
    assert par["accuracy_source"] == pytest.approx(want)
    assert par["accuracy_artifact"] == pytest.approx(want)

    # check: the Keras source against its artifact on the same folder (spec from the artifact)
    result = run_ladder(str(KERAS_FILE), [out], str(folder), timing=False)
    assert result.passed, result.verdict()
    assert [s.accuracy["accuracy"] for s in result.steps] == pytest.approx([want, want])
    assert f"{want:.2%}" in markdown(result)
