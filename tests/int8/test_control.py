"""The int8 accuracy control on the trained fashion model and real Fashion-MNIST images.

Plain int8 (x86-avx2, 7-bit weights) agrees with fp32 on ~99.3% of the test images, which
cannot show a 99.3% target with 95% confidence; the control must reach it by keeping a few
layers float, judged on frames it did not calibrate on, confirmed on frames it did not tune on.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeinfer.cli import main
from edgeinfer.converter.api import convert
from edgeinfer.converter.assemble import with_metadata
from edgeinfer.converter.int8.control import control
from edgeinfer.converter.int8.onnx_quant import KEY_QUANTIZATION, OnnxInt8
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ParityError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.runtime.metadata import read_metadata

TUNE = 4000  # the first 4000 test images tune; the other 6000 only confirm
TARGET = 0.993  # 95% lower bound; plain int8's is ~99.0% on 4000 frames
BUDGET = 1.5  # x fp32's 1-thread latency: every layer of this model may be float within it


@pytest.fixture(scope="module")
def fashion_sets(fashion_artifact):
    spec = read_metadata(str(fashion_artifact)).spec
    test = load_frames("builtin:fashion-test", spec)
    cal = load_frames("builtin:fashion-train", spec, limit=256).frames
    return test, cal


@pytest.fixture(scope="module")
def controlled(fashion_sets, tmp_path_factory):
    """The loop from MinMax's nearest rounding, on purpose: this module tests a loop that
    must keep layers float, and AdaRound (the default since session 10) meets 99.3% with
    every layer int8 on these frames (0 of 5 kept float). A budget on purpose too: on this
    28x28 model one float layer costs ONNX its speed-up (features.0 float: 0.98-1.07x fp32 in
    convert, plain int8 0.80-0.83x), which without a budget is refused since session 10 (no fake
    int8: ``test_a_float_heavy_int8_is_not_written_unless_faster``)."""
    out = tmp_path_factory.mktemp("int8ctl") / "fashion_ctl.onnx"
    return convert("fashion", out, quantize="int8", parity_limit=TUNE, min_agreement=TARGET,
                   int8_method="minmax", max_latency_ratio=BUDGET)


def _agreement(model, ref, frames) -> float:
    return float((ArtifactRunner(model).run(frames).argmax(-1) == ref.argmax(-1)).mean())


def test_control_meets_a_target_plain_int8_misses(controlled, fashion_int8, fashion_artifact,
                                                  fashion_sets):
    ctl = controlled.metadata.provenance["int8_control"]
    first, last = ctl["steps"][0], ctl["steps"][-1]
    assert not first["meets"] and first["ci95"][0] < TARGET  # plain int8 misses it
    assert last["meets"] and last["ci95"][0] >= TARGET
    assert 1 <= len(ctl["kept_float"]) < ctl["candidates"]
    assert ctl["n_heldout"] == TUNE  # fashion calibrates on train: every test frame is held out
    # confirmed on the 6000 test images the loop never saw
    test, _ = fashion_sets
    rest = test.frames[TUNE:]
    ref = ArtifactRunner(str(fashion_artifact)).run(rest)
    _, cal = fashion_sets
    meta = read_metadata(str(fashion_artifact))
    with OnnxInt8(onnx.load_model(fashion_artifact), cal) as q:  # where the loop started
        plain = _agreement(with_metadata(q.build([]), meta).SerializeToString(), ref, rest)
    chosen = _agreement(str(controlled.path), ref, rest)
    assert chosen > plain, (chosen, plain)
    # the default (AdaRound, every layer int8) also beats plain MinMax there
    assert _agreement(str(fashion_int8), ref, rest) > plain


def test_kept_float_layers_are_recorded_and_really_float(controlled):
    m = onnx.load_model(controlled.path)
    q = json.loads({p.key: p.value for p in m.metadata_props}[KEY_QUANTIZATION])
    nodes = controlled.metadata.provenance["int8_control"]["kept_float_nodes"]
    assert q["kept_float"] == nodes
    by_name = {n.name: n for n in m.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    for name in nodes:  # a float Conv reads its weight directly, not through a DequantizeLinear
        w = by_name[name].input[1]
        assert w not in producer or producer[w].op_type != "DequantizeLinear", name
    readable = controlled.metadata.provenance["int8_control"]["kept_float"]
    assert len(readable) == len(nodes) and not set(readable) & set(nodes)  # weight names


def test_refuses_when_the_allowed_float_layers_cannot_reach_it(fashion_artifact, fashion_sets):
    test, cal = fashion_sets
    fp32 = onnx.load_model(fashion_artifact)
    meta = read_metadata(str(fashion_artifact))
    frames = test.frames[:TUNE]
    with OnnxInt8(fp32, cal) as q:
        class B:
            candidates, labels = q.candidates, q.labels

            def __call__(self, keep):
                return with_metadata(q.build(keep), meta).SerializeToString()

        with pytest.raises(ParityError) as e:
            control(B(), lambda m, fr: ArtifactRunner(m).run(fr),
                    with_metadata(fp32, meta).SerializeToString(), frames,
                    min_agreement=0.996, max_float=1)
    msg = str(e.value)
    assert "cannot reach 99.60% agreement" in msg and "1 of" in msg
    assert "--calibration" in msg and "--max-float-layers" in msg and "\n" not in msg


def test_cli_refuses_a_target_its_frames_cannot_show(capsys):
    rc = main(["convert", "fashion", "-o", "/nonexistent/x.onnx", "--quantize", "int8",
               "--parity-limit", "300", "--min-agreement", "0.99"])
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[edgeinfer]")]  # progress lines go to stderr too
    assert rc == 2
    assert len(err) == 1 and "needs at least 381 held-out frames" in err[0], err


def test_control_needs_int8():
    with pytest.raises(Exception, match="--quantize int8"):
        convert("fashion", "/nonexistent/x.onnx", min_agreement=0.99)


def test_held_out_split_never_measures_calibrated_frames():
    from edgeinfer.data.calibration import held_out_split

    rng = np.random.default_rng(0)
    a = [rng.integers(0, 256, (8, 8, 3), np.uint8) for _ in range(10)]
    extra = [rng.integers(0, 256, (8, 8, 3), np.uint8) for _ in range(3)]
    cal, held = held_out_split(a, a[:6] + extra)
    keys = {f.tobytes() for f in cal}
    parity = a[:6] + extra
    assert all(parity[i].tobytes() not in keys for i in held)
    assert {6, 7, 8} <= set(held) and len(held) == 6 and len(cal) == 7


def test_info_shows_the_layers_kept_float_and_why(controlled, capsys):
    assert main(["info", str(controlled.path)]) == 0
    out = capsys.readouterr().out
    n = len(controlled.metadata.provenance["int8_control"]["kept_float"])
    assert f"{n} of " in out and "layers kept float" in out and "99.30%" in out


def test_int8_without_target_says_what_the_default_costs(fashion_int8):
    q = json.loads({p.key: p.value for p in
                    onnx.load_model(fashion_int8).metadata_props}[KEY_QUANTIZATION])
    assert q["target"] == "x86-avx2" and q["reduce_range"] is True
    assert "no --target" in q["target_note"] and "--target" in q["target_note"][12:]


def test_max_drop_needs_labelled_held_out_frames():
    from edgeinfer.converter.int8.control import check_targets
    from edgeinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="labelled"):
        check_targets(None, 0.005, None, 1000, "frames")
    check_targets(None, 0.005, np.zeros(1000, int), 1000, "frames")  # labels: accepted


def test_latency_cap_bisects_to_the_most_layers_within_the_budget():
    from edgeinfer.converter.int8.control import latency_cap

    order = list("abcdefghij")
    built: list[int] = []

    def build(keep):
        built.append(len(keep))
        return bytes(len(keep))

    def ms(model):  # one float layer costs 1 ms
        return 1.0 + len(model)

    assert latency_cap(build, ms, order, 10, 1.0, 4.5, lambda _m: None) == 3
    assert len(built) <= 5  # bisection, not a walk over the ten
    assert latency_cap(build, ms, order, 10, 1.0, 50.0, lambda _m: None) == 10
    assert latency_cap(build, ms, order, 6, 1.0, 50.0, lambda _m: None) == 6
    assert latency_cap(build, ms, order, 10, 2.0, 1.5, lambda _m: None) == 0


def test_a_latency_budget_plain_int8_cannot_meet_is_refused(fashion_artifact, fashion_sets):
    """Real timings: no int8 build runs at 1% of fp32's latency, so the loop refuses and
    says what the budget allowed (a generous budget: the budget-only test below)."""
    from edgeinfer.runtime.loader import open_backend
    from edgeinfer.runtime.timing import median_ms

    test, cal = fashion_sets
    fp32 = onnx.load_model(fashion_artifact)
    meta = read_metadata(str(fashion_artifact))
    frames = test.frames[:1000]  # enough to judge TARGET, a quarter of the time
    x = frames[0][None] if frames[0].ndim == 3 else frames[0][None, ..., None]

    def latency(model):
        b = open_backend(model, 1)
        return median_ms(lambda: b.run(x), runs=5, warmup=1)

    with OnnxInt8(fp32, cal) as q:
        class B:
            candidates, labels = q.candidates, q.labels

            def __call__(self, keep):
                return with_metadata(q.build(keep), meta).SerializeToString()

        args = (B(), lambda m, fr: ArtifactRunner(m).run(fr),
                with_metadata(fp32, meta).SerializeToString(), frames)
        with pytest.raises(ParityError) as e:
            control(*args, min_agreement=TARGET, latency=latency, max_latency_ratio=0.01)
    msg = str(e.value)
    # plain int8 is over the budget: so is every int8 (float layers only add time)
    assert "plain int8 takes" in msg and "above 0.01x fp32's" in msg, msg
    assert "--max-latency-ratio" in msg and "\n" not in msg
    assert e.value.control.steps[0].latency_ms > 0  # the loop's record rides along


@pytest.mark.slow  # scripts/test --full (minutes on two shared cores)
def test_a_latency_budget_alone_keeps_the_most_harmful_layers_it_allows(fashion_sets,
                                                                         tmp_path):
    """No target: --max-latency-ratio alone gives the most accurate int8 within it - unless
    that is every layer float (no int8 at all); plain int8 over the budget is refused."""
    # A budget that allows fp32's own latency would give the fp32 model called int8: refused
    # before any work (issue 26, "no fake int8"; first written and passed, then refused
    # after the whole loop).
    from edgeinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="allows fp32's own latency"):
        convert("fashion", tmp_path / "b.onnx", quantize="int8", parity_limit=500,
                max_latency_ratio=100.0)
    assert not (tmp_path / "b.onnx").exists()
    with pytest.raises(ParityError, match=r"plain int8 takes .* above 0\.01x fp32"):
        convert("fashion", tmp_path / "c.onnx", quantize="int8", parity_limit=500,
                max_latency_ratio=0.01)


def test_every_layer_float_is_refused_not_written_as_int8():
    """A target that only the all-float build meets is refused: that build is the fp32
    model (issue 26: one was written, `info` called it int8, the gate said PASS)."""
    import numpy as np

    from edgeinfer.converter.int8.control import control

    n, layers = 200, "abcd"

    class Builder:
        candidates = list(layers)
        labels = {c: f"layer {c}" for c in layers}

        def __call__(self, keep):
            return ("int8:" + "".join(sorted(keep))).encode()

    def run(model, frames):
        kept = 4 if model == b"fp32" else len(model.decode().split(":")[1])
        agree = int(n * (0.5 + 0.5 * kept / len(layers)))  # each float layer fixes 1/8
        idx = np.array([int(f[0]) for f in frames])
        out = np.zeros((len(idx), 2))
        out[np.arange(len(idx)), (idx >= agree).astype(int)] = 1.0
        return out

    frames = [np.array([i]) for i in range(n)]
    with pytest.raises(ParityError, match="every one of the 4 quantisable layers kept float"
                       ) as e:
        control(Builder(), run, b"fp32", frames, min_agreement=0.9)
    assert e.value.control.final.kept_float and len(e.value.control.final.kept_float) == 4


@pytest.mark.slow  # a conversion (~40 s on two shared cores)
def test_a_float_heavy_int8_is_not_written_unless_faster(tmp_path):
    """Issue 26 "no fake int8", on the real loop: the fixture's conversion without its budget.
    features.0 float met the target at 0.98-1.07x fp32 in five convert runs (plain int8
    0.80-0.83x; load 4.8-6.6, avx2 avx512f avx512_vnni): refused, naming the ratio. The 0.05 ms
    model's ratio depends on the process (0.80x for the same build timed alone, against the
    fp32 file: docs/int8/control.md), so the rule is pinned either way: nothing over 0.9x
    fp32 is written, and a refusal names its figure."""
    from edgeinfer.converter.int8.loop import FASTER

    out = tmp_path / "f.onnx"
    try:
        res = convert("fashion", out, quantize="int8", parity_limit=TUNE, min_agreement=TARGET,
                      int8_method="minmax")
    except ParityError as e:
        msg, ctl = str(e), e.control  # type: ignore[attr-defined]
        ratio = ctl.final.latency_ms / ctl.fp32_latency_ms
        assert "int8 not written" in msg and "not faster than fp32" in msg, msg
        assert ratio > FASTER and f"runs at {ratio:.2f}x fp32" in msg and not out.exists(), msg
    else:
        ctl = res.metadata.provenance["int8_control"]
        assert ctl["steps"][-1]["latency_ms"] <= FASTER * ctl["fp32_latency_ms"], ctl
