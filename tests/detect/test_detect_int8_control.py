"""The detector's int8 accuracy control (converter/detect_control.py, issue 28 point 5): the
classifier loop's rules on detection F1 vs fp32 - the fewest layers float, a step that
does not raise F1 is not taken, the target must hold on every held-out set, and "every
layer float" is refused.

Quick lane: the loop is driven by a stand-in builder whose "int8 model" is the set of
layers kept float and whose detections are the real frames' true boxes with known
detections dropped or added per layer - what quantising a layer does to a detector's
output, made exact so each rule has a known right answer. The real quantisers are
exercised by the slow tests (test_convert_detector*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.converter.detect_control import control_f1
from edgeinfer.converter.detect_frames import parity_frames
from edgeinfer.errors import ParityError

FRAMES = parity_frames(per_aspect=14)[:40]


def truth(f):
    return f.boxes.copy(), np.full(len(f.boxes), 0.9), f.classes.copy()


def make_detect(missing: dict[int, set[str]], broken: dict[frozenset[str], set[int]]):
    """Frame ``i`` misses its first box unless one of ``missing[i]``'s layers is float;
    a combination of float layers in ``broken`` drops a box on those frames."""
    index = {id(f): i for i, f in enumerate(FRAMES)}

    def detect(model: bytes, frames):
        keep = set(filter(None, model.decode().split(",")))
        out = []
        for f in frames:
            i = index[id(f)]
            b, s, c = truth(f)
            drop = (i in missing and not keep & missing[i]) or any(
                combo <= keep and i in fr for combo, fr in broken.items())
            if model != b"fp32" and drop and len(b):
                b, s, c = b[1:], s[1:], c[1:]
            out.append((b, s, c))
        return out

    return detect


def build(keep) -> bytes:
    return ",".join(sorted(keep)).encode()


LAYERS = ["a", "b", "c", "d"]


def test_a_step_that_lowers_f1_is_not_taken() -> None:
    # a fixes frames 0, 1, 3; c fixes 0, 1 alone but with a it breaks frames 5-9; b fixes 2
    detect = make_detect({0: {"a", "c"}, 1: {"a", "c"}, 2: {"b"}, 3: {"a"}},
                         {frozenset("ac"): set(range(5, 10))})
    sets = {"gate": FRAMES[:20], "tune": FRAMES[20:]}
    lines: list[str] = []
    _, res = control_f1(build, LAYERS, detect, b"fp32", sets, 0.999, lines.append)
    assert res.final.kept_float == ["a", "b"] and res.final.meets
    assert [r[0] for r in res.ranking[:3]] == ["a", "c", "b"]
    c_step = next(t for t in res.steps if t.added == "c")
    assert not c_step.taken and c_step.f1 < res.steps[1].f1  # lowered F1: not taken
    assert any("not taken" in x for x in lines)


def test_the_target_holds_on_every_held_out_set() -> None:
    """Frames 0-3 are in the gate set, frame 25 in the tune set: fixing the gate's alone
    (layer a) leaves the tune set below the target, so b is needed too."""
    detect = make_detect({0: {"a"}, 1: {"a"}, 2: {"a"}, 3: {"a"}, 25: {"b"}}, {})
    sets = {"gate": FRAMES[:20], "tune": FRAMES[20:]}
    _, res = control_f1(build, LAYERS, detect, b"fp32", sets, 0.995, lambda _m: None)
    a_step = next(t for t in res.steps if t.added == "a")
    assert a_step.f1_by_set["gate"] == 1.0 and a_step.f1_by_set["tune"] < 0.995
    assert not a_step.meets
    assert sorted(res.final.kept_float) == ["a", "b"]
    assert min(res.final.f1_by_set.values()) >= 0.995


def test_every_layer_float_is_refused() -> None:
    """Each layer float fixes one missed box; the target needs all four: that is the fp32
    model, so nothing is written."""
    detect = make_detect({0: {"a"}, 1: {"b"}, 2: {"c"}, 3: {"d"}}, {})
    with pytest.raises(ParityError, match="every one of the 4 layers float"):
        control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 1.0, lambda _m: None)


def test_plain_int8_meeting_the_target_keeps_nothing_float() -> None:
    detect = make_detect({}, {})
    _, res = control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 0.99,
                        lambda _m: None)
    assert res.final.kept_float == [] and len(res.steps) == 1 and not res.ranking


def speed(keep_cost: float = 0.15, plain: float = 0.55):
    """A stand-in latency: plain int8 at ``plain`` x fp32, each float layer ``keep_cost``
    more (what keeping convolutions float does to an int8 detector, made exact)."""
    def latency(model: bytes) -> float:
        if model == b"fp32":
            return 1.0
        return plain + keep_cost * len(list(filter(None, model.decode().split(","))))
    return latency


def test_an_int8_that_is_not_faster_is_refused() -> None:
    """Issue 28 finding 2: the ONNX int8 met F1 0.99 only with 13 of 16 layers float, at
    1.02x fp32. Here the target needs a, b and c float: 0.55 + 3 x 0.15 = 1.00x fp32, not
    faster - refused in one line naming layers float, ratio and F1, suggesting fp32 or the
    TFLite int8 (before: written)."""
    detect = make_detect({0: {"a"}, 1: {"b"}, 2: {"c"}}, {})
    with pytest.raises(ParityError) as e:
        control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 1.0, lambda _m: None,
                   latency=speed())
    msg = str(e.value)
    assert "\n" not in msg and "3 of 4 layers float" in msg and "1.00x" in msg
    assert "not faster" in msg and "F1 vs fp32 1.0000" in msg and "TFLite int8" in msg
    assert e.value.control.final.latency_ratio == pytest.approx(1.0)  # type: ignore[attr-defined]
    # 0.95x: measurably faster, but by less than FASTER (0.9x) - 11 of 16 layers float
    # at 0.98x was what the ONNX int8 reached on the 72 gate frames: refused too
    detect2 = make_detect({0: {"a"}, 1: {"b"}}, {})
    with pytest.raises(ParityError, match=r"2 of 4 layers float, at 0\.95x.*not faster"):
        control_f1(build, LAYERS, detect2, b"fp32", {"gate": FRAMES}, 1.0, lambda _m: None,
                   latency=speed(keep_cost=0.2))
    # the user's budget overrides the rule: 0.95x within --max-latency-ratio 0.96
    _, res = control_f1(build, LAYERS, detect2, b"fp32", {"gate": FRAMES}, 1.0,
                        lambda _m: None, latency=speed(keep_cost=0.2), max_latency_ratio=0.96)
    assert res.final.latency_ratio == pytest.approx(0.95)


def test_an_int8_that_is_faster_is_written_with_its_ratio() -> None:
    detect = make_detect({0: {"a"}, 1: {"b"}}, {})
    _, res = control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 1.0,
                        lambda _m: None, latency=speed())
    assert sorted(res.final.kept_float) == ["a", "b"]
    assert res.final.latency_ratio == pytest.approx(0.85)
    assert res.to_dict()["steps"][-1]["latency_ratio"] == pytest.approx(0.85)


def test_a_latency_budget_caps_the_float_layers() -> None:
    """--max-latency-ratio 0.8: one layer float (0.70x) fits, two (0.85x) do not; a target
    that needs two is refused, saying the cap; with 0.9 the same target is met."""
    detect = make_detect({0: {"a"}, 1: {"b"}}, {})
    with pytest.raises(ParityError, match=r"within --max-latency-ratio 0\.8: .*at most 1 "
                       r"may be float.*TFLite int8") as e:
        control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 1.0, lambda _m: None,
                   latency=speed(), max_latency_ratio=0.8)
    assert e.value.control.latency_cap == 1  # type: ignore[attr-defined]
    _, res = control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 1.0,
                        lambda _m: None, latency=speed(), max_latency_ratio=0.9)
    assert res.latency_cap == 2 and sorted(res.final.kept_float) == ["a", "b"]


def test_a_budget_plain_int8_already_misses_is_refused() -> None:
    detect = make_detect({}, {})
    with pytest.raises(ParityError, match=r"plain int8 already runs at 0\.55x fp32"):
        control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 0.99, lambda _m: None,
                   latency=speed(), max_latency_ratio=0.5)
    with pytest.raises(ParityError, match="ship the fp32 artifact$"):  # TFLite: no TFLite hint
        control_f1(build, LAYERS, detect, b"fp32", {"gate": FRAMES}, 0.99, lambda _m: None,
                   latency=speed(), max_latency_ratio=0.5, fmt="tflite")
