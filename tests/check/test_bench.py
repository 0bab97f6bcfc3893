"""The bench code computes and reports what it claims (no timing assertions: a shared CI
machine makes latency evidence, not a test)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeinfer.check.bench import (
    decode,
    default_image,
    interleaved,
    onnx_flops,
    pipeline_params,
    run_bench,
    summarize,
    user_preprocess,
)
from edgeinfer.check.bench_report import (
    TARGETS,
    load_json,
    markdown,
    summary_table,
    write_report,
)
from edgeinfer.cli import main
from edgeinfer.converter.reference import get_reference
from edgeinfer.spec import PreprocessSpec

CASES = ("edgeinfer.model", "edgeinfer.e2e", "raw.model", "raw.e2e", "tta.hflip",
         "tta.hflip+crops", "torch.model", "torch.e2e")


@pytest.fixture(scope="module")
def fashion_bench(fashion_artifact):
    """One short real run: 5 timed calls per case, one cold start per runtime."""
    return run_bench([fashion_artifact], threads=(1,), runs=5, warmup=1, rounds=2,
                     cold_repeats=1)


def test_run_has_every_case_and_field(fashion_bench, fashion_artifact):
    d = fashion_bench.to_dict()
    (row,) = d["results"]
    assert row["artifact"] == fashion_artifact.name and row["threads"] == 1
    assert row["size_bytes"] == fashion_artifact.stat().st_size
    assert set(row["latency_ms"]) == set(CASES)
    for name, s in row["latency_ms"].items():
        assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"], name
        assert s["n"] == 5
    assert set(row["session_ms"]) == {"edgeinfer", "raw"}
    assert set(row["cold_start"]) == {"edgeinfer", "onnxruntime", "torch"}
    for who, cs in row["cold_start"].items():
        parts = cs["interpreter_ms"] + cs["import_ms"] + cs["session_ms"] + cs["first_ms"]
        assert cs["total_ms"] == pytest.approx(parts, rel=1e-6), who
        assert cs["rss_mb"] > 10
    assert row["cold_start"]["edgeinfer"]["torch_imported"] is False
    assert row["cold_start"]["torch"]["torch_imported"] is True
    assert d["import"]["torch_imported"] is False and d["import"]["edgeinfer_ms"] > 0
    assert d["peak_gflops"]["1"] > 0 and row["gflops"] > 0 and row["peak_fraction"] > 0


def test_every_runtime_agrees_on_the_input(fashion_bench):
    (row,) = fashion_bench.results
    assert len(set(row["top1"].values())) == 1, row["top1"]
    assert {c["top1"] for c in row["cold_start"].values()} == set(row["top1"].values())


def test_ratios_are_the_p50_ratios(fashion_bench):
    (row,) = fashion_bench.results
    p = {k: v["p50"] for k, v in row["latency_ms"].items()}
    q = row["ratios"]
    assert q["edgeinfer_vs_raw_e2e"] == pytest.approx(p["edgeinfer.e2e"] / p["raw.e2e"])
    assert q["edgeinfer_vs_raw_model"] == pytest.approx(p["edgeinfer.model"] / p["raw.model"])
    assert q["overhead_us_e2e"] == pytest.approx((p["edgeinfer.e2e"] - p["raw.e2e"]) * 1e3)
    assert q["speedup_vs_torch_e2e"] == pytest.approx(p["torch.e2e"] / p["edgeinfer.e2e"])
    assert q["tta_hflip_vs_none"] == pytest.approx(p["tta.hflip"] / p["edgeinfer.e2e"])
    assert row["gflops"] == pytest.approx(row["flops"] / (p["raw.model"] * 1e6))


def test_targets_are_evaluated_not_enforced(fashion_bench):
    t = {x["key"]: x for x in fashion_bench.to_dict()["targets"]}
    assert set(t) == {k for k, *_ in TARGETS}
    assert t["vs_torch"]["measured"] is None and t["vs_torch"]["met"] is None  # no effnet
    for key in ("overhead", "tta_hflip", "import", "cold_start"):
        assert isinstance(t[key]["met"], bool) and t[key]["measured"] > 0, key


def test_report_files(fashion_bench, tmp_path):
    files = write_report(fashion_bench, tmp_path / "rep")
    names = {f.name for f in files}
    assert {"bench.json", "bench.md", "latency_fashion.png"} <= names
    assert all(f.stat().st_size > 0 for f in files)
    d = json.loads((tmp_path / "rep" / "bench.json").read_text())
    assert d["results"][0]["latency_ms"]["edgeinfer.e2e"]["p50"] > 0
    md = (tmp_path / "rep" / "bench.md").read_text()
    assert "| artifact | thr |" in md and "## Targets" in md and "latency_fashion.png" in md
    assert (tmp_path / "rep" / "latency_fashion.png").read_bytes()[:4] == b"\x89PNG"
    assert markdown(fashion_bench).count("\n| fashion.onnx | 1 |") == 3  # three tables
    again = load_json(tmp_path / "rep" / "bench.json")  # tables re-render from the JSON
    assert summary_table(again) == summary_table(fashion_bench)
    assert "| fashion.onnx | 1 |" in summary_table(again)


def test_fashion_flops_match_the_architecture(fashion_artifact):
    # conv 1->32 @28², 32->64 @14², 64->64 @7² (3x3), fc 576->128, 128->10: multiply-adds
    macs = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 9 * 32 + 7 * 7 * 64 * 9 * 64 + 576 * 128 + 128 * 10
    frame = np.zeros((28, 28, 3), np.uint8)
    assert onnx_flops(fashion_artifact, frame) == 2 * macs


@pytest.mark.parametrize("name", ["fashion", "efficientnet-lite0"])
def test_torch_baseline_preprocessing_is_correct(name):
    """The hand-written baseline pipeline computes what the spec says (uint8 resizing aside),
    so the torch comparison is a comparison of equals."""
    ref_model = get_reference(name)
    spec = PreprocessSpec.from_json(ref_model.spec_path.read_text())
    _, data = default_image(ref_model.parity_data)
    x = user_preprocess(data, pipeline_params(spec))
    ref = spec.reference(decode(data, spec.frame_color))
    assert x.shape == ref.shape and x.dtype == np.float32
    lsb = spec.scale / min(spec.std)  # one uint8 step after normalisation
    assert np.abs(x - ref).mean() < lsb
    assert np.abs(x - ref).max() < 8 * lsb


def test_interleaved_counts_and_warmup():
    calls = {"a": 0, "b": 0}

    def f(k):
        def g():
            calls[k] += 1
        return g

    out = interleaved({"a": f("a"), "b": f("b")}, {"a": 7, "b": 3}, warmup=2, rounds=3)
    assert len(out["a"]) == 7 and len(out["b"]) == 3
    assert calls == {"a": 9, "b": 5}
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s["p50"] == 2.5 and s["min"] == 1.0 and s["n"] == 4


def test_cli_bench(fashion_artifact, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", str(fashion_artifact), "--threads", "1", "--runs", "3", "--warmup", "1",
               "--no-torch", "--no-tta", "--cold-repeats", "0", "-q", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    (row,) = d["results"]
    assert "torch.e2e" not in row["latency_ms"] and "tta.hflip" not in row["latency_ms"]
    assert "cold_start" not in row
    assert "| fashion.onnx | 1 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["--threads", "one"], "--threads"),
    (["--runs", "0"], "runs"),
])
def test_cli_bench_bad_arguments(fashion_artifact, argv, msg, capsys):
    assert main(["bench", str(fashion_artifact), *argv]) == 2
    assert msg in capsys.readouterr().err


def test_cli_bench_missing_artifact(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.onnx"), "--cold-repeats", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
