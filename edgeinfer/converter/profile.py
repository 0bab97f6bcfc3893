"""The monitor's reference profile, built at convert time (issue 27).

What the deployed model should see is measured on the artifact that is written (its own
probabilities, int8 included) over the parity frames; labelled frames calibrate the accuracy
estimate. With labels and albumentations, the robustness fingerprints are measured too: the
artifact on corrupted copies of some parity frames, for each corruption of the robustness
curves at severities 1, 3 and 5, so the monitor's cause line can say what a shift costs.
That is 18 artifact passes over those frames: an eighth of the parity frames (at least 48,
at most 128) keeps it near the parity check's own two passes over all of them, so a large
model on a small labelled set does not pay a minute for it (docs/monitor/convert_time.md).
Bundled frames that are not the user's data give no profile: a reference from the wrong
domain would make the monitor alarm on healthy frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.data.frames import FrameSet
from edgeinfer.progress import Progress
from edgeinfer.runtime.monitor import build_profile, frames_stats, robustness_entry
from edgeinfer.runtime.monitor.profile import signal_summary

#: parity frames the robustness fingerprints are measured on (18 artifact passes each):
#: PARITY_SHARE of them, within [MIN, MAX] (48 frames: a curve point to about 6 points)
MIN_ROBUSTNESS_FRAMES, MAX_ROBUSTNESS_FRAMES = 48, 128
PARITY_SHARE = 8
SEVERITIES = (1, 3, 5)
#: parity frames the feature moments' reference is measured on
FEATURE_FRAMES = 2000


def reference_profile(runner: Any, probs: np.ndarray, frames: FrameSet, color: str,
                      say: Progress, data_note: str | None) -> dict[str, Any]:
    """The profile dict for the artifact's metadata, or {} (said why) when there is none.
    ``runner``: an ArtifactRunner on the written artifact (its backend gives the feature
    moments when the artifact has that output)."""
    if data_note:
        say("monitor profile: none (the parity frames are not your data; pass --parity-data)")
        return {}
    labels = frames.labels
    backend = runner.backend
    feats = (_moments(backend, frames.frames) if getattr(backend, "has_moments", False)
             else None)
    stats = frames_stats(frames.frames, color)  # once: the robustness shifts are read in it
    rob = (_robustness(runner, frames, color, signal_summary(stats)) if labels is not None
           else {})
    prof = build_profile(probs, frames.frames, color, labels, robustness=rob, features=feats,
                         stats=stats)
    acc = ("" if prof.reference_accuracy is None
           else f", reference accuracy {prof.reference_accuracy:.1%}")
    say(f"monitor profile: {prof.n} frames ({prof.labelled} labelled{acc})"
        + (f", robustness of {len(rob)} corruptions" if rob else "")
        + (f", {len(prof.features['mean'])} feature moments" if prof.features else ""))
    return prof.to_dict()


def _moments(backend: Any, frames: list[np.ndarray]) -> np.ndarray:
    """The artifact's feature moments on up to ``FEATURE_FRAMES`` parity frames."""
    idx = np.linspace(0, len(frames) - 1, min(len(frames), FEATURE_FRAMES)).astype(int)
    return np.concatenate([backend.run_moments(frames[i][None] if frames[i].ndim == 3
                                               else frames[i][None, ..., None])[1]
                           for i in idx])


def _robustness(runner: Any, frames: FrameSet, color: str, signals: dict
                ) -> dict[str, list[dict[str, Any]]]:
    try:
        import albumentations  # noqa: F401 - present or the curves are left out

        from edgeinfer.diagnose.corruptions import CORRUPTIONS, corrupt
    except ImportError:
        return {}
    n = len(frames.frames)
    idx = np.linspace(0, n - 1, robustness_frames(n)).astype(int)
    sub = [frames.frames[i] for i in idx]
    labels = np.asarray(frames.labels)[idx]
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, (_, values) in CORRUPTIONS.items():
        for sev in SEVERITIES:
            bad = corrupt(sub, kind, values[sev - 1], seed=sev)
            out.setdefault(kind, []).append(robustness_entry(
                signals, sev, runner.run(bad), labels, frames_stats(bad, color))
                | {"frames": len(sub)})
    return out


def robustness_frames(n: int) -> int:
    """How many of ``n`` parity frames the robustness curves are measured on."""
    return min(n, MAX_ROBUSTNESS_FRAMES, max(MIN_ROBUSTNESS_FRAMES, n // PARITY_SHARE))
