"""``edgeinfer doctor``: "my deployment is worse than training; why?"

Every culprit of the vocabulary (:mod:`edgeinfer.diagnose.culprits`) is simulated on the
user's real frames through the framework model: the training spec with one device mistake
each, and the model in training mode. With the device's own predictions for the same images
(``--device-predictions``, a CSV ``image,prediction``), each culprit is scored by how well
its simulated predictions explain the device's (top-1 agreement): the device that forgot
/255 agrees with the ``missing_scaling`` simulation on nearly every frame and with the
others on far fewer. ``none`` wins when the device agrees with the reference pipeline;
``distribution_shift`` scores what no pipeline culprit explains (1 - the best agreement),
and only when the frames' BatchNorm fit under the reference pipeline is off (>= SHIFT_BN),
i.e. the images themselves do not look like the training data.

A drop is never called healthy without evidence: when the device's agreement with the
reference is below HEALTHY_TOP1 beyond sampling noise (the 95% Wilson interval of
:mod:`edgeinfer.parity.stats` entirely below it) and no culprit explains at least MIN_SHARE
of that disagreement, the verdict is ``unexplained`` (exit 1), with the numbers.

Without device predictions the same simulations form a "what if" table: each culprit's
score is the share of predictions it would change (its accuracy beside it when labelled),
and the spec audit says whether the given spec itself looks wrong.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.check.doctor.device import DeviceRows, read_device_predictions
from edgeinfer.data.frames import FrameSet
from edgeinfer.diagnose.culprits import (
    CULPRITS,
    PRIORITY,
    device_variants,
    prepare,
    select_culprits,
)
from edgeinfer.diagnose.simulate import NOISY, Outcome, Simulator
from edgeinfer.errors import ConfigError
from edgeinfer.parity.certify import frames_to_certify
from edgeinfer.parity.stats import wilson
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec, framework_spec

# Reference-pipeline BN fit above which the frames count as shifted. Coarse (measured, see
# docs/doctor/README.md): bundled fashion clean 0.047, under severe noise/blur/darkening/
# zoom 0.5-3.5, but 30-degree rotation only 0.29; EfficientNet-Lite0 on clean photos 0.28-0.34.
SHIFT_BN = 0.5
MIN_EXPLAINED = 0.8  # a culprit must explain at least this share of the device predictions
# A device agreeing with the reference pipeline on fewer frames than this (the 95% Wilson
# interval entirely below it) disagrees beyond sampling noise: it is the loosest top-1 bound
# the tolerance registry grants any deployment (int8), so no healthy device falls below it.
HEALTHY_TOP1 = tolerance("onnx", "int8").min_top1
# A culprit explains such a device when it accounts for at least this share of the
# disagreement it can account for (see rank(); chosen on docs/doctor/README.md's data).
MIN_SHARE = 0.5


@dataclass
class CulpritRow:
    """One culprit, as its best-explaining simulated variant."""

    name: str
    detail: str
    score: float
    accuracy: float | None
    agreement: float | None  # with the device's predictions, else with the reference
    bn_fit: float | None
    fix: str
    note: str = ""
    share: float | None = None  # of the device's disagreement with the reference explained

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "accuracy": self.accuracy,
                "agreement": self.agreement, "bn_fit": self.bn_fit, "fix": self.fix,
                "detail": self.detail, "note": self.note, "share": self.share}


@dataclass
class DoctorResult:
    source: str
    data: str
    n: int
    labelled: bool
    mode: str  # "device" | "what-if"
    top: str
    margin: float
    verdict: str
    culprits: list[CulpritRow]
    reference_accuracy: float | None = None
    device_accuracy: float | None = None
    device_n: int = 0
    device_unmatched: int = 0  # device CSV rows naming no frame of the data
    frames_bn_fit: float | None = None
    audit: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    not_applicable: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    robustness: dict[str, Any] | None = None  # --shift: see check.robustness

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "data": self.data, "n": self.n,
                "labelled": self.labelled, "mode": self.mode, "top": self.top,
                "margin": self.margin, "verdict": self.verdict,
                "reference_accuracy": self.reference_accuracy,
                "device_accuracy": self.device_accuracy, "device_n": self.device_n,
                "device_unmatched": self.device_unmatched,
                "frames_bn_fit": self.frames_bn_fit, "shift_bn_threshold": SHIFT_BN,
                "culprits": [c.to_dict() for c in self.culprits],
                "not_applicable": self.not_applicable, "spec_audit": self.audit,
                "notes": self.notes, "seconds": round(self.seconds, 2),
                "robustness": self.robustness}


def culprit_outcomes(source: Any, spec: PreprocessSpec, frames: Sequence[np.ndarray],
                     progress: Progress | None = None, order: Sequence[int] | None = None,
                     *, culprits: Sequence[str] | None = None,
                     batches: Sequence[int] | None = None
                     ) -> tuple[list[Outcome], list[str]]:
    """Every device variant on ``frames``; the reference (``none``) first. ``order``: the
    device's processing order (frame indices), which decides the frames that share a
    device call for the batch-statistics culprits (data order when None). ``culprits``
    (names or groups, :func:`select_culprits`) and ``batches`` (the training-mode batch
    sizes) narrow the grid; a note in the result says so, since a culprit left out cannot
    be ranked."""
    say = progress or (lambda _m: None)
    chosen = select_culprits(culprits) if culprits is not None else None
    if batches is not None and (not batches or min(batches) < 1):
        raise ConfigError(f"batch sizes must be positive integers, got {list(batches)}")
    sim = Simulator(source, spec, order=order)
    variants, notes = device_variants(spec, frames, sim.framework, sim.has_dropout, chosen,
                                      batches)
    if chosen is not None or batches is not None:
        notes.append("narrowed grid: " + "; ".join(
            ([f"culprits {', '.join(sorted(chosen - {'none'}))} only"] if chosen else [])
            + ([f"training modes at batch {', '.join(map(str, sorted(set(batches))))} only"]
               if batches else [])) + " (culprits left out are not ranked)")
    say(f"simulating {len(variants)} culprit variants on {len(frames)} frames")
    ref_inputs = prepare(variants[0], frames)
    out = []
    t0 = time.perf_counter()
    for i, v in enumerate(variants, 1):
        o = sim.run(v, frames, ref_inputs if v.culprit != "none" else None)
        say(f"  [{i:2d}/{len(variants)}] {v.culprit:22s} {v.detail:42s} {o.seconds:5.1f} s"
            f"  ({time.perf_counter() - t0:.0f} s)")
        out.append(o)
    if out[0].probs is None:
        raise ConfigError(f"the model cannot run the given spec: {out[0].error}")
    if not sim.probe.available:
        notes.append(f"BN fit unavailable: {sim.probe.reason}")
    return out, notes


def rank(outcomes: list[Outcome], labels: np.ndarray | None,
         device: np.ndarray | None = None) -> tuple[list[CulpritRow], list[dict[str, str]],
                                                    float | None]:
    """Culprit rows best first, the variants that do not apply, and the frames' BN fit.

    ``device``: the device's top-1 per frame (-1 where the CSV has no row). Each culprit's
    ``share`` is then the part of the device's disagreement with the reference that the
    culprit explains: (its agreement - the reference's) / (the agreement it can reach -
    the reference's). A deterministic culprit can reach 100%; a stochastic one (dropout
    on) only its own run-to-run agreement, since the device made one draw of its own.
    """
    ref = outcomes[0]
    ref_pred = ref.probs.argmax(-1)
    have = device >= 0 if device is not None else None
    ref_agree = float((ref_pred[have] == device[have]).mean()) if device is not None else 1.0
    best: dict[str, CulpritRow] = {}
    skipped = []
    for o in outcomes:
        v = o.variant
        if o.probs is None:
            why = ("same model input as the reference on these frames" if o.identical
                   else f"same model input as {o.same_as}" if o.same_as else o.error)
            skipped.append({"name": v.culprit, "detail": v.detail, "why": why})
            continue
        pred = o.probs.argmax(-1)
        acc = float((pred == labels).mean()) if labels is not None else None
        share = None
        if device is not None:
            agree = float((pred[have] == device[have]).mean())
            score, note = _stochastic_score(o, device, have, agree)
            reach = 1.0 if note or not o.draws or len(o.draws) < 2 else float(
                np.mean([(d[have] == pred[have]).mean() for d in o.draws]))
            if v.culprit != "none" and ref_agree < 1.0:
                share = (float(np.clip((score - ref_agree) / (reach - ref_agree), 0.0, 1.0))
                         if reach > ref_agree else 0.0)
        else:
            agree = float((pred == ref_pred).mean())
            score = 0.0 if v.culprit == "none" else 1.0 - agree
            note = ""
        row = CulpritRow(v.culprit, v.detail, score, acc, agree,
                         o.bn_fit.score if o.bn_fit else None, v.fix, note, share)
        if v.culprit not in best or score > best[v.culprit].score:
            best[v.culprit] = row
    frames_bn = ref.bn_fit.score if ref.bn_fit else None
    rows = list(best.values())
    if device is not None:
        top_sim = max(r.score for r in rows)
        off = frames_bn is not None and frames_bn >= SHIFT_BN
        dev_acc = float((device[have] == labels[have]).mean()) if labels is not None else None
        rows.append(CulpritRow(
            "distribution_shift", "frames unlike the training data", (1.0 - top_sim) if off
            else 0.0, dev_acc, None, frames_bn, CULPRITS["distribution_shift"][1],
            note=f"reference-pipeline BN fit {frames_bn:.3g} (shifted at >= {SHIFT_BN})"
            if frames_bn is not None else "no BN statistics to judge the frames"))
    rows.sort(key=lambda r: (-r.score, PRIORITY[r.name]))
    return rows, skipped, frames_bn


def _stochastic_score(o: Outcome, device: np.ndarray, have: np.ndarray,
                      agree: float) -> tuple[float, str]:
    """A culprit that makes predictions random (EfficientNet-Lite0 in training mode at
    batch 1: drop-connect and per-frame BatchNorm give another class on every run) cannot
    agree with a device more often than with itself; its agreement is divided by its own
    run-to-run agreement when that is below NOISY."""
    if not o.draws or len(o.draws) < 2:
        return agree, ""
    d = [x[have] for x in o.draws]
    pairs = [float((a == b).mean()) for i, a in enumerate(d) for b in d[i + 1:]]
    self_agree = float(np.mean(pairs))
    if self_agree >= NOISY:
        return agree, ""
    dev = float(np.mean([(x == device[have]).mean() for x in d]))
    score = min(1.0, dev / max(self_agree, 1.0 / len(device[have])))
    return score, (f"random under this culprit: two runs agree on {self_agree:.0%}; the "
                   f"device agrees with a run on {dev:.0%}; score = ratio")


def diagnose(source: Any, spec: PreprocessSpec, frames: FrameSet, *,
             device: DeviceRows | None = None, audit: bool = True,
             progress: Progress | None = None, culprits: Sequence[str] | None = None,
             batches: Sequence[int] | None = None) -> DoctorResult:
    """Simulate, rank, and (without device predictions) audit the spec."""
    t0 = time.perf_counter()
    spec = framework_spec(getattr(source, "provenance", None), spec)
    outcomes, notes = culprit_outcomes(source, spec, frames.frames, progress,
                                       order=device.order if device is not None else None,
                                       culprits=culprits, batches=batches)
    pred = device.pred if device is not None else None
    rows, skipped, frames_bn = rank(outcomes, frames.labels, pred)
    labels = frames.labels
    ref_acc = (float((outcomes[0].probs.argmax(-1) == labels).mean())
               if labels is not None else None)
    res = DoctorResult(getattr(source, "name", "source"), frames.name, len(frames.frames),
                       labels is not None, "device" if device is not None else "what-if",
                       rows[0].name, 0.0, "", rows, ref_acc, frames_bn_fit=frames_bn,
                       notes=notes, not_applicable=skipped)
    if device is not None:
        have = pred >= 0
        res.device_n = int(have.sum())
        res.device_unmatched = len(device.unknown)
        if device.note():
            res.notes.insert(0, device.note())
        if labels is not None:
            res.device_accuracy = float((pred[have] == labels[have]).mean())
        res.margin = rows[0].score - rows[1].score if len(rows) > 1 else rows[0].score
        res.top, res.verdict = device_verdict(rows, res.device_n, frames_bn)
    else:
        res.top, res.margin = "none", 0.0
        if audit:
            from edgeinfer.diagnose.audit import audit_spec

            a = audit_spec(source, spec, frames)
            res.audit = a.to_dict()
            if a.verdict in ("warn", "refuse"):
                res.top = a.culprit
            res.verdict = a.message
        else:
            res.verdict = "what-if table only"
    res.seconds = time.perf_counter() - t0
    return res


def device_verdict(rows: list[CulpritRow], n: int, frames_bn: float | None
                   ) -> tuple[str, str]:
    """The top culprit's name (``none``, a culprit, ``distribution_shift`` or
    ``unexplained``) and the verdict, from :func:`rank`'s rows on ``n`` device frames. A
    device whose agreement with the reference pipeline is below HEALTHY_TOP1 beyond
    sampling noise is never called healthy: a culprit must explain at least MIN_SHARE of
    the disagreement, else the verdict is "unexplained"."""
    ref = next(r for r in rows if r.name == "none")
    lo, hi = wilson(round(ref.score * n), n)
    agrees = (f"the device agrees with the reference pipeline on {ref.score:.1%} of {n} "
              f"frames (95% interval {lo:.1%}-{hi:.1%})")
    top = rows[0]
    if hi >= HEALTHY_TOP1:  # within sampling noise of a healthy device
        if top.name != "none":
            return top.name, _culprit_verdict(rows, n, top)
        shifted = frames_bn is not None and frames_bn >= SHIFT_BN
        need = frames_to_certify(HEALTHY_TOP1)
        return "none", (f"{agrees}: no preprocessing or mode culprit"
                        + (f"; but the interval does not show >= {HEALTHY_TOP1:.0%} either "
                           f"(at least {need} frames, all agreeing, would)"
                           if lo < HEALTHY_TOP1 and need else "")
                        + (f"; but the frames' BN fit {frames_bn:.3g} is off the "
                           "training statistics: a drop in accuracy is more likely "
                           "distribution_shift" if shifted else ""))
    explaining = [r for r in rows if r.share is not None and r.share >= MIN_SHARE]
    if explaining:
        return explaining[0].name, _culprit_verdict(rows, n, explaining[0])
    if top.name == "distribution_shift":
        return top.name, (f"no pipeline culprit explains the device's predictions (best "
                          f"agreement {1 - top.score:.1%}) and the frames' BN fit is "
                          f"{frames_bn:.3g}: the images differ from the training data")
    best = max((r for r in rows if r.share is not None), key=lambda r: r.share,
               default=None)
    return "unexplained", (
        f"unexplained disagreement: {agrees}, below the {HEALTHY_TOP1:.0%} any healthy "
        f"deployment keeps, and no culprit of the vocabulary explains it"
        + (f" (the best, {best.name} ({best.detail}), explains {best.share:.0%} of the "
           f"disagreement; {MIN_SHARE:.0%} needed)" if best is not None and best.share > 0
           else " (none explains any of the disagreement)")
        + ": look for a step the doctor does not simulate (decoding, colour or geometry "
        "changes, another model or weights) by comparing the device's input tensor with "
        "the reference's on one frame")


def _culprit_verdict(rows: list[CulpritRow], n: int, c: CulpritRow) -> str:
    others = [r for r in rows if r is not c]
    nxt = others[0] if others else None
    ref = next(r for r in rows if r.name == "none")
    share = (f" and explains {c.share:.0%} of its disagreement with the reference pipeline "
             f"({ref.score:.1%} agreement)" if c.share is not None else "")
    sure = "" if c.score >= MIN_EXPLAINED else " (weak: it explains less than 80%)"
    # A random culprit (dropout, batch statistics) is ranked by a score, the agreement
    # divided by the simulation's own run-to-run agreement: said as a score, never as the
    # agreement (a 54% agreement once read "agrees ... on 100.0%").
    measured = c.agreement if c.agreement is not None else c.score
    ratio = (f" (score {c.score:.2f}: {c.note})" if c.note and c.score != measured else "")
    gap = ""
    if nxt is not None and ratio:
        gap = f", score {c.score:.2f} vs {nxt.score:.2f} for the next ({nxt.name}, {nxt.detail})"
    elif nxt is not None:
        gap = f", {c.score - nxt.score:+.1%} vs the next ({nxt.name}, {nxt.detail})"
    return (f"most likely culprit: {c.name} ({c.detail}): its simulation agrees with the "
            f"device on {measured:.1%} of {n} frames{ratio}{share}{gap}{sure}; fix: {c.fix}")


def run_doctor(source: Any, data: str, *, spec: Any = None, weights: Any = None,
               labels: Any = None, device_predictions: str | Path | None = None,
               limit: int | None = None, audit: bool = True, shift: bool = False,
               progress: Progress | None = None, culprits: Sequence[str] | None = None,
               batches: Sequence[int] | None = None) -> DoctorResult:
    """The doctor from names: ``source`` as ``convert`` takes it, ``data`` as the parity
    data (``builtin:NAME``, a folder, a labelled folder or a CSV), ``spec`` the TRAINING
    preprocessing (default: the bundled model's). ``shift`` adds the corruption/TTA
    measurements (:mod:`edgeinfer.check.doctor.robustness`); ``culprits`` and ``batches``
    narrow the simulation grid (:func:`culprit_outcomes`)."""
    if culprits is not None:  # bad names fail before the model and the frames load
        select_culprits(culprits)
    from edgeinfer.converter.sources.load import resolve_labels, resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames

    sp = resolve(source, spec).spec
    s = resolve_source(source, sp, weights, progress)
    names = resolve_labels(labels, s.reference) or s.labels
    frames = load_frames(data, sp, limit=limit, class_names=names)
    device = (read_device_predictions(device_predictions, frames,
                                      names or frames.class_names)
              if device_predictions else None)
    res = diagnose(s, sp, frames, device=device, audit=audit, progress=progress,
                   culprits=culprits, batches=batches)
    res.source = source if isinstance(source, str) else res.source
    if shift:
        from edgeinfer.check.doctor.robustness import run_robustness

        if progress:
            progress(f"shift/TTA on {len(frames.frames)} frames")
        res.robustness = run_robustness(s, frames.frames, frames.labels, progress=progress)
    return res
