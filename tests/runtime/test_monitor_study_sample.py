"""A small sample of tools/monitor_study.py (issue 27's measurement) on real Fashion-MNIST
frames through the real converted artifact: the study's own functions, a few hundred frames
instead of 10,000, one TUNE corruption. It guards the study's plumbing (cache, profile with
robustness curves, estimators, false-alarm stream, detection delay and cause) and the
headline claims at a scale that still separates them: ATC's estimate tracks a large drop
where confidence alone does not, healthy frames raise no alarm, a dark camera is caught
within 300 frames and named as darkness.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tools.monitor_study as ms
from edgeinfer import Predictor
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import to_frame_color
from tools.monitor_study_report import write_report

NAME = "fashion_sample"


@pytest.fixture(scope="module")
def study(fashion_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("monitor_cache")
    old = ms.CACHE
    ms.CACHE = cache  # the sample must never touch the real study's cache in out/
    try:
        p = Predictor(fashion_artifact, threads=1)
        im, lab = load_fashion_mnist("test")
        frames = [to_frame_color(f, p.spec.frame_color) for f in im[:1100]]
        d = {"p": p, "ref": frames[:500], "ref_y": lab[:500].astype(int),
             "eval": frames[500:1100], "eval_y": lab[500:1100].astype(int),
             "worst_classes": np.array([6])}
        prof = ms.profile_for(d, NAME, ms.DEFAULT_ESTIMATOR)
        rows = ms.estimation(d, NAME, prof, ("clean", "tune"))
        clean = next(r["accuracy"] for r in rows if r["kind"] == "clean")
        fa = ms.false_alarms(d, NAME, prof, total=3000, seeds=1)
        det = ms.detection(d, NAME, prof, clean, ("tune",), seeds=1, before=600, limit=900)
        yield {"d": d, "prof": prof, "rows": rows, "fa": fa, "det": det, "cache": cache}
    finally:
        ms.CACHE = old


def _row(rows: list[dict], kind: str, sev: int) -> dict:
    return next(r for r in rows if r["kind"] == kind and r["severity"] == sev)


def test_cache_holds_probabilities_statistics_and_labels(study):
    z = np.load(study["cache"] / f"{NAME}_eval_brightness_contrast_5.npz")
    assert z["probs"].shape == (600, 10) and z["y"].shape == (600,)
    assert z["stats"].shape[0] == 600
    # the cached probabilities are the artifact's on the corrupted frames, not the clean ones
    clean = np.load(study["cache"] / f"{NAME}_eval_clean_0.npz")
    assert np.mean(z["probs"].argmax(1) == z["y"]) < np.mean(clean["probs"].argmax(1) == z["y"])


def test_profile_has_accuracy_and_a_robustness_curve_per_corruption(study):
    prof = study["prof"]
    assert prof.n == 500 and prof.labelled == 500
    assert 0.85 < prof.reference_accuracy < 0.97
    assert set(prof.robustness) == set(ms.CORRUPTIONS)
    dark = [e["accuracy"] for e in prof.robustness["brightness_contrast"]]
    assert dark[0] > dark[-1] + 0.3  # severity 5 costs most


def test_monitor_estimate_tracks_a_large_drop_where_confidence_alone_does_not(study):
    clean = _row(study["rows"], "clean", 0)
    est = clean["estimates"][ms.DEFAULT_ESTIMATOR]
    assert abs(est - clean["accuracy"]) < 0.05
    dark = _row(study["rows"], "brightness_contrast", 5)
    assert dark["accuracy"] < 0.3
    err = {m: abs(v - dark["accuracy"]) for m, v in dark["estimates"].items()}
    assert err[ms.DEFAULT_ESTIMATOR] < 0.15
    assert err["average_confidence"] > err[ms.DEFAULT_ESTIMATOR] + 0.2


def test_healthy_stream_raises_no_alarm(study):
    fa = study["fa"]
    assert fa["frames_per_stream"] == 3000 and fa["alarms"] == 0
    assert "with replacement" in fa["note"]


def test_dark_camera_caught_within_300_frames_and_named(study):
    dark = next(r for r in study["det"]
                if r["kind"] == "brightness_contrast" and r["severity"] == 5)
    assert dark["cost_points"] > 50
    assert dark["alarms_before_switch"] == 0
    assert dark["delays"][0] is not None and 0 <= dark["delays"][0] <= 300
    assert dark["cause_right"] == 1, dark["cause"]
    # a shift costing under 10 points is not in the detection table
    assert all(r["cost_points"] >= 10 for r in study["det"])


def test_report_writes_markdown_json_and_errors(study, tmp_path):
    result = {"estimator": ms.DEFAULT_ESTIMATOR, "tune": ms.TUNE, "final": ms.FINAL,
              "datasets": {NAME: {"reference": {"n": study["prof"].n,
                                                "accuracy": study["prof"].reference_accuracy},
                                  "estimation": study["rows"], "false_alarms": study["fa"],
                                  "detection": study["det"]}}}
    write_report(result, tmp_path, "sample")
    md = (tmp_path / "sample.md").read_text()
    assert "| tune | atc_entropy" in md or f"| tune | {ms.DEFAULT_ESTIMATOR}" in md
    assert "False alarms: **0**" in md
    summary = json.loads((tmp_path / "sample_summary.json").read_text())
    tune = summary[NAME]["tune"]
    assert tune[ms.DEFAULT_ESTIMATOR]["shifts"] == 9
    assert tune[ms.DEFAULT_ESTIMATOR]["mae"] < tune["average_confidence"]["mae"]
