"""The one int8 accuracy-control loop (converter/int8/loop.py), pinned once for both of its
judges - the classifier's top-1 agreement (``control``) and the detector's F1
(``control_f1``): a step that does not raise the metric is NOT taken (issue 26: agreement
fell 99.60% -> 99.40% while the loop kept making layers float).

Quick lane: the stand-in builder's "int8 model" is the set of layers kept float; each judge
sees real frames (Fashion-MNIST test images: their labels, their items' boxes) with known
answers lost per layer - what quantising a layer does,
made exact so the rule has one right answer: layer ``a`` recovers the most frames, ``c``
recovers fewer alone (so it ranks second) but with ``a`` breaks others, ``b`` recovers the
rest. The loop must take a, refuse c, take b, and meet the target with [a, b] float.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgeinfer.converter.detect_control import control_f1
from edgeinfer.converter.int8.control import control
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.errors import ParityError

LAYERS = ["a", "b", "c", "d"]
# frame -> the layers any one of which, kept float, recovers it; frames broken by a AND c
RECOVERS = {**{i: {"a", "c"} for i in range(5)}, 5: {"a"}, **{i: {"b"} for i in range(6, 10)}}
BROKEN = set(range(12, 20))
CLASSES = 10


def build(keep) -> bytes:
    return ",".join(sorted(keep)).encode()


def lost(model: bytes, i: int) -> bool:
    """Whether the stand-in int8 ``model`` loses frame ``i``'s answer."""
    if model == b"fp32":
        return False
    keep = set(filter(None, model.decode().split(",")))
    return (i in RECOVERS and not keep & RECOVERS[i]) or ({"a", "c"} <= keep and i in BROKEN)


def agreement_loop(lines: list[str], **kw):
    """``control`` on 1000 real Fashion-MNIST test images: fp32 answers each image's label;
    a lost frame's answer is the next class. ``kw``: ``latency``, ``max_latency_ratio``."""
    images, labels = load_fashion_mnist("test")
    frames = list(images[:1000])
    index = {id(f): i for i, f in enumerate(frames)}

    def run(model: bytes, fr) -> np.ndarray:
        out = np.zeros((len(fr), CLASSES), np.float32)
        for row, f in zip(out, fr, strict=True):
            i = index[id(f)]
            row[(labels[i] + lost(model, i)) % CLASSES] = 1.0
        return out

    class Builder:
        candidates, labels = LAYERS, {}

        def __call__(self, keep) -> bytes:
            return build(keep)

    kw.setdefault("min_agreement", 0.99)
    _, res = control(Builder(), run, b"fp32", frames, say=lines.append, **kw)
    return res


def box_frames(n: int) -> list[SimpleNamespace]:
    """The first ``n`` Fashion-MNIST test images as detection frames: each item's box the
    extent of its nonzero pixels (as the detector's frames paste them), its label the class."""
    images, labels = load_fashion_mnist("test")
    frames = []
    for img, label in zip(images[:n], labels[:n], strict=True):
        ys, xs = np.nonzero(img)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        frames.append(SimpleNamespace(boxes=box, classes=np.array([label])))
    return frames


def f1_loop(lines: list[str], **kw):
    """``control_f1`` on 40 gate and 40 tune frames: real Fashion-MNIST test images, each
    item's box the extent of its nonzero pixels (as the detector's frames paste them); a
    lost frame misses its box."""
    frames = box_frames(80)
    index = {id(f): i for i, f in enumerate(frames)}

    def detect(model: bytes, fr):
        out = []
        for f in fr:
            k = int(lost(model, index[id(f)]))
            out.append((f.boxes[k:], np.full(1 - k, 0.9), f.classes[k:]))
        return out

    _, res = control_f1(build, LAYERS, detect, b"fp32",
                        {"gate": frames[:40], "tune": frames[40:]}, 0.999, lines.append, **kw)
    return res


@pytest.mark.parametrize("loop", [agreement_loop, f1_loop], ids=["agreement", "detection-f1"])
def test_a_step_that_does_not_raise_the_metric_is_not_taken(loop) -> None:
    lines: list[str] = []
    res = loop(lines)
    assert [c for c, _ in res.ranking[:3]] == ["a", "c", "b"]  # c ranks before b
    steps = {t.added: t for t in res.steps}
    figure = "agreement" if hasattr(res.final, "agreement") else "f1"
    a, c = getattr(steps["a"], figure), getattr(steps["c"], figure)
    assert steps["a"].taken and not steps["c"].taken and c < a  # c lowered it: not taken
    assert steps["c"].kept_float == ["a", "c"] and not steps["c"].meets
    assert sorted(res.final.kept_float) == ["a", "b"] and res.final.meets
    assert sum("not taken" in x for x in lines) == 1


def speed(per_layer: float, ms: bool):
    """A latency measure in each judge's unit (the classifier's: ms, fp32 10 ms; the
    detector's: x fp32): plain int8 0.6x fp32, each layer float ``per_layer`` more."""

    def latency(model: bytes) -> float:
        ratio = 1.0 if model == b"fp32" else 0.6 + per_layer * len(
            list(filter(None, model.decode().split(","))))
        return 10.0 * ratio if ms else ratio

    return latency


@pytest.mark.parametrize("loop", [agreement_loop, f1_loop], ids=["agreement", "detection-f1"])
def test_an_int8_not_faster_than_fp32_is_refused_without_a_budget(loop) -> None:
    """Issue 26 "no fake int8", one rule for both judges: EfficientNet-Lite0 met 99% with 49
    of 50 layers float at 1.35x fp32 and was written as int8 with a warning (the detector's
    loop refused it). Here the target needs a and b float: at 1.10x fp32 that is refused
    without a budget; at 0.70x it is written; with --max-latency-ratio 1.5 the budget rules."""
    ms = loop is agreement_loop
    lines: list[str] = []
    with pytest.raises(ParityError) as e:
        loop(lines, latency=speed(0.25, ms))
    msg = str(e.value)
    assert "not written" in msg and "2 of 4 layers float" in msg and "\n" not in msg, msg
    assert "1.10x fp32" in msg and "not faster" in msg and "--max-latency-ratio" in msg, msg
    assert sorted(e.value.control.final.kept_float) == ["a", "b"]
    fast = loop([], latency=speed(0.05, ms))
    assert sorted(fast.final.kept_float) == ["a", "b"]
    slow = loop([], latency=speed(0.25, ms), max_latency_ratio=1.5)  # the user's budget
    assert sorted(slow.final.kept_float) == ["a", "b"]


def test_the_latency_cap_line_states_the_budget_in_its_own_unit() -> None:
    """The detector's budget is a ratio to fp32 (its latency measure gives ratios); the
    cap's line said "within 1.10 ms per frame" for it (session 10)."""
    from edgeinfer.converter.int8.loop import latency_cap

    order = ["a", "b", "c", "d"]
    cost = {k: 0.6 + 0.1 * k for k in range(5)}  # each float layer adds 0.1

    def build(keep):
        return str(len(keep)).encode()

    def latency(model: bytes) -> float:
        return cost[int(model)]

    lines: list[str] = []
    assert latency_cap(build, latency, order, 4, 0.6, 0.85, lines.append, ratio=True) == 2
    assert lines == ["int8 control: at most 2 of 4 ranked layers float within 0.85x fp32's "
                     "latency (1 thread)"]
    lines.clear()
    assert latency_cap(build, latency, order, 4, 0.6, 0.85, lines.append) == 2
    assert lines[0].endswith("within 0.85 ms per frame (1 thread)")


def test_an_all_int8_result_is_not_judged_by_the_speed_rule() -> None:
    """What --quantize int8 asks for is not a fake: plain int8 meeting the target is written
    even at 1.10x fp32 (the rule judges what the loop kept float; fashion's plain int8 reads
    0.80-0.83x inside convert, so a 0.9x line would refuse a tiny model on load alone)."""
    res = agreement_loop([], latency=speed(0.25, True), min_agreement=0.95)
    assert res.final.kept_float == [] and res.final.meets
    plain_slow = agreement_loop([], latency=lambda m: 10.0 if m == b"fp32" else 11.0,
                                min_agreement=0.95)
    assert plain_slow.final.kept_float == []


def test_the_detectors_all_int8_result_is_not_judged_by_the_speed_rule() -> None:
    """One rule for both judges (loop.too_slow): the detector exempted nothing, the
    classifier all-int8 (review R10). With no box lost by any int8, plain int8 meets F1 at
    1.10x fp32 and is written."""
    from edgeinfer.converter.int8.loop import too_slow

    assert too_slow(1.10, None, 0) is None and too_slow(1.10, None, 1) == 0.9
    assert too_slow(1.10, 1.05, 0) == 1.05  # a budget is the user's, all-int8 or not
    frames = box_frames(20)

    def detect(model: bytes, fr):
        return [(f.boxes, np.full(1, 0.9), f.classes) for f in fr]

    _, res = control_f1(build, LAYERS, detect, b"fp32", {"gate": frames[:10],
                        "tune": frames[10:]}, 0.99, [].append,
                        latency=lambda m: 1.0 if m == b"fp32" else 1.10)
    assert res.final.kept_float == []


def test_the_loop_says_first_how_many_disagreements_its_frames_allow() -> None:
    """EfficientNet-Lite0 on 600 frames at 99% kept 49 of 50 layers float over 709 s to reach
    one flip; the first line now says one is all 600 frames allow (session 10)."""
    from edgeinfer.converter.int8.control import allowed

    lines: list[str] = []
    agreement_loop(lines)
    assert lines[0] == ("int8 control: >= 99.00% (95% lower bound) on 1000 held-out frames "
                        "allows at most 3 of them to disagree")
    assert allowed(600, 0.99).endswith("on 600 held-out frames allows at most 1 of them to "
                                       "disagree")
    assert "cannot show >= 99.00%" in allowed(300, 0.99)
    assert allowed(10000, 0.995).endswith("at most 36 of them to disagree")
