"""``check`` judges a float rung by stage with the function convert and verify use (#25.4).

Before: the ladder kept the model bytes of ONNX rungs only, so a float TFLite rung had no
stages and was judged end to end against its parent onnx-fp32 at the fp32 bound. On the
sensitive network (tests/parity/conftest.py) the two formats' rounding of the pixels alone
exceeds that bound, so ``check`` FAILED the .tflite that ``convert`` PASSED. Now every float
rung (onnx-fp32, tflite-fp32, tflite-fp16) goes through :func:`parity.stages.stage_checks`
(preprocessing in grey levels, model with the rung's own bound, end-to-end reported), the
same figures and words as convert's gate and ``verify``; a wrong colour matrix or a damaged
weight in the .tflite still FAILs at its stage.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.check.ladder.run import run_ladder
from edgeinfer.parity.stages import END_TO_END, MODEL, PREPROCESSING, stage_checks
from edgeinfer.parity.tolerances import tolerance
from tests.parity.test_stages_tflite import _damaged, tflite  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow  # a TFLite export of MobileNetV2 (litert-torch tracing)


@pytest.fixture(scope="module")
def files(sensitive, tflite, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    """onnx-fp32 (convert's), tflite-fp32 and tflite-fp16 (fp16 weights of the same file,
    as convert --quantize fp16 makes them) of the sensitive network."""
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.int8.tflite_quant import quantize_fp16
    from edgeinfer.runtime.tflite_backend import read_props

    d = tmp_path_factory.mktemp("check-stages")
    meta = ArtifactMetadata.from_props(read_props(tflite))
    meta = replace(meta, provenance={**meta.provenance, "quantize": "fp16"})
    out = {"onnx-fp32": sensitive[2].path, "tflite-fp32": d / "mnv2.tflite",
           "tflite-fp16": d / "mnv2-fp16.tflite"}
    out["tflite-fp32"].write_bytes(tflite)
    out["tflite-fp16"].write_bytes(embed_metadata(quantize_fp16(tflite), meta.to_props()))
    return out


def _ladder(sensitive, paths):
    module, spec, *_ = sensitive
    return run_ladder(module, paths, "builtin:photos", spec=spec, timing=False,
                      consistency_frames=4)


def test_check_passes_the_float_tflite_convert_passed(sensitive, files, tflite):  # noqa: F811
    _module, spec, _res, frames, runner, ref = sensitive
    res = _ladder(sensitive, [files["onnx-fp32"], files["tflite-fp32"]])
    print(res.table(), res.verdict(), sep="\n")  # the figures docs/stages.md quotes (-rP)
    _src, onnx_step, step = res.steps
    assert step.name == "tflite-fp32" and step.parent == "onnx-fp32"
    # what the old ladder judged: end to end vs onnx-fp32 at the fp32 bound
    assert step.vs_parent.max_abs > tolerance("tflite").max_abs, "not a sensitive network"
    assert [c.stage for c in step.stages] == [PREPROCESSING, MODEL, END_TO_END]
    assert res.passed and res.word == "PASS", res.table() + "\n" + res.verdict()
    assert step.verdict == "PASS" and onnx_step.verdict == "PASS"
    # the same figures and words as convert's gate: one function
    gate = {c.stage: c for c in stage_checks(tflite, spec, frames, runner, ref, "tflite",
                                             "fp32", "tflite-fp32", "torch")}
    for c in step.stages:
        assert c.verdict == gate[c.stage].verdict
        assert c.max_abs == pytest.approx(gate[c.stage].max_abs, rel=1e-6, abs=1e-12)
    # printed: the stage rows, and the end-to-end comparisons said to be reported
    table = res.table()
    assert "model stage" in table and "reported" in table
    assert "onnx-fp32 (reported)" in table
    json.dumps(res.to_dict())


def test_check_judges_fp16_as_convert_does_with_its_own_bound(sensitive, files):
    """fp16 weights move this confident net's probabilities by 0.025 on its own pixels:
    over fp16's 1e-2, so convert refuses it at the model stage, and check says the same."""
    _module, spec, _res, frames, runner, ref = sensitive
    res = _ladder(sensitive, [files["onnx-fp32"], files["tflite-fp32"], files["tflite-fp16"]])
    print(res.table(), res.verdict(), sep="\n")
    step = res.steps[-1]
    assert step.name == "tflite-fp16" and step.judged is not None
    by = {c.stage: c for c in step.stages}
    assert set(by) == {PREPROCESSING, MODEL, END_TO_END}
    assert by[MODEL].bound == tolerance("tflite", "fp16").max_abs
    assert by[PREPROCESSING].passed, res.table()
    gate = {c.stage: c for c in stage_checks(files["tflite-fp16"].read_bytes(), spec, frames,
                                             runner, ref, "tflite", "fp16", "tflite-fp16",
                                             "torch")}
    for c in step.stages:
        assert c.verdict == gate[c.stage].verdict
        assert c.max_abs == pytest.approx(gate[c.stage].max_abs, rel=1e-6, abs=1e-12)
    assert not by[MODEL].passed and step.failures == [by[MODEL].problem()], res.table()
    assert res.steps[2].passed  # tflite-fp32 is not blamed for its child


def test_verify_says_what_check_says(sensitive, files, tmp_path):
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.check.verify.run import verify
    from edgeinfer.data.packfile import write_pack

    module, spec, *_ = sensitive
    path = files["tflite-fp32"]
    pack = write_pack(build_pack(module, "builtin:photos", spec=spec, artifact=path),
                      tmp_path / "own.pack")
    dev = {c.stage: c for c in verify(path, pack, latency_runs=2).stages}
    chk = {c.stage: c for c in _ladder(sensitive, [path]).steps[1].stages}
    assert set(dev) == set(chk) == {PREPROCESSING, MODEL, END_TO_END}
    for stage, c in chk.items():
        assert dev[stage].verdict == c.verdict
        # the pack stores the framework's probabilities as float32
        assert dev[stage].max_abs == pytest.approx(c.max_abs, abs=1e-7)


@pytest.mark.parametrize("how, stage", [("colour", PREPROCESSING), ("weight", MODEL)])
def test_broken_tflite_fails_check_at_its_stage(sensitive, files, tflite, tmp_path,  # noqa: F811
                                                how, stage):
    bad = tmp_path / f"{how}.tflite"
    bad.write_bytes(_damaged(tflite, how))
    res = _ladder(sensitive, [files["onnx-fp32"], bad])
    print(res.table(), res.verdict(), sep="\n")
    assert not res.passed and res.word == "FAIL"
    step = res.first_failure
    assert step.name == "tflite-fp32"
    assert step.failures[0].startswith(f"{stage} stage"), step.failures
    assert res.verdict().startswith(f"FAIL at step tflite-fp32: {stage} stage")
