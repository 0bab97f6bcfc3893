"""Report of an ``edgeinfer bench`` run: JSON, a Markdown table, PNG latency plots.

The issue's targets are evaluated here, not asserted anywhere: a benchmark on a shared
machine is evidence, not a pass/fail test, so the report states each target, the value
measured and where, and leaves judging noise to the reader (the load average is printed).
matplotlib is imported only for the plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeinfer.check.bench.run import BenchResult
from edgeinfer.check.report_files import write_bundle

#: (key, what, limit, "max" if the measured value must stay at or below the limit, else "min")
TARGETS = (
    ("overhead", "edgeinfer Predictor end to end vs raw onnxruntime (same artifact, input)",
     1.05, "max"),
    ("vs_torch", "speed-up over the PyTorch eager pipeline, end to end, efficientnet-lite0, "
     "2 threads", 3.0, "min"),
    ("tta_hflip", "two-view TTA (hflip) vs one view, end to end", 1.8, "max"),
    ("import", "`import edgeinfer` (ms, without torch)", 150.0, "max"),
    ("cold_start", "cold start to first prediction, fashion (ms)", 500.0, "max"),
)


def _where(r: dict[str, Any]) -> str:
    return f"{r['artifact']} @{r['threads']}t"


def evaluate_targets(res: BenchResult) -> list[dict[str, Any]]:
    """Each target with every measured value, the worst one, and whether it is met."""
    rows = res.results
    onnx = [r for r in rows if r["format"] == "onnx"]
    found: dict[str, list[tuple[float, str]]] = {k: [] for k, *_ in TARGETS}
    for r in onnx:
        q = r["ratios"]
        if "edgeinfer_vs_raw_e2e" in q:
            found["overhead"].append((q["edgeinfer_vs_raw_e2e"], _where(r)))
        if ("speedup_vs_torch_e2e" in q and "efficientnet-lite0" in r["model"]
                and r["threads"] == 2 and r["dtype"] == "fp32"):
            found["vs_torch"].append((q["speedup_vs_torch_e2e"], _where(r)))
        if "tta_hflip_vs_none" in q:
            found["tta_hflip"].append((q["tta_hflip_vs_none"], _where(r)))
        cs = r.get("cold_start", {}).get("edgeinfer")
        if cs and "fashion" in r["model"] and r["dtype"] == "fp32":
            found["cold_start"].append((cs["total_ms"], _where(r)))
    if res.imports:
        found["import"].append((res.imports["edgeinfer_ms"], "fresh process"))
    out = []
    for key, what, limit, sense in TARGETS:
        vals = found[key]
        if not vals:
            out.append({"key": key, "target": what, "limit": limit, "sense": sense,
                        "measured": None, "where": None, "met": None, "all": []})
            continue
        worst = max(vals) if sense == "max" else min(vals)
        met = worst[0] <= limit if sense == "max" else worst[0] >= limit
        if key == "import":
            met = met and not res.imports.get("torch_imported", True)
        out.append({"key": key, "target": what, "limit": limit, "sense": sense,
                    "measured": worst[0], "where": worst[1], "met": bool(met),
                    "all": [{"value": v, "where": w} for v, w in vals]})
    return out


def to_json(res: BenchResult) -> dict[str, Any]:
    """The JSON report: the result and the targets evaluated on it."""
    return {**res.to_dict(), "targets": evaluate_targets(res)}


# ---------------------------------------------------------------------------- Markdown
def _f(v: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{suffix}"


def _p50(r: dict[str, Any], key: str) -> float | None:
    return r["latency_ms"].get(key, {}).get("p50")


def latency_table(res: BenchResult) -> str:
    """One row per artifact and thread count: p50 ms unless stated, ratios of p50s."""
    head = ("| artifact | thr | MB | model: edgeinfer / raw | e2e p50 / p90 / p99 | raw e2e | "
            "edgeinfer ÷ raw (e2e) | torch e2e | × faster than torch | TFLite ÷ ONNX | "
            "GFLOP/s (% of peak) | load |")
    lines = [head, "|" + "---|" * 12]
    for r in res.results:
        lat, q = r["latency_ms"], r["ratios"]
        e2e = lat["edgeinfer.e2e"]
        load = r.get("loadavg")
        lines.append(
            f"| {r['artifact']} | {r['threads']} | {r['size_bytes'] / 1e6:.2f} | "
            f"{_f(_p50(r, 'edgeinfer.model'))} / {_f(_p50(r, 'raw.model'))} | "
            f"{e2e['p50']:.2f} / {e2e['p90']:.2f} / {e2e['p99']:.2f} | "
            f"{_f(_p50(r, 'raw.e2e'))} | {_f(q.get('edgeinfer_vs_raw_e2e'), '.3f', '×')} | "
            f"{_f(_p50(r, 'torch.e2e'))} | {_f(q.get('speedup_vs_torch_e2e'), '.1f', '×')} | "
            f"{_f(q.get('tflite_vs_onnx_model'), '.2f', '×')} | "
            f"{_rate(res, r)} | {_f(load[0] if load else None, '.1f')} |")
    return "\n".join(lines)


def _rate(res: BenchResult, r: dict[str, Any]) -> str:
    """GFLOP/s and its % of the peak; a rate above a disturbed peak is said, not shown >100%."""
    gf, frac = r.get("gflops"), r.get("peak_fraction")
    peak = (res.peak.get(str(r["threads"])) or {}).get("gflops")
    if r.get("dtype") == "int8":
        pct = " (int8: not against the float32 peak)" if gf else ""
    else:
        pct = f" ({frac:.0%})" if frac else (" (above the measured peak)" if gf and peak else "")
    return _f(gf, ".1f") + pct


def _peak_size(res: BenchResult) -> str:
    pk = next(iter(res.peak.values()), {})
    return f"{pk.get('n')}², best of {pk.get('reps')} calls" if pk.get("n") else ""


def peak_text(res: BenchResult) -> str:
    """The peak per thread count, the method that gave it, and the other method's figure."""
    parts = []
    for n, pk in res.peak.items():
        others = "; ".join(
            f"{m['method']} {m['gflops']:.0f}" if m["gflops"] else f"{m['method']}: "
            f"{m['detail']}" for m in pk["methods"])
        best = f"**{pk['gflops']:.0f} GFLOP/s** ({pk['method']})" if pk["gflops"] else "none"
        parts.append(f"{n} thread(s): {best} [{others}]")
    return "; ".join(parts) or "not measured"


def summary_table(res: BenchResult) -> str:
    """The compact table for a README: end to end p50s, the ratios, the model's share of the
    matmul peak, start-up, memory and the load it was measured under."""
    lines = ["| artifact | thr | image→top-5 p50 ms: edgeinfer / raw / torch | edgeinfer ÷ raw | "
             "× faster than torch | hflip ÷ 1 view | GFLOP/s (% of peak) | cold start ms | "
             "peak RSS MB | load |",
             "|" + "---|" * 10]
    for r in res.results:
        q, cs = r["ratios"], r.get("cold_start", {}).get("edgeinfer") or {}
        load = r.get("loadavg")
        lines.append(
            f"| {r['artifact']} | {r['threads']} | {_p50(r, 'edgeinfer.e2e'):.2f} / "
            f"{_f(_p50(r, 'raw.e2e'))} / {_f(_p50(r, 'torch.e2e'))} | "
            f"{_f(q.get('edgeinfer_vs_raw_e2e'), '.3f')} | "
            f"{_f(q.get('speedup_vs_torch_e2e'), '.1f')} | "
            f"{_f(q.get('tta_hflip_vs_none'), '.2f')} | {_rate(res, r)} | "
            f"{_f(cs.get('total_ms'), '.0f')} | {_f(cs.get('rss_mb'), '.0f')} | "
            f"{_f(load[0] if load else None, '.1f')} |")
    return "\n".join(lines)


def load_json(path: str | Path) -> BenchResult:
    """A result back from ``bench.json`` (tables only: the samples behind the plots are not
    stored)."""
    d = json.loads(Path(path).read_text())
    return BenchResult(settings=d["settings"], machine=d["machine"], imports=d["import"],
                       peak=d["peak"], results=d["results"], notes=d.get("notes", []))


def startup_table(res: BenchResult) -> str:
    head = ("| artifact | thr | session ms: edgeinfer / raw | cold start ms: edgeinfer "
            "(interpreter + imports + session + 1st call) | raw runtime | torch | "
            "peak RSS MB: edgeinfer / raw / torch |")
    lines = [head, "|" + "---|" * 7]
    for r in res.results:
        s, cs = r["session_ms"], r.get("cold_start", {})
        e = cs.get("edgeinfer")
        raw = cs.get(r["raw_runtime"])
        t = cs.get("torch")
        parts = (f"**{e['total_ms']:.0f}** ({e['interpreter_ms']:.0f} + {e['import_ms']:.0f} + "
                 f"{e['session_ms']:.0f} + {e['first_ms']:.0f})") if e else "-"
        lines.append(
            f"| {r['artifact']} | {r['threads']} | {_f(s.get('edgeinfer'), '.1f')} / "
            f"{_f(s.get('raw'), '.1f')} | {parts} | {_f(raw and raw['total_ms'], '.0f')} | "
            f"{_f(t and t['total_ms'], '.0f')} | {_f(e and e['rss_mb'], '.0f')} / "
            f"{_f(raw and raw['rss_mb'], '.0f')} / {_f(t and t['rss_mb'], '.0f')} |")
    return "\n".join(lines)


def tta_table(res: BenchResult) -> str:
    lines = ["| artifact | thr | one view p50 ms | hflip p50 ms (×) | hflip+crops p50 ms (×) |",
             "|---|---|---|---|---|"]
    for r in res.results:
        q = r["ratios"]
        if "tta_hflip_vs_none" not in q:
            continue
        lines.append(
            f"| {r['artifact']} | {r['threads']} | {_p50(r, 'edgeinfer.e2e'):.2f} | "
            f"{_f(_p50(r, 'tta.hflip'))} ({_f(q.get('tta_hflip_vs_none'), '.2f')}×) | "
            f"{_f(_p50(r, 'tta.hflip+crops'))} ({_f(q.get('tta_hflip+crops_vs_none'), '.2f')}×) |")
    return "\n".join(lines)


def targets_table(res: BenchResult) -> str:
    lines = ["| target | limit | measured (worst) | where | met |", "|---|---|---|---|---|"]
    for t in evaluate_targets(res):
        sign = "≤" if t["sense"] == "max" else "≥"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {sign} {t['limit']:g} | {_f(t['measured'], '.3g')} | "
                     f"{t['where'] or '-'} | {met} |")
    return "\n".join(lines)


def markdown(res: BenchResult, images: dict[str, str] | None = None,
             note: str | None = None) -> str:
    m, s, imp = res.machine, res.settings, res.imports
    la = m.get("loadavg_start"), m.get("loadavg_end")
    load = " → ".join("/".join(f"{v:.2f}" for v in x) for x in la if x) or "n/a"
    flags = ", ".join(m.get("cpu_flags") or []) or "none of the listed"
    out = [
        "# edgeinfer bench",
        "",
        f"{m['cpu']} ({m['machine']}, {m['cores']} cores; CPU flags: {flags}), Python "
        f"{m['python']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}, OpenCV "
        f"{m['opencv']}. Load average (1/5/15 min) at start → end: {load}; the `load` column "
        f"is the 1-minute load average when that model's cases started. {s['runs']} timed "
        f"calls per case after {s['warmup']} warm-up calls (hflip+crops: a quarter), in "
        f"{s['rounds']} interleaved rounds; top-{s['top_k']}. Created {s.get('created', '?')}.",
        "",
        f"`import edgeinfer`: {_f(imp.get('edgeinfer_ms'), '.0f')} ms (python -X importtime); "
        f"with the runtime (`from edgeinfer import Predictor`: numpy, OpenCV, onnxruntime): "
        f"{_f(imp.get('runtime_ms'), '.0f')} ms; torch imported: {imp.get('torch_imported')}.",
        "",
        f"Machine peak, float32 matmul {_peak_size(res)}, the larger of two methods: "
        f"{peak_text(res)}. `onnxruntime-matmul` runs one MatMul through onnxruntime (MLAS, "
        "the kernels behind the ONNX artifacts' Conv/Gemm) with the backend's session "
        "options; `numpy-matmul` runs numpy in a child process with OPENBLAS_CORETYPE and "
        "OPENBLAS_L2_SIZE unset (BLAS kernel named). TFLite artifacts run on XNNPACK, whose "
        "peak is not measured separately; int8 artifacts run integer kernels whose ceiling "
        "is higher than the float32 peak, so they get no % of peak.",
        "",
        "## Targets",
        "",
        targets_table(res),
        "",
        "## Latency (ms, p50 unless stated)",
        "",
        "model: a decoded frame in, top-k out; e2e: the encoded image in, top-k out. raw: the "
        "runtime as a user calls it (onnxruntime `InferenceSession.run`, LiteRT signature "
        "runner). torch: OpenCV decode, numpy preprocessing, eager module under "
        "`inference_mode`. GFLOP/s: the model's Conv/Gemm FLOPs over the raw model p50 (the "
        "in-graph resize is in the time, not in the FLOPs); % of the peak above at the same "
        "thread count.",
        "",
        latency_table(res),
        "",
        "## Start-up and memory",
        "",
        "Cold start: spawning `python -m edgeinfer.check.bench.startup_child` until its first "
        "prediction returns (median of fresh processes; the interpreter phase includes the "
        "`edgeinfer` package import that `-m` does first, for every runtime alike); peak RSS "
        "of that process after 20 more predictions.",
        "",
        startup_table(res),
        "",
        "## Test-time augmentation (end to end)",
        "",
        tta_table(res),
        "",
    ]
    imgs = sorted({(r["model"], r["image"]["name"], tuple(r["image"]["shape"]))
                   for r in res.results})
    out += ["Inputs: " + "; ".join(f"{mo}: {n} ({s_[1]}x{s_[0]})" for mo, n, s_ in imgs) + "."]
    notes = list(res.notes)
    notes += [f"{r['artifact']} @{r['threads']}t: {n}" for r in res.results for n in r["notes"]]
    notes += [f"{r['artifact']} @{r['threads']}t: top-1 differs: {r['top1']}"
              for r in res.results if len(set(r["top1"].values())) > 1]
    if notes or note:
        out += ["", "Notes:", *[f"- {n}" for n in notes + ([note] if note else [])]]
    for key, name in (images or {}).items():
        out += ["", f"![{key}]({name})"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- plots
def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_").lower()


_COLORS = (("tta", "#dddddd"), ("torch", "#f4a6a6"), ("edgeinfer", "#9ecae1"),
           ("onnxruntime", "#fdd49e"), ("litert", "#fdd49e"))


def write_plots(res: BenchResult, directory: Path) -> dict[str, str]:
    """Per model: latency distributions (box: p25-p75, whiskers p1-p99) per backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    images: dict[str, str] = {}
    models = dict.fromkeys(r["model"] for r in res.results)
    threads = res.settings["threads"]
    for model in models:
        rows = [r for r in res.results if r["model"] == model]
        fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.8),
                                 squeeze=False, sharey=True)
        for ax, n in zip(axes[0], threads, strict=True):
            data, names = [], []
            torch_done = False
            for r in rows:
                if r["threads"] != n:
                    continue
                s = res.samples.get((r["artifact"], n), {})
                for key in ("edgeinfer.e2e", "raw.e2e", "tta.hflip", "edgeinfer.model",
                            "raw.model"):
                    if key in s:
                        who = key.replace("raw", r["raw_runtime"])
                        data.append(s[key])
                        names.append(f"{r['artifact']} {who}")
                if not torch_done and "torch.e2e" in s:
                    data += [s["torch.e2e"], s["torch.model"]]
                    names += ["torch eager e2e", "torch eager model"]
                    torch_done = True
            if not data:
                continue
            data, names = data[::-1], names[::-1]  # first case on top
            horizontal = ({"orientation": "horizontal"} if hasattr(matplotlib, "__version_info__")
                          and matplotlib.__version_info__ >= (3, 10) else {"vert": False})
            box = ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True,
                             **horizontal)
            for patch, name in zip(box["boxes"], names, strict=True):
                patch.set_facecolor(next((c for k, c in _COLORS if k in name), "white"))
            ax.set_yticks(range(1, len(names) + 1), names, fontsize=7)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^1 labels overlapped
            ax.set_xlabel("latency per call, ms (log)")
            ax.set_title(f"{model}, {n} thread(s)", fontsize=9)
            ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        name = f"latency_{_slug(model)}.png"
        fig.savefig(directory / name, dpi=90)
        plt.close(fig)
        images[f"latency: {model}"] = name
    return images


def write_report(res: BenchResult, directory: str | Path, plots: bool = True) -> list[Path]:
    """``bench.json``, ``bench.md`` and the PNGs into ``directory``; returns the files."""
    return write_bundle(res, directory, "bench", to_dict=to_json, markdown=markdown,
                        write_plots=write_plots, plots=plots)

