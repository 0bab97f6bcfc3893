"""How long the doctor takes, and whether its ranking moved: docs/doctor/speed.md.

    python tools/doctor_speed.py --tag before|after [--models fashion,effnet] [--out DIR]

Runs the doctor's simulation (every culprit variant, :func:`culprit_outcomes`) once per
model on the study's data (the bundled fashion model on 512 test frames, EfficientNet-Lite0
on the 57 photo crops), then ranks every device scenario of ``tools/doctor_study.py``
(parts b and d) against it and records the whole ranking and the verdict. The same file
measures the code before a change (``PYTHONPATH=<old checkout>``: it only calls the API
both versions have) and after it, so the two runs differ in nothing but the package.
Wall time AND the process's CPU time are recorded: on a shared 2-core machine at load
10+ the wall time measures the neighbours as much as the doctor. Writes
``<out>/speed-<tag>.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doctor_study as ds  # noqa: E402 - the study's devices and data, not a copy of them

DOCS = ds.DOCS


def scenarios(model: str) -> dict[str, tuple]:
    """The union of parts (b) and (d): name -> (prep, train, batch, shuffled)."""
    out: dict[str, tuple] = {}
    table = ds.EFFNET_SCENARIOS if model == "effnet" else ds.FASHION_SCENARIOS
    for scen, (_exp, prep, train) in table.items():
        out[f"(b) {scen}"] = (prep, train, 32 if "32" in scen else 1, False)
    g = ds.effnet_prep() if model == "effnet" else ds.gray_prep()
    out["(d) training mode, batch 8"] = (g, True, 8, False)
    out["(d) vertical flip"] = (lambda f: g(f[::-1]), False, 1, False)
    out["(d) JPEG quality 10"] = (lambda f: g(ds._jpeg(10)(f)), False, 1, False)
    if model == "fashion":
        out["(d) training mode, batch 8, rows not in call order"] = (g, True, 8, True)
        out["(d) gamma 0.5"] = (lambda f: g(ds._gamma(0.5)(f)), False, 1, False)
    return out


def load(model: str) -> tuple:
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.data.frames import load_frames

    try:
        from edgeinfer.converter.spec_resolve import resolve
    except ImportError:  # the package before the one-spec-resolution change (8f07ecb)
        from edgeinfer.converter.sources.load import source_spec

        def resolve(name: str, spec: object) -> object:
            return type("R", (), {"spec": source_spec(name, spec)})

    if model == "effnet":
        sp = resolve("efficientnet-lite0", None).spec
        frames, _ids = ds.crops(ds.photo_pool())
        return ("efficientnet-lite0 (57 crops)", resolve_source("efficientnet-lite0", sp), sp,
                frames, None)
    sp = resolve("fashion", None).spec
    fs = load_frames("builtin:fashion-test", sp, limit=512)
    return "fashion (test split, 512)", resolve_source("fashion", sp), sp, fs.frames, fs.labels


def measure(model: str, kwargs: dict) -> dict:
    from edgeinfer.check.doctor.run import culprit_outcomes, device_verdict, rank

    name, src, sp, frames, labels = load(model)
    lines: list[str] = []
    accepts = inspect.signature(culprit_outcomes).parameters
    kw = {k: v for k, v in kwargs.items() if k in accepts}
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    outcomes, _notes = culprit_outcomes(src, sp, frames, lambda m, *a: lines.append(m), **kw)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{name}: simulation {seconds:.1f} s wall, {cpu:.1f} s CPU (load {load0[0]:.2f} -> "
          f"{os.getloadavg()[0]:.2f})", flush=True)
    rows = []
    for scen, (prep, train, batch, shuffled) in scenarios(model).items():
        order = (np.random.default_rng(7).permutation(len(frames)) if shuffled
                 else np.arange(len(frames)))
        dev = np.empty(len(frames), np.int64)
        dev[order] = ds._run_device(src.module, [frames[i] for i in order], prep, train,
                                    batch=batch)
        ranked, _, fbn = rank(outcomes, labels, dev)
        top, verdict = device_verdict(ranked, len(dev), fbn)
        rows.append({"scenario": scen, "verdict": top,
                     "ranking": [[r.name, r.detail, round(r.score, 6)] for r in ranked]})
        print(f"  {scen:58s} -> {top:22s} {[r.name for r in ranked[:3]]}", flush=True)
    return {"model": name, "frames": len(frames), "simulation_seconds": seconds,
            "simulation_cpu_seconds": cpu,
            "load_start": load0, "load_end": os.getloadavg(), "variant_lines": lines,
            "options": {k: str(v) for k, v in kw.items()}, "scenarios": rows}


def _models(paths: list[str]) -> dict[str, dict]:
    out = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        for m in d["models"]:
            out[m["model"]] = m | {"env": d["env"], "package": d["package"]}
    return out


def _top(r: dict, k: int = 3) -> str:
    return ", ".join(f"`{n}` {s:.1%}" for n, _d, s in r["ranking"][:k])


def write_table(before: list[str], after: list[str], narrowed: list[str]) -> str:
    """docs/doctor/speed.md and speed.json from the runs' files."""
    b, a, n = _models(before), _models(after), _models(narrowed)
    out = ["# How fast the doctor is: before and after the speed-up (issue 24, part 5)", "",
           "Generated by `python tools/doctor_speed.py --table ...` from one run each of "
           "the code before (commit 8f07ecb, a git worktree on PYTHONPATH) and after, "
           "on the same machine at the same time or back to back (loads below); reading, "
           "and why CPU time is the fairer figure, in [README.md](README.md) part (f).", "",
           "| model (frames) | before: wall / CPU | after: wall / CPU | speed-up wall / CPU "
           "| load average before -> after (start) | rankings identical |",
           "|---|---|---|---|---|---|"]
    for name, am in a.items():
        bm = b[name]
        same = sum(x["ranking"] == y["ranking"] and x["verdict"] == y["verdict"]
                   for x, y in zip(bm["scenarios"], am["scenarios"], strict=True))
        order = sum([r[0] for r in x["ranking"]] == [r[0] for r in y["ranking"]]
                    for x, y in zip(bm["scenarios"], am["scenarios"], strict=True))
        bc, ac = bm.get("simulation_cpu_seconds"), am.get("simulation_cpu_seconds")
        out.append(f"| {name} | {bm['simulation_seconds']:.0f} s / "
                   + (f"{bc:.1f} s" if bc else "-") + f" | {am['simulation_seconds']:.0f} s / "
                   f"{ac:.1f} s | "
                   f"{bm['simulation_seconds'] / am['simulation_seconds']:.1f}x / "
                   + (f"{bc / ac:.1f}x" if bc else "-") + " | "
                   f"{bm['load_start'][0]:.1f} -> {am['load_start'][0]:.1f} | "
                   f"order {order}/{len(am['scenarios'])}, order+figures+verdict "
                   f"{same}/{len(am['scenarios'])} |")
    for name, nm in n.items():
        out += ["", f"Narrowed grid ({nm['options']}) on {name}: "
                f"{nm['simulation_seconds']:.0f} s wall / {nm['simulation_cpu_seconds']:.1f} s "
                f"CPU (load {nm['load_start'][0]:.1f})."]
    out += ["", "## Rankings, scenario by scenario", "",
            "| model | scenario | verdict before / after | top 3 before | top 3 after | "
            "max score change |", "|---|---|---|---|---|---|"]
    for name, am in a.items():
        for x, y in zip(b[name]["scenarios"], am["scenarios"], strict=True):
            d = max(abs(p[2] - q[2]) for p, q in zip(x["ranking"], y["ranking"], strict=True))
            out.append(f"| {name} | {y['scenario']} | `{x['verdict']}` / `{y['verdict']}` | "
                       f"{_top(x)} | {_top(y)} | {d:.3f} |")
    out += ["", "Per-variant seconds (after):", ""]
    for name, am in a.items():
        out += [f"- {name}:", "", "```", *am["variant_lines"], "```", ""]
    DOCS.joinpath("speed.json").write_text(json.dumps(
        {"before": b, "after": a, "narrowed": n}, indent=1, default=float) + "\n")
    DOCS.joinpath("speed.md").write_text("\n".join(out) + "\n")
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["--table"]:
        tab = argparse.ArgumentParser()
        tab.add_argument("--table", action="store_true")
        tab.add_argument("--before", nargs="+", required=True)
        tab.add_argument("--after", nargs="+", required=True)
        tab.add_argument("--narrowed", nargs="*", default=[])
        t = tab.parse_args()
        print(write_table(t.before, t.after, t.narrowed))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True)
    ap.add_argument("--models", default="fashion,effnet")
    ap.add_argument("--out", default="/tmp")
    ap.add_argument("--culprits", default=None, help="narrowed grid (new code only)")
    ap.add_argument("--batches", default=None, help="narrowed batch grid (new code only)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the study: one intra-op thread on a shared 2-core machine
    kwargs: dict = {}
    if args.culprits:
        kwargs["culprits"] = args.culprits.split(",")
    if args.batches:
        kwargs["batches"] = [int(b) for b in args.batches.split(",")]
    res = {"tag": args.tag, "env": ds.env(), "package": str(Path(
        __import__("edgeinfer").__file__).parent), "models": []}
    for m in args.models.split(","):
        res["models"].append(measure(m, kwargs))
    out = Path(args.out) / f"speed-{args.tag}.json"
    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
