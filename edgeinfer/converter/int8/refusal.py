"""The int8 accuracy control's refusals: targets its frames cannot show, targets it missed.

Kept apart from the loop (:mod:`edgeinfer.converter.int8.control`) so each stays small:
this is what the user reads when nothing is written, and what to try next.
"""

from __future__ import annotations

import numpy as np

from edgeinfer.converter.int8.record import ControlResult, Trial
from edgeinfer.errors import ConfigError
from edgeinfer.parity.certify import frames_to_certify


def check_targets(min_agreement: float | None, max_drop: float | None,
                  labels: np.ndarray | None, n: int, heldout: str,
                  budget_only: bool = False) -> None:
    """Refuse targets that cannot be judged on these held-out frames, before any work.
    ``budget_only``: no target, a latency budget alone (the most accurate int8 within it)."""
    if min_agreement is None and max_drop is None and not budget_only:
        raise ConfigError("the int8 accuracy control needs --min-agreement, --max-drop or "
                          "--max-latency-ratio")
    if min_agreement is not None:
        if not 0.0 < min_agreement < 1.0:
            raise ConfigError(f"--min-agreement {min_agreement} must be a fraction below 1, "
                              "e.g. 0.99")
        need = frames_to_certify(min_agreement)
        if need is None or n < need:
            raise ConfigError(
                f"--min-agreement {min_agreement:.2%} is judged on the 95% interval's lower "
                f"bound, which needs at least {need} held-out frames (all agreeing); "
                f"{heldout} has {n} not used for calibration: pass more with --parity-data "
                "(frames the model will see, not the calibration set) or lower the target")
    if max_drop is not None:
        if not 0.0 <= max_drop < 1.0:
            raise ConfigError(f"--max-drop {max_drop} must be a fraction of accuracy, e.g. 0.01")
        if labels is None:
            raise ConfigError(f"--max-drop needs labelled held-out frames; {heldout} has no "
                              "labels (use a labelled folder as --parity-data)")


def wanted(res: ControlResult) -> list[str]:
    """The targets asked, in the refusals' words."""
    want = []
    if res.min_agreement is not None:
        want.append(f"{res.min_agreement:.2%} agreement (95% lower bound)")
    if res.max_drop is not None:
        want.append(f"an accuracy drop <= {res.max_drop:.2%}")
    return want


def not_faster(res: ControlResult, s: Trial, ratio: float, limit: float) -> str:
    """The one-line refusal of a chosen int8 that is not faster than fp32 (no budget given):
    int8 in name only (EfficientNet-Lite0: 49 of 50 layers float, 1.35x fp32, 18.58 MB)."""
    k, n = len(s.kept_float), res.candidates
    float_ = f"keeps {k} of {n} layers float"  # all-int8 is never judged (loop.too_slow)
    other = ("ship the fp32 artifact (or fp16 TFLite)" if res.fmt == "tflite" else
             "ship the fp32 artifact (or fp16 TFLite), try the TFLite int8 (-o m.tflite)")
    want = wanted(res)
    return (f"int8 not written: meeting {' and '.join(want) or 'the target'} {float_} "
            f"and runs at {ratio:.2f}x fp32's 1-thread latency - not faster than fp32 (an "
            f"int8 must run at <= {limit:g}x without a budget): {other}, or give "
            "--max-latency-ratio R: alone, the most accurate int8 within R x fp32; with the "
            "target, the fewest layers float that meet it within R")


def refusal(res: ControlResult, s: Trial, over_budget: bool = False) -> str:
    """The one-line refusal: what was reached, and what to try. ``over_budget``: plain
    int8 (``s``) is already slower than the latency budget, so every int8 is (layers kept
    float only add time), whether or not it meets the target."""
    lo, hi = s.ci95
    want = wanted(res)
    if not want or over_budget:  # plain int8 already exceeds the latency budget
        return (f"artifact not written: plain int8 takes {s.latency_ms or 0:.2f} ms per frame "
                f"(1 thread), above {res.max_latency_ratio:.2f}x fp32's "
                f"{res.fp32_latency_ms or 0:.2f} ms: raise --max-latency-ratio, or ship fp32")
    budget = ""
    if res.latency_cap is not None:
        budget = (f" within {res.max_latency_ratio:.2f}x fp32's latency (at most "
                  f"{res.latency_cap} of {res.candidates} layers float fit it)")
    return (f"artifact not written: int8 cannot reach {' and '.join(want)} on {res.n_heldout} "
            f"held-out frames ({res.heldout}){budget} even with {len(s.kept_float)} of "
            f"{res.candidates} layers kept float: {s.agreement:.2%} [95% CI {lo:.2%}, "
            f"{hi:.2%}], {s.flips} flips. Try: " + "; ".join(int8_hints(
                res.target, res.fmt, True, res.max_float, res.candidates,
                res.latency_cap is not None)))


def int8_hints(target: str | None = None, fmt: str = "onnx", controlled: bool = False,
               max_float: int | None = None, candidates: int | None = None,
               latency_bound: bool = False) -> list[str]:
    """Settings likely to pass, most effective first (measured in docs/int8/)."""
    from edgeinfer.converter.int8.targets import machine_target

    out = []
    if fmt == "onnx" and target in (None, "x86-avx2") and machine_target() != "x86-avx2":
        out.append(f"--target {machine_target()} if this machine is the device, or the "
                   "device's target (8-bit weights: +2.1 points on EfficientNet-Lite0 photos)")
    out.append("more, realistic --calibration frames (what the camera sees; "
               "builtin:photo-calibration for photo models)")
    if not controlled:
        out.append("--min-agreement 0.99 (keeps the few most harmful layers float)")
    elif latency_bound:
        out.append("a higher --max-latency-ratio (more layers float: slower), or "
                   "--max-latency-ratio without a target (the most accurate int8 within it, "
                   "the figure above)")
    elif max_float is not None and candidates and max_float < candidates:
        out.append(f"--max-float-layers above {max_float} (of {candidates}; slower, larger)")
    out.append("a lower --min-agreement, or fp32")
    return out
