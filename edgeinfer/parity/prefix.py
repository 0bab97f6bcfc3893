"""What an artifact's baked preprocessing hands its model: the pixels the stages judge.

Why: the stage gate (:mod:`edgeinfer.parity.stages`) compares the preprocessing with the
reference in grey levels and feeds the framework the artifact's OWN pixels, so it needs the
tensor between the prefix and the model, read from the artifact that ships, not rebuilt.

- ONNX: ``PREFIX_OUTPUT`` is appended as a second graph output to the serialized
  ModelProto. Protobuf parsers merge repeated occurrences of an embedded message field
  (ModelProto.graph = field 7; GraphProto.output = field 12 is repeated), so ``model +
  field7(field12(value info))`` is the same model with one more output: no parsing, no
  rewrite, no ``onnx`` package, so ``verify`` does it on the lean install.
- TFLite: litert-torch names every tensor after the module path that made it, and the
  prefix sits under ``TFLITE_PREFIX_SCOPE``; the one float tensor a prefix op produces and
  a model op consumes is the prefix output, per signature. LiteRT's
  ``experimental_preserve_all_tensors`` keeps it readable after the call (its outputs were
  bit-identical to a plain interpreter's on EfficientNet-Lite0). The runner follows the
  backend's rule: frames of the fixed size through ``frame``, others through the host
  geometry and ``resized``, so the host step is judged too.

Only numpy, onnxruntime and LiteRT here (all lazily imported).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.artifact import (
    OUTPUT_NAME,
    PREFIX_OUTPUT,
    SIG_FRAME,
    SIG_RESIZED,
    TFLITE_PREFIX_SCOPE,
    ArtifactMetadata,
    sniff_format,
)
from edgeinfer.errors import ModelError
from edgeinfer.spec import PreprocessSpec


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


def _stack(probs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(probs).astype(np.float64) if probs else np.zeros((0, 0))


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
        return pixels, _stack(probs)


def tflite_prefix_tensors(model: bytes) -> dict[str, tuple[int, int]]:
    """signature -> (subgraph, tensor) of its prefix output: the one tensor that an op under
    ``TFLITE_PREFIX_SCOPE`` produces and an op outside it consumes, followed back through a
    QUANTIZE (an int8 model quantises the prefix output under the prefix's own scope) to the
    float32 tensor. A signature where that is not exactly one float tensor is left out."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(model, 0)
    out: dict[str, tuple[int, int]] = {}
    for i in range(m.SignatureDefsLength()):
        sig = m.SignatureDefs(i)
        si = sig.SubgraphIndex()
        sg = m.Subgraphs(si)
        scoped = [TFLITE_PREFIX_SCOPE in (sg.Tensors(t).Name() or b"").decode("utf-8", "replace")
                  for t in range(sg.TensorsLength())]
        made: dict[int, int] = {}  # scoped tensor -> the op that produced it
        found = set()
        for j in range(sg.OperatorsLength()):
            op = sg.Operators(j)
            outs = [int(t) for t in op.OutputsAsNumpy()]
            if not any(scoped[t] for t in outs):
                found |= {int(t) for t in op.InputsAsNumpy() if t >= 0 and int(t) in made}
            made |= {t: j for t in outs if scoped[t]}
        floats = {_float_source(m, sg, t, made) for t in found} - {None}
        if len(floats) == 1:
            out[(sig.SignatureKey() or b"").decode()] = (si, floats.pop())
    return out


def _float_source(m: Any, sg: Any, t: int, made: dict[int, int]) -> int | None:
    """``t`` if it is float32, else the float input of the QUANTIZE that made it."""
    from ai_edge_litert import schema_py_generated as schema

    for _ in range(4):  # QUANTIZE chains are one op long; bounded all the same
        if sg.Tensors(t).Type() == schema.TensorType.FLOAT32:
            return t
        op = sg.Operators(made[t]) if t in made else None
        if op is None:
            return None
        code = m.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != \
                schema.BuiltinOperator.QUANTIZE:
            return None
        t = int(op.InputsAsNumpy()[0])
    return None


class TflitePrefixRunner:
    """An edgeinfer ``.tflite`` run as the backend runs it, returning the prefix output too."""

    def __init__(self, model: bytes, spec: PreprocessSpec,
                 where: dict[str, tuple[int, int]], threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = spec
        self.where = where
        with warnings.catch_warnings():  # "intended for debugging": that is what this is
            warnings.simplefilter("ignore", UserWarning)
            self.interp = Interpreter(model_content=bytes(model), num_threads=threads,
                                      experimental_preserve_all_tensors=True)
        self.frame = self.interp.get_signature_runner(SIG_FRAME)
        self.resized = self.interp.get_signature_runner(SIG_RESIZED)
        shape = self.frame.get_input_details()[SIG_FRAME]["shape"]
        self.frame_size = (int(shape[1]), int(shape[2]))
        self.geometry = spec.geometry()
        self.shape = spec.model_input_shape(1)

    def _pixels(self, sig: str) -> np.ndarray:
        px = np.array(self.interp.get_tensor(self.where[sig][1], self.where[sig][0]))
        if px.shape == self.shape:
            return px
        if px.size == int(np.prod(self.shape)) and self.spec.model_channels == 1:
            return px.reshape(self.shape)  # NHWC vs NCHW of one channel: the same memory
        nhwc = (1, *self.spec.size, self.spec.model_channels)
        if px.shape == nhwc and self.spec.layout == "NCHW":
            return px.transpose(0, 3, 1, 2)
        raise ModelError(f"the TFLite prefix output {list(px.shape)} is not the spec's model "
                         f"input {list(self.shape)}")

    def run(self, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """(prefix outputs, one [1, ...] array per frame; probabilities [N, K] float64)."""
        pixels: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        for f in frames:
            x = f if f.ndim == 3 else f[..., None]
            if tuple(x.shape[:2]) == self.frame_size:
                p, sig = self.frame(frame=x[None])[OUTPUT_NAME], SIG_FRAME
            else:
                p, sig = self.resized(resized=self.geometry(x))[OUTPUT_NAME], SIG_RESIZED
            pixels.append(self._pixels(sig))
            probs.append(np.asarray(p, np.float32).reshape(1, -1))
        return pixels, _stack(probs)


Runner = PrefixRunner | TflitePrefixRunner


def prefix_runner(model: bytes | bytearray | memoryview,
                  threads: int | None = None) -> Runner | None:
    """A runner that also returns the prefix output, or None where there is none to read:
    onnxruntime's int8 quantiser renames the tensors it touches, an ONNX or TFLite file from
    elsewhere has no edgeinfer prefix, a TFLite file without LiteRT cannot be run. Then the
    stages are not measured and the end-to-end comparisons judge alone."""
    try:
        fmt = sniff_format(model)
    except ModelError:
        return None
    if fmt == "tflite":
        return _tflite_runner(bytes(model), threads)
    if PREFIX_OUTPUT.encode() not in bytes(model):
        return None
    try:
        return PrefixRunner(model, threads)
    except Exception:  # noqa: BLE001 - onnxruntime's Fail: the name is there but no tensor
        return None


def _tflite_runner(model: bytes, threads: int | None) -> TflitePrefixRunner | None:
    try:
        from edgeinfer.runtime.tflite_backend import read_props

        props = read_props(model)
        where = tflite_prefix_tensors(model)
    except (ImportError, ModelError):
        return None
    if props is None or not {SIG_FRAME, SIG_RESIZED} <= set(where):
        return None
    try:
        return TflitePrefixRunner(model, ArtifactMetadata.from_props(props).spec, where,
                                  threads)
    except Exception:  # noqa: BLE001 - LiteRT's ValueError / RuntimeError: not measured
        return None
