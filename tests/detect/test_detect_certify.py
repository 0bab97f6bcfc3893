"""Detection agreement speaks the one certification vocabulary (issue 28 point 3).

Before: a detector's verdict was PASS whenever F1 vs the framework was 1.0, on 3 boxes as
on 300. Now PASS needs the 95% lower bound of the agreement (over the union of both sides'
detections) to show F1 >= 0.99; NOT CERTIFIED says how many detections and frames would;
FAIL is an F1 below the target.
"""

from __future__ import annotations

import pytest

from edgeinfer.converter.detect_gate import int8_line, parity_line, verdict
from edgeinfer.interval import wilson
from edgeinfer.parity.certify import (
    DETECT_FLOOR,
    FAIL,
    NOT_CERTIFIED,
    PASS,
    DetectionAgreement,
    certify_detections,
    f1_of_union,
    union_of_f1,
)
from edgeinfer.parity.tolerances import tolerance

FP32 = tolerance("detect_boxes", "fp32").min_top1
INT8 = tolerance("detect_boxes", "int8").min_top1


def test_a_few_detections_agreeing_are_not_certified_and_say_how_many_would() -> None:
    c = certify_detections(DetectionAgreement(3, 0, 0, frames=2), FP32)
    assert c.base == NOT_CERTIFIED and c.word == NOT_CERTIFIED
    assert "3 of 3 detections agree" in c.reason
    # F1 >= 0.99 <=> union proportion >= 0.99 / 1.01; n / (n + 1.96^2) reaches it at 191
    assert "at least 191 detections, all matched" in c.reason
    assert "about 128 frames like these" in c.reason  # 191 / 1.5 detections a frame


def test_the_bundled_gate_size_is_not_enough_and_enough_is_pass() -> None:
    # the 48 parity frames gave 146 matched boxes (docs/detection/own_detector.md)
    assert certify_detections(DetectionAgreement(146, 0, 0, 48), FP32).base == NOT_CERTIFIED
    assert certify_detections(DetectionAgreement(190, 0, 0, 63), FP32).base == NOT_CERTIFIED
    c = certify_detections(DetectionAgreement(191, 0, 0, 63), FP32)
    assert c.base == PASS and c.certified and c.reason == ""


def test_a_low_f1_fails_whatever_the_count() -> None:
    c = certify_detections(DetectionAgreement(145, 2, 1, 48), FP32)
    assert c.base == FAIL and "detection F1 0.9898 < 1" in c.reason
    assert "2 boxes only in the artifact, 1 only in the framework" in c.reason
    c = certify_detections(DetectionAgreement(145, 2, 1, 48), INT8, sides=("int8", "fp32"))
    assert c.base == FAIL and "only in the int8" in c.reason
    # another failed figure fails a perfect F1
    c = certify_detections(DetectionAgreement(500, 0, 0), FP32, extra_failures=["boxes 3 px"])
    assert c.base == FAIL and c.reason == "boxes 3 px"


def test_int8_is_certified_on_its_lower_bound() -> None:
    assert certify_detections(DetectionAgreement(500, 1, 1), INT8).base == PASS
    c = certify_detections(DetectionAgreement(199, 1, 0, 60), INT8)  # F1 0.9975
    assert c.base == NOT_CERTIFIED and "with at most" in c.reason
    c = certify_detections(DetectionAgreement(99, 1, 0), INT8)  # F1 0.995, rate too high?
    assert c.base == NOT_CERTIFIED


def test_the_proportion_counts_each_object_once() -> None:
    """A matched pair is one trial: 90 matched and 10 unmatched boxes are 90 of 100 (F1
    counts the pair twice; 180 of 190 would claim more evidence than there is)."""
    d = DetectionAgreement(90, 5, 5)
    assert d.f1 == pytest.approx(180 / 190)
    assert d.f1_ci95[0] == pytest.approx(f1_of_union(wilson(90, 100)[0]))
    assert d.f1_ci95[0] < wilson(180, 190)[0] - 1e-3
    assert DetectionAgreement(0, 0, 0).f1_ci95 == (0.0, 1.0)  # nothing found shows nothing
    assert certify_detections(DetectionAgreement(0, 0, 0), FP32).base == NOT_CERTIFIED
    for f in (0.5, 0.9, 0.99, 1.0):
        assert f1_of_union(union_of_f1(f)) == pytest.approx(f)
    assert DETECT_FLOOR == INT8


def test_the_verdict_is_stored_and_printed() -> None:
    v = verdict(certify_detections(DetectionAgreement(3, 0, 0, 2), FP32))
    assert v["passed"] and v["verdict"] == NOT_CERTIFIED and not v["certified"]
    assert v["failures"] == []
    par = {"detections": {"all": {"frames": 2, "f1": 1.0, "max_box_error_px": 0.0,
                                  "max_score_error": 0.0}, "square": {"frames": 2}},
           "stages": {}, "nms": "graph", "data": "bundled"} | v
    line = parity_line(par)
    assert line.startswith("parity:     NOT CERTIFIED on 2 frames")
    assert "at least 191 detections" in line
    # an artifact made before the verdict was stored: its pass/fail, no certification line
    old = {k: x for k, x in par.items() if k not in ("verdict", "certification")}
    assert parity_line(old).startswith("parity:     PASS on 2 frames")
    f = verdict(certify_detections(DetectionAgreement(1, 1, 0, 2), FP32))
    assert not f["passed"] and f["verdict"] == FAIL and f["failures"]
    i8 = {"vs_fp32": {"all": {"f1": 1.0, "frames": 2, "matched": 3}}} | v
    assert int8_line(i8).strip().startswith("int8 vs fp32: NOT CERTIFIED, F1 1.0000")
    assert int8_line(None) == ""
