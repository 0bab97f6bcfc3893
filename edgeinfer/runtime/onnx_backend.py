"""ONNX Runtime backend: an edgeinfer ONNX artifact loaded into one InferenceSession.

Session settings are chosen for latency on small CPUs: full graph optimisation
(``ORT_ENABLE_ALL``), sequential execution, one inter-op thread and ``threads``
intra-op threads. ``threads=None`` means the CPUs this process may run on (its affinity
mask, else ``os.cpu_count()``), capped at 4: a Raspberry Pi's four physical cores, and
past four threads a batch-1 CNN on an edge CPU rarely gets faster, only noisier.

``InferenceSession.run`` is thread-safe, so one backend serves many threads.

Memory: onnxruntime's CPU arena keeps the peak of the largest run for the life of the
session (one 24 MP frame took a server from 161 MB to 743 MB, for good). Turning the arena
off costs 4x on 1080p frames (every run page-faults fresh buffers: 32 ms -> 122 ms on
fashion), so the arena stays on and is shrunk back (the run option
``memory.enable_memory_arena_shrinkage``) only after a run larger than
``shrink_above_pixels`` (default 4 MP per call, about two 1080p frames): typical camera
frames keep the arena's speed, a large frame gives its memory back. Measured with
tools/serve_memory.py; the figures are in docs/serve/memory.md.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeinfer.artifact import INPUT_NAME, KEY_TASK, MOMENTS_OUTPUT, OUTPUT_NAME
from edgeinfer.data.files import ModelSource, load_model_bytes
from edgeinfer.errors import ConfigError, ModelError, ProviderError, one_line, positive_int
from edgeinfer.runtime.backend import default_threads

#: Short provider names accepted by ``providers=`` and the onnxruntime names they map to.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}

#: Frame pixels per call above which the CPU arena is shrunk after the run (see above).
SHRINK_ABOVE_PIXELS = 4_000_000

# onnxruntime's process-wide logger (not the session's) also prints errors, e.g. while it
# deserializes a damaged initializer; edgeinfer reports each as one line (issue 31), so only
# fatal messages stay. Process-wide: the runtime owns what this process prints on errors.
ort.set_default_logger_severity(4)

_EP_FAIL = getattr(getattr(ort.capi, "onnxruntime_pybind11_state", None), "EPFail", None)


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """``"cuda"`` / ``["tensorrt", "cuda"]`` / onnxruntime names -> onnxruntime names."""
    if providers is None:
        return [PROVIDERS["cpu"]]
    items = [providers] if isinstance(providers, str) else list(providers)
    if not items:
        raise ConfigError("providers must name at least one of: " + ", ".join(PROVIDERS))
    out: list[str] = []
    for p in items:
        key = p.lower() if isinstance(p, str) else p
        name = PROVIDERS.get(key) or (p if p in _SHORT else None)
        if name is None:
            raise ConfigError(f"unknown execution provider {p!r}; use one of: "
                              f"{', '.join(PROVIDERS)}")
        if name not in out:
            out.append(name)
    return out


def _one_line(e: BaseException) -> str:
    """An onnxruntime exception as one short line, without its '[ONNXRuntimeError] : 7 :'."""
    text = one_line(e, None)
    m = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+) : (.*)", text)
    if m:
        rest = re.sub(r"^Load model from .*? failed:\s*", "", m.group(2))
        text = f"{rest.rstrip('.')} ({m.group(1)})"
    return one_line(text)


def session_props(session: ort.InferenceSession, source: str) -> dict[str, str]:
    """The model's metadata_props, refused in one line when a key or value is not UTF-8.

    Why: onnxruntime keeps the protobuf's raw bytes and decodes them only when
    ``custom_metadata_map`` is read, so a flipped bit in the metadata passes the session's
    load and surfaces as a UnicodeDecodeError traceback in ``info``, ``predict`` or
    ``serve`` (issue 31: 3 of 400 random bit flips of fashion.onnx).
    """
    try:
        props = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as e:
        raise ModelError(f"{source} has damaged metadata: a key or value is not UTF-8 "
                         f"({_one_line(e)}); copy or convert it again") from None
    return props


class OnnxBackend:
    """One edgeinfer ONNX artifact in an onnxruntime InferenceSession.

    ``providers``: ``None`` (CPU), a short name (``"cpu"``, ``"cuda"``, ``"tensorrt"``) or
    a list in order of preference; onnxruntime names (``"CUDAExecutionProvider"``) work
    too. The CPU provider is always appended, so nodes another provider cannot run still
    run. A requested provider that this onnxruntime build lacks, or that fails to
    initialise, raises :class:`ProviderError`, unless ``allow_fallback=True``: then the
    session runs on what is left (CPU at worst), a ``RuntimeWarning`` says so, and
    :attr:`fallback_reason` keeps the message. :attr:`provider` is always the provider
    onnxruntime actually put first (``session.get_providers()[0]``).

    TensorRT options: ``trt_fp16`` enables FP16 kernels, ``trt_cache_dir`` enables the
    engine cache there (built engines are reused across runs; frames of a new size build
    a new engine, so feed fixed-size frames when using TensorRT).
    """

    def __init__(
        self,
        model: ModelSource,
        threads: int | None = None,
        providers: str | Sequence[str] | None = None,
        allow_fallback: bool = False,
        trt_fp16: bool = False,
        trt_cache_dir: str | os.PathLike | None = None,
        source: str | None = None,
        shrink_above_pixels: int | None = SHRINK_ABOVE_PIXELS,
    ) -> None:
        self.threads = positive_int("threads", threads, default_threads())
        requested = resolve_providers(providers)
        trt = PROVIDERS["tensorrt"]
        if (trt_fp16 or trt_cache_dir is not None) and trt not in requested:
            raise ConfigError("trt_fp16 and trt_cache_dir only apply with providers='tensorrt'")
        self.fallback_reason: str | None = None

        available = ort.get_available_providers()
        missing = [p for p in requested if p not in available]
        use = [p for p in requested if p in available]
        if missing:
            names = ", ".join(_SHORT.get(p, p) for p in missing)
            have = ", ".join(_SHORT.get(p, p) for p in available if p in _SHORT)
            msg = (f"execution provider(s) {names} not available in this onnxruntime build "
                   f"(available: {have})")
            if not allow_fallback:
                raise ProviderError(f"{msg}; install the matching onnxruntime package (e.g. "
                                    "onnxruntime-gpu) or pass allow_fallback=True")
            self._fall_back(f"{msg}; using {', '.join(_SHORT[p] for p in use) or 'cpu'}")
        if PROVIDERS["cpu"] not in use:
            use.append(PROVIDERS["cpu"])

        data, name = load_model_bytes(model)
        self.path = source or name  # for messages

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        # fatal only: every error onnxruntime logs also comes back as an exception that
        # edgeinfer reports in one line; its own log would add lines of C++ detail (issue 31)
        so.log_severity_level = 4

        provider_args: list[Any] = []
        for p in use:
            if p == trt:
                opts: dict[str, Any] = {"trt_fp16_enable": bool(trt_fp16)}
                if trt_cache_dir is not None:
                    cache = Path(trt_cache_dir)
                    try:
                        cache.mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise ConfigError(f"cannot create trt_cache_dir {cache}: "
                                          f"{e.strerror or e}") from None
                    opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache))
                provider_args.append((p, opts))
            else:
                provider_args.append(p)

        try:
            self._session = ort.InferenceSession(data, sess_options=so,
                                                 providers=provider_args)
        except Exception as e:  # onnxruntime's pybind exceptions derive from Exception only
            if _EP_FAIL is not None and isinstance(e, _EP_FAIL):
                raise ProviderError(f"execution provider failed to initialise for {self.path}: "
                                    f"{_one_line(e)}") from None
            raise ModelError(f"cannot load {self.path} as an ONNX model: {_one_line(e)}; the "
                             "file is damaged, truncated or not ONNX: copy or convert it "
                             "again") from None

        actual = self._session.get_providers()[0]
        if actual != use[0]:
            msg = (f"onnxruntime did not initialise {_SHORT.get(use[0], use[0])} (its libraries "
                   f"may be missing); the session runs on {_SHORT.get(actual, actual)}")
            if not allow_fallback:
                raise ProviderError(f"{msg}; fix the installation or pass allow_fallback=True")
            self._fall_back(msg)
        self._provider = actual
        try:
            self._check_io()
        except UnicodeDecodeError as e:  # a tensor name that is not UTF-8
            raise ModelError(f"{self.path} is damaged: a graph input or output name is not "
                             f"UTF-8 ({_one_line(e)}); copy or convert it again") from None
        self._props = session_props(self._session, self.path)
        self._outputs = [OUTPUT_NAME]
        self._run = self._session.run
        self._shrink_above = (None if shrink_above_pixels is None
                              else positive_int("shrink_above_pixels", shrink_above_pixels))
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def _fall_back(self, msg: str) -> None:
        self.fallback_reason = msg
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _task(self) -> str | None:
        """The artifact's task key; None when the metadata cannot be decoded (said, with
        the right words, where the metadata is read)."""
        try:
            return self._session.get_modelmeta().custom_metadata_map.get(KEY_TASK)
        except UnicodeDecodeError:
            return None

    def _check_io(self) -> None:
        inputs = self._session.get_inputs()
        outputs = {o.name: o for o in self._session.get_outputs()}
        ins = ", ".join(f"{i.name!r} {i.type} {list(i.shape)}" for i in inputs)
        hint = "convert it with `edgeinfer convert` first"
        if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)"
                or len(inputs[0].shape) != 4):
            raise ModelError(f"{self.path} is not an edgeinfer artifact: it takes {ins}, not one "
                             f"uint8 {INPUT_NAME!r} [N,H,W,C] input; {hint}")
        c = inputs[0].shape[3]
        if isinstance(c, int) and c not in (1, 3):
            raise ModelError(f"{self.path} takes {c}-channel frames; an edgeinfer artifact takes "
                             "1 (GRAY) or 3 (BGR/RGB)")
        out = outputs.get(OUTPUT_NAME)
        if out is None and self._task() == "detect":  # edgeinfer's, but boxes (issue 28)
            raise ModelError(f"{self.path} is an edgeinfer detector artifact (boxes, no class "
                             "probabilities): this command takes classifiers; detectors go to "
                             "predict, serve, watch, bench, info, check, verify and doctor")
        if out is None or out.type != "tensor(float)" or len(out.shape) != 2:
            outs = ", ".join(f"{o.name!r} {o.type} {list(o.shape)}" for o in outputs.values())
            raise ModelError(f"{self.path} is not an edgeinfer artifact: it outputs {outs}, not "
                             f"float32 {OUTPUT_NAME!r} [N,K]; {hint}")
        self._input_shape = tuple(inputs[0].shape)
        self._output_shape = tuple(out.shape)
        mom = outputs.get(MOMENTS_OUTPUT)
        self._moments = [OUTPUT_NAME, MOMENTS_OUTPUT] if mom is not None and \
            mom.type == "tensor(float)" else None

    # ------------------------------------------------------------------ Backend
    @property
    def provider(self) -> str:
        return self._provider

    @property
    def input_shape(self) -> tuple[int | str | None, ...]:
        return self._input_shape

    @property
    def output_shape(self) -> tuple[int | str | None, ...]:
        return self._output_shape

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying session (for benchmarks and inspection)."""
        return self._session

    def metadata_props(self) -> dict[str, str]:
        return dict(self._props)

    @property
    def has_moments(self) -> bool:
        """Whether the artifact has the monitor's feature output (converter/moments.py)."""
        return self._moments is not None

    def run_moments(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[N, K]`` and the feature moments ``[N, F]`` in one session call."""
        if self._moments is None:
            raise ModelError(f"{self.path} has no {MOMENTS_OUTPUT!r} output")
        big = (self._shrink_above is not None and frames.ndim == 4
               and frames.shape[0] * frames.shape[1] * frames.shape[2] > self._shrink_above)
        try:
            probs, moments = self._run(self._moments, {INPUT_NAME: frames},
                                       self._shrink if big else None)
        except Exception as e:  # onnxruntime Fail / RuntimeException / InvalidArgument
            raise ModelError(f"inference failed on {self.path} for frames of shape "
                             f"{tuple(frames.shape)}: {_one_line(e)}") from None
        return probs, moments

    def run(self, frames: np.ndarray) -> np.ndarray:
        big = (self._shrink_above is not None and frames.ndim == 4
               and frames.shape[0] * frames.shape[1] * frames.shape[2] > self._shrink_above)
        try:
            return self._run(self._outputs, {INPUT_NAME: frames}, self._shrink if big else None)[0]
        except Exception as e:  # onnxruntime Fail / RuntimeException / InvalidArgument
            raise ModelError(f"inference failed on {self.path} for frames of shape "
                             f"{tuple(frames.shape)}: {_one_line(e)}") from None
