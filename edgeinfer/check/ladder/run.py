"""The parity ladder: the source model (eval mode) and every artifact on the same raw frames.

One question, answered step by step: will the model predict on the device what it predicted
in the framework? Rungs run in a fixed order, source -> onnx-fp32 -> onnx-int8 ->
tflite-fp32 -> tflite-fp16 -> tflite-int8 (whichever are given). Each rung is compared
with the source AND with its parent (the nearest earlier fp32 rung: onnx-int8's parent is
onnx-fp32, tflite-fp16's is tflite-fp32), so the step that breaks is named, and later
rungs that only inherit the break say so. Per rung: elementwise statistics of the
probabilities, top-1/top-5 agreement, accuracy with a 95% interval when labels exist, the
classes whose predictions flipped, batch-size consistency (1, 8, 32) and run-to-run
determinism, each judged against the tolerance registry. A float rung (onnx-fp32,
tflite-fp32, tflite-fp16) is judged by stage with the one function convert's gate and verify
use (:func:`edgeinfer.parity.stages.stage_checks`): preprocessing in grey levels, the model
with the rung's own bound, its end-to-end comparisons reported. A failing int8 ONNX rung gets
a per-layer diagnosis that names the first layer whose error jumps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.check.ladder.measure import (
    BATCH_SIZES,
    batch_consistency,
    determinism,
    latency_ms,
    run_frames,
)
from edgeinfer.converter.int8.layers import Int8Layers, int8_layers
from edgeinfer.converter.int8.targets import kept_float_line
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.parity.certify import (
    FAIL,
    KEY_TARGET,
    NOT_CERTIFIED,
    PASS,
    certify,
    drop_bound,
    judged_tolerance,
)
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stages import StageCheck, by_stage, failures, stage_checks, stage_row
from edgeinfer.parity.stats import Comparison, accuracy, compare, confusion, flip_matrix, flip_pairs
from edgeinfer.progress import Progress
from edgeinfer.spec import framework_spec

RUNG_ORDER = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8")
REPORTED = " (reported)"  # an end-to-end comparison of a rung judged by stage


# ---------------------------------------------------------------- rungs
@dataclass
class Rung:
    name: str  # "onnx-int8"
    format: str
    dtype: str
    runner: Any
    path: str | None = None
    size_bytes: int | None = None
    model: bytes | None = None  # the file: its prefix output (stages), int8 ONNX diagnosis
    kept_float: str | None = None  # int8 control: layers kept float and why (metadata)
    int8_target: dict | None = None  # the int8 target convert judged it by (its metadata)


def open_artifact(path: str | Path, threads: int | None = None) -> tuple[Rung, ArtifactMetadata]:
    """An artifact file as a rung, through the runtime's own backend (chosen by content);
    its format and dtype come from its own provenance."""
    from edgeinfer.artifact import sniff_format
    from edgeinfer.data.files import load_model_bytes
    from edgeinfer.runtime.loader import open_backend

    data, name = load_model_bytes(path)
    runner = ArtifactRunner(open_backend(data, threads, source=name))  # errors name the file
    fmt = sniff_format(data)
    # the metadata of the session just opened: no second load of the model to read it
    meta = ArtifactMetadata.from_props(runner.backend.metadata_props(), name)
    dtype = meta.provenance.get("quantize") or "fp32"
    runner.name = f"{fmt}-{dtype}"
    return Rung(runner.name, fmt, dtype, runner, name, len(data), data,
                kept_float_line(meta.provenance), meta.provenance.get(KEY_TARGET)), meta


def order_rungs(rungs: Sequence[Rung]) -> list[Rung]:
    """Canonical ladder order; two artifacts of one kind get suffixes (onnx-fp32#2)."""
    rank = {n: i for i, n in enumerate(RUNG_ORDER)}
    out = sorted(rungs, key=lambda r: rank.get(r.name, len(rank)))
    seen: dict[str, int] = {}
    for r in out:
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name}#{seen[r.name]}"
    return out


def parent_of(i: int, rungs: Sequence[Rung]) -> int:
    """Index of the rung that rung ``i`` is derived from (-1 = the source): the nearest
    earlier fp32 rung, preferring the same format."""
    earlier = [j for j in range(i) if rungs[j].dtype == "fp32"]
    same = [j for j in earlier if rungs[j].format == rungs[i].format]
    if rungs[i].dtype != "fp32" and same:
        return same[-1]
    if rungs[i].dtype == "fp32":
        onnx_fp32 = [j for j in earlier if rungs[j].format == "onnx"]
        return onnx_fp32[-1] if onnx_fp32 and rungs[i].format != "onnx" else -1
    return earlier[-1] if earlier else -1


# ---------------------------------------------------------------- the ladder
@dataclass
class RungResult:
    """One rung judged against its parent (and the source): the ladder's row."""

    name: str
    format: str
    dtype: str
    parent: str
    path: str | None
    size_bytes: int | None
    latency_ms: float | None
    vs_parent: Comparison | None
    vs_source: Comparison | None
    accuracy: dict[str, Any] | None
    flips: list[dict[str, Any]]
    flip_matrix: np.ndarray | None
    batch: dict[str, Any]
    rerun: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    inherited: list[str] = field(default_factory=list)
    diagnosis: Int8Layers | None = None
    abs_errors: np.ndarray | None = None  # |dp| vs source, for the histogram
    confusion: np.ndarray | None = None  # K x K: row = true label, column = prediction
    uncertified: str | None = None  # why vs_source cannot certify its bound (parity.certify)
    kept_float: str | None = None  # int8 control: layers kept float and why
    stages: list[StageCheck] = field(default_factory=list)  # parity/stages.py

    @property
    def judged(self) -> Comparison | None:
        """The model stage when this float rung is judged by stage (its end-to-end
        comparisons vs the source and the parent are then reported), as convert and verify
        judge it; None: the end-to-end comparisons are judged (int8, no prefix output)."""
        return by_stage(self.stages) if self.dtype != "int8" else None

    @property
    def passed(self) -> bool:
        return not self.failures and not self.inherited

    @property
    def verdict(self) -> str:
        """The one vocabulary (parity.certify): what convert and verify say of vs_source."""
        if self.failures:
            return FAIL
        if self.inherited:
            return f"{FAIL} (inherited)"
        return NOT_CERTIFIED if self.uncertified else PASS

    def to_dict(self) -> dict[str, Any]:
        skip = ("flip_matrix", "abs_errors", "confusion", "diagnosis", "vs_parent", "vs_source",
                "stages")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        d["stages"] = [c.to_dict() for c in self.stages]
        d["vs_parent"] = self.vs_parent.to_dict() if self.vs_parent else None
        d["vs_source"] = self.vs_source.to_dict() if self.vs_source else None
        d["diagnosis"] = self.diagnosis.to_dict() if self.diagnosis else None
        d["verdict"] = self.verdict
        d["judged_by_stage"] = self.judged is not None
        return d


@dataclass
class LadderResult:
    source: str
    data: str
    n: int
    labels: tuple[str, ...]
    steps: list[RungResult]  # steps[0] is the source

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.steps)

    @property
    def first_failure(self) -> RungResult | None:
        return next((s for s in self.steps if s.failures), None)

    @property
    def word(self) -> str:
        """PASS | NOT CERTIFIED | FAIL for the whole ladder (the worst step's word)."""
        words = {s.verdict for s in self.steps}
        return FAIL if not self.passed else NOT_CERTIFIED if NOT_CERTIFIED in words else PASS

    def verdict(self) -> str:
        f = self.first_failure
        if f is not None:
            return f"{FAIL} at step {f.name}: {'; '.join(f.failures)}"
        unc = [s for s in self.steps if s.uncertified]
        if unc:
            return f"{NOT_CERTIFIED} at step {unc[0].name}: {unc[0].uncertified}" + "".join(
                f"; {s.name}: {s.uncertified}" for s in unc[1:])
        return f"{PASS}: every step within tolerance on {self.n} frames ({self.data})"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "data": self.data, "n": self.n, "passed": self.passed,
                "word": self.word, "verdict": self.verdict(),
                "first_failure": self.first_failure.name if self.first_failure else None,
                "steps": [s.to_dict() for s in self.steps]}

    def table(self) -> str:
        return ladder_table(self)


def _fmt_acc(a: dict | None) -> str:
    if not a:
        return "-"
    lo, hi = a["ci95"]
    return f"{a['accuracy']:.2%} [{lo:.1%}, {hi:.1%}]"


def ladder_table(res: LadderResult) -> str:
    """The ladder as fixed-width text: one row per comparison, verdict per step."""
    head = ("step", "vs", "max|dp|", "p99|dp|", "top-1", "top-5", "flips", "accuracy (95% CI)",
            "batch", "rerun", "size", "ms", "verdict")
    rows = []
    for s in res.steps:
        size = f"{s.size_bytes / 1e6:.2f}MB" if s.size_bytes else "-"
        ms = f"{s.latency_ms:.2f}" if s.latency_ms is not None else "-"
        cons = (f"{s.batch['max_abs']:.0e}" if s.batch else "-",
                f"{s.rerun['max_abs']:.0e}" if s.rerun else "-")
        first = s.vs_parent or s.vs_source
        if first is None:  # the source itself
            rows.append((s.name, "-", "-", "-", "-", "-", "-", _fmt_acc(s.accuracy), *cons,
                         size, ms, s.verdict))
            continue
        for k, st in enumerate([x for x in (s.vs_parent, s.vs_source) if x is not None]):
            if k and st.reference == first.reference:
                continue
            vs = st.reference + (REPORTED if s.judged is not None else "")
            lead = (s.name, vs) if k == 0 else ("", vs)
            tail = ((_fmt_acc(s.accuracy), *cons, size, ms, s.verdict) if k == 0
                    else ("", "", "", "", "", ""))
            rows.append((*lead, st.abs_text(".1e"), f"{st.p99_abs:.1e}",
                         f"{st.top1_agreement:.2%}", f"{st.top5_agreement:.2%}",
                         str(st.flips), *tail))
        rows += [("", n, w, b, *[""] * 8, v) for n, w, b, v in map(stage_row, s.stages)]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    notes = [f"{s.name}: {s.kept_float}" for s in res.steps if s.kept_float]
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows),
                      *notes])


def _judge(step: RungResult, parent: RungResult | None) -> None:
    """A float rung judged by stage: its stages alone, as convert's gate and verify (the
    end-to-end comparisons add the network's sensitivity to the rounding of the pixels, a
    property of the model, and are reported). Otherwise (int8; a rung without a readable
    prefix): the comparisons vs the parent and the source, and the stages measured."""
    model = step.judged
    own = [] if model is not None or step.vs_parent is None else list(step.vs_parent.problems())
    own += failures(step.stages)
    if step.vs_source is not None and not step.vs_source.passed and model is None:
        if parent is not None and not parent.passed:
            step.inherited.append(f"inherits {parent.name}'s difference from the source")
        elif step.vs_parent is None or step.vs_parent.reference != step.vs_source.reference:
            own += step.vs_source.problems()
    if not step.batch.get("passed", True):
        own.append(f"batch-size dependent: max|dp| {step.batch['max_abs']:.2e} between batch "
                   f"sizes {step.batch['batch_sizes']} ({step.batch['top1_changes']} top-1 "
                   "changes); BatchNorm on batch statistics? (a train-mode export)")
    if not step.rerun.get("passed", True):
        own.append(f"not deterministic: max|dp| {step.rerun['max_abs']:.2e} between two runs "
                   "of the same frames; dropout left on? (a train-mode export)")
    step.failures.extend(own)
    if not step.failures and not step.inherited and step.vs_source is not None:
        cert = certify(model or step.vs_source)
        step.uncertified = cert.reason if cert.base == NOT_CERTIFIED else None


def _artifact_step(r: Rung, parent: Rung | None, p: np.ndarray, p_src: np.ndarray,
                   p_parent: np.ndarray | None, frames: Any, labels: Sequence[str],
                   sub: Sequence[np.ndarray], batch_sizes: Sequence[int],
                   timing: bool) -> RungResult:
    """Every measurement of one artifact rung; the verdict is added by ``_judge``."""
    tol = judged_tolerance(r.format, r.dtype, {KEY_TARGET: r.int8_target})
    has_labels = frames.labels is not None
    return RungResult(
        r.name, r.format, r.dtype, parent.name if parent else "source", r.path, r.size_bytes,
        latency_ms(r.runner, frames.frames[0]) if timing else None,
        compare(p_parent, p, tol, parent.name, r.name) if parent else None,
        compare(p_src, p, tol, "source", r.name),
        accuracy(p, frames.labels) if has_labels else None,
        flip_pairs(p_src, p, labels, frames.ids), flip_matrix(p_src, p),
        batch_consistency(r.runner, sub, batch_sizes), determinism(r.runner, sub, p[:len(sub)]),
        abs_errors=np.abs(p_src - p).ravel(), kept_float=r.kept_float,
        confusion=confusion(p, frames.labels) if has_labels else None)


def _accuracy_verdict(step: RungResult, src: RungResult, target: dict | None = None) -> None:
    """Accuracy drop vs the source, judged by the int8 ``--max-drop`` convert stored, else
    where the registry has a bound for the dtype."""
    if step.accuracy is None or src.accuracy is None:
        return
    drop = src.accuracy["accuracy"] - step.accuracy["accuracy"]
    step.accuracy["drop_vs_source"] = drop
    bound = drop_bound(step.dtype, {KEY_TARGET: target})
    if bound is not None:
        step.accuracy["max_drop"] = bound
        if drop > bound:
            step.failures.append(f"accuracy drop {drop * 100:.2f} points > {bound * 100:.2f} "
                                 "vs source")


def run_ladder(source: str, artifacts: Sequence[str | Path], data: str, *,
               weights: str | Path | None = None, spec: Any = None, limit: int | None = None,
               batch_sizes: Sequence[int] = BATCH_SIZES, consistency_frames: int = 64,
               diagnose: str = "auto", diagnose_frames: int = 8, threads: int | None = None,
               timing: bool = True, progress: Progress | None = None,
               skip_bad: bool = False) -> LadderResult:
    """Run the source and every artifact on the same real frames; judge every step.

    ``source`` is what ``convert`` takes (a bundled name, a torch factory with
    ``weights``, or a .onnx file); ``data`` is ``fashion-test``, ``photos`` or a directory.
    ``diagnose``: ``auto`` (per-layer diagnosis of failing int8 ONNX steps), ``always`` or
    ``never``.
    """
    from edgeinfer.converter.api import load_source

    if not artifacts:
        raise ConfigError("check needs at least one artifact")
    if diagnose not in ("auto", "always", "never"):
        raise ConfigError(f"diagnose={diagnose!r} must be auto, always or never")
    opened = [open_artifact(a, threads) for a in artifacts]
    meta0 = opened[0][1]
    rungs = order_rungs([r for r, _ in opened])
    apply_softmax = bool(meta0.provenance.get("softmax_added", True))
    src_runner, spec = load_source(source, spec, weights, apply_softmax=apply_softmax,
                                   fallback_spec=framework_spec(meta0.provenance, meta0.spec))
    labels = meta0.labels
    for r, m in opened:
        if m.spec != spec:
            raise ModelError(f"{r.path} was built with another preprocessing spec than the "
                             "source's; check artifacts of one model at a time")
    from edgeinfer.runtime.image_probe import probe  # undecodable files named as predict does

    frames = load_frames(data, spec, limit=limit, class_names=labels or None,
                         skip_bad=skip_bad, probe=probe)
    n = len(frames.frames)
    sub = frames.frames[:consistency_frames]
    say = progress or (lambda *_a: None)

    probs_src = run_frames(src_runner, frames.frames, say, "source")
    say("source consistency", 0, 1)
    src_step = RungResult("source", "source", "fp32", "-", str(source), None, None, None, None,
                    accuracy(probs_src, frames.labels) if frames.labels is not None else None,
                    [], None, batch_consistency(src_runner, sub, batch_sizes),
                    determinism(src_runner, sub, probs_src[:len(sub)]))
    if frames.labels is not None:
        src_step.confusion = confusion(probs_src, frames.labels)
    _judge(src_step, None)
    say("source consistency", 1, 1)
    steps, probs = [src_step], []
    for i, r in enumerate(rungs):
        probs.append(run_frames(r.runner, frames.frames, say, r.name))
        j = parent_of(i, rungs)
        say(f"{r.name} consistency", 0, 1)
        step = _artifact_step(r, rungs[j] if j >= 0 else None, probs[-1], probs_src,
                              probs[j] if j >= 0 else None, frames, labels, sub,
                              batch_sizes, timing)
        _accuracy_verdict(step, src_step, r.int8_target)
        # every float rung by stage (parity.stages, as convert and verify); int8 as before:
        # ONNX only, its stages measured beside the end-to-end comparisons it is judged on
        float_or_onnx = r.dtype != "int8" or r.format == "onnx"
        if float_or_onnx and getattr(src_runner, "spec", None) == spec \
                and hasattr(src_runner, "model"):
            step.stages = stage_checks(r.model, spec, frames.frames, src_runner, probs_src,
                                       r.format, r.dtype, r.name, "source")
        _judge(step, steps[1 + j] if j >= 0 else src_step)
        say(f"{r.name} consistency", 1, 1)
        want = diagnose == "always" or (diagnose == "auto" and bool(step.failures))
        if want and r.format == "onnx" and r.dtype == "int8" and j >= 0 \
                and rungs[j].format == "onnx":
            say(f"{r.name} per-layer diagnosis", 0, 1)
            step.diagnosis = int8_layers(rungs[j].model, r.model, frames.frames,
                                           max_frames=diagnose_frames)
            say(f"{r.name} per-layer diagnosis", 1, 1)
        steps.append(step)
    return LadderResult(str(source), frames.description, n, labels, steps)
