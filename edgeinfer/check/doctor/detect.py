"""``edgeinfer doctor`` for detectors (issue 28): which fit and pixels was the detector
trained with - letterbox, stretch or centre crop, a square or a rectangular input, RGB or
BGR, /255, mean/std?

Three kinds of detector, each audited by :func:`edgeinfer.diagnose.detect_culprits.
audit_detector` against the spec it carries:

* a detector source (``fashion-detector`` or a model directory): the torch module, BN
  statistics probed - the label-free evidence;
* a converted detector artifact (``det.onnx``): its core between the preprocessing prefix
  and the ending, so each hypothesis places the frame its own way (BN folded: the true
  boxes decide, or the doctor says it does not know - unless convert's own audit, which
  saw the framework's BN statistics, refused the spec and the user accepted it: that
  verdict is stored in the artifact and named, with both sets of figures);
* ``blazeface:VARIANT`` served as it is (no BN statistics, no true boxes on face photos:
  the figures per hypothesis, and "does not know").

Frames: ``--data builtin:detect`` - convert's 64 audit frames with their true boxes
(fashion items on the bundled photos, aspects 1:2 to 2:1) - or an image folder
(unlabelled; for BlazeFace, photos with faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.diagnose.detect_culprits import DetectAudit, audit_detector, detect_variants
from edgeinfer.errors import ConfigError
from edgeinfer.progress import Progress

DATA = "builtin:detect"


def is_detector_source(source: str) -> bool:
    """A detector for the doctor: a detector source, a detector artifact, or blazeface."""
    from edgeinfer.converter.detect_convert import is_detector as is_source
    from edgeinfer.runtime.detect import is_detector as is_served

    return is_source(source) or is_served(source)


def frames(data: str, spec: Any, limit: int | None, labels: Sequence[str] = ()
           ) -> tuple[list[np.ndarray], Any, str]:
    """(images, true boxes or None, description) of ``--data``. The audit frames' boxes
    are fashion items: truth only for a detector of those classes."""
    if data == DATA:
        from edgeinfer.converter.detect_audit import audit_frames
        from edgeinfer.converter.detect_frames import LABELS

        fs = audit_frames()[:limit]
        if spec.frame_color == "RGB":  # the frames are BGR, as OpenCV decodes
            fs = [type(f)(np.ascontiguousarray(f.image[:, :, ::-1]), f.boxes, f.classes,
                          f.aspect) for f in fs]
        if tuple(labels) != LABELS:
            return ([f.image for f in fs], None, f"{len(fs)} audit frames (their true boxes "
                    f"are {', '.join(LABELS)}, not this detector's classes)")
        return ([f.image for f in fs], [(f.boxes, f.classes) for f in fs],
                f"{len(fs)} audit frames with true boxes (bundled photos, aspects 1:2-2:1)")
    from edgeinfer.data.frames import load_frames

    fset = load_frames(data, spec, limit=limit)
    return list(fset.frames), None, f"{len(fset.frames)} frames of {data} (no true boxes)"


def run_detect_doctor(source: str, data: str, *, limit: int | None = None,
                      weights: Any = None, progress: Progress | None = None
                      ) -> tuple[DetectAudit, dict[str, Any]]:
    """The audit of a detector's spec on ``data``, and what was audited."""
    say = progress or (lambda _m: None)
    from edgeinfer.converter import detect_audit as da
    from edgeinfer.converter.detect_convert import is_detector as is_source

    fits, stored = ("letterbox", "stretch", "crop"), None
    if is_source(source):
        from edgeinfer.converter.detect_convert import load_detector

        src = load_detector(source, weights)
        pipe, spec, det, kind = (da.torch_pipeline(src), src.spec, src.detection,
                                 "detector source (torch, BN probed)")
        labels = src.labels
    elif str(source).startswith("blazeface:"):
        pipe, spec, det, labels = da.blazeface_pipeline(str(source).split(":", 1)[1])
        kind, fits = "BlazeFace served as it is (.tflite)", ("pad_resize", "letterbox",
                                                            "stretch")
    else:
        if Path(source).suffix.lower() != ".onnx":
            raise ConfigError(f"{source}: the doctor audits ONNX detector artifacts, a "
                              "detector source or blazeface:VARIANT")
        blob = Path(source).read_bytes()
        pipe, spec, det, labels = da.artifact_pipeline(blob)
        kind = "detector artifact (its core; BN folded)"
        stored = da.stored_audit(blob)
    images, truth, what = frames(data, spec, limit, labels)
    if not images:
        raise ConfigError(f"--data {data}: no frames")
    say(f"doctor: {kind}; {what}; the given fit {det.fit}")
    with da.one_thread() if is_source(source) else nullcontext():
        res = audit_detector(pipe, spec, det, images, truth,
                             variants=detect_variants(spec, det, images, fits=fits))
    about = {"source": source, "kind": kind, "data": what, "fit": det.fit}
    if stored and stored.get("verdict") == "refuse" and res.verdict != "refuse":
        # convert's audit saw the framework model's BN statistics, which the artifact's
        # folded graph no longer carries; it refused and the user accepted the spec
        res.verdict, res.culprit = "refuse", str(stored.get("culprit", "none"))
        res.message = (f"{stored.get('message')} (convert's audit on the framework model, "
                       f"accepted with --accept-spec; on the artifact alone: {res.message})")
        about["convert_audit"] = stored
    return res, about


def summary(res: DetectAudit, about: dict[str, Any]) -> str:
    """The verdict line, then the figures per hypothesis."""
    head = {"refuse": f"culprit: {res.culprit}", "pass": "no culprit",
            "unknown": "does not know"}[res.verdict]
    return "\n".join([f"{about['source']}: {head} - {res.message}",
                      f"  {'culprit':20s} {'hypothesis':58s} figures", *res.table()])
