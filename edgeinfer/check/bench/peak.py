"""The machine's float32 matmul peak, measured on the engines that run the models.

Why not just ``a @ b`` in this process: numpy's OpenBLAS obeys ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE``; set to an older core they slow it down, and a model then ran at
"143% of peak". So the peak is measured two ways and the larger counts:

* ``onnxruntime-matmul``: a MatMul through onnxruntime (MLAS, the kernels the ONNX
  artifacts' Conv and Gemm use), same thread count and session options as the backend.
  Needs the ``onnx`` package to build the one-node model.
* ``numpy-matmul``: numpy in a child process (``python -m edgeinfer.check.bench.peak``) with
  ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` removed from its environment; the BLAS
  library and the kernel it picked are reported (threadpoolctl, when installed).

Why 512x512 and the best of many calls: one call then lasts about as long as a model call
(a few ms). On a shared machine a long call (2048², a third of a second) is always
preempted, and its best time undercut the models by 2-3x (docs/bench/peak.md); a short
call, like a model call, sometimes runs undisturbed, and the best of many finds that.
A model's achieved rate uses its median call: the fraction is conservative.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from edgeinfer.check.bench.startup import child_env, run_module

#: environment variables that make OpenBLAS pick a slower kernel or blocking size
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
N, REPS = 512, 60  # matrix size and timed calls per method (see the module docstring)


def _best_gflops(fn: Any, n: int, reps: int) -> float:
    fn()
    best = min(_seconds(fn) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _seconds(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_model(n: int) -> bytes:
    """A one-node ONNX model ``Y = A @ B`` with B an ``n x n`` float32 initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "peak",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnxruntime_peak(threads: int, n: int = N, reps: int = REPS) -> dict[str, Any]:
    """GFLOP/s of an ``n``-square float32 MatMul in onnxruntime at ``threads`` threads.

    The session options are the ONNX backend's (all graph optimisations, sequential, one
    inter-op thread), so this is the engine the artifacts run on."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(matmul_model(n), so, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    gf = _best_gflops(lambda: sess.run(None, {"A": a}), n, reps)
    return {"method": "onnxruntime-matmul", "gflops": gf,
            "detail": f"onnxruntime {ort.__version__} MatMul {n}x{n} float32 (MLAS), "
                      f"{threads} intra-op thread(s), best of {reps}"}


def numpy_peak(threads: int, n: int = N, reps: int = REPS) -> dict[str, Any]:
    """GFLOP/s of numpy's float32 matmul in a child process without the OpenBLAS overrides."""
    out, _t, _err = run_module("edgeinfer.check.bench.peak", [str(n), str(reps)],
                               child_env(threads, drop=OPENBLAS_OVERRIDES))
    return {"method": "numpy-matmul", "gflops": out["gflops"],
            "detail": f"numpy {out['numpy']} matmul {n}x{n} float32, {out['blas']}, "
                      f"{' and '.join(OPENBLAS_OVERRIDES)} unset, "
                      f"best of {reps}"}


def machine_peak(threads: int, n: int = N, reps: int = REPS) -> dict[str, Any]:
    """Both methods at ``threads`` threads; ``gflops``/``method`` are the larger one's.

    A method that cannot run here (no ``onnx`` package on a lean install, a failing child)
    is listed with its reason instead of a rate."""
    methods = []
    for fn in (onnxruntime_peak, numpy_peak):
        try:
            methods.append(fn(threads, n, reps))
        except Exception as e:  # noqa: BLE001 - a missing method is reported, not fatal
            name = fn.__name__.replace("_peak", "") + "-matmul"
            methods.append({"method": name, "gflops": None,
                            "detail": f"not measured: {type(e).__name__}: {e}"})
    return _summary(methods) | {"n": n, "reps": reps}


def best_peak(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Per method the better of two :func:`machine_peak` results; the peak is the best.

    The peak is measured before the models and after each model's cases: on a shared
    machine a single measurement can land in a busy spell and undercut the models."""
    if old is None:
        return new
    methods = [o if (o["gflops"] or 0) >= (n["gflops"] or 0) else n
               for o, n in zip(old["methods"], new["methods"], strict=True)]
    return _summary(methods) | {"n": new.get("n"), "reps": new.get("reps")}


def _summary(methods: list[dict[str, Any]]) -> dict[str, Any]:
    rated = [m for m in methods if m["gflops"]]
    top = max(rated, key=lambda m: m["gflops"]) if rated else None
    return {"gflops": top["gflops"] if top else None, "method": top["method"] if top else None,
            "methods": methods}


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS kernel unknown (threadpoolctl not installed)"
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return (f"{info.get('internal_api')} {info.get('version')}, kernel "
                    f"{info.get('architecture')}, {info.get('num_threads')} thread(s)")
    return "no BLAS found by threadpoolctl"


def _child(n: int, reps: int) -> dict[str, Any]:
    """Runs in the child: the environment was prepared by :func:`numpy_peak`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return {"gflops": _best_gflops(lambda: a @ b, n, reps), "numpy": np.__version__,
            "blas": _blas()}


if __name__ == "__main__":
    import json

    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]))))
