"""LiteRT backend: serve a ``.tflite`` artifact (or a plain third-party classifier).

Runtime-lean: numpy, OpenCV (through the spec's reference geometry) and the LiteRT
interpreter (``ai-edge-litert``; ``tflite_runtime`` as an import fallback). No torch,
tensorflow, onnx or litert-torch.

**Frame sizes.** An edgeinfer ``.tflite`` takes uint8 frames of ONE size, fixed at
conversion (``edgeinfer convert --format tflite --frame-size HxW``; by default the size
of the parity frames, or ``spec.size`` when they differ). It holds two signatures
sharing one set of weights:

* ``frame``: uint8 ``[1, H, W, C]`` at the fixed size; the whole spec runs in the graph.
* ``resized``: float32 ``[1, h, w, C]`` at ``spec.size``: a frame after the spec's
  geometric step (resize, crop or letterbox), before colour and normalisation.

A frame of the fixed size goes straight into ``frame``. A frame of any other size takes
one documented host-side step: the spec's geometry runs on the host with the spec's own
numpy/OpenCV reference (``PreprocessSpec.reference``, float32, nothing rounded back to
uint8) and the result goes into ``resized``; colour, normalisation, the model and the
softmax still run in the graph. The parity check (``edgeinfer.parity.runners``)
goes through this same class, so the host step is measured, not hidden. (Why fixed:
litert-torch cannot lower a resize whose size depends on a dynamic input shape.)

**Batches.** The graph has batch 1; ``run`` invokes it once per frame (a batch-8 call
was no faster per image than eight batch-1 calls on these CPUs).

**Threads.** ``threads`` is the interpreter's thread count (``None``: the CPUs this
process may use, capped at 4). XNNPACK is LiteRT's default CPU delegate and is used
unless ``xnnpack=False`` (then LiteRT's builtin kernels run).

**Concurrency.** A LiteRT interpreter is not thread-safe. The backend keeps a pool of
``pool_size`` interpreters (default 1); each call leases one and returns it, so any
number of threads may call ``run`` at once: with one interpreter they take turns, with
more they run in parallel (each interpreter has its own buffers and XNNPACK weights).

**Metadata.** The artifact's props (``edgeinfer.spec``, ``.labels``, ...) are a JSON
object in the flatbuffer's ``metadata`` table under the name ``edgeinfer``; they are
read with the LiteRT flatbuffer schema bindings shipped in ``ai-edge-litert``.

**Bring your own.** A ``.tflite`` without edgeinfer metadata (any image classifier with
one image input and one score output) is served when ``spec=`` says how a frame becomes
its input: the whole spec then runs on the host (the reference) and the result is
quantised with the input's scale and zero point if the input is integer. Outputs are
dequantised; ``softmax=None`` applies a softmax unless the output already is a
probability distribution (non-negative, summing to 1 within 1e-3). Without ``spec=``
the error says what the model takes and what to pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgeinfer.artifact import (
    FORMAT_VERSION,
    KEY_FORMAT,
    KEY_LABELS,
    KEY_PARITY,
    KEY_PROVENANCE,
    KEY_SPEC,
    OUTPUT_NAME,
    SIG_FRAME,
    SIG_RESIZED,
    TFLITE_IDENTIFIER,
    ArtifactMetadata,
)
from edgeinfer.data.files import read_regular
from edgeinfer.errors import ConfigError, ModelError, SpecError, positive_int
from edgeinfer.errors import one_line as _one_line
from edgeinfer.probs import as_probabilities, softmax
from edgeinfer.runtime.backend import default_threads
from edgeinfer.runtime.native_log import XNNPACK_BANNER, banner_once
from edgeinfer.runtime.tflite_meta import check_signatures, read_props
from edgeinfer.spec import PreprocessSpec, resolve_spec

OUTPUT = OUTPUT_NAME
SIGS = (SIG_FRAME, SIG_RESIZED)

try:  # the maintained LiteRT runtime
    from ai_edge_litert.interpreter import Interpreter as _Interpreter
    from ai_edge_litert.interpreter import OpResolverType as _OpResolverType

    RUNTIME = "litert"
except ImportError:  # pragma: no cover - exercised only where ai-edge-litert is missing
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter
        from tflite_runtime.interpreter import OpResolverType as _OpResolverType

        RUNTIME = "tflite_runtime"
    except ImportError:
        _Interpreter = None
        _OpResolverType = None
        RUNTIME = ""



def open_interpreter(model: bytes, threads: int, *, xnnpack: bool = True,
                     source: str = "tflite model") -> Any:
    """A LiteRT interpreter on the model's bytes, tensors allocated: the one place the
    runtime builds one (this backend and ``runtime.detect``'s Detector), so the XNNPACK
    choice, its banner on fd 2 and the load error are said once. ModelError when no LiteRT
    is installed or the file does not load."""
    if _Interpreter is None:
        raise ModelError("serving .tflite files needs a LiteRT interpreter: "
                         "pip install 'edgeinfer[tflite]' (ai-edge-litert)")
    resolver = (_OpResolverType.AUTO if xnnpack
                else _OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        with banner_once(XNNPACK_BANNER, xnnpack):  # LiteRT's C++ line on fd 2
            it = _Interpreter(model_content=model, num_threads=threads,
                              experimental_op_resolver_type=resolver)
            it.allocate_tensors()
    except Exception as e:  # noqa: BLE001 - ValueError / RuntimeError from the wrapper
        raise ModelError(f"cannot load {source} as a TFLite model (damaged, truncated "
                         f"or unsupported ops): {_one_line(e)}") from None
    return it


# ---------------------------------------------------------------------------- metadata
def read_tflite_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    """Metadata of an edgeinfer .tflite artifact (ModelError if missing or damaged)."""
    props = read_props(read_regular(path, "artifact", ModelError), str(path))
    return ArtifactMetadata.from_props(props or {}, str(path))


# ---------------------------------------------------------------------------- backend
class _Slot:
    """One interpreter and the callables that run it."""

    def __init__(self, interp: Any) -> None:
        self.interp = interp
        self.frame = None
        self.resized = None


class TFLiteBackend:
    """A ``.tflite`` file in LiteRT interpreters: uint8 frames in, probabilities out.

    ``model``: a path or the file's bytes. ``threads``: interpreter threads (``None``:
    auto, at most 4). ``xnnpack``: use LiteRT's default XNNPACK delegate (default).
    ``pool_size``: interpreters to keep (thread-safety, see the module docstring).
    ``spec`` / ``labels`` / ``softmax``: only for a .tflite without edgeinfer metadata.

    Raises ``ModelError`` for a missing, damaged or unusable file and ``ConfigError`` for
    bad arguments.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes | bytearray,
        threads: int | None = None,
        *,
        xnnpack: bool = True,
        pool_size: int = 1,
        spec: PreprocessSpec | dict | str | None = None,
        labels: Sequence[str] | None = None,
        softmax: bool | None = None,
        source: str | None = None,
    ) -> None:
        self.threads = positive_int("threads", threads, default_threads())
        self.pool_size = positive_int("pool_size", pool_size)
        self.xnnpack = bool(xnnpack)
        if _Interpreter is None:
            raise ModelError("serving .tflite files needs a LiteRT interpreter: "
                             "pip install 'edgeinfer[tflite]' (ai-edge-litert)")
        if isinstance(model, (bytes, bytearray, memoryview)):
            data = bytes(model)
            self.source = source or "tflite model"
        else:
            self.source = source or str(model)
            data = read_regular(model, "model file", ModelError)
        if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
            raise ModelError(f"{self.source} is not a TFLite model (no 'TFL3' file identifier;"
                             f" {len(data)} bytes): is the file complete?")
        self._data = data
        check_signatures(data, self.source)  # LiteRT trusts them (a SIGSEGV otherwise)
        first = self._new_interpreter()  # verifies the flatbuffer before we read it
        props = read_props(data, self.source)
        self._softmax = softmax
        if props is not None and KEY_SPEC in props:
            if spec is not None or labels is not None:
                raise ConfigError(f"{self.source} is an edgeinfer artifact with its own spec "
                                  "and labels; spec= and labels= are only for .tflite files "
                                  "without edgeinfer metadata")
            self._init_artifact(first, props)
        else:
            self._init_plain(first, spec, labels)
        self._pool: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._pool.put(self._slot(first))
        for _ in range(self.pool_size - 1):
            self._pool.put(self._slot(self._new_interpreter()))

    # ------------------------------------------------------------------ loading
    def _new_interpreter(self) -> Any:
        return open_interpreter(self._data, self.threads, xnnpack=self.xnnpack,
                                source=self.source)

    def _init_artifact(self, it: Any, props: dict[str, str]) -> None:
        self.mode = "artifact"
        meta = ArtifactMetadata.from_props(props, self.source)
        self._props = dict(props)
        self.spec = meta.spec
        try:  # a missing or damaged signature table: LiteRT's ValueError / KeyError (issue 31)
            fin, rin = (it.get_signature_runner(n).get_input_details()[n] for n in SIGS)
            k = int(it.get_signature_runner(SIG_FRAME).get_output_details()[OUTPUT]["shape"][-1])
        except (KeyError, ValueError, IndexError, RuntimeError) as e:
            raise ModelError(f"{self.source} has edgeinfer metadata but not usable signatures "
                             f"{SIGS} ({_one_line(e, 120)}): reconvert it with `edgeinfer "
                             "convert --format tflite`") from None
        c = self.spec.frame_channels
        fs, rs = tuple(int(v) for v in fin["shape"]), tuple(int(v) for v in rin["shape"])
        if (fin["dtype"] != np.uint8 or len(fs) != 4 or fs[0] != 1 or fs[3] != c
                or rin["dtype"] != np.float32 or rs != (1, *self.spec.size, c)):
            raise ModelError(f"{self.source} is inconsistent: frame input {fs} "
                             f"{np.dtype(fin['dtype']).name}, resized input {rs} for a spec "
                             f"of size {self.spec.size} with {c}-channel frames")
        self.frame_size = (fs[1], fs[2])
        self._input_shape = (None, fs[1], fs[2], c)
        self._output_shape = (None, k)
        self._geometry = self.spec.geometry()

    def _init_plain(self, it: Any, spec: Any, labels: Sequence[str] | None) -> None:
        self.mode = "plain"
        ins, outs = it.get_input_details(), it.get_output_details()
        desc = self._describe(ins, outs)
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f"{self.source} has no edgeinfer metadata and is not a plain "
                             f"image classifier (one input, one output): {desc}")
        self._in, self._out = ins[0], outs[0]
        if spec is None:
            raise ModelError(f"{self.source} has no edgeinfer metadata (no spec, no labels): "
                             f"{desc}. Pass spec= (a PreprocessSpec or its dict/JSON: size, "
                             "frame_color, model_color, resize, scale, mean, std, layout) "
                             "saying how a frame becomes that input, and labels=, to serve it; "
                             "or convert the source model with `edgeinfer convert`")
        try:
            spec = resolve_spec(spec)
        except SpecError as e:
            raise ConfigError(f"spec= for {self.source}: {e}") from None
        self.spec = spec
        shape = tuple(int(v) for v in self._in["shape"])
        want = spec.model_input_shape(1)
        if shape != want:
            dtype = np.dtype(self._in["dtype"]).name
            raise ModelError(f"{self.source} takes {dtype} {list(shape)} "
                             f"but the spec gives {list(want)} ({spec.layout}, "
                             f"{spec.model_channels} channel(s), size {list(spec.size)}): fix "
                             "spec.size / layout / model_color")
        if self._in["dtype"] not in (np.float32, np.uint8, np.int8):
            raise ModelError(f"{self.source} takes {np.dtype(self._in['dtype']).name} input; "
                             "only float32, uint8 and int8 image inputs are supported")
        k = int(np.prod(self._out["shape"]))
        if k < 1:
            raise ModelError(f"{self.source} has an empty output {list(self._out['shape'])}")
        self._k = k
        if labels is not None:
            labels = [str(v) for v in labels]
            if len(labels) != k:
                raise ConfigError(f"{len(labels)} labels given for {self.source}, which outputs "
                                  f"{k} scores")
        self.frame_size = None
        self._input_shape = (None, None, None, spec.frame_channels)
        self._output_shape = (None, k)
        self._props = {
            KEY_FORMAT: FORMAT_VERSION, KEY_SPEC: spec.to_json(),
            KEY_LABELS: json.dumps(list(labels or [])),
            KEY_PROVENANCE: json.dumps({"source": self.source, "framework": "tflite",
                                        "edgeinfer_metadata": False}),
            KEY_PARITY: "{}",
        }

    @staticmethod
    def _describe(ins: list[dict], outs: list[dict]) -> str:
        def one(d: dict) -> str:
            q = d.get("quantization") or (0.0, 0)
            qs = f" (scale {q[0]:g}, zero point {q[1]})" if q and q[0] else ""
            return f"{np.dtype(d['dtype']).name} {list(int(v) for v in d['shape'])}{qs}"
        return (f"it takes {', '.join(one(d) for d in ins)} and outputs "
                f"{', '.join(one(d) for d in outs)}")

    def _slot(self, it: Any) -> _Slot:
        s = _Slot(it)
        if self.mode == "artifact":
            s.frame = it.get_signature_runner(SIG_FRAME)
            s.resized = it.get_signature_runner(SIG_RESIZED)
        return s

    @contextlib.contextmanager
    def _lease(self) -> Iterator[_Slot]:
        slot = self._pool.get()
        try:
            yield slot
        finally:
            self._pool.put(slot)

    # ------------------------------------------------------------------ Backend
    @property
    def provider(self) -> str:
        return f"{RUNTIME}:{'xnnpack' if self.xnnpack else 'builtin'}"

    @property
    def input_shape(self) -> tuple[int | str | None, ...]:
        """``(N, H, W, C)``: H and W are the fixed frame size (others take the host step)."""
        return self._input_shape

    @property
    def output_shape(self) -> tuple[int | str | None, ...]:
        return self._output_shape

    def metadata_props(self) -> dict[str, str]:
        return dict(self._props)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, C]`` frames -> float32 ``[N, K]`` probabilities."""
        x = np.asarray(frames)
        if x.ndim == 3:
            x = x[..., None]
        c = self.spec.frame_channels
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != c or 0 in x.shape[1:3]:
            raise ModelError(f"{self.source} takes uint8 [N, H, W, {c}] frames, got "
                             f"{x.dtype} {list(x.shape)}")
        out = np.empty((x.shape[0], self._output_shape[1]), np.float32)
        if x.shape[0] == 0:
            return out
        try:
            with self._lease() as slot:
                if self.mode == "artifact":
                    self._run_artifact(slot, x, out)
                else:
                    self._run_plain(slot, x, out)
        except (ModelError, ConfigError):
            raise
        except Exception as e:  # noqa: BLE001 - interpreter RuntimeError / ValueError
            raise ModelError(f"inference failed on {self.source} for frames of shape "
                             f"{list(x.shape)}: {_one_line(e)}") from None
        return out

    def _run_artifact(self, slot: _Slot, x: np.ndarray, out: np.ndarray) -> None:
        if tuple(x.shape[1:3]) == self.frame_size:
            run = slot.frame
            for i in range(x.shape[0]):
                out[i] = run(frame=x[i:i + 1])[OUTPUT][0]
        else:
            run, geo = slot.resized, self._geometry
            for i in range(x.shape[0]):
                out[i] = run(resized=geo(x[i]))[OUTPUT][0]

    def _run_plain(self, slot: _Slot, x: np.ndarray, out: np.ndarray) -> None:
        it, din, dout = slot.interp, self._in, self._out
        q_in = din.get("quantization") or (0.0, 0)
        q_out = dout.get("quantization") or (0.0, 0)
        for i in range(x.shape[0]):
            v = self.spec.reference(x[i])
            if din["dtype"] != np.float32:
                info = np.iinfo(din["dtype"])
                scale, zp = (q_in[0] or 1.0), q_in[1]
                v = np.clip(np.rint(v / scale + zp), info.min, info.max)
            it.set_tensor(din["index"], v.astype(din["dtype"]))
            it.invoke()
            y = it.get_tensor(dout["index"]).reshape(-1)
            if y.dtype != np.float32:
                y = (y.astype(np.float32) - q_out[1]) * (q_out[0] or 1.0)
            out[i] = self._as_probs(y.astype(np.float32))

    def _as_probs(self, y: np.ndarray) -> np.ndarray:
        """Softmax as the metadata says; without metadata, the one rule of ``probs``."""
        if self._softmax is None:
            return as_probabilities(y)
        return softmax(y) if self._softmax else y

    def __repr__(self) -> str:
        return (f"TFLiteBackend({self.source!r}, mode={self.mode}, threads={self.threads}, "
                f"pool_size={self.pool_size}, provider={self.provider!r})")
