"""Detection certification, where mutation testing found the tests blind (session 10,
docs/mutation/detection.md): the NOT CERTIFIED reason's figures (which side, which bound,
how many detections and frames), the order and joining of FAIL's reasons, the data note on
PASS and NOT CERTIFIED, a user's F1 target below the floor, and the whole-disagreement step
of ``frames_needed`` when the observed rate lands on an integer."""

from __future__ import annotations

from edgeinfer.parity.certify import (
    FAIL,
    NOT_CERTIFIED,
    PASS,
    DetectionAgreement,
    certify_detections,
    frames_needed,
    union_of_f1,
)
from edgeinfer.parity.tolerances import tolerance

FP32 = tolerance("detect_boxes", "fp32").min_top1
INT8 = tolerance("detect_boxes", "int8").min_top1
NOTE = "bundled photos only: not your data"


def test_the_reason_names_each_side_the_lower_bound_and_both_unmatched_counts() -> None:
    """1 box only in the int8 model and 1 only in fp32: 2 unmatched of 219, not 1 - 1 = 0
    (which would ask for 191 detections, all matched); the bound shown is the lower one."""
    c = certify_detections(DetectionAgreement(217, 1, 1, 73), INT8, sides=("int8", "fp32"))
    assert c.base == NOT_CERTIFIED
    assert c.reason == ("217 of 219 detections agree (1 only in the int8, 1 only in the fp32); "
                        "to certify F1 >= 99% you need at least 657 detections with at most 6 "
                        "unmatched, about 219 frames like these (95% lower bound now 98.34%)")


def test_whole_disagreements_at_an_integer_rate_are_not_rounded_up() -> None:
    """2 of 219 unmatched: 657 detections hold exactly 6 at that rate (657 = 3 x 219);
    ``ceil(rate * k + eps)`` would count 7 and ask for 725."""
    assert frames_needed(union_of_f1(0.99), 2, 219) == (657, 6)
    assert frames_needed(0.99, 1, 106) == (118720, 1120)  # 118720 = 1120 x 106


def test_without_a_frame_count_no_frames_are_promised() -> None:
    c = certify_detections(DetectionAgreement(10, 0, 0), FP32)
    assert c.reason == ("10 of 10 detections agree (0 only in the artifact, 0 only in the "
                        "framework); to certify F1 >= 99% you need at least 191 detections, "
                        "all matched (95% lower bound now 83.89%)")


def test_a_low_f1_is_named_first_and_every_failure_is_kept() -> None:
    c = certify_detections(DetectionAgreement(145, 2, 1, 48), FP32,
                           extra_failures=["boxes 3 px", "scores 0.01"])
    assert c.base == FAIL and c.word == FAIL
    assert c.reason == ("detection F1 0.9898 < 1 (2 boxes only in the artifact, 1 only in the "
                        "framework); boxes 3 px; scores 0.01")


def test_the_data_note_qualifies_pass_and_not_certified_never_fail() -> None:
    p = certify_detections(DetectionAgreement(191, 0, 0, 63), FP32, data_note=NOTE)
    assert (p.word, p.base, p.reason) == (f"{PASS} ({NOTE})", PASS, "")
    assert p.line() == f"{PASS} ({NOTE})"
    n = certify_detections(DetectionAgreement(3, 0, 0, 2), FP32, data_note=NOTE)
    assert (n.word, n.base) == (f"{NOT_CERTIFIED} ({NOTE})", NOT_CERTIFIED)
    f = certify_detections(DetectionAgreement(1, 1, 0, 2), FP32, data_note=NOTE)
    assert (f.word, f.base) == (FAIL, FAIL)
    assert certify_detections(DetectionAgreement(191, 0, 0, 63), FP32).word == PASS


def test_a_target_below_the_floor_is_certified_at_the_target_and_said_exactly() -> None:
    """A user's F1 >= 0.985 is the bound (not the 0.99 floor), and is printed as 98.50%."""
    assert certify_detections(DetectionAgreement(150, 0, 0, 50), 0.985).base == PASS
    c = certify_detections(DetectionAgreement(98, 2, 0, 50), 0.985)
    assert c.base == NOT_CERTIFIED
    assert c.reason.endswith("to certify F1 >= 98.50% you need at least 1242 detections with "
                             "at most 25 unmatched, about 621 frames like these (95% lower "
                             "bound now 96.37%)")


def test_no_detections_on_either_side_is_not_called_uncertifiable() -> None:
    """Neither side detected anything on 12 frames: the reason said "at this rate no number
    of detections certifies" (no rate was measured; 191 matched would). Found by C's
    mutation run, session 10."""
    from edgeinfer.parity.certify import (
        NOT_CERTIFIED,
        DetectionAgreement,
        certify_detections,
    )

    c = certify_detections(DetectionAgreement(0, 0, 0, frames=12), 0.99)
    assert c.base == NOT_CERTIFIED
    assert "no detections on either side over 12 frames" in c.reason
    assert "no number" not in c.reason
    assert "you need at least 191 detections, all matched" in c.reason
