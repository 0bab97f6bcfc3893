"""The parity ladder on real artifacts: it passes on good ones and names the broken step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeinfer.check.ladder.report import write_report
from edgeinfer.check.ladder.run import Rung, order_rungs, parent_of, run_ladder
from edgeinfer.converter.int8.layers import int8_layers
from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.parity.stats import topk_agreement, wilson
from edgeinfer.parity.tolerances import tolerance


@pytest.fixture(scope="module")
def fashion_ladder(fashion_artifact, fashion_int8):
    """The full ladder, source -> fp32 -> int8, on all 10,000 test images."""
    return run_ladder("fashion", [fashion_int8, fashion_artifact], "fashion-test",
                      timing=True)


@pytest.mark.slow
def test_fashion_ladder_passes_on_all_test_images(fashion_ladder):
    res = fashion_ladder
    assert [s.name for s in res.steps] == ["source", "onnx-fp32", "onnx-int8"]
    assert res.passed, res.table()
    assert res.n == 10_000
    src, fp32, int8 = res.steps
    assert fp32.vs_source.top1_agreement == 1.0
    assert fp32.vs_source.max_abs <= tolerance("onnx", "fp32").max_abs
    assert int8.parent == "onnx-fp32" and int8.vs_parent.reference == "onnx-fp32"
    assert int8.vs_parent.top1_agreement >= 0.99
    assert int8.accuracy["drop_vs_source"] <= tolerance("accuracy_drop", "int8").max_abs
    lo, hi = int8.accuracy["ci95"]
    assert lo < int8.accuracy["accuracy"] < hi and hi - lo < 0.015
    for s in res.steps:
        assert s.batch["passed"] and s.rerun["passed"]
        assert s.batch["max_abs"] <= tolerance("consistency", "batch").max_abs
    assert int8.size_bytes < fp32.size_bytes and int8.latency_ms > 0
    assert "onnx-int8" in res.table() and "PASS" in res.verdict()
    json.dumps(res.to_dict())  # the whole result is JSON-serialisable


def test_wrong_mean_fails_at_the_fp32_step(wrong_mean_artifact, fashion_int8):
    res = run_ladder("fashion", [wrong_mean_artifact, fashion_int8], "fashion-test",
                     limit=400, timing=False)
    assert not res.passed
    assert res.first_failure.name == "onnx-fp32"
    # judged by stage as convert judges it: the prefix's mean is a preprocessing mistake
    assert res.first_failure.failures[0].startswith("preprocessing stage"), res.verdict()
    assert res.first_failure.judged is not None  # its end-to-end figures are reported
    assert "source (reported)" in res.table()
    # The good int8 artifact now disagrees with its (broken) parent, but not with the source.
    int8 = res.steps[2]
    assert int8.vs_source.passed and not int8.vs_parent.passed
    assert res.verdict().startswith("FAIL at step onnx-fp32")


def test_train_mode_export_fails_on_batch_consistency(train_mode_artifact):
    res = run_ladder("fashion", [train_mode_artifact], "fashion-test", limit=300,
                     timing=False)
    step = res.first_failure
    assert step is not None and step.name == "onnx-fp32"
    assert not step.batch["passed"]
    assert any("batch-size dependent" in f for f in step.failures)
    assert res.steps[0].passed  # the source, in eval mode, is fine


def test_broken_int8_layer_is_named(fashion_artifact, broken_int8_artifact, fashion_test):
    path, layer = broken_int8_artifact
    res = run_ladder("fashion", [fashion_artifact, path], "fashion-test", limit=400,
                     timing=False)
    assert res.first_failure.name == "onnx-int8"
    diag = res.first_failure.diagnosis
    assert diag is not None and diag.first_jump is not None
    assert diag.first_jump.layer == layer, diag.message
    assert layer in diag.message
    # Layers before it are fine; the error jumps there.
    before = [e.rel_error for e in diag.layers[:diag.first_jump.index]]
    assert before and max(before) < 0.1 < diag.first_jump.rel_error


def test_diagnosis_of_a_good_int8_model_names_no_layer(fashion_artifact, fashion_int8,
                                                       fashion_test):
    d = int8_layers(fashion_artifact.read_bytes(), fashion_int8.read_bytes(),
                      fashion_test.frames, max_frames=16)
    assert len(d.layers) >= 5 and d.first_jump is None
    assert all(e.rel_error < 0.1 for e in d.layers), d.to_dict()
    assert d.layers[0].op_type == "input"  # the quantised model input comes first


def test_report_files(fashion_ladder, tmp_path):
    files = write_report(fashion_ladder, tmp_path)
    names = {f.name for f in files}
    assert {"report.json", "report.md", "errors.png"} <= names
    assert "confusion_source.png" in names
    for f in files:
        assert f.stat().st_size > 200
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["passed"] and [s["name"] for s in data["steps"]][-1] == "onnx-int8"
    md = (tmp_path / "report.md").read_text()
    assert "| onnx-int8 | onnx-fp32 |" in md and "![" in md


def test_bad_inputs_raise_typed_errors(fashion_artifact, tmp_path):
    with pytest.raises(ModelError):
        run_ladder("fashion", [tmp_path / "missing.onnx"], "fashion-test")
    with pytest.raises(ConfigError):
        run_ladder("fashion", [], "fashion-test")
    with pytest.raises(ConfigError):
        run_ladder("fashion", [fashion_artifact], "fashion-test", diagnose="sometimes")


def test_rung_order_and_parents():
    names = ["tflite-int8", "onnx-int8", "tflite-fp16", "onnx-fp32", "tflite-fp32"]
    rungs = order_rungs([Rung(n, *n.split("-"), runner=None) for n in names])
    assert [r.name for r in rungs] == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16",
                                       "tflite-int8"]
    parents = [parent_of(i, rungs) for i in range(len(rungs))]
    assert parents == [-1, 0, 0, 2, 2]
    only_fp16 = order_rungs([Rung("tflite-fp16", "tflite", "fp16", None),
                             Rung("onnx-fp32", "onnx", "fp32", None)])
    assert parent_of(1, only_fp16) == 0


def test_statistics_helpers():
    lo, hi = wilson(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-3) and hi == pytest.approx(0.9448, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    ref = np.eye(6)[[0, 1, 2]]
    out = np.array([[0.1, 0.9, 0, 0, 0, 0], [0, 0.2, 0.8, 0, 0, 0], [1, 0, 0, 0, 0, 0.0]])
    assert topk_agreement(ref, out, k=1) == 0.0
    assert topk_agreement(ref, out, k=2) == 2 / 3
