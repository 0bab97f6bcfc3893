"""The detector spec audit's time budget (issue 28, helper H): convert's audit of RT-DETR at
640x640 ran over 30 minutes on two loaded cores. The classifier audit's rule now holds for
detectors: the fixed 64 frames by default; fewer (a multiple of 8, at least 16) with a note
saying how many of how many and why, when a timed pilot says every hypothesis on all of
them would exceed the budget; a long audit says each hypothesis as it starts."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest

from edgeinfer.converter.detect_audit import (
    AUDIT_FRAMES,
    MIN_BUDGET_FRAMES,
    audit_frames,
    budgeted,
)

PER_FRAME_S = 0.02


class Timed:
    """A pipeline that takes a known time a frame and finds nothing: what ``budgeted``
    reads is the wall time, not the detections."""

    def run(self, variant: object, frames: Sequence[np.ndarray]):  # noqa: ANN201
        time.sleep(PER_FRAME_S * len(frames))
        return [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))] * len(frames), None


def test_all_frames_within_the_budget_and_fewer_with_a_note_beyond_it() -> None:
    images = [np.zeros((8, 8, 3), np.uint8)] * AUDIT_FRAMES
    variants = [object()] * 10  # 10 hypotheses x 64 frames x 0.02 s: about 13 s
    n, note, est = budgeted(Timed(), variants, images, 600.0)
    assert (n, note) == (AUDIT_FRAMES, "") and est >= 10 * AUDIT_FRAMES * PER_FRAME_S
    assert budgeted(Timed(), variants, images, None) == (AUDIT_FRAMES, "", None)
    n, note, est = budgeted(Timed(), variants, images, 4.0)  # 20 frames fit: cut to 16
    assert n == MIN_BUDGET_FRAMES and est >= 10 * 16 * PER_FRAME_S
    assert note.startswith(f"audited 16 of {AUDIT_FRAMES} frames") and "4 s budget" in note


@pytest.mark.slow  # loads the fashion detector and audits it (about 10 s on 2 cores)
def test_convert_audit_of_the_fashion_detector_cut_by_a_budget(monkeypatch) -> None:
    from edgeinfer.converter import detect_audit
    from edgeinfer.converter.detect_audit import audit_source
    from edgeinfer.converter.detect_convert import load_detector

    src = load_detector("fashion-detector")
    lines: list[str] = []
    monkeypatch.setattr(detect_audit, "LONG_S", 0.0)  # its ~7 s audit is not "long"

    res = audit_source(src, say=lines.append, budget_s=0.5)  # far below its ~7 s audit
    assert res.n == MIN_BUDGET_FRAMES and res.verdict in ("pass", "unknown")
    assert res.notes and res.notes[0].startswith(f"audited 16 of {AUDIT_FRAMES} frames")
    assert res.to_dict()["notes"] == res.notes and res.to_dict()["frames"] == 16
    total = len(res.rows) + 1
    assert lines[0].startswith("spec audit: audited 16 of 64 frames")
    steps = [x for x in lines if x.startswith("spec audit: hypothesis")]
    assert len(steps) == total - 1 and steps[-1].startswith(f"spec audit: hypothesis "
                                                           f"{total} of {total}")
    full = audit_source(src)  # the default budget: the fixed 64 frames, no note
    assert full.n == AUDIT_FRAMES and not full.notes
    assert len(audit_frames()) == AUDIT_FRAMES
