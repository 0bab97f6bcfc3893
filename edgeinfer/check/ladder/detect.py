"""``edgeinfer check`` for detector artifacts (issue 28, point 3): the ladder of
source (the torch pipeline) -> fp32 artifact(s) -> int8, judged on detection agreement.

The same comparisons as ``convert``'s gate, by the gate's own functions
(:mod:`edgeinfer.converter.detect_gate`: one comparison path, so ``check`` on the gate's
frames repeats the figures ``convert`` stored):

* an fp32 rung (ONNX or TFLite) vs the framework's pipeline: the three stages
  (preprocessing in grey levels, the model on identical tensors, the detections matched
  at IoU >= 0.5: F1, box error in the frame's pixels, score error), per aspect;
* an int8 rung vs its parent, the fp32 rung of its format (else any fp32 rung): F1 with
  the registry's int8 bound, and vs the framework reported; with no fp32 rung given, vs
  the framework with the int8 bound.

The word is the one vocabulary (:func:`~edgeinfer.parity.certify.certify_detections`):
PASS, NOT CERTIFIED (the F1 meets its bound, too few detections for its 95% lower bound),
FAIL. A rung whose parent FAILs is marked as inheriting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.parity.certify import FAIL, NOT_CERTIFIED, PASS
from edgeinfer.progress import Progress


@dataclass
class DetectRung:
    """One detector artifact: its bytes, format and dtype (from its own provenance)."""

    name: str
    format: str
    dtype: str
    path: str
    data: bytes
    meta: Any


@dataclass
class DetectStep:
    """One rung judged: what it was compared with and the figures, per aspect."""

    name: str
    parent: str
    path: str | None
    size_bytes: int | None
    word: str = PASS
    reason: str = ""
    vs_parent: dict[str, Any] = field(default_factory=dict)  # aspect -> figures
    vs_source: dict[str, Any] | None = None  # all frames, when the parent is not the source
    stages: dict[str, Any] | None = None
    inherited: str | None = None

    @property
    def base(self) -> str:
        return FAIL if self.word.startswith(FAIL) else (
            NOT_CERTIFIED if self.word.startswith(NOT_CERTIFIED) else PASS)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "parent": self.parent, "path": self.path,
                "size_bytes": self.size_bytes, "verdict": self.word, "reason": self.reason,
                "vs_parent": self.vs_parent, "vs_source": self.vs_source,
                "stages": self.stages, "inherited": self.inherited}


@dataclass
class DetectLadder:
    source: str
    data: str
    n: int
    labels: tuple[str, ...]
    steps: list[DetectStep]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(s.base != FAIL for s in self.steps)

    @property
    def word(self) -> str:
        bases = {s.base for s in self.steps}
        return FAIL if FAIL in bases else NOT_CERTIFIED if NOT_CERTIFIED in bases else PASS

    def verdict(self) -> str:
        bad = next((s for s in self.steps if s.base == FAIL and not s.inherited), None)
        if bad is not None:
            return f"{FAIL} at step {bad.name}: {bad.reason}"
        unc = [s for s in self.steps if s.base == NOT_CERTIFIED]
        if unc:
            return f"{NOT_CERTIFIED} at " + "; ".join(f"{s.name}: {s.reason}" for s in unc)
        return f"{PASS}: every step within tolerance on {self.data}"

    def table(self) -> str:
        return detect_table(self)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "detect", "source": self.source, "data": self.data, "n": self.n,
                "labels": list(self.labels), "passed": self.passed, "word": self.word,
                "verdict": self.verdict(), "steps": [s.to_dict() for s in self.steps],
                "notes": self.notes}


def detect_table(res: DetectLadder) -> str:
    """One row per rung and aspect: F1, matched / only-one-side counts, box px, score."""
    head = ("step", "vs", "frames", "F1", "matched", "only rung", "only ref", "box px",
            "score", "verdict")
    rows: list[tuple[str, ...]] = []
    for s in res.steps:
        first = True
        for aspect, r in sorted(s.vs_parent.items(), key=lambda kv: kv[0] == "all"):
            rows.append((s.name if first else "", f"{s.parent} {aspect}", str(r["frames"]),
                         f"{r['f1']:.4f}", str(r["matched"]), str(r["only_artifact"]),
                         str(r["only_framework"]), f"{r['max_box_error_px']:.2g}",
                         f"{r['max_score_error']:.2g}", s.word if first else ""))
            first = False
        if s.vs_source is not None:
            r = s.vs_source
            rows.append(("", "source all (reported)", str(r["frames"]), f"{r['f1']:.4f}",
                         str(r["matched"]), str(r["only_artifact"]),
                         str(r["only_framework"]), f"{r['max_box_error_px']:.2g}",
                         f"{r['max_score_error']:.2g}", ""))
        if s.stages:
            st = s.stages
            rows.append(("", "stages", str(st["frames"]), "", "", "", "",
                         f"{st['model_box_error_px']:.2g}", f"{st['model_score_error']:.2g}",
                         f"preprocessing {st['preprocessing_grey_levels']:.2g} grey levels"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows),
                      *(f"note: {n}" for n in res.notes)])


class _Memo:
    """The detector source with its framework pipeline run once per frame: every rung is
    compared with the same reference detections (and the torch run is the slow part)."""

    def __init__(self, src: Any) -> None:
        self._src, self._cache = src, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._src, name)

    def framework(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = id(frame)
        if key not in self._cache:
            self._cache[key] = (frame, self._src.framework(frame))  # keeps the id alive
        return self._cache[key][1]


def open_rung(path: str | Path) -> DetectRung:
    """A detector artifact (ONNX or TFLite) as a rung; ModelError for anything else."""
    from edgeinfer.artifact import sniff_format
    from edgeinfer.data.files import load_model_bytes
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    data, name = load_model_bytes(path)
    det = ArtifactDetector(data)  # refuses a classifier, a damaged file: one line
    fmt = sniff_format(data)
    dtype = det.metadata.provenance.get("quantize") or "fp32"
    return DetectRung(f"{fmt}-{dtype}", fmt, dtype, name, data, det.metadata)


def _parent(r: DetectRung, rungs: Sequence[DetectRung]) -> DetectRung | None:
    """An int8 rung's fp32 parent (same format first); fp32 rungs' parent is the source."""
    if r.dtype == "fp32":
        return None
    fp32 = [p for p in rungs if p.dtype == "fp32"]
    same = [p for p in fp32 if p.format == r.format]
    return (same or fp32 or [None])[0]


def run_detect_ladder(source: str, artifacts: Sequence[str | Path], data: str, *,
                      weights: str | Path | None = None, limit: int | None = None,
                      progress: Progress | None = None) -> DetectLadder:
    """Judge every detector artifact on ``data`` (``builtin:detect`` or a photo folder)."""
    from edgeinfer.converter.detect_convert import is_detector, load_detector
    from edgeinfer.converter.detect_data import detect_data
    from edgeinfer.converter.detect_gate import detection_gate, int8_gate

    say = progress or (lambda *_a: None)
    if not artifacts:
        raise ConfigError("check needs at least one artifact")
    rungs = [open_rung(a) for a in artifacts]
    if not is_detector(source):
        raise ConfigError(f"{source!r} is not a detector source: check a detector artifact "
                          "against the detector it was converted from (fashion-detector or "
                          "a directory with detection.json)")
    src = _Memo(load_detector(source, weights))
    notes = []
    for r in rungs:
        sha = r.meta.provenance.get("weights_sha256")
        if tuple(r.meta.labels) != tuple(src.labels) or (
                sha and sha != src.provenance.get("weights_sha256")):
            raise ModelError(f"{r.path} was not converted from {source} (other labels or "
                             "weights): check artifacts of one model at a time")
        # another spec or fit is not refused: it is the mistake the ladder exists to catch
        # (a stretch baked where the framework letterboxes: issue 28), judged below
        mine = r.meta.detection.to_dict() if r.meta.detection else {}
        diff = spec_diff(src.spec.to_dict() | {"fit": src.detection.fit},
                         r.meta.spec.to_dict() | {"fit": mine.get("fit")})
        if diff:
            notes.append(f"{r.name} was built with other preprocessing than {source}'s "
                         f"pipeline ({diff})")
    frames, description = detect_data(data, src.spec, limit)
    if not frames:
        raise ConfigError(f"{data}: no frames")
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    rungs.sort(key=lambda r: (order.get(r.dtype, 3), r.format != "onnx"))
    seen: dict[str, int] = {}
    for r in rungs:  # two artifacts of one kind: onnx-fp32, onnx-fp32#2 (as the classifier's)
        seen[r.name] = seen.get(r.name, 0) + 1
        r.name += f"#{seen[r.name]}" if seen[r.name] > 1 else ""
    steps = [DetectStep("source", "-", str(source), None)]
    by_name: dict[int, DetectStep] = {}
    for r in rungs:
        parent = _parent(r, rungs)
        say(f"{r.name}: {len(frames)} frames")
        step = DetectStep(r.name, parent.name if parent else "source", r.path, len(r.data))
        if r.dtype == "fp32":
            rep = detection_gate(r.data, src, frames, say)
            step.vs_parent, step.stages = rep["detections"], rep["stages"]
        elif parent is not None:
            rep = int8_gate(r.data, parent.data, src, frames, say)
            step.vs_parent, step.vs_source = rep["vs_fp32"], rep["vs_framework"]
            up = by_name[id(parent)]
            if up.base == FAIL:
                step.inherited = f"inherits {up.name}'s difference from the source"
        else:
            rep = _int8_vs_source(r.data, src, frames)
            step.vs_parent = rep["detections"]
        step.word = rep["verdict"]
        step.reason = rep["certification"] if rep["certification"] != "certified" else ""
        if step.inherited and rep["passed"]:  # agrees with a parent that failed
            step.word, step.reason = f"{FAIL} (inherited)", step.inherited
        by_name[id(r)] = step
        steps.append(step)
    return DetectLadder(str(source), description, len(frames), tuple(src.labels), steps,
                        notes)


def spec_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``key: source X vs artifact Y`` for every key that differs (empty when none)."""
    return "; ".join(f"{k}: source {a.get(k)!r} vs artifact {b.get(k)!r}"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def _int8_vs_source(blob: bytes, src: Any, frames: Sequence[Any]) -> dict[str, Any]:
    """An int8 rung with no fp32 rung to compare with: vs the framework, the int8 bound."""
    from edgeinfer.converter.detect_gate import agreement, detections_vs, verdict
    from edgeinfer.parity.certify import certify_detections
    from edgeinfer.parity.tolerances import tolerance
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    det = detections_vs(ArtifactDetector(blob).arrays, src.framework, frames)
    cert = certify_detections(agreement(det["all"]), tolerance("detect_boxes", "int8").min_top1,
                              sides=("int8", "framework"))
    return {"detections": det} | verdict(cert)
