"""Hostile artifacts and packs through the real CLI, in subprocesses (a script, not a test).

    python tools/fuzz_artifacts.py --budget 600 [--artifact out/fashion.onnx]
        [--tflite out/fashion.tflite] [--out docs/security/hostile_files.json]
    python tools/fuzz_artifacts.py --cases --label after [--code DIR]

``--budget SECONDS``: the suite's structure-aware strategies (tests/fuzz/test_fuzz_artifacts.py
for ONNX and TFLite, tests/fuzz/test_fuzz_packs.py for packs) draw mutants until the budget
is spent, shared evenly by the formats; each mutant runs as ``edgeinfer info FILE`` or
``edgeinfer verify ARTIFACT PACK`` in a fresh process, so a crash, a signal or a runaway
allocation shows as what a user would see. ``--cases``: the regression files of issue 31
(tests/fuzz/regressions/, made by tools/make_hostile_files.py) plus the zip bomb, measured
once each (exit code, seconds, peak RSS); ``--code DIR`` runs another checkout (the
"before" column: ``git archive`` of the commit before the fix).

The contract checked for every case: exit 0 (info; verify PASS / NOT CERTIFIED), 1 (verify
FAIL, a verdict line) or 2 with exactly one line on stderr; never a traceback, never a
signal; peak RSS within ``RSS_SLACK_MB`` of the intact file's run and wall time within
``MAX_SECONDS``. Exit status 1 if any case broke it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REGRESSIONS = REPO / "tests" / "fuzz" / "regressions"
#: A case may use this much more memory than the same command on the intact file: the
#: size cap of a pack member is far above it, so a header that is believed shows here.
RSS_SLACK_MB = 200.0
#: No case may run longer (the intact fashion files take about 2 s on two shared cores).
MAX_SECONDS = 60.0
#: The zip bombs: above the member cap (refused unread), and below it (read, held once).
BOMBS = {"edgeinfer_bomb.pack": 1_500_000_000, "edgeinfer_bomb_small.pack": 900_000_000}


@dataclass
class Outcome:
    case: str
    argv: list[str]
    rc: int | None
    signal: int | None
    seconds: float
    peak_rss_mb: float
    stderr_lines: int
    traceback: bool
    message: str

    def broken(self, rss_limit_mb: float | None = None) -> str | None:
        """Why this outcome breaks the contract (None: it holds)."""
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        if self.traceback:
            return f"traceback: {self.message}"
        if self.rc == 2 and self.stderr_lines != 1:
            return f"exit 2 with {self.stderr_lines} lines on stderr"
        if self.rc not in (0, 1, 2):
            return f"exit {self.rc}: {self.message}"
        if self.seconds > MAX_SECONDS:
            return f"{self.seconds:.0f} s > {MAX_SECONDS:.0f} s"
        if rss_limit_mb is not None and self.peak_rss_mb > rss_limit_mb:
            return f"peak RSS {self.peak_rss_mb:.0f} MB > {rss_limit_mb:.0f} MB"
        return None


def run_cli(case: str, args: list[str], *, code: Path | None = None,
            timeout: float = MAX_SECONDS * 2) -> Outcome:
    """``python -m edgeinfer ARGS`` in a fresh process; its own peak RSS from wait4."""
    root = code or REPO
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        cmd = args if args[0] == "-c" else ["-m", "edgeinfer", *args]
        p = subprocess.Popen([sys.executable, *cmd], stdout=out,
                             stderr=err, env=env, cwd=root)
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                _, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - t0
        p.returncode = 0  # reaped by wait4 above
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
        out.seek(0)
        said = out.read()[-2000:].decode("utf-8", "replace").splitlines()
    lines = [s for s in text.splitlines() if s.strip() and not s.startswith("[edgeinfer]")
             and "Warning" not in s and not s.startswith("  ")]
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    return Outcome(case=case, argv=args, rc=os.WEXITSTATUS(status) if sig is None else None,
                   signal=sig, seconds=round(seconds, 2),
                   peak_rss_mb=round(usage.ru_maxrss / 1024, 1), stderr_lines=len(lines),
                   traceback="Traceback (most recent call last)" in text,
                   message=(lines[-1] if lines else said[-1] if said else "")[:300])


def regression_cases(artifact: Path, bomb: Path, photo: Path,
                     tflite: Path) -> list[tuple[str, list[str]]]:
    """Issue 31, Why 4-5: each case as the command a user runs."""
    r = {p.name: str(p) for p in sorted(REGRESSIONS.iterdir())}
    cases: list[tuple[str, list[str]]] = []
    for name in ("onnx_metadata_not_utf8.onnx", "onnx_metadata_key_not_utf8.onnx",
                 "onnx_initializer_long.onnx", "onnx_provenance_is_null.onnx"):
        cases.append((f"info {name}", ["info", r[name]]))
    cases.append(("predict onnx_metadata_not_utf8.onnx",
                  ["predict", r["onnx_metadata_not_utf8.onnx"],
                   str(photo)]))
    if tflite.exists():  # the signature damage the fuzzer found, made from this .tflite
        from tests.fuzz.test_fuzz_artifacts import _signature_damage

        for kind in ("subgraph_index", "tensor_index", "input_name"):
            out = bomb.with_name(f"edgeinfer_sig_{kind}.tflite")
            out.write_bytes(_signature_damage(tflite.read_bytes(), kind))
            cases.append((f"info tflite signature {kind}", ["info", str(out)]))
    verify = ["verify", str(artifact)]
    for name in sorted(n for n in r if n.endswith(".pack")):
        cases.append((f"verify {name}", [*verify, r[name], "--latency-runs", "1", "-q"]))
    cases.append((f"verify bomb ({bomb.stat().st_size / 1e6:.2f} MB -> 1.5 GB)",
                  [*verify, str(bomb), "--latency-runs", "1", "-q"]))
    read = ("import sys\nfrom edgeinfer.data.packfile import read_pack\n"
            "from edgeinfer.errors import EdgeInferError\ntry:\n    read_pack(sys.argv[1])\n"
            "except EdgeInferError as e:\n    print(f'error: {e}', file=sys.stderr)\n"
            "    sys.exit(2)\n")
    for path in (bomb, bomb.with_name(bomb.stem + "_small.pack")):
        gb = BOMBS[path.name] / 1e9
        cases.append((f"read_pack bomb ({path.stat().st_size / 1e6:.2f} MB -> {gb:.1f} GB)",
                      ["-c", read, str(path)]))
    return cases


def cpu() -> dict[str, Any]:
    from edgeinfer.check.verify.run import _cpu_flags

    model = next((ln.split(":", 1)[1].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return {"cpu": model, "cpu_flags": _cpu_flags(), "cores": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}


def run_cases(a: argparse.Namespace) -> int:
    from tools.make_hostile_files import base_pack, write_bomb

    bomb = Path(tempfile.gettempdir()) / "edgeinfer_bomb.pack"
    for name, size in BOMBS.items():
        if not bomb.with_name(name).exists():
            write_bomb(bomb.with_name(name), size, base_pack(None, 1))
    import cv2
    import numpy as np

    photo = Path(tempfile.gettempdir()) / "edgeinfer_photo.png"
    cv2.imwrite(str(photo), np.full((28, 28, 3), 128, np.uint8))
    rows = []
    for case, args in regression_cases(a.artifact.resolve(), bomb, photo, a.tflite):
        if a.only and a.only not in case:
            continue
        o = run_cli(case, args, code=a.code)
        rows.append(asdict(o) | {"broken": o.broken()})
        print(f"{case:55s} rc={o.rc} sig={o.signal} {o.seconds:6.2f}s "
              f"{o.peak_rss_mb:7.1f}MB tb={o.traceback} {o.message[:90]}", flush=True)
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    old = {r["case"]: r for r in doc.get("cases", {}).get(a.label, {}).get("rows", [])}
    old.update({r["case"]: r for r in rows if not a.only or a.only in r["case"]})
    doc.setdefault("cases", {})[a.label] = {"machine": cpu(), "code": str(a.code or "HEAD"),
                                            "rows": list(old.values())}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def fuzz(a: argparse.Namespace) -> int:
    """Mutants of each format through the CLI until ``--budget`` is spent (see module doc)."""
    from tests.fuzz.test_fuzz_artifacts import onnx_mutants, tflite_mutants
    from tests.fuzz.test_fuzz_packs import build_seed_pack, pack_mutants

    work = Path(tempfile.mkdtemp(prefix="edgeinfer_fuzz_"))
    art = a.artifact.resolve()
    seed_pack = build_seed_pack(art, work / "seed.pack")
    verify = ["verify", str(art)]
    formats = [("onnx", onnx_mutants(art.read_bytes()), lambda p: ["info", p]),
               ("pack", pack_mutants(seed_pack.read_bytes()),
                lambda p: [*verify, p, "--latency-runs", "1", "-q"])]
    if a.tflite.exists():
        formats.insert(1, ("tflite", tflite_mutants(a.tflite.read_bytes()),
                           lambda p: ["info", p]))
    report: dict[str, Any] = {"budget_s": a.budget, "machine": cpu(), "formats": {}}
    intact = {"onnx": art, "tflite": a.tflite, "pack": seed_pack}
    for fmt, strategy, argv in formats:
        stats = _fuzz_format(fmt, strategy, argv, intact[fmt], a.budget / len(formats),
                             a.seed, work)
        report["formats"][fmt] = stats
        print(f"{fmt}: {stats['cases']} cases, exits {stats['exit']}, "
              f"{len(stats['broken'])} broken, max RSS {stats['max_rss_mb']:.0f} MB "
              f"(limit {stats['rss_limit_mb']:.0f}), max {stats['max_seconds']:.1f} s",
              flush=True)
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    report["seed"] = a.seed
    doc.setdefault("fuzz_runs", []).append(report)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if any(f["broken"] for f in report["formats"].values()) else 0


def _fuzz_format(fmt: str, strategy: Any, argv: Any, intact: Path, budget: float,
                 seed: int, work: Path) -> dict[str, Any]:
    """One format's share of the budget: batches of 5 Hypothesis examples (generation
    only: a broken case is kept as a file, not shrunk), each run through the CLI."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    base = run_cli(f"{fmt} intact", argv(str(intact)))
    limit = base.peak_rss_mb + RSS_SLACK_MB
    stats: dict[str, Any] = {"cases": 0, "exit": {}, "broken": [], "max_rss_mb": 0.0,
                             "max_seconds": 0.0, "intact_rss_mb": base.peak_rss_mb,
                             "rss_limit_mb": limit, "messages": {}}
    end = time.monotonic() + budget

    def one(raw: bytes) -> None:
        if time.monotonic() >= end:
            return
        n = stats["cases"]
        path = work / f"{fmt}_{n}.{fmt}"
        path.write_bytes(raw)
        o = run_cli(f"{fmt} #{n}", argv(str(path)))
        stats["cases"] += 1
        stats["exit"][str(o.rc)] = stats["exit"].get(str(o.rc), 0) + 1
        stats["max_rss_mb"] = max(stats["max_rss_mb"], o.peak_rss_mb)
        stats["max_seconds"] = max(stats["max_seconds"], o.seconds)
        key = re.sub(r"/\S+", "PATH", o.message)[:90]
        stats["messages"][key] = stats["messages"].get(key, 0) + 1
        why = o.broken(limit)
        if why:
            keep = work / "broken" / path.name
            keep.parent.mkdir(exist_ok=True)
            path.replace(keep)
            stats["broken"].append({"file": str(keep), "why": why})
            print(f"BROKEN {fmt} #{n}: {why}", flush=True)
        else:
            path.unlink()

    batch = 0
    while time.monotonic() < end:
        run = settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate],
                       suppress_health_check=list(HealthCheck))(
            hseed(seed * 100_003 + batch)(given(strategy)(one)))
        run()
        batch += 1
    stats["messages"] = dict(sorted(stats["messages"].items(), key=lambda kv: -kv[1])[:25])
    return stats


def table(doc: dict[str, Any]) -> str:
    """The before/after table of docs/security/hostile_files.md, from the JSON."""
    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return "- | - | -"
        rc = f"signal {r['signal']}" if r["signal"] is not None else f"exit {r['rc']}"
        tb = ", traceback" if r["traceback"] else ""
        lines = f", {r['stderr_lines']} lines" if r["rc"] == 2 and r["stderr_lines"] != 1 else ""
        return f"{rc}{tb}{lines} | {r['seconds']:.2f} s | {r['peak_rss_mb']:.0f} MB"

    before = {r["case"]: r for r in doc["cases"]["before"]["rows"]}
    after = {r["case"]: r for r in doc["cases"]["after"]["rows"]}
    out = ["| case | before: exit | time | peak RSS | after: exit | time | peak RSS | after: "
           "the line |", "|---|---|---|---|---|---|---|---|"]
    for case in sorted(after, key=lambda c: (c.split()[0], c)):
        msg = re.sub(r"^(edgeinfer: )?error: ", "", after[case]["message"])
        msg = re.sub(r"/\S*/", "", msg).replace("|", "\\|")[:150]
        out.append(f"| {case} | {cell(before.get(case))} | {cell(after[case])} | {msg} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=0, help="seconds of fuzzing in all")
    ap.add_argument("--cases", action="store_true", help="measure the regression cases")
    ap.add_argument("--label", default="after", help="--cases: the column (before / after)")
    ap.add_argument("--code", type=Path, help="--cases: run this checkout instead")
    ap.add_argument("--only", help="--cases: only the cases whose name holds this")
    ap.add_argument("--artifact", type=Path, default=REPO / "out" / "fashion.onnx")
    ap.add_argument("--tflite", type=Path, default=REPO / "out" / "fashion.tflite")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "security" / "hostile_files.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out")
    a = ap.parse_args(argv)
    if a.cases:
        return run_cases(a)
    if a.table:
        print(table(json.loads(a.out.read_text())))
        return 0
    if a.budget <= 0:
        ap.error("pass --budget SECONDS or --cases")
    return fuzz(a)


if __name__ == "__main__":
    raise SystemExit(main())
