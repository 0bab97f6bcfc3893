"""doctor's verdict says the agreement it measured; a random culprit's ratio is a score
(issue 25.6: "its simulation agrees with the device on 100.0% of 500 frames" was the ratio
to the simulation's own run-to-run agreement while the table said 54.2%)."""

from __future__ import annotations

from edgeinfer.check.doctor.run import CulpritRow, device_verdict

NOTE = ("random under this culprit: two runs agree on 54%; the device agrees with a run on "
        "54%; score = ratio")


def _rows(top: CulpritRow) -> list[CulpritRow]:
    return [top,
            CulpritRow("missing_scaling", "no /255", 0.10, None, 0.10, None, "divide by 255",
                       share=0.0),
            CulpritRow("none", "the reference pipeline", 0.40, None, 0.40, None, "-")]


def test_a_random_culprit_is_reported_with_its_measured_agreement():
    top = CulpritRow("train_mode", "training mode, batch 1", 1.0, None, 0.542, None,
                     "call model.eval()", note=NOTE, share=0.9)
    name, verdict = device_verdict(_rows(top), 500, None)
    assert name == "train_mode"
    assert "agrees with the device on 54.2% of 500 frames" in verdict
    assert "100.0%" not in verdict and "score 1.00" in verdict


def test_a_deterministic_culprit_reads_as_before():
    top = CulpritRow("missing_scaling", "no /255", 0.98, None, 0.98, None, "divide by 255",
                     share=0.95)
    rows = [top, CulpritRow("none", "the reference pipeline", 0.40, None, 0.40, None, "-")]
    _name, verdict = device_verdict(rows, 500, None)
    assert "agrees with the device on 98.0% of 500 frames" in verdict
    assert "score" not in verdict
