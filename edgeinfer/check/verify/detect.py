"""``verify`` for a detector artifact (issue 28, point 3), on the lean install.

The device runs the artifact exactly as it deploys
(:class:`~edgeinfer.runtime.detect.artifact_detector.ArtifactDetector`: raw frame in, boxes
in the frame's pixels out) on the pack's frames and compares its detections with the
framework's stored ones by convert's own comparison
(:func:`~edgeinfer.converter.detect_gate.detections_vs`: matched at IoU >= 0.5 within a
class; F1, box error in pixels, score error; per aspect and over all frames). The word is
the one rule (:func:`~edgeinfer.parity.certify.certify_detections`):

* fp32: F1 1.0 and boxes / scores within the registry's ``detect_boxes`` /
  ``detect_scores`` bounds (:func:`~edgeinfer.converter.detect_gate.figure_failures`), else
  FAIL; NOT CERTIFIED when too few detections show F1 >= 0.99 on a 95% lower bound;
* the preprocessing stage, as the gate's first: an ONNX artifact's own prefix output (read
  on the lean install, :func:`~edgeinfer.parity.prefix.with_prefix_output`) vs this
  device's numpy/OpenCV reference of the spec, in grey levels; judged for fp32, reported
  for int8 (a .tflite's read through LiteRT as convert reads it); not measured where a
  quantiser renamed the tensor;
* int8: F1 vs the framework >= the int8 bound (convert judged it vs its fp32 artifact,
  which the device does not have; the framework's detections are the stricter reference).

A pack made for a classifier, for another spec, other labels or other weights is refused
(ConfigError, exit 2), as the classifier's; detection settings that differ from the pack's
(fit, NMS) are not refused: they are what the comparison is for, and a note names them.
Never imports torch, tensorflow or onnx (a test checks ``sys.modules``).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.artifact import sniff_format
from edgeinfer.check.verify.run import check_match, machine
from edgeinfer.converter.detect_gate import agreement, detections_vs, figure_failures
from edgeinfer.data.files import load_model_bytes
from edgeinfer.data.packfile import read_pack
from edgeinfer.errors import ConfigError
from edgeinfer.parity.certify import FAIL, NOT_CERTIFIED, PASS, certify_detections
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.progress import Progress
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from edgeinfer.runtime.timing import summarize, time_calls, warm_up


@dataclass
class DetectVerifyResult:
    artifact: str
    pack: str
    format: str
    dtype: str
    frames: int
    detections: dict[str, Any]  # aspect -> figures (detect_gate.detections_vs)
    word: str
    reason: str
    machine: dict[str, Any]
    latency_ms: dict[str, float]
    preprocessing_grey_levels: float | None = None  # None: not measured (see module doc)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return self.word

    @property
    def exit_code(self) -> int:
        return 1 if self.word == FAIL else 0

    def message(self) -> str:
        """One line: the word, the figures over all frames, and why when not PASS."""
        a = self.detections["all"]
        head = (f"{self.word}: {self.format}-{self.dtype} detector on {self.frames} frames, "
                f"F1 {a['f1']:.4f} ({a['matched']} matched, {a['only_artifact']} only in "
                f"the artifact, {a['only_framework']} only in the framework), boxes within "
                f"{a['max_box_error_px']:.2g} px, scores within {a['max_score_error']:.2g}")
        return head + (f" - {self.reason}" if self.reason else "")

    def table(self) -> str:
        rows = [f"{k:<10} {r['frames']:>4} frames  F1 {r['f1']:.4f}  {r['matched']:>4} "
                f"matched  {r['only_artifact']} only artifact  {r['only_framework']} only "
                f"framework  boxes {r['max_box_error_px']:.2g} px  scores "
                f"{r['max_score_error']:.2g}"
                for k, r in sorted(self.detections.items(), key=lambda kv: kv[0] == "all")]
        g = self.preprocessing_grey_levels
        rows.append("preprocessing stage: " + ("not measured" if g is None else
                                               f"{g:.2g} grey levels (this device)"))
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "detect", "artifact": self.artifact, "pack": self.pack,
                "format": self.format, "dtype": self.dtype, "frames": self.frames,
                "verdict": self.word, "reason": self.reason, "message": self.message(),
                "detections": self.detections, "machine": self.machine,
                "latency_ms": self.latency_ms, "notes": self.notes, "seconds": self.seconds,
                "preprocessing_grey_levels": self.preprocessing_grey_levels}


@dataclass(frozen=True)
class _Frame:
    image: np.ndarray
    aspect: str


def verify_detector(artifact: str | os.PathLike, pack_path: str | os.PathLike, *,
                    threads: int | None = None, latency_runs: int = 50,
                    progress: Progress | None = None) -> DetectVerifyResult:
    """Judge a detector artifact against a detector pack on this machine (module doc)."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    data, name = load_model_bytes(artifact)
    det = ArtifactDetector(data, threads=threads)
    meta = det.metadata
    pack = read_pack(pack_path)
    pack_name = os.fsdecode(os.fspath(pack_path))
    if pack.task != "detect" or pack.detections is None:
        raise ConfigError(f"parity pack {pack_name} holds a classifier's probabilities, not "
                          f"detections: make one from {name}'s detector source with "
                          "`edgeinfer pack SOURCE --data builtin:detect -o det.pack`")
    # other labels or weights: another model (exit 2); another spec or fit is judged, not
    # refused: the stored boxes are in frame pixels, whatever placed the frame, and a fit
    # that differs from the framework's is the mistake this command exists to catch
    check_match(pack, pack.spec, meta.labels, meta.provenance, pack_name)
    notes = []
    mine = meta.spec.to_dict() | (meta.detection.to_dict() if meta.detection else {})
    theirs = pack.spec.to_dict() | (pack.detection or {})
    diff = [f"{k}: pack {theirs.get(k)!r} vs artifact {mine.get(k)!r}"
            for k in sorted(set(theirs) | set(mine)) if theirs.get(k) != mine.get(k)]
    if diff:
        notes.append("the artifact was built with other settings than the framework's "
                     f"pipeline ({'; '.join(diff)[:300]})")
    fmt = sniff_format(data)
    dtype = meta.provenance.get("quantize") or "fp32"
    say(f"running {fmt}-{dtype} on {pack.n} frames ({pack.data_name}) on {platform.machine()}")
    ids = pack.ids or []
    frames = [_Frame(f, ids[i].split("-")[0] if i < len(ids) and "-" in ids[i] else "frame")
              for i, f in enumerate(pack.frames)]
    stored = {id(f.image): d for f, d in zip(frames, pack.detections, strict=True)}
    res = detections_vs(det.arrays, lambda image: stored[id(image)], frames)
    bound = tolerance("detect_boxes", "int8" if dtype == "int8" else "fp32").min_top1
    fails = figure_failures(res["all"]) if dtype != "int8" else []
    grey = _preprocessing(data, fmt, pack, threads)
    pre = tolerance("stage", "preprocessing").max_abs
    if grey is not None and dtype != "int8" and not grey <= pre:
        fails.append(f"preprocessing differs by {grey:.3g} grey levels on this device "
                     f"(bound {pre:g})")
    sides = (dtype if dtype == "int8" else "artifact", "framework")
    cert = certify_detections(agreement(res["all"]), bound, sides=sides, extra_failures=fails)
    say(f"latency: {latency_runs} frame -> boxes calls")
    return DetectVerifyResult(
        artifact=name, pack=pack_name, format=fmt, dtype=dtype, frames=pack.n,
        detections=res, word=cert.base, reason=cert.reason, machine=machine(),
        latency_ms=_latency(det, pack.frames, latency_runs), preprocessing_grey_levels=grey,
        notes=notes,
        seconds=time.perf_counter() - t0)


def _preprocessing(data: bytes, fmt: str, pack: Any, threads: int | None) -> float | None:
    """The largest difference, in grey levels, between the artifact's prefix output and the
    spec's reference on the pack's frames (None where the prefix cannot be read)."""
    if fmt == "tflite":
        return _tflite_preprocessing(data, pack, threads)
    from edgeinfer.artifact import PREFIX_OUTPUT
    from edgeinfer.errors import ModelError
    from edgeinfer.parity.prefix import with_prefix_output
    from edgeinfer.parity.stages import grey_levels

    try:
        probe = ArtifactDetector(with_prefix_output(data), threads=threads,
                                 extra_outputs=(PREFIX_OUTPUT,))
    except ModelError:  # an int8 file whose quantiser renamed the tensor
        return None
    k = 3 if probe.nms_in_graph else 2
    worst = 0.0
    for f in pack.frames:
        try:
            px = probe.raw(f)[k]
        except Exception:  # noqa: BLE001 - onnxruntime's pybind errors: the tensor is gone
            return None
        diff = px.astype(np.float64) - pack.spec.reference(f)
        worst = max(worst, float(grey_levels(diff, pack.spec).max()))
    return worst


def _tflite_preprocessing(data: bytes, pack: Any, threads: int | None) -> float | None:
    """The same for a .tflite detector, read through LiteRT as it deploys (frames of the
    fixed size through ``frame``, others through the host letterbox and ``resized``), as
    ``converter/detect_tflite.tflite_stages`` reads it at convert time."""
    import warnings

    from edgeinfer.artifact import SIG_FRAME, SIG_RESIZED
    from edgeinfer.parity.prefix import TflitePrefixRunner, tflite_prefix_tensors
    from edgeinfer.parity.stages import grey_levels

    where = tflite_prefix_tensors(data)
    if not {SIG_FRAME, SIG_RESIZED} <= set(where):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = TflitePrefixRunner(data, pack.spec, where, threads=threads or 1)
    worst = 0.0
    for f in pack.frames:
        if tuple(f.shape[:2]) == r.frame_size:
            r.frame(**{SIG_FRAME: f[None]})
            sig = SIG_FRAME
        else:
            r.resized(**{SIG_RESIZED: r.geometry(f)})
            sig = SIG_RESIZED
        px = r._pixels(sig)  # noqa: SLF001 - the prefix output of this very call
        diff = px.astype(np.float64) - pack.spec.reference(f)
        worst = max(worst, float(grey_levels(diff, pack.spec).max()))
    return worst


def _latency(det: ArtifactDetector, frames: list[np.ndarray], runs: int) -> dict[str, float]:
    """Frame -> boxes (the deployed call), ms, by the one timing harness, cycling frames."""
    pick = [f for f in frames[:16]]
    i = [0]

    def call() -> Any:
        i[0] += 1
        return det.arrays(pick[i[0] % len(pick)])

    warm_up(call, 3)
    t = summarize(time_calls(call, runs))
    return {"runs": runs, "p50": t["p50"], "p90": t["p90"], "p99": t["p99"], "min": t["min"]}


__all__ = ["FAIL", "NOT_CERTIFIED", "PASS", "DetectVerifyResult", "verify_detector"]
