"""Culprits for detectors (issue 28): letterbox vs stretch vs centre crop, square vs
rectangular input, colour order, /255 and mean/std, each tried as a hypothesis for how the
detector was trained, and judged by what the model finds on real frames.

The detection gate compares the artifact with the framework under ONE spec, so a wrong fit
(the model trained letterboxed, the spec says stretch: D-FINE #358; a rectangular input
where the model saw squares: ultralytics #26269) passes it - both sides make the same
mistake. Here every hypothesis runs the same model on the same frames and is scored by

* **the truth**, when the frames carry true boxes (``detect_frames``): detection F1 at IoU
  >= 0.5 per class, and a paired count over frames of the true objects one side finds and
  the other misses (a sign test, like the classifier audit's);
* **the model itself**, label-free: for a torch model, the BatchNorm-statistics fit
  (:mod:`edgeinfer.diagnose.bn_fit`): a model trained letterboxed saw grey bands in the
  share its training aspects gave them, one trained stretched saw none. Only frames that
  are not square can tell the fits apart (on a square frame they are one placement), so
  the frames must span the aspects the detector is deployed on. How confident the
  detections are ("confidence mass", the summed scores per frame) is reported, never
  judged: measured, it prefers the WRONG fit (stretch enlarges objects) and a missing /255
  (77 detections a frame). Thresholds, and the frames that set and measured them:
  docs/detection/culprits.md.

A pipeline (:mod:`edgeinfer.diagnose.detect_pipelines`) is anything with
``run(variant, frames) -> (detections per frame, BN fit)``: ``CorePipeline`` for a model
that maps an input tensor to input-pixel boxes and per-class scores (a torch detector, an
artifact's core), ``DetectorPipeline`` for a third-party detector served as it is
(BlazeFace). ``convert``'s audit and ``doctor`` share
:func:`audit_detector`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.diagnose.culprits import CULPRITS, spec_hypotheses
from edgeinfer.diagnose.detect_pipelines import (  # noqa: F401 - the audit's pipelines
    RECT_STRIDE,
    CorePipeline,
    DetectorPipeline,
    DetVariant,
    Pipeline,
    rect_size,
)
from edgeinfer.progress import Progress
from edgeinfer.runtime.detect.match import compare_boxes
from edgeinfer.spec import PreprocessSpec

PIXEL_CULPRITS = ("channel_order", "missing_scaling", "double_scaling",
                  "mean_std_pixel_scale", "normalization_missing", "mean_std_mismatch")
FITS = ("letterbox", "stretch", "crop")

# Labelled rule (as the classifier audit's): a clear F1 gain and a significant paired count.
MIN_GAIN = 0.03
MIN_Z = 3.0
# ... or the BN fit and the truth agree (the classifier's "corroborated"): a hypothesis
# fitting the BN statistics at most CORROBORATE_RATIO x as far off (by CORROBORATE_DIFF)
# that also finds more true objects (F1 + CORROBORATE_GAIN, z >= CORROBORATE_Z).
CORROBORATE_RATIO = 0.8
CORROBORATE_DIFF = 0.05
CORROBORATE_GAIN = 0.01
CORROBORATE_Z = 1.0
AHEAD_Z = 1.0  # a hypothesis ahead by CORROBORATE_GAIN at this z: "does not know"
# Label-free rule: the classifier audit's BN rule (docs/doctor/README.md): at most
# BN_RATIO x as far off, by BN_MIN_DIFF. A hypothesis between it and CORROBORATE_RATIO:
# "does not know". The ratios and the frames that set and measured them:
# docs/detection/culprits.md.
BN_RATIO = 0.5
BN_MIN_DIFF = 0.1
MIN_FRAMES = 16  # fewer frames than this: the label-free rule does not decide


def detect_variants(spec: PreprocessSpec, det: DetectionSpec, frames: Sequence[np.ndarray],
                    fits: Sequence[str] = FITS, rect: bool = True) -> list[DetVariant]:
    """The given spec (culprit ``none``) first, then one hypothesis per mistake: another
    fit, a rectangular input, and the pixel hypotheses of the classifier audit (colour
    order, /255, mean/std: :func:`~edgeinfer.diagnose.culprits.spec_hypotheses`)."""
    out = [DetVariant("none", "the given spec", spec, det.fit)]
    out += [DetVariant("resize_policy", f"{m} instead of {det.fit}", spec, m)
            for m in fits if m != det.fit]
    if rect and det.fit == "letterbox":
        out.append(DetVariant("input_size", f"rectangular input (long side {max(spec.size)}, "
                              f"short side a multiple of {RECT_STRIDE}) instead of "
                              f"{spec.size[0]}x{spec.size[1]}", spec, det.fit, rect=True))
    out += [DetVariant(v.culprit, v.detail, v.spec, det.fit)
            for v in spec_hypotheses(spec, frames) if v.culprit in PIXEL_CULPRITS]
    return out


# ---------------------------------------------------------------------- evidence
@dataclass
class Evidence:
    """What one hypothesis found on the frames."""

    variant: DetVariant
    mass: float | None  # mean over frames of the summed detection scores
    count: float | None  # mean detections per frame
    bn_fit: float | None
    f1: float | None = None  # vs the true boxes
    tp: list[int] | None = None  # true objects found, per frame
    z: float | None = None  # paired count vs the given spec (labelled)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        v = self.variant
        return {"culprit": v.culprit, "detail": v.detail, "fit": v.fit, "rect": v.rect,
                "confidence_mass": self.mass, "detections_per_frame": self.count,
                "bn_fit": self.bn_fit, "f1_vs_truth": self.f1, "z": self.z,
                "error": self.error}

    def figures(self) -> str:
        if self.error:
            return f"not applicable ({self.error})"
        parts = ([f"F1 vs truth {self.f1:.3f}"] if self.f1 is not None else []) + (
            [f"z {self.z:+.1f}"] if self.z is not None else []) + [
            f"confidence mass {self.mass:.2f}", f"{self.count:.2f} detections/frame"]
        if self.bn_fit is not None:
            parts.append(f"BN fit {self.bn_fit:.3g}")
        return ", ".join(parts)


def evidence(pipe: Pipeline, variant: DetVariant, frames: Sequence[np.ndarray],
             truth: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> Evidence:
    """Run one hypothesis on ``frames``; with ``truth`` ((boxes, classes) per frame) also
    F1 vs truth."""
    try:
        dets, bn = pipe.run(variant, frames)
    except Exception as e:  # noqa: BLE001 - a model that cannot take this input
        return Evidence(variant, None, None, None, error=" ".join(str(e).split())[:160])
    mass = float(np.mean([d[1].sum() for d in dets])) if dets else 0.0
    count = float(np.mean([len(d[1]) for d in dets])) if dets else 0.0
    ev = Evidence(variant, mass, count, bn)
    if truth is not None:
        m = oa = ob = 0
        tp = []
        for d, (tb, tc) in zip(dets, truth, strict=True):
            c = compare_boxes(*d, tb, np.ones(len(tb)), tc)
            m, oa, ob = m + c.matched, oa + c.only_a, ob + c.only_b
            tp.append(c.matched)
        ev.f1 = 1.0 if 2 * m + oa + ob == 0 else 2 * m / (2 * m + oa + ob)
        ev.tp = tp
    return ev


def paired_z(h: list[int], g: list[int]) -> float:
    """Sign-test z over frames: true objects the hypothesis finds beyond the given spec
    minus the reverse, per frame (an object-level count where one side's finds contain
    the other's, a conservative one otherwise)."""
    d = np.asarray(h) - np.asarray(g)
    b, c = float(np.clip(d, 0, None).sum()), float(np.clip(-d, 0, None).sum())
    return (b - c) / math.sqrt(b + c) if b + c else 0.0


# ---------------------------------------------------------------------- verdict
@dataclass
class DetectAudit:
    verdict: str  # pass | refuse | unknown
    culprit: str
    message: str
    given: Evidence
    rows: list[Evidence] = field(default_factory=list)
    labelled: bool = False
    n: int = 0
    seconds: float = 0.0
    best: Evidence | None = None
    notes: list[str] = field(default_factory=list)  # e.g. frames cut to a time budget

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "culprit": self.culprit, "message": self.message,
                "labelled": self.labelled, "frames": self.n, "seconds": round(self.seconds, 2),
                "thresholds": {"min_gain": MIN_GAIN, "min_z": MIN_Z,
                               "corroborate": [CORROBORATE_RATIO, CORROBORATE_DIFF,
                                               CORROBORATE_GAIN, CORROBORATE_Z],
                               "bn_ratio": BN_RATIO,
                               "bn_min_diff": BN_MIN_DIFF, "min_frames": MIN_FRAMES},
                "given": self.given.to_dict(), "hypotheses": [r.to_dict() for r in self.rows],
                "notes": self.notes,
                "corrected": (None if self.best is None else
                              {"fit": self.best.variant.fit, "rect": self.best.variant.rect,
                               "spec": self.best.variant.spec.to_dict()})}

    def table(self) -> list[str]:
        """One line per hypothesis, the given spec first."""
        return [f"  {r.variant.culprit:20s} {r.variant.detail:58s} {r.figures()}"
                for r in [self.given, *self.rows]]


def audit_detector(pipe: Pipeline, spec: PreprocessSpec, det: DetectionSpec,
                   frames: Sequence[np.ndarray],
                   truth: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, *,
                   variants: Sequence[DetVariant] | None = None,
                   say: Progress | None = None) -> DetectAudit:
    """Every hypothesis on ``frames`` and the verdict: ``refuse`` names the culprit (a
    hypothesis clearly better by the truth, or label-free by the rule above), ``pass``
    when the given spec is as good as any, ``unknown`` when the evidence does not separate
    them (label-free, too few frames or contradicting signals). ``say`` gets a line per
    hypothesis run: a large detector takes minutes (one-argument lines, since every
    converter's default reporter takes one)."""
    t0 = time.perf_counter()
    vs = list(variants) if variants is not None else detect_variants(spec, det, frames)
    given = evidence(pipe, vs[0], frames, truth)
    if given.error:
        raise ValueError(f"the detector cannot run the given spec: {given.error}")
    rows = []
    for i, v in enumerate(vs[1:], 2):
        if say is not None:
            say(f"spec audit: hypothesis {i} of {len(vs)} ({v.detail}) "
                f"[{time.perf_counter() - t0:.0f} s]")
        rows.append(evidence(pipe, v, frames, truth))
    if truth is not None:
        for r in rows:
            if r.tp is not None:
                r.z = paired_z(r.tp, given.tp or [])
    res = _verdict(given, rows, truth is not None, len(frames))
    same = coincide(frames, spec.size)
    if res.verdict == "pass" and any(v.culprit == "resize_policy" for v in vs) and same:
        # a pass says nothing about the fit on frames where the fits are one placement
        res.message = (res.message[:-1] + f"; {same} of {len(frames)} frames have the "
                       "input's aspect, where letterbox, stretch and crop coincide)")
    res.seconds = time.perf_counter() - t0
    return res


def coincide(frames: Sequence[np.ndarray], size: tuple[int, int], tol: float = 0.05) -> int:
    """Frames whose aspect is the input's within ``tol`` (log ratio): no fit hypothesis
    can be told from another on them."""
    ih, iw = size
    return sum(abs(math.log((f.shape[0] / f.shape[1]) / (ih / iw))) < tol for f in frames)


def _bn_hit(r: Evidence, g: Evidence, ratio: float = BN_RATIO,
            diff: float = BN_MIN_DIFF) -> bool:
    """The hypothesis fits the model's BN statistics far better (label-free)."""
    return (r.bn_fit is not None and g.bn_fit is not None and r.bn_fit <= ratio * g.bn_fit
            and g.bn_fit - r.bn_fit >= diff)


def _gain(r: Evidence, g: Evidence, gain: float, z: float) -> bool:
    """With true boxes: F1 ahead by ``gain`` and the paired count at ``z`` or more."""
    return (r.f1 is not None and g.f1 is not None and r.f1 - g.f1 >= gain
            and (r.z or 0.0) >= z)


def _not_worse(r: Evidence, g: Evidence) -> bool:
    """With true boxes, a BN hit must not find clearly fewer objects than the given spec."""
    return r.f1 is None or g.f1 is None or not (g.f1 - r.f1 >= MIN_GAIN
                                                 and -(r.z or 0.0) >= MIN_Z)


def _pick(hits: list[Evidence], key: Any, slack: float) -> Evidence:
    """The best hit by ``key`` (higher is better); within ``slack`` of it, the culprit
    vocabulary's order decides (a named mistake before a guessed mean/std)."""
    best = max(key(r) for r in hits)
    return min((r for r in hits if key(r) >= best - slack),
               key=lambda r: list(CULPRITS).index(r.variant.culprit))


def _verdict(g: Evidence, rows: list[Evidence], labelled: bool, n: int) -> DetectAudit:
    what = f"{n} {'labelled' if labelled else 'unlabelled'} frames"
    ok = [r for r in rows if not r.error]
    refuse = [r for r in ok if _gain(r, g, MIN_GAIN, MIN_Z) or (
        _bn_hit(r, g, CORROBORATE_RATIO, CORROBORATE_DIFF)
        and _gain(r, g, CORROBORATE_GAIN, CORROBORATE_Z))] if labelled else []
    if refuse:
        best = _pick(refuse, lambda r: r.f1 or 0.0, CORROBORATE_GAIN)
        return DetectAudit("refuse", best.variant.culprit, _named(best, g, what), g, rows,
                           True, n, best=best)
    strong = [r for r in ok if _bn_hit(r, g) and _not_worse(r, g)] if n >= MIN_FRAMES else []
    if strong:
        best = _pick(strong, lambda r: -(r.bn_fit or 0.0), 0.1 * g.bn_fit)
        return DetectAudit("refuse", best.variant.culprit, _named(best, g, what), g, rows,
                           labelled, n, best=best)
    ahead = [r for r in ok if _gain(r, g, CORROBORATE_GAIN, AHEAD_Z)
             or (_bn_hit(r, g, CORROBORATE_RATIO, CORROBORATE_DIFF) and _not_worse(r, g))]
    if ahead:
        top = _pick(ahead, lambda r: r.f1 if labelled else -(r.bn_fit or 0.0), 0.0)
        return DetectAudit("unknown", "none", (
            f"spec audit: does not know ({what}): {top.variant.detail} is ahead "
            f"({top.figures()}) of the given spec ({g.figures()}), not by enough to name it; "
            + ("more frames with true boxes would tell" if labelled else
               "frames with true boxes would tell")), g, rows, labelled, n)
    if g.bn_fit is None and not labelled:
        return DetectAudit("unknown", "none", f"spec audit: does not know ({what}; no "
                           "BatchNorm statistics to compare with; frames with true boxes "
                           "would tell)", g, rows, False, n)
    fig = f"F1 vs truth {g.f1:.3f}" if labelled else f"BN fit {g.bn_fit:.3g}"
    return DetectAudit("pass", "none", f"spec audit: pass ({what}, {fig} with the given "
                       "spec; no hypothesis does clearly better)", g, rows, labelled, n)


def _with(detail: str) -> str:
    """``with <detail>``, without doubling a detail that already starts with "with"."""
    return detail if detail.startswith("with ") else f"with {detail}"


def _named(best: Evidence, g: Evidence, what: str) -> str:
    v = best.variant
    figs = []
    if best.f1 is not None and g.f1 is not None:
        figs.append(f"F1 vs truth {best.f1:.3f} vs {g.f1:.3f} (z {best.z:+.1f})")
    if best.bn_fit is not None and g.bn_fit is not None:
        figs.append(f"BN fit {best.bn_fit:.3g} vs {g.bn_fit:.3g}")
    fix = (f"--fit {v.fit}" if v.culprit == "resize_policy" and v.fit != "crop"
           else "a centre crop, which no detector fit bakes yet" if v.fit == "crop"
           else CULPRITS[v.culprit][1])
    return (f"spec audit: the detector was most likely trained {_with(v.detail)} "
            f"('{v.culprit}': {CULPRITS[v.culprit][0]}): {', '.join(figs)} against the given "
            f"spec on {what}; fix: {fix}")
