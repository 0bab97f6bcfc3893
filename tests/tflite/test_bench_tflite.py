"""``edgeinfer bench`` on a TFLite artifact next to its ONNX sibling: LiteRT is driven through
the Predictor and raw, the format comes from the file's content, and every path agrees."""

from __future__ import annotations

import shutil

from edgeinfer.check.bench.run import run_bench


def test_bench_tflite_next_to_onnx(fashion_artifact, fashion_tflite, tmp_path):
    misnamed = tmp_path / "fashion-litert.onnx"  # a TFLite file with an ONNX name
    shutil.copy(fashion_tflite.path, misnamed)
    res = run_bench([fashion_artifact, misnamed], threads=(1,), runs=3, warmup=1, rounds=1,
                    tta=False, cold_repeats=0, peak=False)
    onnx_row, tfl = res.results
    assert (onnx_row["format"], tfl["format"]) == ("onnx", "tflite")
    assert tfl["raw_runtime"] == "litert" and "raw.e2e" in tfl["latency_ms"]
    assert set(tfl["top1"]) == {"edgeinfer", "raw", "torch"}
    assert len({*tfl["top1"].values(), *onnx_row["top1"].values()}) == 1
    assert tfl["flops"] == onnx_row["flops"]  # the same network, counted from two formats
    assert tfl["tflite_vs"] == "fashion.onnx"
    assert tfl["ratios"]["tflite_vs_onnx_model"] == (
        tfl["latency_ms"]["edgeinfer.model"]["p50"] / onnx_row["latency_ms"]["edgeinfer.model"]
        ["p50"])
