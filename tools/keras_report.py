"""Measure the Keras routes on ALL 10,000 Fashion-MNIST test frames (numbers for docs/keras.md).

    .venv/bin/python tools/keras_report.py [--out docs/keras/report.json]

Converts models/fashion_keras through every route (.keras, legacy .h5, the in-memory
keras.Model; ONNX fp32/int8, TFLite fp32/fp16/int8). Each conversion's own gate compares
the artifact, fed raw uint8 frames, with ``model(x, training=False)`` behind the reference
preprocessing on all 10k test frames; the figures below are that gate's. Also times the
two ONNX exporters (tf2onnx ``from_keras`` and Keras ``model.export(format="onnx")``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import edgeinfer  # noqa: E402

MODEL_DIR = ROOT / "models" / "fashion_keras"


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " ".join(sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni)\b", text))))


def route(name: str, source, out: Path, **kw) -> dict:
    t0 = time.time()
    try:
        res = edgeinfer.convert(source, out, spec=MODEL_DIR / "spec.json",
                                labels=MODEL_DIR / "labels.txt",
                                parity_data="builtin:fashion-test", **kw)
    except edgeinfer.ParityError as e:  # the gate refused: that is a result too
        row = {"route": name, "seconds": round(time.time() - t0, 1), "refused": str(e)}
        print(json.dumps(row), flush=True)
        return row
    p = res.metadata.parity
    prov = res.metadata.provenance
    row = {"route": name, "seconds": round(time.time() - t0, 1), "n": p["n"],
           "max_abs_vs_keras": p["max_abs"], "top1_vs_keras": p["top1_agreement"],
           "flips_vs_keras": p["flips"], "accuracy_keras": p.get("accuracy_source"),
           "accuracy_artifact": p.get("accuracy_artifact"),
           "size_bytes": out.stat().st_size, "bn_in_source": prov.get("batchnorm_in_source"),
           "bn_left": prov.get("batchnorm_left"),
           "conv_affine_ops_folded": prov.get("conv_affine_ops_folded")}
    if "vs_onnx_fp32" in p or "onnx_fp32" in p:
        v = p.get("onnx_fp32") or p.get("vs_onnx_fp32")
        row.update({"max_abs_vs_onnx_fp32": v["max_abs"], "top1_vs_onnx_fp32": v["top1_agreement"]})
    print(json.dumps(row), flush=True)
    return row


def exporters(model, spec, frames) -> list[dict]:
    """tf2onnx from_keras vs Keras model.export(format='onnx'), same frames."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from edgeinfer.converter.quiet import captured
    from edgeinfer.parity.runners_keras import KerasRunner

    x = np.concatenate([spec.reference(f) for f in frames])
    ref = KerasRunner(model, spec, False).model(x)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        with captured():
            proto, _ = tf2onnx.convert.from_keras(
                model, input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32, name="x")],
                opset=17)
        t1 = time.time()
        path = Path(d) / "export.onnx"
        with captured():
            model.export(str(path), format="onnx", verbose=False)
        t2 = time.time()
        for name, data, secs in (("tf2onnx.from_keras", proto.SerializeToString(), t1 - t0),
                                 ("model.export(format='onnx')", path.read_bytes(), t2 - t1)):
            s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            y = s.run(None, {s.get_inputs()[0].name: x})[0]
            rows.append({"exporter": name, "seconds": round(secs, 1),
                         "max_abs_vs_keras": float(np.abs(y - ref).max()),
                         "top1": float((y.argmax(-1) == ref.argmax(-1)).mean()),
                         "ops": len(__import__("onnx").load_from_string(data).graph.node)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "keras" / "report.json")
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from edgeinfer.data.frames import load_frames

    info = {"cpu_flags": cpu_flags(), "load_average_start": os.getloadavg(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}
    print(json.dumps(info), flush=True)
    model = keras.saving.load_model(MODEL_DIR / "model.keras", compile=False)
    spec = edgeinfer.PreprocessSpec.from_json((MODEL_DIR / "spec.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        o = Path(d)
        rows.append(route(".keras -> ONNX fp32", MODEL_DIR / "model.keras", o / "k.onnx"))
        rows.append(route(".h5 -> ONNX fp32", MODEL_DIR / "model.h5", o / "h.onnx"))
        rows.append(route("keras.Model -> ONNX fp32", model, o / "m.onnx"))
        rows.append(route(".keras -> ONNX int8", MODEL_DIR / "model.keras", o / "k8.onnx",
                          quantize="int8"))
        rows.append(route(".keras -> TFLite fp32", MODEL_DIR / "model.keras", o / "k.tflite"))
        rows.append(route(".h5 -> TFLite fp32", MODEL_DIR / "model.h5", o / "h.tflite"))
        rows.append(route(".keras -> TFLite fp16", MODEL_DIR / "model.keras", o / "k16.tflite",
                          quantize="fp16"))
        rows.append(route(".keras -> TFLite int8", MODEL_DIR / "model.keras", o / "k8.tflite",
                          quantize="int8"))
    frames = load_frames("builtin:fashion-test", spec, limit=1000).frames
    exp = exporters(model, spec, frames)
    info["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "routes": rows, "exporters": exp},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
