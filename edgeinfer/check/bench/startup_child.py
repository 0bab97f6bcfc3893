"""The start-up measurements' child: ``python -m edgeinfer.check.bench.startup_child``.

Why a separate interpreter: cold start (new process -> first prediction) and peak memory
only mean something in a process where nothing else was loaded first. The parent
(:mod:`edgeinfer.check.bench.startup`) spawns this module and reads the one JSON line it prints.

    python -m edgeinfer.check.bench.startup_child import
    python -m edgeinfer.check.bench.startup_child cold KIND '{"path": ..., "threads": ..., ...}'

``KIND``: ``edgeinfer`` (the Predictor), ``onnxruntime`` / ``litert`` (the raw runtime as
a user writes it) or ``torch`` (the eager pipeline). Each imports only what it needs,
inside its function, after the first timestamp. Running with ``-m`` imports the
``edgeinfer`` package first (numpy and the spec, about 70 ms): that lands in every kind's
``interpreter_ms`` alike, and numpy is imported by every kind anyway.
"""

from __future__ import annotations

import time

T_START = time.time()

import json  # noqa: E402 - the timestamp above must come first
import resource  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

TOP_K = 5
Setup = Callable[[dict[str, Any]], tuple[float, Callable[[], int]]]


def _decode(path: str, flag: int) -> Any:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.fromfile(path, np.uint8), flag)
    return img[..., None] if img.ndim == 2 else img


def _edgeinfer(a: dict[str, Any]) -> tuple[float, Callable[[], int]]:
    from edgeinfer import Predictor

    t_import = time.time()
    p = Predictor(a["path"], threads=a["threads"])
    return t_import, lambda: p.predict(a["image"], top_k=TOP_K)[0].index


def _onnxruntime(a: dict[str, Any]) -> tuple[float, Callable[[], int]]:
    import numpy as np
    import onnxruntime as ort

    t_import = time.time()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a["threads"]
    sess = ort.InferenceSession(a["path"], so, providers=["CPUExecutionProvider"])

    def predict() -> int:
        probs = sess.run(None, {"frame": _decode(a["image"], a["flag"])[None]})[0][0]
        return int(np.argsort(-probs)[:TOP_K][0])

    return t_import, predict


def _litert(a: dict[str, Any]) -> tuple[float, Callable[[], int]]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    t_import = time.time()
    it = Interpreter(model_path=a["path"], num_threads=a["threads"])
    it.allocate_tensors()
    run = it.get_signature_runner("frame")

    def predict() -> int:
        probs = run(frame=_decode(a["image"], a["flag"])[None])["probs"][0]
        return int(np.argsort(-probs)[:TOP_K][0])

    return t_import, predict


def _torch(a: dict[str, Any]) -> tuple[float, Callable[[], int]]:
    import torch

    from edgeinfer.check.bench.baselines import load_torch_model, user_preprocess
    from edgeinfer.spec import PreprocessSpec

    torch.set_num_threads(a["threads"])
    t_import = time.time()
    net = load_torch_model(a["source"], a["weights"], PreprocessSpec.from_json(a["spec"]))

    def predict() -> int:
        with open(a["image"], "rb") as f:
            x = torch.from_numpy(user_preprocess(f.read(), a["pipeline"]))
        with torch.inference_mode():
            probs = torch.softmax(net(x), -1)[0]
        return int(torch.topk(probs, TOP_K).indices[0])

    return t_import, predict


KINDS: dict[str, Setup] = {"edgeinfer": _edgeinfer, "onnxruntime": _onnxruntime,
                           "litert": _litert, "torch": _torch}


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss carries over from a forked parent)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cold(kind: str, a: dict[str, Any]) -> dict[str, Any]:
    """Import, open, first prediction (timestamps), then ``more`` predictions for the RSS."""
    t_import, predict = KINDS[kind](a)
    t_session = time.time()
    top1 = predict()
    t_first = time.time()
    for _ in range(a.get("more", 20)):
        predict()
    return {"t_start": T_START, "t_import": t_import, "t_session": t_session,
            "t_first": t_first, "top1": top1, "rss_kb": peak_rss_kb(),
            "torch": "torch" in sys.modules}


def imports() -> dict[str, Any]:
    """``import edgeinfer`` is already done by ``-m``: time the runtime on top of it."""
    t0 = time.perf_counter()
    from edgeinfer import Predictor  # noqa: F401

    t1 = time.perf_counter()
    return {"runtime_ms": (t1 - t0) * 1e3, "torch": "torch" in sys.modules,
            "onnx": "onnx" in sys.modules}


def main(argv: list[str]) -> int:
    if argv[:1] == ["import"]:
        out = imports()
    elif len(argv) == 3 and argv[0] == "cold" and argv[1] in KINDS:
        out = cold(argv[1], json.loads(argv[2]))
    else:
        print(f"usage: python -m edgeinfer.check.bench.startup_child import | cold "
              f"{{{','.join(KINDS)}}} JSON", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
