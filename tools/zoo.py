"""The zoo: architectures no one here wrote, through ``edgeinfer.convert(nn.Module)`` to ONNX
and TFLite fp32, judged stage by stage, timed against torch eager at one thread.

    nice -n 10 .venv/bin/python tools/zoo.py                 # all of tools/zoo_models.ARCHS
    nice -n 10 .venv/bin/python tools/zoo.py --only mobilenet_v2,vit --no-tflite

Per architecture (tools/zoo_models.py: random init, BatchNorm calibrated on 64 real photo
crops, logit scale set to a trained net's confidence): convert to ONNX and to TFLite fp32
(gated on the six bundled photos; a failure is recorded with its cause), then on ``--frames``
held-out real photos (:func:`photo_sets`) the stages of parity/stages.py: preprocessing
(the artifact's own prefix output vs the numpy/OpenCV reference, grey levels), model (torch
fed the artifact's own prefix output vs the artifact) and end-to-end (torch on the reference
pixels vs the artifact: the old single gate, bound 1e-4); TFLite vs torch end-to-end. Then
latency, interleaved in one run at one thread: the artifact (raw frame -> probs, what
deploys) vs torch eager (preprocessed tensor -> probs). Results go to docs/zoo.json and
docs/zoo.md after every architecture, with the CPU flags and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "asimddp")


def load_zoo_models() -> Any:
    """tools/zoo_models.py by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("zoo_models", ROOT / "tools" / "zoo_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_models"] = module
    spec.loader.exec_module(module)
    return module


def cpu_flags() -> list[str]:
    words = set(Path("/proc/cpuinfo").read_text().split())
    return [f for f in FLAGS if f in words]


def cause(e: BaseException) -> str:
    """The first line of an exception, naming its type: what a table cell can hold."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(e).split()))
    return f"{type(e).__name__}: {text[:240]}"


def latency(onnx_path: Path, tflite_path: Path | None, module: Any, spec: Any,
            frame: np.ndarray, runs: int) -> dict[str, Any]:
    """Median ms at one thread, interleaved: artifact(frame) vs torch eager(tensor)."""
    import torch

    from edgeinfer.runtime.loader import open_backend
    from edgeinfer.runtime.timing import interleaved, summarize

    torch.set_num_threads(1)
    x = torch.from_numpy(spec.reference(frame))
    cases = {"torch_eager": lambda: _torch_call(module, x)}
    onnx_b = open_backend(str(onnx_path), 1)
    cases["onnx"] = lambda: onnx_b.run(frame[None])
    if tflite_path is not None:
        tfl = open_backend(str(tflite_path), 1)
        cases["tflite"] = lambda: tfl.run(frame[None])
    times = interleaved(cases, {k: runs for k in cases}, warmup=3, rounds=5)
    out: dict[str, Any] = {k: summarize(v)["p50"] for k, v in times.items()}
    for k in ("onnx", "tflite"):
        if k in out:
            out[f"{k}_speedup"] = out["torch_eager"] / out[k]
    out["frame_hw"] = list(frame.shape[:2])
    return out


def _torch_call(module: Any, x: Any) -> Any:
    import torch

    with torch.inference_mode():
        return torch.softmax(module(x), -1)


def stage_figures(onnx_path: Path, spec: Any, module: Any, frames: list[np.ndarray],
                  tflite_path: Path | None) -> dict[str, Any]:
    """Stages of the ONNX artifact on held-out frames; TFLite end-to-end vs torch."""
    from edgeinfer.parity.runners import ArtifactRunner, TorchRunner
    from edgeinfer.parity.stages import stage_checks
    from edgeinfer.parity.stats import compare
    from edgeinfer.parity.tolerances import tolerance

    runner = TorchRunner(module, spec, True)
    ref = runner.run(frames)
    checks = stage_checks(onnx_path.read_bytes(), spec, frames, runner, ref,
                          framework="torch")
    out: dict[str, Any] = {c.stage: {"max_abs": c.max_abs, "mean_abs": c.mean_abs,
                                     "bound": c.bound, "passed": c.passed,
                                     "top1": c.comparison.top1_agreement if c.comparison
                                     else None} for c in checks}
    out["n"] = len(frames)
    out["old_gate_refuses"] = bool(out["end-to-end"]["max_abs"] > tolerance("onnx").max_abs)
    if tflite_path is not None:
        tp = ArtifactRunner(str(tflite_path)).run(frames)
        c = compare(ref, tp, tolerance("tflite"), "torch", "tflite-fp32")
        out["tflite_end_to_end"] = {"max_abs": c.max_abs, "top1": c.top1_agreement}
    return out


def run_arch(zm: Any, arch: Any, work: Path, cal: list[np.ndarray], held: list[np.ndarray],
             photo: np.ndarray, tflite: bool, runs: int) -> dict[str, Any]:
    from edgeinfer.converter.api import convert

    spec = arch.spec()
    row: dict[str, Any] = {"name": arch.name, "family": arch.family,
                           "features": arch.features, "input": list(spec.size)}
    t0 = time.perf_counter()
    module = zm.built(arch, cal)
    row["params_m"] = sum(p.numel() for p in module.parameters()) / 1e6
    onnx_path, tfl_path = work / f"{arch.name}.onnx", work / f"{arch.name}.tflite"
    for fmt, path in (("onnx", onnx_path), ("tflite", tfl_path)):
        if fmt == "tflite" and not tflite:
            continue
        t = time.perf_counter()
        try:
            res = convert(module, path, spec=spec, format=fmt, parity_data="builtin:photos")
            row[fmt] = {"converted": True, "seconds": time.perf_counter() - t,
                        "bn_left": res.bn_left,
                        "batchnorm_before": res.metadata.provenance.get("batchnorm_before"),
                        "gate_stages": res.metadata.parity.get("stages")}
        except Exception as e:  # noqa: BLE001 - the zoo records every failure with its cause
            row[fmt] = {"converted": False, "seconds": time.perf_counter() - t,
                        "cause": cause(e)}
            print(f"  {fmt} FAILED: {cause(e)}", flush=True)
            if os.environ.get("ZOO_TRACE"):
                traceback.print_exc()
    if row["onnx"]["converted"]:
        have_tfl = bool(row.get("tflite", {}).get("converted"))
        row["stages"] = stage_figures(onnx_path, spec, module, held,
                                      tfl_path if have_tfl else None)
        row["latency_ms"] = latency(onnx_path, tfl_path if have_tfl else None, module, spec,
                                    photo, runs)
    row["seconds"] = time.perf_counter() - t0
    return row


def photo_sets(spec: Any, n_held: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """64 calibration crops for BatchNorm; held out: the package photos at their own sizes
    plus further crops rescaled to a shorter side of 320 (INTER_AREA), so every held-out
    frame goes through a real resize (the crops alone are 256 px: no resize for 224 nets)."""
    import cv2

    from edgeinfer.data.calibration import package_photos
    from edgeinfer.data.frames import load_frames, to_frame_color

    crops = load_frames("builtin:photo-calibration", spec, limit=64 + n_held).frames
    held = [to_frame_color(p, spec.frame_color) for p in package_photos().values()]
    for f in crops[64:64 + max(0, n_held - len(held))]:
        h, w = f.shape[:2]
        s = 320 / min(h, w)
        held.append(cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    return crops[:64], held[:n_held]


def machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {"cpu_flags": cpu_flags(), "cores": os.cpu_count(), "machine": platform.machine(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated architecture names")
    ap.add_argument("--no-tflite", action="store_true")
    ap.add_argument("--frames", type=int, default=32, help="held-out photos for the stages")
    ap.add_argument("--runs", type=int, default=30, help="timed calls per case")
    ap.add_argument("--out", default=str(ROOT / "docs" / "zoo.json"))
    ap.add_argument("--work", default="/tmp/edgeinfer-zoo")
    ap.add_argument("--merge", action="store_true", help="keep rows of other architectures "
                    "already in --out (re-run a few)")
    ap.add_argument("--render", nargs="+", metavar="JSON", help="only merge these result "
                    "files (e.g. of runs split over processes) into --out and its .md")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    zm = load_zoo_models()
    if args.render:
        return render(zm, [Path(p) for p in args.render], Path(args.out))
    from edgeinfer.data.frames import load_frames

    archs = [zm.BY_NAME[n] for n in args.only.split(",")] if args.only else zm.ARCHS
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    rows: dict[str, Any] = {}
    if args.merge and out.exists():
        rows = {r["name"]: r for r in json.loads(out.read_text())["architectures"]}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for arch in archs:
        spec = arch.spec()
        cal, held = photo_sets(spec, args.frames)
        photo = load_frames("builtin:photos", spec).frames[0]
        load0 = os.getloadavg()
        print(f"{arch.name} ({arch.family}) ...", flush=True)
        try:
            row = run_arch(zm, arch, work, cal, held, photo, not args.no_tflite, args.runs)
        except Exception as e:  # noqa: BLE001 - one architecture must not end the run
            row = {"name": arch.name, "family": arch.family, "features": arch.features,
                   "error": cause(e)}
        row["load_average"] = [round(v, 2) for v in (*load0, *os.getloadavg()[:1])]
        rows[arch.name] = row
        print(f"  {json.dumps(_brief(row))}", flush=True)
        report = {"started": started, "machine": machine(),
                  "architectures": [rows[a.name] for a in zm.ARCHS if a.name in rows]}
        out.write_text(json.dumps(report, indent=1, default=float))
        out.with_suffix(".md").write_text(markdown(report, [a.name for a in zm.ARCHS
                                                            if a.name not in rows]))
    return 0


def render(zm: Any, files: list[Path], out: Path) -> int:
    """Merge result files (the later file wins per architecture) into ``out`` and its .md."""
    reports = [json.loads(f.read_text()) for f in files]
    rows = {r["name"]: r for rep in reports for r in rep["architectures"]}
    report = {"started": min(r["started"] for r in reports), "machine": reports[0]["machine"],
              "architectures": [rows[a.name] for a in zm.ARCHS if a.name in rows]}
    out.write_text(json.dumps(report, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown(report, [a.name for a in zm.ARCHS
                                                        if a.name not in rows]))
    return 0


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    st = row.get("stages", {})
    return {"onnx": row.get("onnx", {}).get("converted"),
            "tflite": row.get("tflite", {}).get("converted"),
            "grey": st.get("preprocessing", {}).get("max_abs"),
            "model": st.get("model", {}).get("max_abs"),
            "e2e": st.get("end-to-end", {}).get("max_abs"),
            "lat": row.get("latency_ms"), "error": row.get("error")}


def _cell(ok: Any, cause_: str | None = None) -> str:
    if ok is None:
        return "not run"
    text = re.sub(r"\x1b\[[0-9;]*m", "", cause_ or "")  # the exporter's terminal colours
    return "yes" if ok else "**no**: " + text.replace("|", "\\|")


def markdown(report: dict[str, Any], missing: Sequence[str] = ()) -> str:
    """docs/zoo.md: the table, generated (do not edit by hand); ``missing``: the
    architectures of tools/zoo_models.py without a row (not run yet)."""
    rows = report["architectures"]
    m = report["machine"]
    lines = [
        "# The zoo: architectures users bring", "",
        "Generated by `tools/zoo.py` (do not edit by hand; numbers in `docs/zoo.json`). "
        "Every model is built from its library's config with random weights, BatchNorm "
        "statistics calibrated on 64 real photos and the logit scale set so the mean top-1 "
        "probability on them is 0.75 (a trained net's confidence; tools/zoo_models.py), then "
        "converted with `edgeinfer.convert(nn.Module, ...)` (gate on the 6 bundled photos). "
        "Stage figures are on held-out real photos: preprocessing = the ONNX artifact's own "
        "prefix output vs the numpy/OpenCV reference (grey levels, bound 0.5); model = torch "
        "fed the artifact's own prefix output vs the artifact (max |dprob|, bound 1e-4); "
        "end-to-end = torch on the reference pixels vs the artifact (the old single gate, "
        "bound 1e-4: `old gate` says whether it would have refused). TFLite: end-to-end vs "
        "torch (its geometry runs on the host for frames of other sizes). Latency: median "
        "ms at 1 thread, interleaved in one run, artifact (raw frame -> probs) vs torch "
        "eager (preprocessed tensor -> probs); speed-up = torch / artifact.", "",
        f"Machine: {m['machine']}, {m['cores']} cores, CPU flags {', '.join(m['cpu_flags'])}; "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}; started {report['started']}. "
        "Load average (1 min) before/after each row is in the last column: the machine was "
        "shared, so absolute times are noisy; ratios are from one interleaved run.", "",
        "| architecture | features | input | ONNX | TFLite | prep. grey | model max dp | "
        "end-to-end max dp | old gate | TFLite max dp | torch ms | ONNX ms (x) | "
        "TFLite ms (x) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    speed = []
    for r in rows:
        st, lat = r.get("stages", {}), r.get("latency_ms", {})
        onnx, tfl = r.get("onnx", {}), r.get("tflite", {})
        if "error" in r:
            lines.append(f"| {r['name']} | {r['features']} | | **error**: "
                         f"{r['error'].replace('|', chr(92) + '|')} "
                         "| | | | | | | | | | |")
            continue
        if "onnx_speedup" in lat:
            speed.append(lat["onnx_speedup"])

        def f(d: dict, k: str = "max_abs", fmt: str = ".1e") -> str:
            return format(d[k], fmt) if d and d.get(k) is not None else "-"

        e2e = st.get("end-to-end", {})
        lines.append(
            f"| {r['name']} | {r['features']} | {r['input'][0]} | "
            f"{_cell(onnx.get('converted'), onnx.get('cause'))} | "
            f"{_cell(tfl.get('converted'), tfl.get('cause'))} | "
            f"{f(st.get('preprocessing', {}), fmt='.3f')} | {f(st.get('model', {}))} | "
            f"{f(e2e)} | {'refuses' if st.get('old_gate_refuses') else 'passes' if st else '-'}"
            f" | {f(st.get('tflite_end_to_end', {}))} | {f(lat, 'torch_eager', '.1f')} | "
            f"{f(lat, 'onnx', '.1f')} ({f(lat, 'onnx_speedup', '.2f')}) | "
            f"{f(lat, 'tflite', '.1f')} ({f(lat, 'tflite_speedup', '.2f')}) | "
            f"{'/'.join(format(v, '.1f') for v in r.get('load_average', []))} |")
    n_onnx = sum(bool(r.get("onnx", {}).get("converted")) for r in rows)
    n_tfl = sum(bool(r.get("tflite", {}).get("converted")) for r in rows)
    refused = [r["name"] for r in rows if r.get("stages", {}).get("old_gate_refuses")]
    stage_fail = [r["name"] for r in rows if r.get("stages") and not all(
        r["stages"][s]["passed"] for s in ("preprocessing", "model"))]
    lines += ["", "## Summary", "",
              f"- {len(rows)} architectures; ONNX converted {n_onnx}, TFLite fp32 converted "
              f"{n_tfl}.",
              f"- Old single end-to-end gate (1e-4) would refuse {len(refused)} on the "
              f"held-out photos: {', '.join(refused) or 'none'}.",
              f"- Stage gate failures on the held-out photos: {', '.join(stage_fail) or 'none'}.",
              (f"- ONNX artifact vs torch eager at 1 thread: median speed-up "
               f"{float(np.median(speed)):.2f}x (min {min(speed):.2f}x, max {max(speed):.2f}x,"
               f" {sum(s >= 1 for s in speed)} of {len(speed)} at least as fast)."
               if speed else "- no latency figures"),
              f"- Not run yet (`tools/zoo.py --merge --only ...`): {', '.join(missing)}."
              if missing else "- Every architecture of tools/zoo_models.py has a row.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
