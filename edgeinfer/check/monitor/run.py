"""Feed a source's frames (or a device's probabilities) to the artifact's field monitor.

The reference is the artifact's own profile (stored by ``convert``) or, for an artifact
converted before profiles existed, one built here from a labelled folder (``--reference``).
Sources: an image folder (sorted by name: the order frames were taken, if named so), a video
file, a camera index or stream URL (every frame of a file; a camera's latest frame), or a
CSV of the device's probabilities (one column per class, named by label or ``p0``..; the
monitor then sees no frames, so only confidence, class mix and the accuracy estimate).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeinfer.data.files import read_regular
from edgeinfer.data.frames import IMAGE_SUFFIXES, load_frames
from edgeinfer.errors import ConfigError, EdgeInferError, ImageError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.progress import Progress
from edgeinfer.runtime.monitor import Monitor, MonitorReport, ReferenceProfile, build_profile
from edgeinfer.runtime.predictor import Predictor

#: rows of a probabilities CSV whose sum may differ from 1 by this much (printed rounding)
SUM_TOLERANCE = 1e-3


@dataclass
class MonitorRun:
    report: MonitorReport
    source: str
    kind: str  # folder | video | csv
    reference: str  # where the profile came from
    skipped: list[str] = field(default_factory=list)


def reference_monitor(pred: Predictor, name: str, reference: str | None, window: int,
                      say: Progress) -> tuple[Monitor, str]:
    """The Monitor on the artifact's profile, or on one built from ``reference``."""
    if reference:
        frames = load_frames(reference, pred.spec, class_names=pred.labels)
        if frames.labels is None:
            raise ConfigError(f"--reference {reference} has no labels: give a folder of class "
                              "folders (or an image,label CSV) so the accuracy can be calibrated")
        probs = ArtifactRunner(pred.backend).run(frames.frames)
        prof = build_profile(probs, frames.frames, pred.spec.frame_color, frames.labels)
        say(f"reference profile from {reference}: {prof.n} labelled frames, accuracy "
            f"{prof.reference_accuracy:.1%}")
        return Monitor(prof, window=window, labels=pred.labels), reference
    if not pred.metadata.monitor:
        raise ConfigError(f"{name} has no monitor profile: convert it again with this "
                          "edgeinfer, or pass --reference DIR (labelled frames of the "
                          "training domain)")
    prof = ReferenceProfile.from_dict(pred.metadata.monitor)
    return Monitor(prof, window=window, labels=pred.labels), "the artifact's profile"


def run_monitor(artifact: str, source: str, *, reference: str | None = None,
                window: int = 300, max_frames: int | None = None, skip_bad: bool = False,
                threads: int | None = None, every: int = 500,
                say: Progress | None = None) -> MonitorRun:
    say = say or (lambda _m: None)
    pred = Predictor(artifact, threads=threads)
    monitor, ref_name = reference_monitor(pred, artifact, reference, window, say)
    pred = Predictor.from_backend(pred.backend, source=artifact, monitor=monitor)
    path = Path(source)
    skipped: list[str] = []
    if path.is_dir():
        kind = "folder"
        for n, f in enumerate(_images(path, max_frames), 1):
            try:
                pred.predict_probs(f)
            except ImageError as e:
                if not skip_bad:
                    raise ImageError(f"{e} (pass --skip-bad to leave such files out)") from None
                skipped.append(f"{f.name}: {e}")
            _tick(n, every, monitor, say)
    elif path.suffix.lower() == ".csv" and path.exists():
        kind = "csv"
        probs = read_probabilities(path, pred.labels)[:max_frames]
        for i in range(len(probs)):
            monitor.update(probs[i])
            _tick(i + 1, every, monitor, say)
    else:
        from edgeinfer.runtime.stream import Stream

        kind = "video"
        src: str | int = int(source) if source.isdigit() else source
        with Stream(pred, src, max_frames=max_frames) as stream:
            for r in stream:
                _tick(r.frame_id + 1, every, monitor, say)
    if monitor.frames == 0:
        raise EdgeInferError(f"no frame of {source} could be monitored")
    return MonitorRun(monitor.report(timeline=True), source, kind, ref_name, skipped)


def _tick(n: int, every: int, monitor: Monitor, say: Progress) -> None:
    if n % every == 0:
        say(monitor.report().summary())


def _images(path: Path, limit: int | None) -> Iterator[Path]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    yield from files[:limit]


def read_probabilities(path: Path, labels: tuple[str, ...]) -> np.ndarray:
    """``[N, K]`` from a CSV with one column per class (the labels, or p0..p{K-1}); other
    columns (an image name, a timestamp) are ignored. Rows must be probabilities. The
    doctor's device CSV (``image,prediction``) plus these columns serves both commands."""
    data = read_regular(path, "probabilities CSV", ConfigError)
    try:
        rows = list(csv.reader(data.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read the probabilities CSV {path}: {e}") from None
    if len(rows) < 2:
        raise ConfigError(f"{path} has no rows under its header")
    head = [h.strip() for h in rows[0]]
    k = len(labels)
    for names in (list(labels), [f"p{i}" for i in range(k)]):
        if set(names) <= set(head):
            cols = [head.index(n) for n in names]
            break
    else:
        only_top1 = (" (an image,prediction CSV as `doctor --device-predictions` reads has "
                     "top-1 only: add the probability columns)" if "prediction" in head else "")
        raise ConfigError(f"{path}: the header needs one column per class, named by the "
                          f"model's labels ({', '.join(labels[:3])}, ...) or p0..p{k - 1}; "
                          f"it has {', '.join(head[:6])}{only_top1}")
    out = np.empty((len(rows) - 1, k))
    for i, r in enumerate(rows[1:]):
        try:
            out[i] = [float(r[c]) for c in cols]
        except (ValueError, IndexError):
            raise ConfigError(f"{path} row {i + 2}: not {k} numbers") from None
        s = out[i].sum()
        if not np.isfinite(out[i]).all() or out[i].min() < 0 or not math.isclose(
                s, 1.0, abs_tol=SUM_TOLERANCE):
            raise ConfigError(f"{path} row {i + 2}: not probabilities (sum {s:.4g}); the "
                              "monitor needs the softmax output, not logits")
    return out
