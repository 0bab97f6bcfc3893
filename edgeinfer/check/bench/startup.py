"""Start-up costs measured in fresh processes: cold start to the first prediction, peak RSS,
and ``import edgeinfer``.

The child is a real module (:mod:`edgeinfer.check.bench.startup_child`, run with ``python -m``),
so ruff and the tests see its code. The parent only spawns it, takes the spawn time and
turns the child's timestamps into phases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.errors import ModelError

CHILD = "edgeinfer.check.bench.startup_child"


def child_env(threads: int | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """This environment with edgeinfer importable, BLAS threads pinned, ``drop`` removed.

    The child runs from the caller's folder, so a model factory in a package there imports
    as it does for the caller (``python -m`` puts the current folder first on sys.path).
    """
    env = {k: v for k, v in os.environ.items() if k not in drop}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if threads is not None:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    return env


def run_module(module: str, args: Sequence[str], env: dict[str, str], *,
               python_flags: Sequence[str] = (), timeout: float = 300
               ) -> tuple[dict[str, Any], float, str]:
    """``python [flags] -m module args``: (its last stdout line as JSON, spawn time, stderr)."""
    t_spawn = time.time()
    try:
        proc = subprocess.run([sys.executable, *python_flags, "-m", module, *args],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelError(f"benchmark child {module} did not finish within {timeout:.0f} s"
                         ) from None
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:300]
        raise ModelError(f"benchmark child {module} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), t_spawn, proc.stderr


def cold_start(kind: str, args: dict[str, Any], repeats: int = 3,
               more: int = 20) -> dict[str, Any]:
    """New process -> first prediction, split into phases (medians, ms), and peak RSS (MB)
    after ``more`` further predictions. ``kind``: a key of ``startup_child.KINDS``."""
    rows = []
    for _ in range(repeats):
        out, t0, _err = run_module(CHILD, ["cold", kind, json.dumps({**args, "more": more})],
                                   child_env())
        rows.append({"total_ms": (out["t_first"] - t0) * 1e3,
                     "interpreter_ms": (out["t_start"] - t0) * 1e3,
                     "import_ms": (out["t_import"] - out["t_start"]) * 1e3,
                     "session_ms": (out["t_session"] - out["t_import"]) * 1e3,
                     "first_ms": (out["t_first"] - out["t_session"]) * 1e3,
                     "rss_mb": out["rss_kb"] / 1024, "top1": out["top1"],
                     "torch_imported": out["torch"]})
    res: dict[str, Any] = {k: float(np.median([r[k] for r in rows]))
                           for k in rows[0] if k.endswith(("_ms", "_mb"))}
    res["top1"] = rows[0]["top1"]
    res["torch_imported"] = rows[0]["torch_imported"]
    res["repeats"] = repeats
    return res


_IMPORTTIME = re.compile(r"import time:\s*\d+\s*\|\s*(\d+)\s*\|\s*edgeinfer\s*$", re.M)


def import_time(repeats: int = 5) -> dict[str, Any]:
    """``import edgeinfer`` (Python's own ``-X importtime`` count) and ``from edgeinfer import
    Predictor`` (the runtime: numpy, OpenCV, onnxruntime) in fresh processes, medians in ms."""
    rows = []
    for _ in range(repeats):
        out, _t, err = run_module(CHILD, ["import"], child_env(), python_flags=["-X",
                                                                                 "importtime"])
        m = _IMPORTTIME.search(err)
        if m is None:
            raise ModelError("benchmark child: no `import edgeinfer` line in -X importtime")
        pkg = int(m.group(1)) / 1e3
        rows.append({"edgeinfer_ms": pkg, "runtime_ms": pkg + out["runtime_ms"],
                     "torch": out["torch"], "onnx": out["onnx"]})
    return {"edgeinfer_ms": float(np.median([r["edgeinfer_ms"] for r in rows])),
            "runtime_ms": float(np.median([r["runtime_ms"] for r in rows])),
            "torch_imported": any(r["torch"] for r in rows),
            "onnx_imported": any(r["onnx"] for r in rows), "repeats": repeats,
            "method": "python -X importtime (cumulative time of the edgeinfer package)"}


__all__ = ["child_env", "cold_start", "import_time", "run_module"]
