"""A detector's spec audit at convert time, and the pipelines ``doctor`` audits (issue 28).

The detection gate cannot see a wrong fit: with ``--fit stretch`` on a detector trained
letterboxed, the artifact AND the framework stretch, and agree. Before the build,
:func:`audit_source` runs the framework model under the given spec and under each
hypothesis of :mod:`edgeinfer.diagnose.detect_culprits` on :func:`audit_frames` (true boxes)
and refuses, in one line naming the better fit and the figures, a spec that a hypothesis
clearly beats - unless ``accept_spec``. The verdict and every hypothesis's figures go in
the provenance (``detect_audit``).

The pipelines for ``doctor``: a detector source (the torch module, BN probed), a converted
detector artifact (its core cut out of the graph between the preprocessing prefix and the
ending, so each hypothesis places the frame its own way), BlazeFace served as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from edgeinfer.diagnose.detect_culprits import (
    CorePipeline,
    DetectAudit,
    DetectorPipeline,
    audit_detector,
    detect_variants,
)
from edgeinfer.errors import ConfigError, SpecAuditError
from edgeinfer.progress import Progress

#: the fits a converted detector's prefix and ending can bake (``--fit``)
CONVERT_FITS = ("letterbox", "stretch")
AUDIT_FRAMES = 64  # frames the convert audit runs every hypothesis on
# The classifier audit's rule (diagnose/audit.py): a fixed frame count, so the same model
# and spec give the same verdict on every run - unless a timed pilot says every hypothesis
# on them would exceed AUDIT_BUDGET_S, then fewer (a multiple of BUDGET_STEP, at least
# MIN_BUDGET_FRAMES), with a note. The fashion detector (about 7 s) and RT-DETR at 320x320
# (36-54 s at load 8-13 on 2 cores) never reach it; RT-DETR at 640x640 took over 30 minutes
# without it (docs/detection/culprits.md).
AUDIT_BUDGET_S = 120.0
PILOT_FRAMES = 4
BUDGET_STEP = 8  # the cut is coarse so load jitter rarely moves it
MIN_BUDGET_FRAMES = 16  # the label-free rule's minimum (detect_culprits.MIN_FRAMES)
LONG_S = 15.0  # an audit the pilot puts over this says each hypothesis as it starts


def with_fit(src: Any, fit: str) -> Any:
    """The detector source with its fit (pixels and the inverse alike) set to ``fit``."""
    if fit not in CONVERT_FITS:
        raise ConfigError(f"--fit {fit!r}: a converted detector places frames by "
                          f"{' or '.join(CONVERT_FITS)}")
    return replace(src, spec=replace(src.spec, resize=fit),
                   detection=replace(src.detection, fit=fit),
                   provenance=src.provenance | {"fit_given": fit})


@contextmanager
def one_thread() -> Iterator[None]:
    """torch at one thread while the audit runs: hundreds of small (160x160) forwards,
    where intra-op threads cost more than they give - measured 138 s with torch's 2
    threads vs 7.8 s with 1 for the same audit at load 13 on 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_pipeline(src: Any) -> CorePipeline:
    """A detector source's torch module as a hypothesis pipeline (its BN layers probed)."""
    import torch

    def core(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            b, s = src.module(torch.from_numpy(np.ascontiguousarray(x)))
        return b.numpy(), s.numpy()

    return CorePipeline(core, src.detection.nms, src.module)


def artifact_pipeline(blob: bytes) -> tuple[CorePipeline, Any, Any, tuple[str, ...]]:
    """(pipeline, pixel spec, detection spec, labels) of a converted ONNX detector artifact: the
    model between the prefix's output and the core outputs (BatchNorm is folded there: no
    BN fit, the truth decides)."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor

    from edgeinfer.artifact import PREFIX_OUTPUT, ArtifactMetadata
    from edgeinfer.converter.detect_graph import CORE_BOXES, CORE_SCORES

    m = onnx.load_from_string(blob)
    meta = ArtifactMetadata.from_props({p.key: p.value for p in m.metadata_props}, "artifact")
    if meta.task != "detect" or meta.detection is None:
        raise ConfigError("not a detector artifact (edgeinfer.task is not 'detect')")
    known = {v.name for v in (*m.graph.value_info, *m.graph.input, *m.graph.output)}
    m.graph.value_info.extend(  # the extractor wants a type for the cut's ends
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
        for n in (PREFIX_OUTPUT, CORE_BOXES, CORE_SCORES) if n not in known)
    core = Extractor(m).extract_model([PREFIX_OUTPUT], [CORE_BOXES, CORE_SCORES])
    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(core.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, s = sess.run([CORE_BOXES, CORE_SCORES], {PREFIX_OUTPUT: x.astype(np.float32)})
        return b, s

    return CorePipeline(run, meta.detection.nms), meta.spec, meta.detection, meta.labels


def stored_audit(blob: bytes) -> dict[str, Any] | None:
    """Convert's audit as the artifact stores it (``provenance.detect_audit``), or None."""
    import onnx

    from edgeinfer.artifact import ArtifactMetadata

    m = onnx.load_from_string(blob)
    meta = ArtifactMetadata.from_props({p.key: p.value for p in m.metadata_props}, "artifact")
    audit = (meta.provenance or {}).get("detect_audit")
    return audit if isinstance(audit, dict) else None


def blazeface_pipeline(variant: str
                       ) -> tuple[DetectorPipeline, Any, Any, tuple[str, ...]]:
    """BlazeFace served as it is (no BN statistics in a .tflite, no true boxes: the audit
    can only say it does not know, never refuse its documented fit)."""
    from edgeinfer.runtime.detect.detector import Detector

    d = Detector.blazeface(variant)
    return DetectorPipeline(d), d.spec, d.task, d.labels


def labelled(frames: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """True boxes per frame, or None when no frame has any (unlabelled frames)."""
    if not any(len(getattr(f, "boxes", ())) for f in frames):
        return None
    return [(f.boxes, f.classes) for f in frames]


def audit_frames(n: int = AUDIT_FRAMES, seed: int = 2829) -> list[Any]:
    """The convert audit's frames: the six bundled photos with Fashion-MNIST *test* items
    pasted (true boxes), each at an aspect drawn log-uniformly from 1:2 to 2:1 and a long
    side of 160-480 px - the range the detector is trained and deployed on. The gate's
    parity frames (3:4, 4:3 and square) cannot tell a letterbox from a stretch: a third of
    them are square, where both are one placement. Deterministic."""
    from edgeinfer.converter.detect_frames import make_frame
    from edgeinfer.data.datasets import load_fashion_mnist, sample_photos

    photos = list(sample_photos().values())
    items, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    return [make_frame(photos[i % len(photos)], items, labels, rng,
                       ratio=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
                       long_side=int(rng.integers(160, 481))) for i in range(n)]


def budgeted(pipe: Any, variants: Sequence[Any], images: Sequence[np.ndarray],
             budget_s: float | None) -> tuple[int, str, float | None]:
    """(frames to audit, a note when fewer than all, the pilot's estimate of the audit's
    seconds on them): a pilot runs the given spec on :data:`PILOT_FRAMES` frames (after
    one untimed); when every hypothesis on every frame would take longer than
    ``budget_s``, as many frames as fit (rounded down to :data:`BUDGET_STEP`, at least
    :data:`MIN_BUDGET_FRAMES`). ``budget_s`` None: all frames, no pilot, no estimate."""
    n = len(images)
    if budget_s is None or n <= MIN_BUDGET_FRAMES:
        return n, "", None
    pipe.run(variants[0], images[:1])  # the first call pays for lazy set-up: untimed
    t = time.perf_counter()
    pipe.run(variants[0], images[:PILOT_FRAMES])
    per = (time.perf_counter() - t) / min(PILOT_FRAMES, n) * len(variants)
    if per * n <= budget_s:
        return n, "", per * n
    fit = min(n, max(MIN_BUDGET_FRAMES, int(budget_s / per) // BUDGET_STEP * BUDGET_STEP))
    return fit, (f"audited {fit} of {n} frames: a {PILOT_FRAMES}-frame pilot put "
                 f"{len(variants)} hypotheses on {n} frames at {per * n:.0f} s, over the "
                 f"{budget_s:g} s budget (budget_s=)"), per * fit


def audit_source(src: Any, frames: Sequence[Any] | None = None, *,
                 accept_spec: bool = False, say: Progress | None = None,
                 budget_s: float | None = AUDIT_BUDGET_S) -> DetectAudit:
    """Audit a detector source's spec on ``frames`` (``detect_frames.Frame``, default
    :func:`audit_frames`), the first of them only when :func:`budgeted` says all would
    exceed ``budget_s``; raise :class:`SpecAuditError` (nothing written) on ``refuse``
    unless ``accept_spec``."""
    say = say or (lambda *_a: None)
    frames = list(audit_frames() if frames is None else frames)
    pipe = torch_pipeline(src)
    with one_thread():
        n, note, est = budgeted(pipe, detect_variants(src.spec, src.detection,
                                                      [f.image for f in frames]),
                                [f.image for f in frames], budget_s)
        if note:
            say(f"spec audit: {note}")
        frames = frames[:n]  # the audit frames are drawn independently: the first n
        images = [f.image for f in frames]
        variants = detect_variants(src.spec, src.detection, images)
        res = audit_detector(pipe, src.spec, src.detection, images, labelled(frames),
                             variants=variants,
                             say=say if est is not None and est > LONG_S else None)
    if note:
        res.notes.append(note)
    if res.verdict == "refuse" and not accept_spec:
        raise SpecAuditError(f"detector artifact not written: {res.message}; pass "
                             "--accept-spec (accept_spec=True) to convert with the given spec")
    say(f"warning: {res.message} (accepted)" if res.verdict == "refuse"
        else f"{res.message} [{res.seconds:.1f} s]")
    return res
