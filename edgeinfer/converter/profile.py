"""The monitor's reference profile, built at convert time (issue 27).

What the deployed model should see is measured on the artifact that is written (its own
probabilities, int8 included) over the parity frames; labelled frames calibrate the accuracy
estimate. With labels and albumentations, the robustness fingerprints are measured too: the
artifact on corrupted copies of up to ``ROBUSTNESS_FRAMES`` parity frames, for each
corruption of the robustness curves at severities 1, 3 and 5, so the monitor's cause line can
say what a shift costs. Bundled frames that are not the user's data give no profile: a
reference from the wrong domain would make the monitor alarm on healthy frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.data.frames import FrameSet
from edgeinfer.progress import Progress
from edgeinfer.runtime.monitor import build_profile, frames_stats, robustness_entry

#: parity frames the robustness fingerprints are measured on (18 artifact passes each)
ROBUSTNESS_FRAMES = 128
SEVERITIES = (1, 3, 5)


def reference_profile(runner: Any, probs: np.ndarray, frames: FrameSet, color: str,
                      say: Progress, data_note: str | None) -> dict[str, Any]:
    """The profile dict for the artifact's metadata, or {} (said why) when there is none."""
    if data_note:
        say("monitor profile: none (the parity frames are not your data; pass --parity-data)")
        return {}
    labels = frames.labels
    prof = build_profile(probs, frames.frames, color, labels)
    rob = _robustness(runner, frames, color, prof.signals) if labels is not None else {}
    if rob:
        prof = build_profile(probs, frames.frames, color, labels, robustness=rob)
    acc = ("" if prof.reference_accuracy is None
           else f", reference accuracy {prof.reference_accuracy:.1%}")
    say(f"monitor profile: {prof.n} frames ({prof.labelled} labelled{acc})"
        + (f", robustness of {len(rob)} corruptions" if rob else ""))
    return prof.to_dict()


def _robustness(runner: Any, frames: FrameSet, color: str, signals: dict
                ) -> dict[str, list[dict[str, Any]]]:
    try:
        import albumentations  # noqa: F401 - present or the curves are left out

        from edgeinfer.diagnose.corruptions import CORRUPTIONS, corrupt
    except ImportError:
        return {}
    n = len(frames.frames)
    idx = np.linspace(0, n - 1, min(n, ROBUSTNESS_FRAMES)).astype(int)
    sub = [frames.frames[i] for i in idx]
    labels = np.asarray(frames.labels)[idx]
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, (_, values) in CORRUPTIONS.items():
        for sev in SEVERITIES:
            bad = corrupt(sub, kind, values[sev - 1], seed=sev)
            out.setdefault(kind, []).append(robustness_entry(
                signals, sev, runner.run(bad), labels, frames_stats(bad, color)))
    return out
