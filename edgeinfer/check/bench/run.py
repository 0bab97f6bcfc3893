"""``edgeinfer bench``: how fast an artifact is here, and what edgeinfer costs over the baselines.

All cases of one model (every artifact given, each through the edgeinfer ``Predictor`` and
through its raw runtime, plus the PyTorch eager pipeline) are timed in the same
interleaved rounds (:mod:`edgeinfer.runtime.timing`), so load drift hits them alike.

Cases, per artifact and thread count (latency p50/p90/p99 after warm-up):

* ``edgeinfer.model`` / ``raw.model``: a decoded frame in, probabilities (and top-k) out;
* ``edgeinfer.e2e`` / ``raw.e2e``: the encoded image in, top-k out;
* ``tta.<policy>``: ``Predictor.predict`` end to end with that TTA policy;
* ``torch.model`` / ``torch.e2e``: the PyTorch eager pipeline (:mod:`.baselines`).

Besides: session creation, cold start and peak RSS in fresh processes (:mod:`.startup`),
``import edgeinfer``, file size, and the model's GFLOP/s next to a matmul peak measured on
the engines that run it (:mod:`.peak`). A baseline that cannot run is skipped with a note
in the report, never silently. The input is a frame of the model's own parity data
(:mod:`.bench_inputs`).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeinfer.check.bench import baselines
from edgeinfer.check.bench.flops import artifact_flops
from edgeinfer.check.bench.inputs import IMREAD, BenchArtifact, BenchInput, default_input, describe
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.progress import Progress
from edgeinfer.runtime import timing

TOP_K = 5
TTA_POLICIES = ("hflip", "hflip+crops")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimddp")


@dataclass
class BenchResult:
    """Everything one run measured; ``to_dict`` is the JSON report (samples stay here)."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    imports: dict[str, Any] = field(default_factory=dict)
    peak: dict[str, dict[str, Any]] = field(default_factory=dict)  # by thread count
    results: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped baselines, input choices
    samples: dict[tuple[str, int], dict[str, np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "machine": self.machine, "import": self.imports,
                "peak": self.peak, "results": self.results, "notes": self.notes}


def _loadavg() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """CPU model, the SIMD flags that decide kernel choice, cores, versions, load average."""
    import onnxruntime as ort

    cpu, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and cpu == platform.processor():
                cpu = val.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(val.split())
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return {"cpu": cpu, "machine": platform.machine(), "cores": cores,
            "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": ort.__version__, "opencv": cv2.__version__,
            "loadavg_start": _loadavg()}


def timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def run_bench(artifacts: Sequence[str | os.PathLike], threads: Sequence[int] = (1, 2),
              runs: int = 200, *, image: str | os.PathLike | None = None, warmup: int = 10,
              rounds: int = 5, torch_baseline: bool = True, tta: bool = True,
              cold_repeats: int = 3, peak: bool = True,
              progress: Progress | None = None) -> BenchResult:
    """Benchmark ``artifacts`` (ONNX / TFLite, told apart by content) at each thread count."""
    from edgeinfer.check.bench.peak import best_peak, machine_peak
    from edgeinfer.check.bench.startup import import_time

    say = progress or (lambda _m: None)
    if (runs < 1 or warmup < 0 or rounds < 1 or cold_repeats < 0 or not threads
            or min(threads) < 1):
        raise ConfigError("runs, rounds and threads must be positive, warmup and cold "
                          "repeats >= 0")
    arts = [BenchArtifact.open(p) for p in artifacts]
    if len({a.label for a in arts}) < len(arts):
        raise ConfigError("two artifacts have the same file name; rename one so the report "
                          "can tell them apart")
    res = BenchResult(settings={"threads": list(threads), "runs": runs, "warmup": warmup,
                                "rounds": rounds, "top_k": TOP_K, "cold_repeats": cold_repeats,
                                "created": timestamp()},
                      machine=machine_info())
    if cold_repeats:
        say("import time (fresh processes)")
        res.imports = import_time(cold_repeats)

    def measure_peak(n: int) -> None:
        if peak:
            say(f"machine peak: float32 matmul, {n} thread(s)")
            res.peak[str(n)] = best_peak(res.peak.get(str(n)), machine_peak(n))

    for n in threads:
        measure_peak(n)
    groups: dict[str, list[BenchArtifact]] = {}
    for a in arts:
        groups.setdefault(a.model, []).append(a)
    for model, group in groups.items():
        inp = default_input(group[0].meta, image)
        if inp.note:
            res.notes.append(f"{model}: {inp.note}")
        for a in group:
            a.flops = artifact_flops(a.data, a.format, a.meta.spec)
        torch_src = _torch_baseline(model, group[0], torch_baseline, res.notes)
        with tempfile.TemporaryDirectory(prefix="edgeinfer-bench-") as tmp:
            img_path = Path(tmp) / "input.img"
            img_path.write_bytes(inp.data)
            for n in threads:
                res.results += _bench_group(model, group, n, inp, img_path, torch_src, res,
                                            tta=tta, runs=runs, warmup=warmup, rounds=rounds,
                                            cold_repeats=cold_repeats, say=say)
                measure_peak(n)  # again, next to the model runs: other jobs come and go
    for row in res.results:
        _roofline(row, res.peak.get(str(row["threads"])))
    res.machine["loadavg_end"] = _loadavg()
    return res


def _torch_baseline(model: str, a: BenchArtifact, wanted: bool, notes: list[str]
                    ) -> tuple[Any, str, str | None] | None:
    """The torch source of ``a`` (module, source, weights), or None with a note saying why."""
    if not wanted:
        notes.append(f"{model}: PyTorch eager baseline not requested (--no-torch)")
        return None
    try:
        return baselines.open_torch_baseline(a.meta.provenance, a.meta.spec)
    except baselines.Skipped as e:
        notes.append(f"{model}: PyTorch eager baseline skipped: {e}")
        return None


def _artifact_cases(a: BenchArtifact, n: int, inp: BenchInput, tta: bool, runs: int,
                    row: dict[str, Any]) -> tuple[dict[str, Callable[[], Any]], dict[str, int]]:
    """The timed cases of one artifact (keys ``label|case``); fills the row's top-1s."""
    from edgeinfer.runtime.predictor import Predictor

    p = Predictor(a.path, threads=n)
    labels, frame, data = p.labels, inp.frame, inp.data
    row["session_ms"] = {"edgeinfer": timing.median_ms(lambda: Predictor(a.path, threads=n), 3,
                                                       warmup=0)}
    cases: dict[str, Callable[[], Any]] = {
        f"{a.label}|edgeinfer.model": lambda: p.predict(frame, top_k=TOP_K),
        f"{a.label}|edgeinfer.e2e": lambda: p.predict(data, top_k=TOP_K)}
    row["top1"] = {"edgeinfer": p.predict(data)[0].index}
    if a.frame_size is None or tuple(frame.shape[:2]) == a.frame_size:
        raw = baselines.raw_runner(a, n)
        row["session_ms"]["raw"] = timing.median_ms(lambda: baselines.raw_runner(a, n), 3,
                                                    warmup=0)
        flag, x1 = IMREAD[a.meta.spec.frame_color], frame[None]

        def raw_e2e() -> list[tuple[str, float]]:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            img = img[..., None] if img.ndim == 2 else img
            probs = raw(img[None])[0]
            return [(labels[i], float(probs[i])) for i in np.argsort(-probs)[:TOP_K]]

        cases[f"{a.label}|raw.model"] = lambda: raw(x1)
        cases[f"{a.label}|raw.e2e"] = raw_e2e
        row["top1"]["raw"] = int(np.argmax(raw(x1)[0]))
    else:
        row["notes"].append(f"no raw LiteRT baseline: the input frame is {frame.shape[1]}x"
                            f"{frame.shape[0]}, the TFLite frame size {a.frame_size[1]}x"
                            f"{a.frame_size[0]} (the Predictor resizes on the host first)")
    for pol in TTA_POLICIES if tta else ():
        pt = Predictor.from_backend(p.backend, tta=pol, source=a.label)
        cases[f"{a.label}|tta.{pol}"] = lambda pt=pt: pt.predict(data, top_k=TOP_K)
    nruns = {k: max(5, runs // 4) if k.endswith("hflip+crops") else runs for k in cases}
    return cases, nruns


def _bench_group(model: str, group: list[BenchArtifact], n: int, inp: BenchInput,
                 img_path: Path, torch_src: tuple[Any, str, str | None] | None,
                 res: BenchResult, *, tta: bool, runs: int, warmup: int, rounds: int,
                 cold_repeats: int, say: Progress) -> list[dict[str, Any]]:
    """All artifacts of one model at ``n`` threads, interleaved with the torch baseline."""
    spec = group[0].meta.spec
    load = _loadavg()
    cases: dict[str, Callable[[], Any]] = {}
    nruns: dict[str, int] = {}
    rows: dict[str, dict[str, Any]] = {}
    for a in group:
        say(f"{a.label}: {n} thread(s): sessions")
        rows[a.label] = row = {
            "artifact": a.label, "model": model, "format": a.format, "dtype": a.dtype,
            "threads": n, "size_bytes": len(a.data), "image": describe(inp), "flops": a.flops,
            "raw_runtime": baselines.raw_runtime_name(a), "loadavg": load, "notes": []}
        c, r = _artifact_cases(a, n, inp, tta, runs, row)
        cases |= c
        nruns |= r
    torch_top1 = None
    if torch_src is not None:
        say(f"{model}: {n} thread(s): torch eager baseline")
        import torch

        torch.set_num_threads(n)
        c, torch_top1 = baselines.torch_cases(torch_src[0], inp.data,
                                              baselines.pipeline_params(spec),
                                              group[0].meta.labels, TOP_K)
        cases |= c
        nruns |= dict.fromkeys(c, runs)
    say(f"{model}: {n} thread(s): timing {len(cases)} cases x {runs} runs, interleaved")
    samples = timing.interleaved(cases, nruns, warmup=warmup, rounds=rounds)
    torch_samples = {k: v for k, v in samples.items() if k.startswith("torch.")}
    torch_cold: dict[str, Any] = {}  # one torch cold start per model and thread count
    out = []
    for a in group:
        row = rows[a.label]
        mine = {k.split("|", 1)[1]: v for k, v in samples.items() if k.startswith(a.label + "|")}
        mine |= torch_samples
        if torch_top1 is not None:
            row["top1"]["torch"] = torch_top1
        lat = {k: timing.summarize(v) for k, v in mine.items()}
        row["latency_ms"] = lat
        row["notes"] += [f"{k}: p50 {v['p50']:.2f} ms is {v['p50'] / v['min']:.0f}x its minimum "
                         f"{v['min']:.2f} ms: the cores were contended during this case"
                         for k, v in lat.items() if v["p50"] > 5 * v["min"]]
        res.samples[(a.label, n)] = mine
        row["ratios"] = ratios(lat)
        if cold_repeats:
            say(f"{a.label}: {n} thread(s): cold start x{cold_repeats} (fresh processes)")
            _cold_starts(row, a, n, img_path, torch_src, cold_repeats, torch_cold)
        out.append(row)
    tflite_vs_onnx(out)
    return out


def _cold_starts(row: dict[str, Any], a: BenchArtifact, n: int, img_path: Path,
                 torch_src: tuple[Any, str, str | None] | None, repeats: int,
                 torch_cold: dict[str, Any]) -> None:
    """Cold start of edgeinfer, the raw runtime and torch in fresh processes. A baseline whose
    child fails is a note; edgeinfer's own failure is an error."""
    from edgeinfer.check.bench.startup import cold_start

    spec = a.meta.spec
    args = {"path": str(a.path), "threads": n, "image": str(img_path),
            "flag": IMREAD[spec.frame_color]}
    row["cold_start"] = {"edgeinfer": cold_start("edgeinfer", args, repeats)}
    kinds = [row["raw_runtime"]] if "raw.model" in row["latency_ms"] else []
    if torch_src is not None:
        kinds.append("torch")
    for kind in kinds:
        try:
            if kind != "torch":
                row["cold_start"][kind] = cold_start(kind, args, repeats)
                continue
            if not torch_cold:
                torch_cold |= cold_start("torch", {
                    **args, "source": torch_src[1], "weights": torch_src[2],
                    "spec": spec.to_json(), "pipeline": baselines.pipeline_params(spec)},
                    repeats)
            row["cold_start"]["torch"] = torch_cold
        except EdgeInferError as e:
            row["notes"].append(f"cold start of the {kind} baseline skipped: {e}")


def _roofline(row: dict[str, Any], peak: dict[str, Any] | None) -> None:
    """GFLOP/s of the model call (FLOPs over the raw runtime's p50, else edgeinfer's) and its
    fraction of the measured peak; a rate above the peak is reported as such, not as >100%."""
    lat, flops = row["latency_ms"], row["flops"]
    t = (lat.get("raw.model") or lat.get("edgeinfer.model") or {}).get("p50")
    gf = flops / (t * 1e6) if flops and t else None
    row["gflops"], row["peak_fraction"] = gf, None
    top = peak.get("gflops") if peak else None
    if gf and top and row["dtype"] != "int8":  # int8 ops have their own, higher ceiling
        if gf <= top:
            row["peak_fraction"] = gf / top
        else:
            row["notes"].append(f"the model ran at {gf:.1f} GFLOP/s, above the measured peak "
                                f"{top:.1f} ({peak['method']}): the peak measurement was "
                                "disturbed (load); no % of peak is reported")


def ratios(lat: dict[str, dict[str, float]]) -> dict[str, float]:
    """p50 ratios: edgeinfer over raw (overhead), torch over edgeinfer (speed-up), TTA cost."""
    p = {k: v["p50"] for k, v in lat.items()}
    r: dict[str, float] = {}
    for kind in ("e2e", "model"):
        if f"raw.{kind}" in p:
            r[f"edgeinfer_vs_raw_{kind}"] = p[f"edgeinfer.{kind}"] / p[f"raw.{kind}"]
            r[f"overhead_us_{kind}"] = (p[f"edgeinfer.{kind}"] - p[f"raw.{kind}"]) * 1e3
        if f"torch.{kind}" in p:
            r[f"speedup_vs_torch_{kind}"] = p[f"torch.{kind}"] / p[f"edgeinfer.{kind}"]
    for pol in TTA_POLICIES:
        if f"tta.{pol}" in p:
            r[f"tta_{pol}_vs_none"] = p[f"tta.{pol}"] / p["edgeinfer.e2e"]
    return r


def tflite_vs_onnx(rows: list[dict[str, Any]]) -> None:
    """TFLite p50 over the ONNX artifact's of the same dtype (else fp32), same run."""
    onnx = {r["dtype"]: r for r in rows if r["format"] == "onnx"}
    for r in rows:
        o = onnx.get(r["dtype"]) or onnx.get("fp32")
        if r["format"] != "tflite" or o is None:
            continue
        for kind in ("model", "e2e"):
            r["ratios"][f"tflite_vs_onnx_{kind}"] = (r["latency_ms"][f"edgeinfer.{kind}"]["p50"]
                                                     / o["latency_ms"][f"edgeinfer.{kind}"]["p50"])
        r["tflite_vs"] = o["artifact"]


__all__ = ["BenchResult", "machine_info", "ratios", "run_bench", "tflite_vs_onnx"]
