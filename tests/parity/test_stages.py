"""The stage gate (parity/stages.py) on a sensitive network and three broken conversions.

The network: Hugging Face MobileNetV2 built from its config (random init, no download),
BatchNorm statistics calibrated on 64 real photo crops, logits scaled to a trained net's
confidence (tools/zoo_models.py). The baked resize and the numpy/OpenCV reference differ by
float rounding (< 0.01 grey levels) and on this net that alone moves probabilities by more
than the fp32 bound, so the old single end-to-end gate refused a correct conversion. Judged
stage by stage it passes, and three broken conversions are still refused, each at the
stage that broke: a wrong colour matrix and a wrong resize (preprocessing), a damaged
weight (model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeinfer.artifact import MOMENTS_OUTPUT, OUTPUT_NAME, PREFIX_OUTPUT
from edgeinfer.converter.gate import gate
from edgeinfer.converter.preprocess_graph import PREFIX_OUTPUT as GRAPH_PREFIX_OUTPUT
from edgeinfer.errors import ParityError
from edgeinfer.parity.prefix import PrefixRunner, with_prefix_output
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stages import MODEL, PREPROCESSING, grey_levels, stage_checks
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.spec import PreprocessSpec

ROOT = Path(__file__).resolve().parents[2]


def test_prefix_output_name_is_the_graphs():
    assert PREFIX_OUTPUT == GRAPH_PREFIX_OUTPUT


def test_grey_levels_undo_scale_and_std():
    spec = PreprocessSpec(size=(2, 2), scale=1 / 255, mean=(0.5, 0.4, 0.3),
                          std=(0.2, 0.25, 0.5), layout="NHWC")
    diff = np.zeros((1, 2, 2, 3))
    diff[..., 2] = 1 / 255 / 0.5  # one grey level in the third channel
    g = grey_levels(diff, spec)
    np.testing.assert_allclose(g[..., 2], 1.0)
    assert g[..., :2].max() == 0


def test_sensitive_network_old_gate_refused_stage_gate_passes(sensitive):
    module, spec, res, frames, runner, ref = sensitive
    parity = res.metadata.parity
    stages = {s["stage"]: s for s in parity["stages"]}
    assert stages[PREPROCESSING]["passed"] and stages[PREPROCESSING]["max_abs"] < 0.05
    assert stages[MODEL]["passed"] and stages[MODEL]["max_abs"] <= tolerance("onnx").max_abs
    # the old gate: the framework on the reference pixels vs the artifact, one fp32 bound
    probs = ArtifactRunner(str(res.path)).run(frames)
    e2e = np.abs(probs - ref).max()
    assert e2e > tolerance("onnx").max_abs, f"end-to-end {e2e:.2e}: not a sensitive network"
    assert parity["vs_end_to_end"]["max_abs"] == pytest.approx(e2e, rel=1e-3)
    with pytest.raises(ParityError):
        gate(probs, "onnx-fp32", "onnx", "fp32", _frameset(frames), {"torch": ref},
             lambda _m: None)


def _frameset(frames):
    from edgeinfer.data.frames import FrameSet

    return FrameSet("photos", frames)


def _damaged(path: Path, how: str) -> bytes:
    """The written artifact with one thing broken, as a wrong conversion would have it."""
    m = onnx.load(path)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    if how == "colour":  # the prefix's 1x1 colour/normalisation Conv with R and B swapped
        conv = producer[producer[PREFIX_OUTPUT].input[0]]
        assert conv.op_type == "Conv"
        w = numpy_helper.to_array(inits[conv.input[1]])
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w[:, ::-1].copy(), conv.input[1]))
    elif how == "resize":  # nearest instead of linear
        node = next(n for n in g.node if n.op_type == "Resize")
        for a in node.attribute:
            if a.name == "mode":
                a.s = b"nearest"
    elif how == "weight":  # one output channel of the model's first conv zeroed
        conv = next(n for n in g.node if n.op_type == "Conv" and PREFIX_OUTPUT in n.input)
        w = numpy_helper.to_array(inits[conv.input[1]]).copy()
        w[0] = 0
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(w, conv.input[1]))
    return m.SerializeToString()


@pytest.mark.parametrize("how, stage", [("colour", PREPROCESSING), ("resize", PREPROCESSING),
                                        ("weight", MODEL)])
def test_broken_conversion_refused_at_its_stage(sensitive, how, stage):
    module, spec, res, frames, runner, ref = sensitive
    blob = _damaged(res.path, how)
    checks = stage_checks(blob, spec, frames, runner, ref, framework="torch")
    by = {c.stage: c for c in checks}
    other = MODEL if stage == PREPROCESSING else PREPROCESSING
    assert not by[stage].passed, by[stage].summary()
    assert by[other].passed, by[other].summary()  # the other stage is not blamed
    if stage == PREPROCESSING:
        assert by[stage].max_abs > 5, "a real preprocessing mistake is many grey levels"
    probs = ArtifactRunner(blob).run(frames)
    with pytest.raises(ParityError, match=f"^artifact not written: {stage} stage"):
        gate(probs, "onnx-fp32", "onnx", "fp32", _frameset(frames), {"torch": ref},
             lambda _m: None, stages=checks)


def test_prefix_runner_returns_the_deployed_probabilities(sensitive):
    _module, spec, res, frames, _runner, _ref = sensitive
    data = res.path.read_bytes()
    pixels, probs = PrefixRunner(data).run(frames[:2])
    assert pixels[0].shape == spec.model_input_shape(1)
    np.testing.assert_array_equal(probs, ArtifactRunner(data).run(frames[:2]))
    # appending the output leaves the original model (probs, the monitor's moments) intact
    # for a protobuf parser
    m = onnx.load_from_string(with_prefix_output(data))
    assert [o.name for o in m.graph.output] == [OUTPUT_NAME, MOMENTS_OUTPUT, PREFIX_OUTPUT]


# ---------------------------------------------------------------- ladder and verify
def test_ladder_judges_the_same_stages(sensitive, tmp_path):
    from edgeinfer.check.ladder.run import run_ladder

    module, spec, res, _frames, _runner, _ref = sensitive
    good = run_ladder(module, [res.path], "builtin:photos", spec=spec, timing=False,
                      consistency_frames=4)
    step = good.steps[1]
    assert [c.stage for c in step.stages] == [PREPROCESSING, MODEL, "end-to-end"]
    assert step.vs_source.max_abs > tolerance("onnx").max_abs  # what the old ladder failed on
    assert good.passed, good.verdict()
    assert "preprocessing stage" in good.table()
    bad = tmp_path / "colour.onnx"
    bad.write_bytes(_damaged(res.path, "colour"))
    broken = run_ladder(module, [bad], "builtin:photos", spec=spec, timing=False,
                        consistency_frames=4)
    assert broken.first_failure.failures[0].startswith("preprocessing stage")


def test_verify_measures_preprocessing_on_the_device(sensitive, tmp_path):
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.check.verify.run import verify
    from edgeinfer.data.packfile import write_pack

    module, spec, res, _frames, _runner, _ref = sensitive
    pack = write_pack(build_pack(module, "builtin:photos", spec=spec), tmp_path / "p.pack")
    good = verify(res.path, pack, latency_runs=2)
    by = {c.stage: c for c in good.stages}
    assert by[PREPROCESSING].passed and by[PREPROCESSING].max_abs < 0.05
    # the model stage on the device is the artifact vs the pack's framework outputs
    assert by[MODEL].max_abs == pytest.approx(good.steps[0].comparison.max_abs)
    bad = tmp_path / "colour.onnx"
    bad.write_bytes(_damaged(res.path, "colour"))
    broken = verify(bad, pack, latency_runs=2)
    assert broken.verdict == "FAIL"
    assert any(n.startswith("preprocessing stage") for n in broken.steps[0].notes)


def test_verify_judges_the_model_stage_on_the_artifacts_own_pixels(sensitive, tmp_path):
    """`pack --artifact`: the device judges what convert judged. Before it, verify failed
    this correct conversion on the end-to-end figure (the rounding of the pixels)."""
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.check.verify.run import OWN_PIXELS, verify
    from edgeinfer.data.packfile import read_pack, write_pack

    module, spec, res, _frames, _runner, _ref = sensitive
    plain = write_pack(build_pack(module, "builtin:photos", spec=spec), tmp_path / "p.pack")
    before = verify(res.path, plain, latency_runs=2)
    assert before.verdict == "FAIL", before.message()
    assert "--artifact` with THIS file" in before.message()  # the way out is named
    own = write_pack(build_pack(module, "builtin:photos", spec=spec, artifact=res.path),
                     tmp_path / "own.pack")
    assert read_pack(own).artifact["sha256"]
    after = verify(res.path, own, latency_runs=2)
    assert after.verdict == "PASS", after.message()
    by = {c.stage: c for c in after.stages}
    assert by[MODEL].reference.endswith(OWN_PIXELS) and by[MODEL].passed
    assert by["end-to-end"].verdict == "reported"
    assert by["end-to-end"].max_abs > tolerance("onnx").max_abs
    # the pack excuses that file only: a damaged one is judged end to end, and fails
    bad = tmp_path / "weight.onnx"
    bad.write_bytes(_damaged(res.path, "weight"))
    broken = verify(bad, own, latency_runs=2)
    assert broken.verdict == "FAIL"
    assert not any(c.reference.endswith(OWN_PIXELS) for c in broken.stages)
    assert "entry is for another file (mnv2.onnx)" in broken.message()


def test_the_headline_figure_says_which_stage_it_is(sensitive):
    from edgeinfer.parity.stages import parity_figure

    parity = sensitive[2].metadata.parity
    text = parity_figure(parity)
    assert text.startswith(f"model stage max|dprob| {parity['max_abs']:.2e}")
    assert f"end to end {parity['vs_end_to_end']['max_abs']:.2e}, reported" in text
    assert parity_figure({"max_abs": 1e-6}) == "max|dprob| 1.00e-06"
