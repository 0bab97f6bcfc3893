"""Stage parity: preprocessing and model judged apart, each with its own bound.

Why: one end-to-end bound (the framework fed the numpy/OpenCV reference vs the artifact fed
the raw frame, max |dprob| <= 1e-4) refuses correct conversions of sensitive networks. The
baked resize and the reference differ by float rounding only (about 0.01 grey levels), and
on MobileNet-class nets with calibrated BatchNorm that alone moves probabilities by more than
1e-4 (issue 18). So every artifact is judged in two stages that each compare like with like:

- ``preprocessing``: the artifact's OWN prefix output (the tensor ``PREFIX_OUTPUT`` that the
  baked preprocessing graph hands to the model) vs ``spec.reference(frame)``, as max |diff|
  in grey levels of the 0..255 frame (``|dy| * std / scale``), bounded by the registry's
  ``("stage", "preprocessing*")`` entry: rounding is ~0.01, a real mistake (swapped
  channels, another interpolation or size) is tens of grey levels.
- ``model``: the framework fed the artifact's own prefix output vs the artifact's
  probabilities, with the fp32 bound of the artifact's format: both sides see the same
  pixels, so only the model's arithmetic (BatchNorm folding, export, kernels) differs.
- ``end-to-end``: the old figure (framework on the reference pixels vs the artifact on the
  frame) is still computed and reported, not judged: it adds the network's sensitivity to
  rounding-level pixel noise, which is a property of the model, not of the conversion.

The prefix output is read by appending one graph output to the serialized ModelProto:
protobuf parsers merge repeated occurrences of an embedded message field (ModelProto.graph
= field 7; GraphProto.output = field 12 is repeated), so ``model + field7(field12(value
info))`` is the same model with one more output. No parsing, no rewrite and no ``onnx``
package, so ``verify`` does the same on the lean install. Only numpy and onnxruntime here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeinfer.artifact import OUTPUT_NAME, PREFIX_OUTPUT
from edgeinfer.parity.runners import softmax
from edgeinfer.parity.stats import Comparison, compare
from edgeinfer.parity.tolerances import Tolerance, tolerance
from edgeinfer.spec import PreprocessSpec

PREPROCESSING, MODEL, END_TO_END = "preprocessing", "model", "end-to-end"
STAGES = (PREPROCESSING, MODEL, END_TO_END)
GREY = "grey levels"
PROB = "probability"
CHUNK = 64  # frames per onnxruntime call (pixels of 64 photos at 224x224: 38 MB)


@dataclass(frozen=True)
class StageCheck:
    """One stage: what was compared with what, its worst difference and the verdict.

    ``bound`` is None for a figure that is reported, not judged (end-to-end).
    """

    stage: str  # preprocessing | model | end-to-end
    reference: str
    target: str
    unit: str  # grey levels | probability
    n: int
    max_abs: float
    mean_abs: float
    bound: float | None
    passed: bool
    reason: str
    comparison: Comparison | None = None  # probabilities (model, end-to-end)

    @property
    def judged(self) -> bool:
        return self.bound is not None

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL" if self.judged else "reported"

    def summary(self) -> str:
        """One line, e.g. ``preprocessing PASS: onnx-fp32 prefix vs reference ...``."""
        unit = "grey" if self.unit == GREY else "|dprob|"
        bound = f" (bound {self.bound:.2g})" if self.bound is not None else " (not judged)"
        top1 = (f", top-1 agreement {self.comparison.top1_agreement:.2%}"
                if self.comparison is not None else "")
        return (f"{self.stage} {self.verdict}: {self.target} vs {self.reference}, n={self.n} "
                f"max {unit} {self.max_abs:.3g}{bound}{top1}")

    def problem(self) -> str | None:
        """What failed, in one phrase naming the stage (None when it passed or is reported)."""
        if self.passed or not self.judged:
            return None
        unit = "grey levels" if self.unit == GREY else "max|dprob|"
        extra = ""
        if self.comparison is not None and self.comparison.problems():
            extra = " (" + "; ".join(self.comparison.problems()) + ")"
        return (f"{self.stage} stage: {self.target} vs {self.reference} {unit} "
                f"{self.max_abs:.3g} > {self.bound:.2g}{extra}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["comparison"] = self.comparison.to_dict() if self.comparison else None
        d["verdict"] = self.verdict
        return d


# ---------------------------------------------------------------- the artifact's prefix output
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def with_prefix_output(model: bytes | bytearray | memoryview) -> bytes:
    """The ONNX artifact with ``PREFIX_OUTPUT`` as a second graph output (module docstring)."""
    float_tensor = _field(1, b"\x08\x01")  # TypeProto.tensor_type {elem_type: FLOAT}
    value_info = _field(1, PREFIX_OUTPUT.encode()) + _field(2, float_tensor)
    return bytes(model) + _field(7, _field(12, value_info))


class PrefixRunner:
    """An ONNX artifact that also returns what its preprocessing prefix hands the model."""

    def __init__(self, model: bytes | bytearray | memoryview, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(with_prefix_output(model), opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def run(self, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """(prefix outputs, one [1, ...] array per frame; probabilities [N, K] float64)."""
        pixels: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        for f in frames:  # frames may differ in size; batch 1 keeps memory flat
            x = f if f.ndim == 3 else f[..., None]
            p, px = self.session.run([OUTPUT_NAME, PREFIX_OUTPUT], {self.input: x[None]})
            pixels.append(px)
            probs.append(p)
        return pixels, (np.concatenate(probs).astype(np.float64) if probs
                        else np.zeros((0, 0)))


def prefix_runner(model: bytes | bytearray | memoryview,
                  threads: int | None = None) -> PrefixRunner | None:
    """A PrefixRunner, or None when the graph has no ``PREFIX_OUTPUT`` tensor: onnxruntime's
    int8 quantiser renames the tensors it touches, and an ONNX file from elsewhere has none.
    Then the stages are not measured and the end-to-end comparisons judge alone."""
    if PREFIX_OUTPUT.encode() not in bytes(model):
        return None
    try:
        return PrefixRunner(model, threads)
    except Exception:  # noqa: BLE001 - onnxruntime's Fail: the name is there but no tensor
        return None


# ---------------------------------------------------------------- the stages
def grey_levels(diff: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """|model-input difference| [N, ...] in grey levels of the 0..255 frame: y = (x*scale -
    mean) / std, so dx = dy * std / scale, per model channel."""
    c = spec.model_channels
    std = np.broadcast_to(np.asarray(spec.std, np.float64), (c,))
    shape = (1, c, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, c)
    return np.abs(diff) * (std.reshape(shape) / spec.scale)


def preprocessing_stage(spec: PreprocessSpec, frames: Sequence[np.ndarray],
                        pixels: Sequence[np.ndarray], target: str = "artifact prefix",
                        reference: str = "numpy/OpenCV reference") -> StageCheck:
    """The artifact's prefix output vs the spec's reference, in grey levels."""
    tol = tolerance("stage", PREPROCESSING)
    worst, total, count = 0.0, 0.0, 0
    for f, px in zip(frames, pixels, strict=True):
        ref = spec.reference(f)
        if ref.shape != px.shape:
            raise ValueError(f"prefix output {px.shape} vs reference {ref.shape}")
        g = grey_levels(px.astype(np.float64) - ref, spec)
        g = np.where(np.isfinite(g), g, np.inf)
        worst = max(worst, float(g.max()))
        total += float(g.sum())
        count += g.size
    n = len(pixels)
    return StageCheck(PREPROCESSING, reference, target, GREY, n, worst,
                      total / count if count else 0.0, tol.max_abs,
                      bool(np.isfinite(worst) and worst <= tol.max_abs), tol.reason)


def model_stage(framework_probs: np.ndarray, artifact_probs: np.ndarray, tol: Tolerance,
                reference: str, target: str) -> StageCheck:
    """The framework fed the artifact's own prefix output vs the artifact's probabilities."""
    c = compare(framework_probs, artifact_probs, tol, reference=reference, target=target)
    return StageCheck(MODEL, reference, target, PROB, c.n, c.max_abs, c.mean_abs, tol.max_abs,
                      c.passed, tol.reason, c)


def end_to_end(source_probs: np.ndarray, artifact_probs: np.ndarray, tol: Tolerance,
               reference: str, target: str) -> StageCheck:
    """The old single figure, reported (not judged): see the module docstring."""
    c = compare(source_probs, artifact_probs, tol, reference=reference, target=target)
    return StageCheck(END_TO_END, reference, target, PROB, c.n, c.max_abs, c.mean_abs, None,
                      True, "reported: includes the network's sensitivity to rounding-level "
                      "pixel differences, judged stage by stage above", c)


def framework_on(runner: Any, pixels: Sequence[np.ndarray]) -> np.ndarray:
    """A source runner's model (``ReferencePreprocessed.model``) fed given model inputs."""
    out = []
    for s in range(0, len(pixels), CHUNK):
        y = np.asarray(runner.model(np.concatenate(pixels[s:s + CHUNK])), np.float64)
        out.append(softmax(y) if runner.apply_softmax else y)
    return np.concatenate(out) if out else np.zeros((0, 0))


def stage_checks(model: bytes, spec: PreprocessSpec, frames: Sequence[np.ndarray],
                 source: Any, source_probs: np.ndarray | None, fmt: str = "onnx",
                 dtype: str = "fp32", target: str = "onnx-fp32",
                 framework: str = "framework",
                 say: Callable[[str], None] | None = None) -> list[StageCheck]:
    """Preprocessing, model and (when ``source_probs`` is given) end-to-end for an ONNX
    artifact; ``source`` is the framework runner (a ``ReferencePreprocessed``). Empty when
    the artifact has no prefix output (:func:`prefix_runner`)."""
    runner = prefix_runner(model)
    if runner is None:
        return []
    pixels, probs = runner.run(frames)
    tol = tolerance(fmt, dtype)
    checks = [preprocessing_stage(spec, frames, pixels, f"{target} prefix"),
              model_stage(framework_on(source, pixels), probs, tol,
                          f"{framework} on {target}'s pixels", target)]
    if source_probs is not None:
        checks.append(end_to_end(source_probs, probs, tol, f"{framework} on reference pixels",
                                 target))
    for c in checks:
        (say or (lambda _m: None))(c.summary())
    return checks


def stage_row(c: StageCheck) -> tuple[str, str, str, str]:
    """(name, max |diff| with its unit, bound, verdict): one table row in every report."""
    unit = " grey" if c.unit == GREY else ""
    bound = f"<= {c.bound:.2g}{unit}" if c.bound is not None else "not judged"
    return f"{c.stage} stage", f"{c.max_abs:.2g}{unit}", bound, c.verdict


def markdown_table(checks: Sequence[StageCheck]) -> list[str]:
    """The stages as a Markdown table (ladder and verify reports)."""
    if not checks:
        return []
    out = ["| stage | compared | max \\|diff\\| | bound | verdict |", "|---|---|---|---|---|"]
    for c in checks:
        name, worst, bound, verdict = stage_row(c)
        out.append(f"| {c.stage} | {c.target} vs {c.reference} | {worst} | {bound} | "
                   f"{verdict} |")
    return out


def failures(checks: Sequence[StageCheck]) -> list[str]:
    """One phrase per failed judged stage, in stage order."""
    return [p for p in (c.problem() for c in checks) if p]
