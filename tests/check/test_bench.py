"""The bench code computes and reports what it claims (no timing assertions: a shared CI
machine makes latency evidence, not a test)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.check.bench import baselines
from edgeinfer.check.bench.flops import onnx_flops
from edgeinfer.check.bench.inputs import BenchArtifact, decode, default_input
from edgeinfer.check.bench.peak import OPENBLAS_OVERRIDES, best_peak, numpy_peak, onnxruntime_peak
from edgeinfer.check.bench.report import (
    TARGETS,
    load_json,
    markdown,
    summary_table,
    to_json,
    write_report,
)
from edgeinfer.check.bench.run import run_bench
from edgeinfer.check.bench.startup import child_env
from edgeinfer.cli import main
from edgeinfer.converter.assemble import with_metadata
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.timing import interleaved, measure, summarize
from edgeinfer.spec import PreprocessSpec

CASES = ("edgeinfer.model", "edgeinfer.e2e", "raw.model", "raw.e2e", "tta.hflip",
         "tta.hflip+crops", "torch.model", "torch.e2e")
FASHION_NET = get_reference("fashion")


@pytest.fixture(scope="module")
def fashion_bench(fashion_artifact):
    """One short real run: 5 timed calls per case, one cold start per runtime."""
    return run_bench([fashion_artifact], threads=(1,), runs=5, warmup=1, rounds=2,
                     cold_repeats=1)


def test_run_has_every_case_and_field(fashion_bench, fashion_artifact):
    d = to_json(fashion_bench)
    (row,) = d["results"]
    assert row["artifact"] == fashion_artifact.name and row["threads"] == 1
    assert row["format"] == "onnx" and row["dtype"] == "fp32"
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
    assert d["import"]["torch_imported"] is False and d["import"]["onnx_imported"] is False
    assert 0 < d["import"]["edgeinfer_ms"] < d["import"]["runtime_ms"]
    assert "/tmp" not in json.dumps(d["results"])  # artifact names, never temporary paths
    assert d["notes"] == []  # nothing was skipped


def test_peak_is_measured_on_both_engines_and_never_exceeded(fashion_bench):
    (row,) = fashion_bench.results
    pk = fashion_bench.peak["1"]
    assert {m["method"] for m in pk["methods"]} == {"onnxruntime-matmul", "numpy-matmul"}
    assert all(m["gflops"] > 0 for m in pk["methods"]), pk
    assert pk["gflops"] == max(m["gflops"] for m in pk["methods"])
    assert pk["method"] == max(pk["methods"], key=lambda m: m["gflops"])["method"]
    assert row["gflops"] == pytest.approx(row["flops"] / (row["latency_ms"]["raw.model"]["p50"]
                                                          * 1e6))
    if row["gflops"] <= pk["gflops"]:
        assert row["peak_fraction"] == pytest.approx(row["gflops"] / pk["gflops"])
        assert 0 < row["peak_fraction"] <= 1
    else:  # a disturbed peak is said, never shown as more than 100%
        assert row["peak_fraction"] is None
        assert any("above the measured peak" in n for n in row["notes"])


def test_best_peak_keeps_the_better_measurement_per_method():
    def pk(ort, num):
        ms = [{"method": "onnxruntime-matmul", "gflops": ort, "detail": ""},
              {"method": "numpy-matmul", "gflops": num, "detail": ""}]
        return {"gflops": max(v for v in (ort, num) if v), "methods": ms, "method": None}

    got = best_peak(pk(50.0, 40.0), pk(30.0, 60.0))
    assert [m["gflops"] for m in got["methods"]] == [50.0, 60.0]
    assert got["gflops"] == 60.0 and got["method"] == "numpy-matmul"
    got = best_peak(pk(50.0, None), pk(30.0, None))
    assert got["gflops"] == 50.0 and got["methods"][1]["gflops"] is None


def test_onnxruntime_peak_runs_a_real_matmul():
    got = onnxruntime_peak(1, n=256, reps=2)
    assert got["method"] == "onnxruntime-matmul" and got["gflops"] > 0
    assert "MatMul 256x256" in got["detail"] and "1 intra-op thread" in got["detail"]


def test_numpy_peak_child_runs_without_the_openblas_overrides(monkeypatch):
    """The child must not inherit OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: set to an older core
    they slowed numpy and made a model run at "143% of peak"."""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "262144")
    env = child_env(2, drop=OPENBLAS_OVERRIDES)
    assert not set(OPENBLAS_OVERRIDES) & set(env)
    assert env["OPENBLAS_NUM_THREADS"] == "2"
    got = numpy_peak(1, n=256, reps=2)
    assert got["gflops"] > 0 and "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" in got["detail"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx512f" in flags and "openblas" in got["detail"]:
        assert "kernel Haswell" not in got["detail"], got["detail"]


def test_every_runtime_agrees_on_the_input(fashion_bench):
    (row,) = fashion_bench.results
    assert set(row["top1"]) == {"edgeinfer", "raw", "torch"}
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


def test_targets_are_evaluated_against_their_limits(fashion_bench):
    t = {x["key"]: x for x in to_json(fashion_bench)["targets"]}
    assert set(t) == {k for k, *_ in TARGETS}
    assert t["vs_torch"]["measured"] is None and t["vs_torch"]["met"] is None  # no effnet
    for key in ("overhead", "tta_hflip", "import", "cold_start"):
        x = t[key]
        values = [a["value"] for a in x["all"]]
        worst = max(values) if x["sense"] == "max" else min(values)
        assert x["measured"] == worst > 0, key
        within = worst <= x["limit"] if x["sense"] == "max" else worst >= x["limit"]
        assert x["met"] is within, key


def test_report_files(fashion_bench, tmp_path):
    files = write_report(fashion_bench, tmp_path / "rep")
    names = {f.name for f in files}
    assert {"bench.json", "bench.md", "latency_fashion.png"} <= names
    d = json.loads((tmp_path / "rep" / "bench.json").read_text())
    assert d["results"][0]["latency_ms"]["edgeinfer.e2e"]["p50"] > 0
    md = (tmp_path / "rep" / "bench.md").read_text()
    assert "| artifact | thr |" in md and "## Targets" in md and "latency_fashion.png" in md
    assert "onnxruntime-matmul" in md and "CPU flags" in md and "Load average" in md
    assert "Fashion-MNIST test[0] (28x28 PNG)" in md
    assert (tmp_path / "rep" / "latency_fashion.png").read_bytes()[:4] == b"\x89PNG"
    assert markdown(fashion_bench).count("\n| fashion.onnx | 1 |") == 3  # three tables
    again = load_json(tmp_path / "rep" / "bench.json")  # tables re-render from the JSON
    assert summary_table(again) == summary_table(fashion_bench)
    assert "| fashion.onnx | 1 |" in summary_table(again)


FASHION_MACS = (28 * 28 * 32 * 9 + 14 * 14 * 64 * 9 * 32 + 7 * 7 * 64 * 9 * 64 + 576 * 128
                + 128 * 10)  # conv 1->32 @28², 32->64 @14², 64->64 @7² (3x3), fc 576->128->10


def test_fashion_flops_match_the_architecture(fashion_artifact, fashion_int8):
    """The prefix (colour/normalise 1x1 conv) is not counted, in fp32 and in int8 QDQ graphs
    (where quantisation removed the Identity that marks the prefix's end)."""
    for path in (fashion_artifact, fashion_int8):
        a = BenchArtifact.open(path)
        assert onnx_flops(a.data, a.meta.spec) == 2 * FASHION_MACS, path.name


@pytest.mark.slow  # the EfficientNet-Lite0 conversion (quick lane budget)
def test_effnet_bench_agrees_with_torch_on_a_camera_photo(effnet_artifact):
    """A photo model gets a camera JPEG at its natural size; every path names the same class
    and the FLOPs are EfficientNet-Lite0's 385 M multiply-adds."""
    res = run_bench([effnet_artifact], threads=(1,), runs=2, warmup=0, rounds=1, tta=False,
                    cold_repeats=0, peak=False)
    (row,) = res.results
    assert row["image"] == {"name": "china.jpg (640x427 JPEG, builtin:photos)",
                            "bytes": row["image"]["bytes"], "shape": [427, 640, 3]}
    assert set(row["top1"]) == {"edgeinfer", "raw", "torch"}
    assert len(set(row["top1"].values())) == 1, row["top1"]
    assert round(row["flops"] / 2 / 1e6) == 385
    assert res.notes == [] and row["peak_fraction"] is None  # no peak measured: no fraction


def test_default_input_is_a_fashion_test_frame_at_its_natural_size(fashion_artifact):
    a = BenchArtifact.open(fashion_artifact)
    inp = default_input(a.meta)
    assert inp.name == "Fashion-MNIST test[0] (28x28 PNG)" and inp.note is None
    assert inp.data[:8] == b"\x89PNG\r\n\x1a\n"
    images, _ = load_fashion_mnist("test")
    expected = images[0] if a.meta.spec.frame_color == "GRAY" else cv2.cvtColor(
        images[0], cv2.COLOR_GRAY2BGR)
    assert np.array_equal(inp.frame.reshape(expected.shape), expected)  # lossless: same pixels


def _meta(a: BenchArtifact, **parity) -> ArtifactMetadata:
    spec = dataclasses.replace(a.meta.spec, frame_color="BGR")
    return ArtifactMetadata(spec, a.meta.labels, {"framework": "torch"}, parity)


def test_default_input_photo_models_and_user_folders(fashion_artifact, tmp_path):
    a = BenchArtifact.open(fashion_artifact)
    photo = default_input(_meta(a, data="builtin:photos"))
    assert photo.name.startswith("china.jpg") and photo.frame.shape == (427, 640, 3)
    assert photo.data[:3] == b"\xff\xd8\xff"  # the camera JPEG's own bytes
    (tmp_path / "cls_b").mkdir()
    (tmp_path / "cls_a").mkdir()
    img = np.full((33, 47, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "cls_b" / "x.png"), img)
    cv2.imwrite(str(tmp_path / "cls_a" / "y.jpg"), img)
    got = default_input(_meta(a, data=str(tmp_path)))
    assert got.name.startswith("y.jpg") and got.frame.shape == (33, 47, 3)
    gone = default_input(_meta(a, data=str(tmp_path / "not-here")))
    assert gone.name.startswith("china.jpg") and "not available here" in gone.note


def test_artifact_format_is_decided_by_content(fashion_artifact, tmp_path):
    misnamed = tmp_path / "model.tflite"
    shutil.copy(fashion_artifact, misnamed)
    assert BenchArtifact.open(misnamed).format == "onnx"


@pytest.mark.parametrize("name", ["fashion", "efficientnet-lite0"])
def test_torch_baseline_preprocessing_is_correct(name):
    """The hand-written baseline pipeline computes what the spec says (uint8 resizing aside),
    so the torch comparison is a comparison of equals."""
    spec = PreprocessSpec.from_json(get_reference(name).spec_path.read_text())
    meta = ArtifactMetadata(spec, (), {"reference": name}, {})
    inp = default_input(meta)
    x = baselines.user_preprocess(inp.data, baselines.pipeline_params(spec))
    ref = spec.reference(decode(inp.data, spec.frame_color))
    assert x.shape == ref.shape and x.dtype == np.float32
    assert np.abs(x - ref).max() <= tolerance("preprocess", "uint8_resize").max_abs


def test_timing_harness_counts_and_warmup():
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
    calls["a"] = 0
    assert measure(f("a"), runs=4, warmup=1)["n"] == 4 and calls["a"] == 5


# ---------------------------------------------------------------------------- skipped baselines
def _with_provenance(src: Path, out: Path, **prov) -> Path:
    m = onnx.load_model(src)
    meta = ArtifactMetadata.from_props({p.key: p.value for p in m.metadata_props})
    p = {k: v for k, v in meta.provenance.items() if k != "reference"} | prov
    onnx.save_model(with_metadata(m, ArtifactMetadata(meta.spec, meta.labels, p, meta.parity)),
                    out)
    return out


def _cli_json(argv: list[str], out: Path, capsys) -> tuple[dict, str]:
    rc = main(["bench", *argv, "--threads", "1", "--runs", "2", "--warmup", "0", "--no-tta",
               "--no-peak", "--cold-repeats", "0", "-q", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    return json.loads(out.read_text()), text


def test_unimportable_factory_is_a_note_not_a_crash(fashion_artifact, tmp_path, capsys):
    art = _with_provenance(fashion_artifact, tmp_path / "mine.onnx",
                           source="nopkg_edgeinfer_bench.models:build", weights=None)
    d, out = _cli_json([str(art)], tmp_path / "b.json", capsys)
    assert "torch.e2e" not in d["results"][0]["latency_ms"]
    (note,) = d["notes"]
    assert "PyTorch eager baseline skipped" in note and "nopkg_edgeinfer_bench" in note
    assert "Notes:" in out and "nopkg_edgeinfer_bench" in out


def _factory_package(root: Path, name: str) -> None:
    """A user package ``name.models:build`` building the fashion net, in ``root``."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(
        "import importlib.util\n\n\ndef build():\n"
        f"    spec = importlib.util.spec_from_file_location('fnet', {str(FASHION_NET.path / 'net.py')!r})\n"  # noqa: E501
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    return mod.build()\n")


def test_factory_in_the_current_folder_runs_the_torch_baseline(fashion_artifact, tmp_path,
                                                                 monkeypatch, capsys):
    """`mypkg.models:build` from the folder bench runs in, as `convert` found it."""
    _factory_package(tmp_path, "mypkg_bench_cwd")
    art = _with_provenance(fashion_artifact, tmp_path / "mine.onnx",
                           source="mypkg_bench_cwd.models:build",
                           weights=str(FASHION_NET.weights()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    d, _ = _cli_json([str(art)], tmp_path / "b.json", capsys)
    (row,) = d["results"]
    assert d["notes"] == [] and "torch.e2e" in row["latency_ms"]
    assert row["top1"]["torch"] == row["top1"]["edgeinfer"]


def test_a_failing_baseline_child_is_a_note(fashion_artifact, tmp_path, monkeypatch):
    """The factory imports here (its folder was put on sys.path by the caller) but not in the
    fresh cold-start process: that baseline's cold start is a note, the run completes."""
    _factory_package(tmp_path / "elsewhere", "mypkg_bench_child")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    art = _with_provenance(fashion_artifact, tmp_path / "mine.onnx",
                           source="mypkg_bench_child.models:build",
                           weights=str(FASHION_NET.weights()))
    res = run_bench([art], threads=(1,), runs=2, warmup=0, rounds=1, tta=False,
                    cold_repeats=1, peak=False)
    (row,) = res.results
    assert "torch.e2e" in row["latency_ms"] and set(row["cold_start"]) == {"edgeinfer",
                                                                            "onnxruntime"}
    (note,) = [n for n in row["notes"] if "cold start" in n]  # besides any contention note
    assert "cold start of the torch baseline skipped" in note and "mypkg_bench_child" in note


def test_missing_torch_skips_the_baseline_with_a_note(fashion_artifact, tmp_path, monkeypatch,
                                                      capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails: a lean install
    d, out = _cli_json([str(fashion_artifact)], tmp_path / "b.json", capsys)
    (note,) = d["notes"]
    assert "torch is not installed" in note and "edgeinfer[convert]" in note
    assert "torch.e2e" not in d["results"][0]["latency_ms"] and "torch is not installed" in out


def test_cli_bench_options(fashion_artifact, tmp_path, capsys):
    d, out = _cli_json([str(fashion_artifact), "--no-torch"], tmp_path / "b.json", capsys)
    (row,) = d["results"]
    assert "torch.e2e" not in row["latency_ms"] and "tta.hflip" not in row["latency_ms"]
    assert "cold_start" not in row and d["peak"] == {} and d["import"] == {}
    assert "| fashion.onnx | 1 |" in out and "not requested (--no-torch)" in out


@pytest.mark.parametrize("argv, msg", [
    (["--threads", "one"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--warmup", "-1"], "--warmup"),
])
def test_cli_bench_bad_arguments(fashion_artifact, argv, msg, capsys):
    assert main(["bench", str(fashion_artifact), *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_cli_bench_runs_must_be_positive(fashion_artifact, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", str(fashion_artifact), "--runs", "0"])
    assert e.value.code == 2 and "--runs" in capsys.readouterr().err


def test_cli_bench_missing_artifact(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.onnx"), "--cold-repeats", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_paired_ratios_on_an_injected_clock(monkeypatch):
    """The int8 loops' latency measure on an injected clock (each call advances it by its
    own cost: 6 ms and 2 ms), so the figure is exact and no load on the machine can move it."""
    from types import SimpleNamespace

    from edgeinfer.runtime import timing
    from edgeinfer.runtime.timing import paired_ratios

    now = [0]
    calls = []

    def slow():
        calls.append("s")
        now[0] += 6_000_000

    def fast():
        calls.append("f")
        now[0] += 2_000_000

    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter_ns=lambda: now[0]))
    # 3x each pair: a product of the two times (12 ms^2) or their inverse would differ
    assert paired_ratios(slow, fast, runs=8, warmup=1) == [3.0] * 8
    timed = calls[2:]  # after one warm-up call each
    assert timed.count("s") == timed.count("f") == 8
    assert "sf" in "".join(timed) and "fs" in "".join(timed)  # the order rotates
