"""``edgeinfer bench``: how fast an artifact is here, and what edgeinfer costs over the baselines.

Why one run, interleaved: a ratio of two latencies measured minutes apart on a shared or
throttling CPU says more about the machine than about the code. So all cases of one
model (every artifact given, each through the edgeinfer ``Predictor`` and through its raw
runtime, plus the PyTorch eager pipeline) are measured in the same rounds, the case order
rotating each round, and drift hits them alike.

Cases, per artifact and thread count (latency p50/p90/p99 after warm-up):

* ``edgeinfer.model`` / ``raw.model``: a decoded frame in, probabilities (and top-k) out,
  through ``Predictor.predict`` / the raw runtime as a user calls it
  (``onnxruntime.InferenceSession.run`` or LiteRT's ``frame`` signature runner);
* ``edgeinfer.e2e`` / ``raw.e2e``: encoded JPEG bytes in, top-k out
  (``cv2.imdecode`` + run + ``argsort`` for the raw runtime);
* ``tta.<policy>``: ``Predictor.predict`` end to end with that TTA policy;
* ``torch.model`` / ``torch.e2e``: the PyTorch eager pipeline a user would write without
  edgeinfer (:func:`user_preprocess`, then the eval-mode module under ``inference_mode``).

Besides: session creation time, cold start (new process -> first prediction, split into
interpreter start, imports, session and first call) with the child's peak RSS,
``import edgeinfer`` time, file size, and the achieved GFLOP/s of the model next to a
float32 numpy matmul peak measured in the same run. Processes that measure startup or
memory are separate Python interpreters, so nothing loaded here leaks into their numbers.

torch is imported only for the torch baseline (lazily, here and in its child process).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import ConfigError, EdgeInferError, ModelError

TOP_K = 5
TTA_POLICIES = ("hflip", "hflip+crops")
Progress = Callable[[str], None]
_IMREAD = {"BGR": cv2.IMREAD_COLOR, "RGB": getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR),
           "GRAY": cv2.IMREAD_GRAYSCALE}


# ---------------------------------------------------------------------------- timing helpers
def summarize(ms: np.ndarray) -> dict[str, float]:
    """p50/p90/p99, mean and min of per-call times in ms."""
    a = np.asarray(ms, np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "n": int(a.size)}


def time_calls(fn: Callable[[], Any], n: int) -> np.ndarray:
    """Wall time of ``n`` consecutive calls, in ms each (perf_counter_ns)."""
    out = np.empty(n, np.float64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out / 1e6


def interleaved(cases: dict[str, Callable[[], Any]], runs: dict[str, int], warmup: int = 10,
                rounds: int = 5) -> dict[str, np.ndarray]:
    """Warm every case up, then time them in ``rounds`` rounds, rotating the order each round.

    Each case gets ``runs[name]`` timed calls in total, spread evenly over the rounds.
    """
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rounds = max(1, min(rounds, min(runs.values())))
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            n = runs[name] * (r + 1) // rounds - runs[name] * r // rounds
            chunks[name].append(time_calls(cases[name], n))
    return {n: np.concatenate(c) for n, c in chunks.items()}


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``, in ms (for session creation)."""
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1e3


# ---------------------------------------------------------------------------- inputs
def default_image(parity_data: str | None) -> tuple[str, bytes]:
    """A real encoded JPEG fitting the model: a Fashion-MNIST test image for models checked on
    fashion-test, else scikit-learn's ``china.jpg`` (a 640x427 camera JPEG, its own bytes)."""
    if parity_data == "fashion-test":
        from edgeinfer.datasets import load_fashion_mnist

        images, _ = load_fashion_mnist("test")
        ok, buf = cv2.imencode(".jpg", images[0], [cv2.IMWRITE_JPEG_QUALITY, 95])
        return "fashion-mnist test[0] (28x28 JPEG)", buf.tobytes()
    try:
        import sklearn.datasets
    except ImportError:
        raise ConfigError("no default benchmark image (scikit-learn is missing): pass "
                          "--image PATH") from None
    p = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    return "china.jpg (640x427 JPEG)", p.read_bytes()


def decode(data: bytes, frame_color: str) -> np.ndarray:
    """What a user does with encoded bytes: cv2.imdecode in the frame's colour order."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD[frame_color])
    if img is None:
        raise ConfigError("the benchmark image cannot be decoded by OpenCV")
    return img[..., None] if img.ndim == 2 else img


def user_preprocess(data: bytes, p: dict[str, Any]) -> np.ndarray:
    """The preprocessing a user writes by hand for a torch model: OpenCV decode, colour,
    uint8 resize/crop, then normalise in numpy -> float32 [1, C, H, W] (or NHWC).

    ``p`` holds the spec's numbers (:func:`pipeline_params`). Deliberately plain: this is the
    baseline edgeinfer is compared with, not a reimplementation of the artifact's prefix.
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # BGR
    if p["color"] == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif p["color"] == "GRAY":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    th, tw = p["size"]
    h, w = img.shape[:2]
    interp = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[
        p["interpolation"]]
    if p["resize"] == "stretch":
        img = cv2.resize(img, (tw, th), interpolation=interp)
    elif p["resize"] == "shorter_crop":
        k = p["shorter"] / min(h, w)
        nh, nw = max(th, round(h * k)), max(tw, round(w * k))
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (nh - th) // 2, (nw - tw) // 2
        img = img[top:top + th, left:left + tw]
    else:  # letterbox
        k = min(th / h, tw / w)
        nh, nw = max(1, round(h * k)), max(1, round(w * k))
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (th - nh) // 2, (tw - nw) // 2
        img = cv2.copyMakeBorder(img, top, th - nh - top, left, tw - nw - left,
                                 cv2.BORDER_CONSTANT, value=[p["pad"]] * 3)
    x = img.astype(np.float32) * np.float32(p["scale"])
    x = (x - np.asarray(p["mean"], np.float32)) / np.asarray(p["std"], np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if p["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def pipeline_params(spec: Any) -> dict[str, Any]:
    """The numbers a user would copy from their training code, taken from the spec."""
    return {"color": spec.model_color, "size": list(spec.size), "resize": spec.resize,
            "shorter": spec.shorter,
            "interpolation": "area" if spec.antialias else spec.interpolation,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std),
            "layout": spec.layout, "pad": spec.pad_value}


def load_torch_model(factory: str, weights: str | None) -> Any:
    """``file.py:fn`` / ``pkg.mod:fn`` + a state dict -> the module in eval mode (imports torch)."""
    import importlib
    import importlib.util

    import torch

    target, _, attr = factory.rpartition(":")
    if target.endswith(".py"):
        mspec = importlib.util.spec_from_file_location("edgeinfer_bench_model", target)
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(target)
    net = getattr(mod, attr)()
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        net.load_state_dict(state, strict=True)
    return net.eval()


def torch_source(prov: dict[str, Any]) -> tuple[str, str | None] | None:
    """(factory, weights) of the torch model behind an artifact, from its provenance."""
    if prov.get("framework") != "torch":
        return None
    ref = prov.get("reference")
    if ref:
        from edgeinfer.convert.reference import REFERENCE_MODELS

        r = REFERENCE_MODELS.get(ref)
        if r is not None and r.kind == "torch":
            try:
                return r.factory(), str(r.weights())
            except (EdgeInferError, ImportError, OSError):
                pass
    src, w = prov.get("source"), prov.get("weights")
    if src and ":" in src and (not w or Path(w).is_file()):
        return src, w
    return None


# ---------------------------------------------------------------------------- FLOPs
def _prod(s: Sequence[int]) -> int:
    return math.prod(int(v) for v in s)


def onnx_flops(path: Path, frame: np.ndarray) -> float | None:
    """2 x multiply-adds of the model's Conv/Gemm/MatMul nodes (the preprocessing prefix
    excluded), their shapes read from one run with every such output exposed. Needs onnx."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    m = onnx.load(str(path))
    g = m.graph
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def weight(name: str) -> tuple[int, ...] | None:
        for _ in range(4):  # through DequantizeLinear / Identity / Cast
            if name in inits:
                return inits[name]
            n = producer.get(name)
            if n is None or n.op_type not in ("DequantizeLinear", "Identity", "Cast"):
                return None
            name = n.input[0]
        return None

    nodes = [n for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul")
             and not n.name.startswith("edgeinfer_pre/")]
    have = {o.name for o in g.output}
    for n in nodes:
        if n.output[0] not in have:
            g.output.append(helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        shapes = dict(zip(names, (v.shape for v in sess.run(None, {"frame": frame[None]})),
                          strict=True))
    except Exception:  # noqa: BLE001 - a model we cannot instrument has no FLOP count
        return None
    macs = 0
    for n in nodes:
        w = weight(n.input[1])
        out = shapes.get(n.output[0])
        if w is None or out is None:
            continue
        if n.op_type == "Conv":
            macs += _prod(out) * _prod(w[1:])
        elif n.op_type == "Gemm":
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            macs += _prod(out) * (w[1] if trans_b else w[0])
        else:
            macs += _prod(out) * w[-2]
    return 2.0 * macs or None


def tflite_flops(path: Path) -> float | None:
    """2 x multiply-adds of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops (LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        shapes = {t["index"]: tuple(t["shape"]) for t in it.get_tensor_details()}
        ops = it._get_ops_details()
    except Exception:  # noqa: BLE001 - private API or old LiteRT: no count
        return None
    macs = 0
    for op in ops:
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if len(ins) < 2 or not outs or ins[1] not in shapes or outs[0] not in shapes:
            continue
        w, out = shapes[ins[1]], shapes[outs[0]]
        if name == "CONV_2D":
            macs += _prod(out) * _prod(w[1:])
        elif name == "DEPTHWISE_CONV_2D":
            macs += _prod(out) * _prod(w[1:3])
        elif name == "FULLY_CONNECTED":
            macs += _prod(out) * w[-1]
    return 2.0 * macs or None


# ---------------------------------------------------------------------------- child processes
_CHILD_HEAD = """\
import time
t_start = time.time()
import json, resource, sys
a = json.loads(sys.argv[1])
"""
_CHILD_TAIL = """
t_first = time.time()
for _ in range(a["more"]):
    predict()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (forked) parent.
try:
    with open("/proc/self/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
except (OSError, StopIteration):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"t_start": t_start, "t_import": t_import, "t_session": t_session,
                  "t_first": t_first, "top1": int(top1), "rss_kb": rss,
                  "torch": "torch" in sys.modules}))
"""
CHILD = {
    "edgeinfer": """\
from edgeinfer import Predictor
t_import = time.time()
p = Predictor(a["path"], threads=a["threads"])
t_session = time.time()
def predict():
    return p.predict(a["image"], top_k=5)
top1 = predict()[0].index
""",
    "onnxruntime": """\
import cv2, numpy as np, onnxruntime as ort
t_import = time.time()
so = ort.SessionOptions()
so.intra_op_num_threads = a["threads"]
sess = ort.InferenceSession(a["path"], so, providers=["CPUExecutionProvider"])
t_session = time.time()
def predict():
    img = cv2.imdecode(np.fromfile(a["image"], np.uint8), a["flag"])
    img = img[..., None] if img.ndim == 2 else img
    probs = sess.run(None, {"frame": img[None]})[0][0]
    return np.argsort(-probs)[:5]
top1 = predict()[0]
""",
    "litert": """\
import cv2, numpy as np
from ai_edge_litert.interpreter import Interpreter
t_import = time.time()
it = Interpreter(model_path=a["path"], num_threads=a["threads"])
it.allocate_tensors()
run = it.get_signature_runner("frame")
t_session = time.time()
def predict():
    img = cv2.imdecode(np.fromfile(a["image"], np.uint8), a["flag"])
    img = img[..., None] if img.ndim == 2 else img
    probs = run(frame=img[None])["probs"][0]
    return np.argsort(-probs)[:5]
top1 = predict()[0]
""",
    "torch": """\
import cv2, numpy as np, torch
from edgeinfer.check.bench import load_torch_model, user_preprocess
torch.set_num_threads(a["threads"])
t_import = time.time()
net = load_torch_model(a["factory"], a["weights"])
t_session = time.time()
data = None
def predict():
    with open(a["image"], "rb") as f:
        x = torch.from_numpy(user_preprocess(f.read(), a["pipeline"]))
    with torch.inference_mode():
        probs = torch.softmax(net(x), -1)[0]
    return torch.topk(probs, 5).indices.tolist()
top1 = predict()[0]
""",
}

_IMPORT_CHILD = """\
import time
t0 = time.perf_counter()
import edgeinfer
t1 = time.perf_counter()
from edgeinfer import Predictor
t2 = time.perf_counter()
import json, sys
print(json.dumps({"edgeinfer_ms": (t1 - t0) * 1e3, "runtime_ms": (t2 - t0) * 1e3,
                  "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules}))
"""

_PEAK_CHILD = """\
import json, sys, time
import numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b
best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter())
           for _ in range(reps))
print(json.dumps({"gflops": 2 * n ** 3 / best / 1e9}))
"""


def _child_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if threads is not None:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    return env


def _run_child(code: str, args: Sequence[str], env: dict[str, str],
               timeout: float = 300) -> tuple[dict[str, Any], float]:
    """Run ``python -c code args``; returns (its JSON line, time.time() at spawn)."""
    t_spawn = time.time()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:300]
        raise ModelError(f"benchmark child process failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), t_spawn


def cold_start(kind: str, args: dict[str, Any], repeats: int = 3,
               more: int = 20) -> dict[str, Any]:
    """New process -> first prediction, split into phases (medians, ms), and peak RSS (MB)
    after ``more`` further predictions."""
    rows = []
    for _ in range(repeats):
        out, t0 = _run_child(_CHILD_HEAD + CHILD[kind] + _CHILD_TAIL,
                             [json.dumps({**args, "more": more})], _child_env())
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


def import_time(repeats: int = 5) -> dict[str, Any]:
    """``import edgeinfer`` and ``from edgeinfer import Predictor`` in fresh processes (ms)."""
    rows = [_run_child(_IMPORT_CHILD, [], _child_env())[0] for _ in range(repeats)]
    return {"edgeinfer_ms": float(np.median([r["edgeinfer_ms"] for r in rows])),
            "runtime_ms": float(np.median([r["runtime_ms"] for r in rows])),
            "torch_imported": any(r["torch"] for r in rows),
            "onnx_imported": any(r["onnx"] for r in rows), "repeats": repeats}


def peak_gflops(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best float32 numpy matmul rate with ``threads`` BLAS threads (a fresh process)."""
    return float(_run_child(_PEAK_CHILD, [str(n), str(reps)], _child_env(threads))[0]["gflops"])


# ---------------------------------------------------------------------------- artifacts
@dataclass
class Artifact:
    path: Path
    label: str
    format: str  # onnx | tflite
    dtype: str  # fp32 | fp16 | int8
    model: str  # what groups artifacts of one source model
    meta: Any  # ArtifactMetadata
    frame_size: tuple[int, int] | None = None  # TFLite fixed frame size
    flops: float | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> Artifact:
        from edgeinfer.runtime.inspect import read_metadata

        p = Path(path)
        meta = read_metadata(p)
        prov = meta.provenance
        fmt = "tflite" if p.suffix.lower() == ".tflite" else "onnx"
        fs = prov.get("frame_size")
        return cls(p, p.name, fmt, prov.get("quantize") or "fp32",
                   str(prov.get("reference") or prov.get("source") or p.stem), meta,
                   tuple(fs) if fs else None)


@dataclass
class BenchResult:
    """Everything one run measured; ``to_dict`` is the JSON report (samples stay here)."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    imports: dict[str, Any] = field(default_factory=dict)
    peak_gflops: dict[str, float] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[tuple[str, int], dict[str, np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from edgeinfer.check.bench_report import evaluate_targets

        return {"settings": self.settings, "machine": self.machine, "import": self.imports,
                "peak_gflops": self.peak_gflops, "results": self.results,
                "targets": evaluate_targets(self)}


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return {"cpu": cpu, "machine": platform.machine(), "cores": cores,
            "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": ort.__version__, "opencv": cv2.__version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _raw_runner(a: Artifact, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The artifact in its runtime, set up as a user would (no edgeinfer involved)."""
    if a.format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(a.path), num_threads=threads)
        it.allocate_tensors()  # as every TFLite example does; else the first call allocates
        run = it.get_signature_runner("frame")
        return lambda x: run(frame=x)["probs"]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(a.path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"frame": x})[0]


def _topk(probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]]:
    top = np.argsort(-probs)[:TOP_K]
    return [(labels[i], float(probs[i])) for i in top]


# ---------------------------------------------------------------------------- the runner
def run_bench(artifacts: Sequence[str | os.PathLike], threads: Sequence[int] = (1, 2),
              runs: int = 200, *, image: str | os.PathLike | None = None, warmup: int = 10,
              rounds: int = 5, torch_baseline: bool = True, tta: bool = True,
              cold_repeats: int = 3, progress: Progress | None = None) -> BenchResult:
    """Benchmark ``artifacts`` (.onnx / .tflite) at each thread count; see the module doc."""
    say = progress or (lambda _m: None)
    if runs < 1 or warmup < 0 or cold_repeats < 0 or not threads or min(threads) < 1:
        raise ConfigError("runs and threads must be positive, warmup and cold repeats >= 0")
    arts = [Artifact.open(p) for p in artifacts]
    if len({a.label for a in arts}) < len(arts):
        for a in arts:
            a.label = str(a.path)
    user_image = Path(image).read_bytes() if image is not None else None
    res = BenchResult(settings={"threads": list(threads), "runs": runs, "warmup": warmup,
                                "rounds": rounds, "top_k": TOP_K, "cold_repeats": cold_repeats,
                                "created": timestamp()},
                      machine=machine_info())
    say("import time (fresh processes)")
    res.imports = import_time()
    for n in threads:
        say(f"machine peak: float32 matmul, {n} thread(s)")
        res.peak_gflops[str(n)] = peak_gflops(n)
    groups: dict[str, list[Artifact]] = {}
    for a in arts:
        groups.setdefault(a.model, []).append(a)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for model, group in groups.items():
        spec = group[0].meta.spec
        if user_image is not None:
            img_name, data = Path(image).name, user_image
        else:
            img_name, data = default_image(group[0].meta.parity.get("data"))
        img_path = tmp / f"edgeinfer-bench-{os.getpid()}-{abs(hash(model))}.jpg"
        img_path.write_bytes(data)
        frame = decode(data, spec.frame_color)
        for a in group:
            if a.flops is None:
                a.flops = onnx_flops(a.path, frame) if a.format == "onnx" else tflite_flops(
                    a.path)
        src = torch_source(group[0].meta.provenance) if torch_baseline else None
        try:
            for n in threads:
                res.results += _bench_group(model, group, n, runs, warmup, rounds, data,
                                            img_name, img_path, frame, src, tta, cold_repeats,
                                            res, say)
        finally:
            img_path.unlink(missing_ok=True)
    res.machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return res


def _bench_group(model: str, group: list[Artifact], n: int, runs: int, warmup: int,
                 rounds: int, data: bytes, img_name: str, img_path: Path, frame: np.ndarray,
                 src: tuple[str, str | None] | None, tta: bool, cold_repeats: int,
                 res: BenchResult, say: Progress) -> list[dict[str, Any]]:
    """All artifacts of one model at ``n`` threads, interleaved with the torch baseline."""
    from edgeinfer.runtime.predictor import Predictor

    spec = group[0].meta.spec
    flag = _IMREAD[spec.frame_color]
    cases: dict[str, Callable[[], Any]] = {}
    nruns: dict[str, int] = {}
    rows: dict[str, dict[str, Any]] = {}
    x1 = frame[None]
    for a in group:
        say(f"{a.label}: {n} thread(s): sessions")
        row: dict[str, Any] = {
            "artifact": a.label, "path": str(a.path), "model": model, "format": a.format,
            "dtype": a.dtype, "threads": n, "size_bytes": a.path.stat().st_size,
            "image": {"name": img_name, "bytes": len(data), "shape": list(frame.shape)},
            "flops": a.flops, "raw_runtime": "litert" if a.format == "tflite" else "onnxruntime",
            "notes": []}
        p = Predictor(a.path, threads=n)
        labels = p.labels
        row["session_ms"] = {"edgeinfer": median_seconds(lambda a=a: Predictor(a.path, threads=n),
                                                         3)}
        raw_ok = a.format == "onnx" or a.frame_size is None or tuple(frame.shape[:2]) == tuple(
            a.frame_size)
        c = {f"{a.label}|edgeinfer.model": lambda p=p: p.predict(frame, top_k=TOP_K),
             f"{a.label}|edgeinfer.e2e": lambda p=p: p.predict(data, top_k=TOP_K)}
        if raw_ok:
            raw = _raw_runner(a, n)
            row["session_ms"]["raw"] = median_seconds(lambda a=a: _raw_runner(a, n), 3)

            def raw_e2e(raw=raw, labels=labels):
                img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
                img = img[..., None] if img.ndim == 2 else img
                return _topk(raw(img[None])[0], labels)

            c[f"{a.label}|raw.model"] = lambda raw=raw: raw(x1)
            c[f"{a.label}|raw.e2e"] = raw_e2e
            row["top1"] = {"edgeinfer": p.predict(data)[0].index,
                           "raw": int(np.argmax(raw(x1)[0]))}
        else:
            row["top1"] = {"edgeinfer": p.predict(data)[0].index}
            row["notes"].append(f"frame {frame.shape[1]}x{frame.shape[0]} differs from the "
                                f"TFLite frame size {a.frame_size}: the host resizes first; "
                                "no raw LiteRT baseline")
        for pol in TTA_POLICIES if tta else ():
            pt = Predictor.from_backend(p.backend, tta=pol, source=str(a.path))
            c[f"{a.label}|tta.{pol}"] = lambda pt=pt: pt.predict(data, top_k=TOP_K)
        for k, fn in c.items():
            cases[k] = fn
            nruns[k] = max(5, runs // 4) if k.endswith("hflip+crops") else runs
        rows[a.label] = row
    torch_top1 = None
    if src is not None:
        say(f"{model}: {n} thread(s): torch eager baseline")
        import torch

        torch.set_num_threads(n)
        net = load_torch_model(*src)
        params = pipeline_params(spec)
        xt = torch.from_numpy(user_preprocess(data, params))

        def torch_model():
            with torch.inference_mode():
                return net(xt)

        def torch_e2e():
            x = torch.from_numpy(user_preprocess(data, params))
            with torch.inference_mode():
                probs = torch.softmax(net(x), -1)[0]
            top = torch.topk(probs, TOP_K)
            return [(labels[i], v) for i, v in zip(top.indices.tolist(), top.values.tolist(),
                                                   strict=True)]

        cases["torch.model"], cases["torch.e2e"] = torch_model, torch_e2e
        nruns["torch.model"] = nruns["torch.e2e"] = runs
        torch_top1 = int(np.argmax(torch_model()[0].numpy()))
    say(f"{model}: {n} thread(s): timing {len(cases)} cases x {runs} runs, interleaved")
    samples = interleaved(cases, nruns, warmup=warmup, rounds=rounds)
    torch_lat = {k.split(".", 1)[1]: summarize(v) for k, v in samples.items()
                 if k.startswith("torch.")}
    out = []
    for a in group:
        row = rows[a.label]
        mine = {k.split("|", 1)[1]: v for k, v in samples.items() if k.startswith(a.label + "|")}
        lat = {k: summarize(v) for k, v in mine.items()}
        if torch_lat:
            lat |= {f"torch.{k}": v for k, v in torch_lat.items()}
            mine |= {k: v for k, v in samples.items() if k.startswith("torch.")}
            row["top1"]["torch"] = torch_top1
        row["latency_ms"] = lat
        row["notes"] += [f"{k}: p50 {v['p50']:.2f} ms is {v['p50'] / v['min']:.0f}x its minimum "
                         f"{v['min']:.2f} ms: the cores were contended during this case"
                         for k, v in lat.items() if v["p50"] > 5 * v["min"]]
        res.samples[(a.label, n)] = mine
        row["gflops"] = _gflops(a.flops, lat)
        peak = res.peak_gflops.get(str(n))
        row["peak_fraction"] = row["gflops"] / peak if row["gflops"] and peak else None
        row["ratios"] = _ratios(lat)
        if cold_repeats:
            say(f"{a.label}: {n} thread(s): cold start x{cold_repeats} (fresh processes)")
            args = {"path": str(a.path), "threads": n, "image": str(img_path), "flag": flag}
            row["cold_start"] = {"edgeinfer": cold_start("edgeinfer", args, cold_repeats)}
            if "raw.model" in lat:
                row["cold_start"][row["raw_runtime"]] = cold_start(row["raw_runtime"], args,
                                                                   cold_repeats)
            if src is not None:
                if "torch" not in rows[group[0].label].get("cold_start", {}):
                    row["cold_start"]["torch"] = cold_start(
                        "torch", {**args, "factory": src[0], "weights": src[1],
                                  "pipeline": pipeline_params(spec)}, cold_repeats)
                else:
                    row["cold_start"]["torch"] = rows[group[0].label]["cold_start"]["torch"]
        out.append(row)
    _tflite_vs_onnx(out)
    return out


def _gflops(flops: float | None, lat: dict[str, dict[str, float]]) -> float | None:
    """Achieved GFLOP/s of the model call: FLOPs over the raw runtime's p50 (else edgeinfer's)."""
    t = (lat.get("raw.model") or lat.get("edgeinfer.model") or {}).get("p50")
    return flops / (t * 1e6) if flops and t else None


def _ratios(lat: dict[str, dict[str, float]]) -> dict[str, float]:
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


def _tflite_vs_onnx(rows: list[dict[str, Any]]) -> None:
    """TFLite model-call p50 over the ONNX artifact's of the same dtype (else fp32), same run."""
    onnx = {r["dtype"]: r for r in rows if r["format"] == "onnx"}
    for r in rows:
        if r["format"] != "tflite":
            continue
        o = onnx.get(r["dtype"]) or onnx.get("fp32")
        if o is None:
            continue
        for kind in ("model", "e2e"):
            r["ratios"][f"tflite_vs_onnx_{kind}"] = (r["latency_ms"][f"edgeinfer.{kind}"]["p50"]
                                                     / o["latency_ms"][f"edgeinfer.{kind}"]["p50"])
        r["tflite_vs"] = o["artifact"]


def timestamp() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
