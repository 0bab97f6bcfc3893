"""int8 by reconstruction vs calibration alone, side by side (#26.3, docs/int8/reconstruction.md).

    python tools/int8_recon_study.py quantize MODEL METHOD OUT.onnx   # one method, one process
    python tools/int8_recon_study.py evaluate MODEL METHOD ...         # agreement, latency, size
    python tools/int8_recon_study.py run MODEL METHOD ... [--timeout S] # both, each bounded
    python tools/int8_recon_study.py report docs/int8/reconstruction    # the .json and table

MODEL: ``effnet`` (EfficientNet-Lite0 fp32 artifact from ``edgeinfer convert``; calibration on
the TUNE photos of ``tools/imagenet_sample_split.py``, agreement also on the untouched FINAL
photos) or ``fashion`` (calibration on 256 fashion-train frames, final = the 10,000 test
frames). Files in ``out/int8_recon/``.

Methods: ``minmax``/``percentile`` (edgeinfer's onnxruntime path, ``--target x86-vnni``;
``minmax-avx2`` the shipped default), ``nncf`` (NNCF 3.4, performance preset, fast bias
correction), ``quark-minmax``, ``quark-cle-adaround``, ``quark-adaquant`` (AMD Quark 0.13),
``aimet-minmax``, ``aimet-adaround``, ``aimet-seqmse`` (AIMET ONNX 2.42). Each library runs
from its own venv under /work/venv-quant (they conflict with the project's pins, see the doc),
on the artifact's MODEL part: the float preprocessing prefix is cut off (its output pixels are
the library's input, so the first Conv's input is quantised as in onnx_quant.py), the final
Softmax is excluded by name, and the quantised part is grafted back behind the same prefix.
Each ``quantize`` runs in a child process so its wall time and peak RSS are its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from edgeinfer.artifact import PREFIX_OUTPUT
from edgeinfer.converter.int8.reconstruct import aimet_qdq, graft, prefix_pixels, split

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "int8_recon"
VENVS = Path("/work/venv-quant")
COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: method -> the venv whose python runs its ``quantize`` (None: the project's own)
VENV = {"nncf": "nncf", "quark-minmax": "quark", "quark-cle": "quark", "quark-cle-bc": "quark",
        "quark-adaround": "quark", "quark-cle-adaround": "quark",
        "quark-adaquant": "quark", "aimet-minmax": "aimet", "aimet-adaround": "aimet",
        "aimet-seqmse": "aimet"}
METHODS = ["fp32", "minmax-avx2", "minmax", "percentile", *VENV]
#: frames the reconstruction (AdaRound/AdaQuant/SeqMSE) optimises on, and its steps per
#: layer (Quark's default 1000; AIMET recommends 10k). Quark's AdaRound took 169 s per layer
#: of the fashion model at 1000 steps on these 2 shared cores (load 15-19), so the study
#: runs with smaller budgets, set here and recorded with each result.
RECON_FRAMES = int(os.environ.get("RECON_FRAMES", "256"))
ITERATIONS = int(os.environ.get("RECON_ITERATIONS", "1000"))


def say(msg: str) -> None:
    print(f"[recon {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sets(model: str) -> tuple[Path, dict[str, tuple[str, int | None]]]:
    """The fp32 artifact and the frame sets: calibration/tune and final (source, limit)."""
    if model == "effnet":
        split = ROOT / "out" / "imagenet_split"
        return OUT / "efficientnet-lite0.onnx", {"tune": (str(split / "tune"), None),
                                                 "final": (str(split / "final"), None)}
    return OUT / "fashion.onnx", {"tune": ("builtin:fashion-train", 256),
                                  "final": ("builtin:fashion-test", None)}


def frames(model: str, part: str):
    from edgeinfer.data.frames import load_frames
    from edgeinfer.runtime.metadata import read_metadata

    fp32, parts = sets(model)
    meta = read_metadata(str(fp32))
    src, limit = parts[part]
    return load_frames(src, meta.spec, limit=limit, class_names=meta.labels)


# -- the model part (cut the prefix off, graft the quantised part back): reconstruct.py ------

def pixels(fp32: Path, fs) -> list[np.ndarray]:
    """What the float prefix hands the model, one [1, C, H, W] array per frame."""
    return prefix_pixels(onnx.load_model(fp32), fs.frames)


class Reader:
    """An onnxruntime CalibrationDataReader over the prefix's output (quark, rewindable)."""

    def __init__(self, xs: list[np.ndarray]) -> None:
        self.xs, self.i = xs, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.xs):
            return None
        self.i += 1
        return {PREFIX_OUTPUT: self.xs[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return len(self.xs)


# -- the methods ----------------------------------------------------------------------------

def q_nncf(part: onnx.ModelProto, xs: list[np.ndarray], softmax: str) -> onnx.ModelProto:
    import nncf

    return nncf.quantize(part, nncf.Dataset(xs, lambda x: {PREFIX_OUTPUT: x}),
                         preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(xs),
                         ignored_scope=nncf.IgnoredScope(names=[softmax]))


def q_quark(part: onnx.ModelProto, xs: list[np.ndarray], softmax: str, algo: str,
            tmp: Path) -> onnx.ModelProto:
    from quark.onnx import (
        AdaQuantConfig,
        AdaRoundConfig,
        BiasCorrectionConfig,
        CLEConfig,
        Int8Spec,
        ModelQuantizer,
        QConfig,
        QLayerConfig,
        UInt8Spec,
    )
    from quark.onnx.quantization.config.spec import CalibMethod, QuantGranularity

    algos = {"minmax": [], "cle": [CLEConfig()], "cle-bc": [CLEConfig(), BiasCorrectionConfig()],
             "adaround": [AdaRoundConfig(
                 data_size=RECON_FRAMES, batch_size=2, num_iterations=ITERATIONS,
                 learning_rate=0.1, early_stop=True)],
             "cle-adaround": [CLEConfig(), AdaRoundConfig(
                 data_size=RECON_FRAMES, batch_size=2, num_iterations=ITERATIONS,
                 learning_rate=0.1, early_stop=True)],
             "adaquant": [AdaQuantConfig(
                 data_size=RECON_FRAMES, batch_size=2, num_iterations=ITERATIONS,
                 learning_rate=1e-5, early_stop=True)]}[algo]
    cfg = QConfig(global_config=QLayerConfig(
        activation=UInt8Spec(calibration_method=CalibMethod.MinMax),
        weight=Int8Spec(calibration_method=CalibMethod.MinMax,
                        quant_granularity=QuantGranularity.Channel)),
        exclude=[softmax], algo_config=algos)
    src, dst = tmp / "part.onnx", tmp / "qpart.onnx"
    onnx.save_model(part, src)
    ModelQuantizer(cfg).quantize_model(str(src), str(dst), Reader(xs))
    return onnx.load_model(dst)


def q_aimet(part: onnx.ModelProto, xs: list[np.ndarray], softmax: str,
            algo: str) -> onnx.ModelProto:
    """The module's own AIMET pass (``algo``: minmax, seqmse or adaround), at the study's
    frame and step budget."""
    return aimet_qdq(part, xs, softmax, algo, RECON_FRAMES, ITERATIONS, say)


def quantize(model: str, method: str, dest: str) -> None:
    """One method in this process; writes DEST and DEST.json (wall, peak RSS)."""
    import tempfile

    t0 = time.perf_counter()
    fp32_path, _ = sets(model)
    fp32 = onnx.load_model(fp32_path)
    tune = frames(model, "tune")
    say(f"{method}: {len(tune.frames)} calibration frames loaded")
    t1 = time.perf_counter()
    settings = {"method": method, "calibration_frames": len(tune.frames)}
    if method == "fp32":
        q = fp32
    elif method in ("minmax", "percentile", "minmax-avx2"):
        from edgeinfer.converter.int8.onnx_quant import quantize_int8

        q = quantize_int8(fp32, tune.frames, method=method.split("-")[0],
                          target="x86-avx2" if method.endswith("avx2") else "x86-vnni",
                          progress=say)
    else:
        _, part, softmax = split(fp32)
        xs = pixels(fp32_path, tune)
        dims = part.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(dims[1:], xs[0].shape[1:], strict=True):
            d.dim_value = v  # static C, H, W: AIMET's SeqMSE sizes its buffers from them
        lib, _, algo = method.partition("-")
        say(f"{method}: {lib} on the model part, softmax {softmax!r} float")
        with tempfile.TemporaryDirectory(prefix="recon_") as tmp:
            if lib == "nncf":
                qpart = q_nncf(part, xs, softmax)
            elif lib == "quark":
                qpart = q_quark(part, xs, softmax, algo, Path(tmp))
            else:
                qpart = q_aimet(part, xs, softmax, algo)
        settings |= {"library": lib, "algorithm": algo or "default",
                     "reconstruction_frames": RECON_FRAMES, "iterations": ITERATIONS}
        q = graft(fp32, qpart, settings)
    t2 = time.perf_counter()
    onnx.save_model(q, dest)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(dest + ".json").write_text(json.dumps({
        "method": method, "load_s": t1 - t0, "quantize_s": t2 - t1, "peak_rss_mb": rss,
        "settings": settings}, indent=1))
    say(f"{method}: quantised in {t2 - t1:.1f} s, peak RSS {rss:.0f} MB")


# -- evaluation -----------------------------------------------------------------------------

def float_layers(path: Path) -> tuple[int, int]:
    """(compute nodes of the model part whose weight is not fed by a DequantizeLinear, all)."""
    m = onnx.load_model(path)
    prefix, part, _ = split(m)
    producer = {o: n for n in part.graph.node for o in n.output}
    comp = [n for n in part.graph.node if n.op_type in COMPUTE]
    flt = [n for n in comp if len(n.input) < 2 or producer.get(n.input[1]) is None
           or producer[n.input[1]].op_type != "DequantizeLinear"]
    return len(flt), len(comp)


def probs_of(path: Path, fs, threads: int = 2) -> np.ndarray:
    from edgeinfer.parity.runners import ArtifactRunner

    return ArtifactRunner(str(path), name=path.stem, threads=threads).run(fs.frames)


def latency_ratio(path: Path, ref: Path, fs, threads: int) -> dict[str, float]:
    """p50 int8 / p50 fp32 at batch 1, interleaved by the one timing harness."""
    from edgeinfer.parity.runners import ArtifactRunner
    from edgeinfer.runtime.timing import interleaved, summarize

    xs = [(f if f.ndim == 3 else f[..., None])[None] for f in fs.frames[:16]]
    cases = {}
    for name, p in (("int8", path), ("fp32", ref)):
        b = ArtifactRunner(str(p), name=name, threads=threads).backend
        it = iter(range(10**9))
        cases[name] = (lambda b=b, it=it: b.run(xs[next(it) % len(xs)]))
    t = interleaved(cases, {"int8": 80, "fp32": 80}, warmup=10, rounds=8)
    s = {k: summarize(v)["p50"] for k, v in t.items()}
    return {"int8_ms": s["int8"], "fp32_ms": s["fp32"], "ratio": s["int8"] / s["fp32"]}


def evaluate(model: str, method: str) -> dict:
    from edgeinfer.parity.stats import accuracy, compare
    from edgeinfer.parity.tolerances import tolerance

    fp32, _ = sets(model)
    path = OUT / f"{model}-{method}.onnx"
    res = json.loads(Path(str(path) + ".json").read_text())
    for part in ("tune", "final"):
        fs = frames(model, part)
        cache = OUT / f"{model}-fp32-{part}.npy"
        if not cache.exists():
            np.save(cache, probs_of(fp32, fs))
        ref = np.load(cache)
        p = probs_of(path, fs)
        cmp = compare(ref, p, tolerance("onnx", "int8"), "fp32", method)
        res[part] = {"n": cmp.n, "agreement": cmp.top1_agreement, "ci95": list(cmp.top1_ci95),
                     "flips": cmp.flips, "max_abs": cmp.max_abs,
                     "accuracy": accuracy(p, fs.labels) if fs.labels is not None else None,
                     "accuracy_fp32": accuracy(ref, fs.labels) if fs.labels is not None
                     else None}
        say(f"{method} {part}: agreement {cmp.top1_agreement:.2%} [{cmp.top1_ci95[0]:.2%}, "
            f"{cmp.top1_ci95[1]:.2%}] n={cmp.n}")
        if part == "final":
            res["latency"] = {str(t): latency_ratio(path, fp32, fs, t) for t in (1, 2)}
    res["float_layers"], res["compute_layers"] = float_layers(path)
    res["size_mb"] = path.stat().st_size / 1e6
    res["load_average"] = list(os.getloadavg())
    (OUT / f"{model}-{method}.result.json").write_text(json.dumps(res, indent=1))
    say(f"{method}: latency 1t {res['latency']['1']['ratio']:.2f}x, 2t "
        f"{res['latency']['2']['ratio']:.2f}x; float layers {res['float_layers']}/"
        f"{res['compute_layers']}; {res['size_mb']:.2f} MB")
    return res


def run(model: str, methods: list[str], timeout: int) -> None:
    """Each method: ``quantize`` in its venv's python (bounded), then ``evaluate`` here."""
    for method in methods:
        dest = OUT / f"{model}-{method}.onnx"
        if not Path(str(dest) + ".json").exists():
            py = VENVS / VENV[method] / "bin/python" if method in VENV else Path(sys.executable)
            say(f"{method}: quantising with {py} (timeout {timeout} s)")
            t0 = time.perf_counter()
            try:
                r = subprocess.run([str(py), __file__, "quantize", model, method, str(dest)],
                                   timeout=timeout, cwd=ROOT)
            except subprocess.TimeoutExpired:
                say(f"{method}: TIMEOUT after {timeout} s")
                (OUT / f"{model}-{method}.result.json").write_text(json.dumps(
                    {"method": method, "error": f"timeout after {timeout} s"}))
                continue
            if r.returncode:
                say(f"{method}: failed (exit {r.returncode})")
                (OUT / f"{model}-{method}.result.json").write_text(json.dumps(
                    {"method": method, "error": f"exit {r.returncode}"}))
                continue
            info = json.loads(Path(str(dest) + ".json").read_text())
            info["child_wall_s"] = time.perf_counter() - t0
            Path(str(dest) + ".json").write_text(json.dumps(info, indent=1))
        evaluate(model, method)


def _ci(r: dict) -> str:
    return f"{r['agreement']:.2%} [{r['ci95'][0]:.2%}, {r['ci95'][1]:.2%}]"


def _acc(r: dict) -> str:
    a = r.get("accuracy")
    return f"{a['accuracy']:.2%}" if a else "-"


def report(dest: Path) -> None:
    """docs/int8/reconstruction.json (every result) and a table per model in the .md's
    generated block (between the two ``<!-- table -->`` markers)."""
    flags = sorted(set(subprocess.run(
        ["grep", "-o", "-w", r"avx2\|avx512f\|avx512_vnni", "/proc/cpuinfo"],
        capture_output=True, text=True).stdout.split()))
    results: dict[str, dict[str, dict]] = {}
    for f in sorted(OUT.glob("*.result.json")):
        model, _, method = f.name.removesuffix(".result.json").partition("-")
        results.setdefault(model, {})[method] = json.loads(f.read_text())
    dest.with_suffix(".json").write_text(json.dumps(
        {"cpu_flags": flags, "cpu_count": os.cpu_count(), "results": results}, indent=1))
    lines = [f"CPU flags: {' '.join(flags)}; {os.cpu_count()} cores.", ""]
    for model, res in results.items():
        lines += [f"### {model}", "",
                  "| method | agreement tune (95% CI) | agreement final (95% CI) | accuracy "
                  "final | latency ratio 1t / 2t | size MB | quantise s | peak RSS MB | "
                  "float layers | load |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for method in [m for m in METHODS if m in res] + [m for m in res if m not in METHODS]:
            r = res[method]
            if "error" in r:
                lines.append(f"| {method} | {r['error']} |  |  |  |  |  |  |  |  |")
                continue
            lat = r["latency"]
            lines.append(
                f"| {method} | {_ci(r['tune'])} | {_ci(r['final'])} | {_acc(r['final'])} | "
                f"{lat['1']['ratio']:.2f} / {lat['2']['ratio']:.2f} | {r['size_mb']:.2f} | "
                f"{r['quantize_s']:.0f} | {r['peak_rss_mb']:.0f} | "
                f"{r['float_layers']}/{r['compute_layers']} | {r['load_average'][0]:.1f} |")
        lines.append("")
    md = dest.with_suffix(".md")
    text = md.read_text() if md.exists() else "<!-- table -->\n<!-- table -->\n"
    head, _, rest = text.partition("<!-- table -->\n")
    _, _, tail = rest.partition("<!-- table -->\n")
    md.write_text(head + "<!-- table -->\n" + "\n".join(lines) + "<!-- table -->\n" + tail)


def main(argv: list[str]) -> None:
    cmd, model, *rest = argv
    OUT.mkdir(parents=True, exist_ok=True)
    if cmd == "report":  # MODEL is the destination here: docs/int8/reconstruction
        report(Path(model))
    elif cmd == "quantize":
        quantize(model, rest[0], rest[1])
    elif cmd == "evaluate":
        for m in rest:
            evaluate(model, m)
    else:
        timeout = 1800
        if "--timeout" in rest:
            i = rest.index("--timeout")
            timeout = int(rest[i + 1])
            rest = rest[:i] + rest[i + 2:]
        run(model, rest or METHODS, timeout)


if __name__ == "__main__":
    main(sys.argv[1:])
