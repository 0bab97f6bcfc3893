"""How convert judges an int8 artifact: on frames it was not calibrated on, by the target asked.

Why (issues 25 and 26):

- one target rule: the accuracy-control loop stopped at the user's ``--min-agreement 0.98``
  and the gate then judged the artifact at the registry's fixed 99% ("NOT CERTIFIED ...
  need 1166 frames"). :class:`~edgeinfer.parity.certify.Int8Target` is what the user asked
  (or the default); the gate judges by it and convert stores it, so ``check``, ``verify``,
  ``info`` and the server judge and say the same;
- a budget alone (``--max-latency-ratio`` without a target) writes the most accurate int8
  within the budget and states its agreement against the default target (``--strict``
  refuses below it): it never refuses after the loop without writing what it found;
- certified on frames not calibrated on: when the calibration and parity frames overlap (one
  folder given for both, or a user folder with no ``--calibration``), they are split
  deterministically (:func:`edgeinfer.data.calibration.held_out_split`): calibration on one
  part, certification on the rest, said in the output and the provenance.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edgeinfer.data.frames import FrameSet
from edgeinfer.errors import ParityError
from edgeinfer.parity.certify import KEY_TARGET, PASS, Int8Target, against, certify, pct
from edgeinfer.progress import Progress


def certification_split(cal: list[np.ndarray], frames: FrameSet, provenance: dict[str, Any],
                        say: Progress) -> tuple[list[np.ndarray], FrameSet, np.ndarray | None]:
    """(calibration frames, certification frames, indices of those in ``frames`` or None).

    Frames in both sets are split alternately: every other one is dropped from calibration
    and certified on; the others calibrate and are not certified on. None: no overlap.
    """
    from edgeinfer.data.calibration import held_out_split

    kept, held = held_out_split(cal, frames.frames)
    if len(held) == len(frames.frames) and len(kept) == len(cal):
        return cal, frames, None
    idx = np.asarray(held, dtype=np.int64)
    n = len(frames.frames)
    sub = FrameSet(f"{frames.name}, {len(held)} of {n} frames not calibrated on",
                   [frames.frames[i] for i in held],
                   None if frames.labels is None else np.asarray(frames.labels)[idx],
                   None if frames.ids is None else [frames.ids[i] for i in held],
                   frames.class_names, frames.skipped)
    split = {"parity_frames": n, "calibration_frames_given": len(cal),
             "shared": n - len(held) + (len(cal) - len(kept)),
             "calibrated_on": len(kept), "certified_on": len(held),
             "rule": "frames in both sets split alternately: every other one calibrates, "
                     "the rest are certified on (data/calibration.held_out_split)"}
    provenance["certification_split"] = split
    if isinstance(provenance.get("calibration"), dict):
        provenance["calibration"]["n"] = len(kept)
    say(f"int8: the calibration and parity frames overlap ({split['shared']} frames in both): "
        f"calibrating on {len(kept)}, certifying on the {len(held)} parity frames not "
        "calibrated on (a verdict on calibrated frames flatters int8)")
    return kept, sub, idx


def judge(derived: Any, target: Int8Target, fmt: str, provenance: dict[str, Any],
          strict: bool, say: Progress, data_note: str | None = None) -> None:
    """After the gate: judge the accuracy drop the user bounded, restate a budget-only
    artifact against the default target, store the target; raises ParityError to refuse.

    ``derived`` is the gate's :class:`~edgeinfer.converter.gate.GateResult` (changed in
    place: its verdict, and the target in its parity entry).
    """
    acc = derived.accuracies
    if target.max_drop is not None and "accuracy_artifact" in acc:
        drop = acc["accuracy_source"] - acc["accuracy_artifact"]
        if drop > target.max_drop:
            raise ParityError(f"artifact not written: FAIL - accuracy drop {drop:.2%} > "
                              f"{pct(target.max_drop)} (--max-drop) on the certification "
                              "frames")
    if target.budget_only:
        cmp = against(derived.primary, target.tolerance(fmt))
        cert = certify(cmp, data_note)
        derived.primary = cmp
        derived.others = {k: against(c, target.tolerance(fmt)) for k, c in
                          derived.others.items()}  # no unbounded tolerance is stored
        for c in (cmp, *derived.others.values()):
            say(c.summary(certify(c, data_note).word))
        acc |= {"certified": cert.certified, "verdict": cert.word,
                "certification": cert.reason or "certified"}
        say(f"budget only (no target asked): the most accurate int8 within "
            f"{target.max_latency_ratio:.2f}x fp32's latency agrees on "
            f"{cmp.top1_agreement:.2%} [95% CI {cmp.top1_ci95[0]:.2%}, "
            f"{cmp.top1_ci95[1]:.2%}]: {cert.word} against the default target "
            f"(>= {pct(target.min_agreement)})")
        if strict and cert.base != PASS:
            raise ParityError(f"artifact not written (--strict): the most accurate int8 within "
                              f"the budget is {cert.word} against the default target - "
                              f"{cert.reason or cmp.summary()}")
    acc[KEY_TARGET] = target.to_dict()
    provenance[KEY_TARGET] = target.to_dict()
    ctl = provenance.get("int8_control")
    if isinstance(ctl, dict) and ctl.get("steps"):
        ctl["tune_vs_final"] = tune_vs_final(ctl, derived)


def tune_vs_final(ctl: dict[str, Any], derived: Any) -> dict[str, Any]:
    """The loop's agreement on the frames it chose layers on, and the gate's on the frames
    it certified on (against fp32 ONNX both), and whether those are the same frames."""
    last = ctl["steps"][-1]
    vs = derived.others.get("vs_onnx_fp32") or derived.primary
    # the loop runs on the parity frames not calibrated on, which the gate certifies on
    same = ctl.get("n_heldout") == vs.n
    chose = bool(ctl.get("kept_float"))
    return {"tune": {"frames": ctl.get("n_heldout"), "agreement": last.get("agreement"),
                     "ci95": last.get("ci95")},
            "final": {"frames": vs.n, "agreement": vs.top1_agreement,
                      "ci95": list(vs.top1_ci95)},
            "same_frames": bool(same),
            "note": "every layer int8: no layer was chosen" if not chose else
                    ("layers chosen and certified on the same frames: the certification is "
                     "not independent of the choice (issue 26 point 4)") if same else
                    "certified on frames the loop did not choose on"}


def gate_tolerance(target: Int8Target, fmt: str) -> Any:
    """The gate's tolerance: the target's. A budget-only run is gated on non-finite outputs
    alone: its figures are stated against the default target afterwards, not refused (it
    never refuses after the loop without writing what it found; ``--strict`` does)."""
    tol = target.tolerance(fmt)
    return replace(tol, min_top1=0.0, max_abs=float("inf")) if target.budget_only else tol


class Int8Judge:
    """convert's int8 judgement in three calls (the split, the gate's tolerance, the verdict),
    so the converter's API carries one object; every call is a no-op when not int8."""

    def __init__(self, quantize: str | None, fmt: str, min_agreement: float | None,
                 max_drop: float | None, max_latency_ratio: float | None, strict: bool,
                 say: Progress) -> None:
        self.fmt, self.strict, self.say = fmt, strict, say
        self.target = (Int8Target.of(fmt, min_agreement, max_drop, max_latency_ratio)
                       if quantize == "int8" else None)
        self.tolerance = gate_tolerance(self.target, fmt) if self.target else None

    def gate_say(self, say: Progress) -> Progress:
        """The gate's progress: a budget-only gate has no bound (its own PASS lines would
        read "min 0%"), so they are left out and :meth:`judge` says the restated ones."""
        if self.target is None or not self.target.budget_only:
            return say
        return lambda m: None if m.startswith(("PASS ", "NOT CERTIFIED ", "FAIL ")) else say(m)

    def split(self, cal: list[np.ndarray], frames: FrameSet, ref: np.ndarray,
              fp32: np.ndarray, provenance: dict[str, Any]) -> tuple[Any, ...]:
        """(calibration, certification frames, their reference and fp32 probabilities)."""
        if self.target is None:
            return cal, frames, ref, fp32
        cal, frames, idx = certification_split(cal, frames, provenance, self.say)
        return (cal, frames, ref, fp32) if idx is None else (cal, frames, ref[idx], fp32[idx])

    def judge(self, derived: Any, provenance: dict[str, Any], data_note: str | None) -> None:
        if self.target is not None:
            judge(derived, self.target, self.fmt, provenance, self.strict, self.say, data_note)
