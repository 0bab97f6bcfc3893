"""Issue 26: one int8 target rule, no worsening step, bounded memory, budget-only artifacts,
and (issue 25) plain int8 certified on frames it was not calibrated on.

The loop tests use format-free builders (the loop takes any builder and runner); the
conversions use the trained fashion model on real Fashion-MNIST images (slow lane).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgeinfer.converter.int8.control import control
from edgeinfer.errors import ParityError
from edgeinfer.parity.certify import (
    KEY_TARGET,
    Int8Target,
    certify,
    drop_bound,
    judged_tolerance,
)
from edgeinfer.parity.stats import compare
from edgeinfer.parity.tolerances import tolerance

N = 500


class Builder:
    """Models are bytes naming the layers kept float, unique per build (so a test can see
    which ones the loop still holds)."""

    def __init__(self, layers: int) -> None:
        self.candidates = [f"l{i:02d}" for i in range(layers)]
        self.labels = {c: f"layer {c}" for c in self.candidates}
        self.built: list[bytes] = []

    def __call__(self, keep):
        m = f"int8:{','.join(sorted(keep))}:{len(self.built)}:".encode() + b"x" * 64
        self.built.append(m)
        return m


def runner(agree_of):
    """A runner whose top-1 agrees with fp32 on the first ``agree_of(kept)`` frames."""

    def run(model, frames):
        if model == b"fp32":
            agree = N
        else:
            kept = [k for k in model.decode().split(":")[1].split(",") if k]
            agree = agree_of(kept)
        idx = np.array([int(f[0]) for f in frames])
        out = np.zeros((len(idx), 2))
        out[np.arange(len(idx)), (idx >= agree).astype(int)] = 1.0
        return out

    return run


FRAMES = [np.array([i]) for i in range(N)]


def test_a_step_that_lowers_agreement_is_not_taken():
    """Issue 26's fake int8: all-int8 agreed on 99.60% (lower bound 98.55%, below 0.99);
    every float layer made it worse, all four float was the fp32 model. Before: the loop
    walked to 4 of 4 float (written as int8, later refused). Now no worsening step is
    taken: plain int8 comes back, for the gate to say NOT CERTIFIED with the frames needed."""
    b = Builder(4)
    model, res = control(b, runner(lambda kept: N if len(kept) == 4 else 498 - len(kept)),
                         b"fp32", FRAMES, min_agreement=0.99)
    assert res.final.kept_float == [] and res.final.agreement == 498 / N
    assert b"int8::" in model  # the all-int8 build
    assert all(not t.taken for t in res.steps[:-1] if t.kept_float)
    assert len(res.steps) >= 2


@pytest.mark.parametrize("kw", [{"max_float": 0}, {}])
def test_nothing_to_keep_float_refuses_a_missed_target(kw):
    """max_float=0, or no candidate layers: plain int8 at 96% misses 0.99 even on its
    estimate - refused (before: the model that missed it was returned)."""
    b = Builder(0 if not kw else 3)
    with pytest.raises(ParityError, match="cannot reach 99.00% agreement"):
        control(b, runner(lambda kept: 480 + 5 * len(kept)), b"fp32", FRAMES,
                min_agreement=0.99, **kw)


def test_the_loop_holds_few_models_whatever_the_layer_count():
    """Memory: at every run the loop holds at most the plain, the best and the current
    model (before: a dict of every model the bisection probed)."""
    b = Builder(40)
    live: list[int] = []
    base = runner(lambda kept: 450 + 2 * len(kept))

    def run(model, frames):
        # a model held only by ``b.built``, this generator and getrefcount has 3 references
        live.append(sum(1 for m in b.built if sys.getrefcount(m) > 3))
        return base(model, frames)

    model, res = control(b, run, b"fp32", FRAMES, min_agreement=0.99)
    assert len(res.final.kept_float) == 25 and len(b.built) > 45
    assert max(live) <= 4, live


def test_last_build_keeps_one_quantised_model():
    from edgeinfer.converter.int8.conversion import LastBuild

    class Q:  # the quantiser's interface: candidates, labels, build(keep)
        candidates, labels = ["a", "b", "c"], {}
        calls = 0

        def build(self, keep):
            Q.calls += 1
            return list(keep)

    lb = LastBuild(Q(), lambda m: repr(m).encode(), "onnx", False)
    for keep in (["a"], ["b"], ["a", "b"], ["c"]):
        assert lb(keep) == repr(keep).encode()
    assert lb.last == (("c",), ["c"]) and Q.calls == 4
    assert lb.model(["c"]) == ["c"] and Q.calls == 4  # the last one is not rebuilt
    assert lb.model(["a"]) == ["a"] and Q.calls == 5  # an earlier one is


def test_the_target_is_stored_and_read_back_by_every_judge():
    t = Int8Target.of("onnx", min_agreement=0.98)
    assert t.tolerance("onnx").min_top1 == 0.98 and t.asked and not t.budget_only
    prov = {KEY_TARGET: t.to_dict()}
    assert Int8Target.read(prov) == t
    assert judged_tolerance("onnx", "int8", prov).min_top1 == 0.98
    assert judged_tolerance("tflite", "int8", {}).min_top1 == tolerance("tflite", "int8").min_top1
    assert judged_tolerance("onnx", "fp32", prov) == tolerance("onnx", "fp32")
    assert drop_bound("int8", {KEY_TARGET: Int8Target.of("onnx", max_drop=0.005).to_dict()}
                      ) == 0.005
    assert drop_bound("int8", {}) == tolerance("accuracy_drop", "int8").max_abs
    d = Int8Target.of("onnx", max_latency_ratio=0.67)
    assert d.budget_only and d.min_agreement == tolerance("onnx", "int8").min_top1
    assert "--min-agreement" in t.describe() and "default" in d.describe()


def test_a_fractional_target_is_said_as_asked():
    """98.5% is not rounded to 99% in the NOT CERTIFIED reason."""
    ref = np.tile([0.6, 0.4], (300, 1))
    out = ref.copy()
    out[0] = [0.45, 0.55]  # one flip, within int8's max|dprob|
    cmp = compare(ref, out, Int8Target.of("onnx", 0.985).tolerance("onnx"))
    reason = certify(cmp).reason
    assert "to certify >= 98.50% you need" in reason, reason


def test_certification_frames_are_never_calibration_frames():
    """One set for both (issue 25): split alternately, certified frames disjoint from the
    frames calibrated on, labels kept with their frames."""
    from edgeinfer.converter.int8.judge import certification_split
    from edgeinfer.converter.sources.reference import get_reference
    from edgeinfer.data.frames import load_frames
    from edgeinfer.spec import PreprocessSpec

    spec = PreprocessSpec.from_json(get_reference("fashion").spec_path.read_text())
    frames = load_frames("builtin:fashion-test", spec, limit=300)
    cal = frames.frames[:100]  # the same images, as one folder given for both
    prov: dict = {"calibration": {"n": len(cal)}}
    lines: list[str] = []
    kept, sub, idx = certification_split(cal, frames, prov, lines.append)
    calibrated = {f.tobytes() for f in kept}
    assert not any(f.tobytes() in calibrated for f in sub.frames)
    assert len(kept) == 50 and len(sub.frames) == 250 and prov["calibration"]["n"] == 50
    assert np.array_equal(sub.labels, frames.labels[idx])
    assert prov["certification_split"]["certified_on"] == 250
    assert "certifying on the 250 parity frames not calibrated on" in lines[0]
    # disjoint sets: nothing changes
    other = load_frames("builtin:fashion-train", spec, limit=50).frames
    assert certification_split(other, frames, {}, lines.append)[2] is None


# ---------------------------------------------------------------- conversions (slow lane)
@pytest.fixture(scope="module")
def at_098(tmp_path_factory):
    """--min-agreement 0.98 on 1000 test frames: plain int8 (99.5%, lower bound 98.8%)
    meets it, and the gate now judges 0.98 (before: "NOT CERTIFIED ... to certify >= 99%
    you need at least 1574 frames")."""
    from edgeinfer.converter.api import convert

    return convert("fashion", tmp_path_factory.mktemp("t098") / "f098.onnx", quantize="int8",
                   parity_limit=1000, min_agreement=0.98)


@pytest.mark.slow
def test_the_gate_judges_the_target_the_user_asked(at_098, capsys):
    from edgeinfer.check.ladder.run import run_ladder
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.check.verify.run import verify
    from edgeinfer.cli import main
    from edgeinfer.data.packfile import write_pack

    p = at_098.metadata.parity
    assert p["verdict"] == "PASS" and p["tolerance_min_top1"] == 0.98, p
    assert at_098.metadata.provenance[KEY_TARGET]["min_agreement"] == 0.98
    # check's int8 rung, verify and info judge and say the same
    ladder = run_ladder("fashion", [str(at_098.path)], "builtin:fashion-test", limit=1000,
                        timing=False)
    step = ladder.steps[-1]
    assert step.vs_source.tolerance_min_top1 == 0.98
    assert not step.failures and step.uncertified is None, (step.failures, step.uncertified)
    pack = write_pack(build_pack("fashion", "builtin:fashion-test", limit=1000),
                      at_098.path.parent / "f.pack")
    assert verify(at_098.path, pack).verdict == "PASS"
    assert main(["info", str(at_098.path)]) == 0
    out = capsys.readouterr().out
    assert "onnx int8, 0 of 5 conv/matmul layers float" in out
    assert "judged by: >= 98% top-1 agreement (95% lower bound, --min-agreement)" in out
    from edgeinfer.runtime.predictor import Predictor
    from edgeinfer.serve.models import ServedModel

    served = ServedModel("f", Predictor(str(at_098.path)), "onnx", monitor=False)
    par = served.metadata()["parameters"]
    assert par["certification"] == "PASS" and par["judged_by"].startswith(">= 98% top-1")


@pytest.mark.slow
def test_a_budget_alone_writes_the_most_accurate_int8_and_states_it(tmp_path):
    """Per-tensor weights calibrated on one frame: plain int8 agrees on ~98% (max|dprob|
    0.36). A budget without a target writes what the loop found and states it against the
    default target (before: refused by the gate's fixed 99% after the loop); --strict
    refuses."""
    from edgeinfer.converter.api import convert

    # MinMax on purpose: this needs a plain int8 that misses 99%. AdaRound (the default)
    # fitted on that one frame agrees on 99.6% before the loop and PASSes (session 10).
    kw = dict(quantize="int8", parity_limit=500, per_channel=False, calibration_limit=1,
              max_latency_ratio=0.99, max_float_layers=2, int8_method="minmax")
    res = convert("fashion", tmp_path / "b.onnx", **kw)
    p, prov = res.metadata.parity, res.metadata.provenance
    assert res.path.exists() and prov[KEY_TARGET]["budget_only"]
    assert p["tolerance_min_top1"] == 0.99 and p["tolerance_max_abs"] == 0.25
    assert p["verdict"] in ("FAIL", "NOT CERTIFIED") and p[KEY_TARGET]["budget_only"]
    steps = prov["int8_control"]["steps"]
    assert p["top1_agreement"] >= steps[0]["agreement"] - 1e-9  # never below plain int8's
    with pytest.raises(ParityError, match="--strict"):
        convert("fashion", tmp_path / "s.onnx", strict=True, **kw)
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.slow
def test_one_folder_for_calibration_and_parity_is_split(tmp_path):
    """Plain int8 given one folder for calibration and parity (issue 25): certified on the
    frames not calibrated on, and said so. Before: certified on all 400, the 256 it was
    calibrated on among them. On these frames the honest figure misses the default 99%
    (98.5% of 272 measured), so the verdict may be a refusal: either way it is judged on
    the 272 frames not calibrated on."""
    import cv2

    from edgeinfer.converter.api import convert
    from edgeinfer.converter.sources.reference import get_reference
    from edgeinfer.data.frames import load_frames
    from edgeinfer.spec import PreprocessSpec

    spec = PreprocessSpec.from_json(get_reference("fashion").spec_path.read_text())
    d = tmp_path / "frames"
    d.mkdir()
    for i, f in enumerate(load_frames("builtin:fashion-test", spec, limit=400).frames):
        cv2.imwrite(str(d / f"{i:04d}.png"), f)
    lines: list[str] = []
    try:
        res = convert("fashion", tmp_path / "split.onnx", quantize="int8", calibration=str(d),
                      parity_data=str(d), progress=lines.append)
    except ParityError as e:
        assert "n=272 " in str(e) and not (tmp_path / "split.onnx").exists(), str(e)
    else:
        split = res.metadata.provenance["certification_split"]
        assert split["calibrated_on"] == res.metadata.provenance["calibration"]["n"] == 128
        assert split["certified_on"] == res.metadata.parity["n"] == 272
        assert "not calibrated on" in res.metadata.parity["data"]
    said = [m for m in lines if "certifying on the" in m]
    assert said and "calibrating on 128, certifying on the 272 parity frames" in said[0], lines


def test_a_budget_is_not_ignored_when_plain_int8_meets_the_target():
    """Found by a fresh-eyes run: --min-agreement 0.99 --max-latency-ratio 0.67 wrote a
    plain int8 that met the target at 0.82x fp32, saying nothing of the budget (the budget
    was checked only after a missed target). Plain int8 over the budget is refused: every
    int8 of this model is slower still."""
    b = Builder(3)
    speed = {b"fp32": 10.0}

    def latency(model):
        return speed.get(model, 8.2)  # every int8 build 0.82x fp32

    args = (b, runner(lambda kept: N), b"fp32", FRAMES)
    with pytest.raises(ParityError, match=r"plain int8 takes 8\.20 ms .* above 0\.67x fp32"):
        control(*args, min_agreement=0.99, latency=latency, max_latency_ratio=0.67)
    model, res = control(*args, min_agreement=0.99, latency=latency, max_latency_ratio=0.9)
    assert res.final.kept_float == [] and b"int8::" in model  # within 0.9x: plain int8



def test_the_stored_target_reads_back_whole_and_says_whose_it_is():
    """What convert stores is what check/verify/info/serve read back: every field (the
    budget-only kind included), and the words info prints (mutation testing found the
    latency budget and budget_only fields could be dropped unnoticed)."""
    budget = Int8Target.of("onnx", max_latency_ratio=0.67)
    assert budget.budget_only and not budget.asked
    back = Int8Target.read({KEY_TARGET: budget.to_dict()})
    assert back == budget
    d = budget.to_dict()
    assert d["max_latency_ratio"] == 0.67 and d["budget_only"] is True
    assert d["describe"] == budget.describe()
    assert budget.describe() == (
        ">= 99% top-1 agreement (95% lower bound, the default int8 target); within 0.67x "
        "fp32's latency (--max-latency-ratio alone: the most accurate int8 within it)")
    asked = Int8Target.of("onnx", min_agreement=0.985)
    assert Int8Target.read({KEY_TARGET: asked.to_dict()}) == asked
    assert asked.describe() == ">= 98.50% top-1 agreement (95% lower bound, --min-agreement)"
    assert asked.tolerance("onnx").reason.startswith(f"the user's int8 target ({asked.describe()})")
    drop_only = Int8Target.of("onnx", max_drop=0.01)
    assert drop_only.min_agreement == 0.0 and not drop_only.budget_only
    assert drop_only.describe() == "accuracy drop <= 1% (--max-drop)"
    assert not Int8Target.of("onnx").budget_only  # no target, no budget: the default
    # the stored --max-drop binds int8 only; a dtype the registry has no drop bound for: none
    stored = {KEY_TARGET: drop_only.to_dict()}
    assert drop_bound("int8", stored) == 0.01
    assert drop_bound("fp16", stored) == tolerance("accuracy_drop", "fp16").max_abs
    assert drop_bound("fp32", stored) is None
