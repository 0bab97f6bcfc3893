"""The converter's side of the int8 accuracy control: builders, held-out frames, timing.

:mod:`edgeinfer.converter.int8.control` is the loop (format-free: a builder, a runner, a
latency measure); this module wires it to one conversion: the held-out split of the parity
frames, onnxruntime's or ai-edge-quantizer's builder calibrated once, the 1-thread latency
of each candidate, and the record in the provenance. It also resolves ``--int8-method``
(the weight rounding: AdaRound by default, MinMax's nearest without torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeinfer.converter.int8.control import LATENCY_RUNS, check_targets, control
from edgeinfer.errors import ConfigError, MissingExtraError
from edgeinfer.progress import Progress

#: ``--int8-method``: onnxruntime's / ai_edge_quantizer's MinMax with round-to-nearest
#: weights, or the same with AdaRounded weights (adaround_onnx.py, adaround_tflite.py)
INT8_METHODS = ("minmax", "adaround")
#: AdaRound since session 10: it matched or beat nearest rounding on every measured row
#: (docs/int8/adaround.md "Default": EfficientNet-Lite0 95.6% -> 98.4% agreement on the
#: default target, fashion certifies 99.5% with every layer int8) at int8's latency and
#: size; the cost is the fit's time (fashion ~4-7 CPU s, EfficientNet-Lite0 ~200 CPU s)
#: and torch. Classifiers only: a detector's int8 (detect_int8.py) rounds to nearest.
DEFAULT_INT8_METHOD = "adaround"


class Int8Method(str):
    """The method a conversion uses, with ``fallback``: why it is not the default when the
    default could not run (torch missing), else None.

    Why a str: ``convert`` passes the resolved method on as a plain string to the builders
    here (:func:`plain`, :func:`controlled`); the reason travels with it, so the builder
    that writes ``provenance["int8_rounding"]`` can record it and say it once.
    """

    fallback: str | None = None

    def __new__(cls, value: str, fallback: str | None = None) -> Int8Method:
        m = super().__new__(cls, value)
        m.fallback = fallback
        return m


def int8_method(method: str | None, quantize: str | None, detector: bool = False) -> str:
    """The int8 method a conversion uses (``method`` None: the default), refused when it
    names none or comes without ``--quantize int8``. A ``detector``'s int8
    (converter/detect_int8.py) rounds to nearest: ``minmax``, and AdaRound asked for is
    refused rather than ignored.

    AdaRound's fit runs in torch (the ``convert`` extra). Asked for by name without torch:
    refused in one line that names the extra and ``--int8-method minmax``. Only the
    default: MinMax (round to nearest) with the reason in ``fallback``, so an ONNX-only
    install still converts, and says why its weights were not AdaRounded.
    """
    if method is not None and method not in INT8_METHODS:
        raise ConfigError(f"--int8-method {method!r} is not one of {', '.join(INT8_METHODS)}")
    if method is not None and quantize != "int8":
        raise ConfigError("--int8-method chooses how int8 weights are rounded: use it with "
                          "--quantize int8")
    if detector and method == "adaround":
        raise ConfigError("--int8-method adaround is for classifiers: a detector's int8 "
                          "rounds its weights to nearest (MinMax)")
    chosen = "minmax" if detector else method or DEFAULT_INT8_METHOD
    if quantize != "int8" or chosen != "adaround" or _torch_imports():
        return Int8Method(chosen)
    if method is not None:
        raise MissingExtraError("--int8-method adaround fits the rounding in torch, which is "
                                "not installed: pip install 'edgeinfer[convert]', or use "
                                "--int8-method minmax (weights rounded to nearest)")
    return Int8Method("minmax", fallback=NO_TORCH)


#: why a default int8 conversion rounded to nearest (progress line, provenance)
NO_TORCH = ("AdaRound, the default, needs torch, which is not installed (pip install "
            "'edgeinfer[convert]'): int8 weights rounded to nearest (minmax)")


def _torch_imports() -> bool:
    """Whether ``import torch`` works (an import, not a lookup: a broken install is missing
    too; the fit imports it next anyway)."""
    try:
        import torch  # noqa: F401
    except (ImportError, OSError):  # OSError: its native library cannot be loaded
        return False
    return True


def rounding_start(method: str, say: Progress) -> dict[str, Any]:
    """``provenance["int8_rounding"]`` before the build fills it in: the method, and for a
    fallback from the default the reason, said once in the progress."""
    fallback = getattr(method, "fallback", None)
    if fallback is None:
        return {"method": str(method)}
    say(f"int8: {fallback}")
    return {"method": str(method), "reason": fallback}


def plain(s: Any, fp32: Any, fmt: str, cal: list[np.ndarray], hw: tuple[int, int],
          per_channel: bool, verbose: bool, say: Progress, target: str | None,
          method: str) -> Callable[[Any], bytes]:
    """The int8 artifact without accuracy control, built once (``method``: INT8_METHODS);
    returns metadata -> file bytes. AdaRound is fitted on ``cal``, the calibration frames
    (the parity frames it is certified on are kept apart by the caller)."""
    import json

    fp32.provenance["int8_rounding"] = start = rounding_start(method, say)
    if fmt == "onnx":
        from edgeinfer.converter.assemble import with_metadata
        from edgeinfer.converter.int8.onnx_quant import KEY_QUANTIZATION, quantize_int8

        qmodel = quantize_int8(fp32.model, cal, per_channel=per_channel, progress=say,
                               target=target, rounding="adaround" if method == "adaround"
                               else "nearest")
        q = json.loads({p.key: p.value for p in qmodel.metadata_props}[KEY_QUANTIZATION])
        fp32.provenance["int8_rounding"] = q.get("rounding") or start
        return lambda meta: with_metadata(qmodel, meta).SerializeToString()
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.quiet import captured

    fp32.provenance["frame_size"] = list(hw)
    with captured(verbose):
        if method == "minmax":
            bare = s.to_tflite(hw, "int8", cal, say, per_channel)
        else:  # the float .tflite, then ai_edge_quantizer + AdaRound (adaround_tflite.py)
            from edgeinfer.converter.int8.tflite_quant import TfliteInt8

            q = TfliteInt8(s.to_tflite(hw, None, [], say, per_channel), fp32.spec, hw, cal,
                           per_channel, say, method)
            bare = q.build()
            fp32.provenance["int8_rounding"] = q.rounding_record or start
    return lambda meta: embed_metadata(bare, meta.to_props())


def controlled(s: Any, fp32: Any, fmt: str, cal: list[np.ndarray], hw: tuple[int, int],
               per_channel: bool, target: str | None, parity: Any, *,
               min_agreement: float | None, max_drop: float | None,
               max_float: int | None, verbose: bool, say: Progress,
               max_latency_ratio: float | None = None,
               int8_method: str = "minmax") -> Callable[[Any], bytes]:
    """The accuracy-controlled int8 artifact of a conversion (``convert(min_agreement=...)``).

    ``s`` is the source, ``fp32`` the converter's fp32 build (its ``model``, ``meta()``,
    ``blob()`` and ``provenance``), ``parity`` the parity FrameSet. Held out: the parity
    frames that are not calibration frames (frames in both are split, every other one
    held out and dropped from calibration). Records the loop in
    ``provenance["int8_control"]``; returns metadata -> artifact bytes, like the plain build.
    ``int8_method`` ``adaround`` (the default; ONNX and TFLite): the weights are AdaRounded
    on the calibration frames at the first build, so the loop starts from the reconstructed
    model and keeps layers float only for what is left (``provenance["int8_rounding"]``).
    """
    from edgeinfer.data.calibration import held_out_split
    from edgeinfer.parity.runners import ArtifactRunner

    start = rounding_start(int8_method, say)
    cal, idx = held_out_split(cal, parity.frames)
    frames = [parity.frames[i] for i in idx]
    labels = None if parity.labels is None else np.asarray(parity.labels)[idx]
    name = (parity.name if len(idx) == len(parity.frames) and "calibrated on" in parity.name
            else f"{parity.name}, {len(frames)} of {len(parity.frames)} frames not calibrated on")
    check_targets(min_agreement, max_drop, labels, len(frames), name,
                  min_agreement is None and max_drop is None and max_latency_ratio is not None)
    if "calibration" in fp32.provenance:
        fp32.provenance["calibration"]["n"] = len(cal)
    meta = fp32.meta()
    if fmt == "onnx":
        from edgeinfer.converter.assemble import with_metadata
        from edgeinfer.converter.int8.onnx_quant import OnnxInt8

        q = OnnxInt8(fp32.model, cal, per_channel, say, target=target,
                     rounding="adaround" if int8_method == "adaround" else "nearest")
        float_blob = fp32.blob(meta)

        def wrap(m: Any, md: Any) -> bytes:
            return with_metadata(m, md).SerializeToString()
    else:
        from edgeinfer.converter.export.tflite_metadata import embed_metadata
        from edgeinfer.converter.int8.tflite_quant import TfliteInt8
        from edgeinfer.converter.quiet import captured

        fp32.provenance["frame_size"] = list(hw)
        meta = fp32.meta()
        with captured(verbose):
            bare = s.to_tflite(hw, None, [], say, per_channel)
            q = TfliteInt8(bare, fp32.spec, hw, cal, per_channel, say, int8_method)
        float_blob = embed_metadata(bare, meta.to_props())

        def wrap(m: Any, md: Any) -> bytes:
            return embed_metadata(m, md.to_props())

    b = LastBuild(q, lambda m: wrap(m, meta), fmt, verbose)

    latency = latency_vs_fp32(float_blob, at_frame_size(frames[0], hw))
    try:
        _blob, res = control(b, lambda m, fr: ArtifactRunner(m).run(fr), float_blob,
                             frames, heldout=name, min_agreement=min_agreement,
                             max_drop=max_drop, labels=labels, max_float=max_float,
                             latency=latency, target=target, fmt=fmt,
                             max_latency_ratio=max_latency_ratio, say=say)
        del _blob
        chosen = b.model(res.final.kept_float)  # rebuilt if a later trial replaced it
    finally:
        if fmt == "onnx":
            q.__exit__(None, None, None)
    fp32.provenance["int8_control"] = res.to_dict()
    fp32.provenance["int8_rounding"] = getattr(q, "rounding_record", None) or start
    return lambda md: wrap(chosen, md)


class LastBuild:
    """The loop's builder: quantises with some layers float and keeps only the LAST model.

    Why: the loop measures dozens of candidates (one per layer for the ranking: 50 for
    EfficientNet-Lite0); keeping each quantised model (a dict, before issue 26) grew memory
    with the layer count. The loop keeps the bytes of the one it chose; this keeps the
    ModelProto of the last build, and :meth:`model` rebuilds the chosen one if needed (one
    re-quantisation: the calibration is cached).
    """

    def __init__(self, q: Any, wrap: Callable[[Any], bytes], fmt: str, verbose: bool) -> None:
        self.q, self.wrap, self.fmt, self.verbose = q, wrap, fmt, verbose
        self.candidates, self.labels = q.candidates, q.labels
        self.last: tuple[tuple[str, ...], Any] | None = None
        self.builds = 0

    def model(self, keep: Sequence[str]) -> Any:
        """The quantised model (not wrapped) with ``keep`` float."""
        if self.last is None or self.last[0] != tuple(keep):
            self.last = None  # drop the old one before building the next
            with captured_if(self.fmt, self.verbose):
                self.last = (tuple(keep), self.q.build(keep))
            self.builds += 1
        return self.last[1]

    def __call__(self, keep: Sequence[str]) -> bytes:
        return self.wrap(self.model(keep))


def latency_vs_fp32(float_blob: bytes, x: np.ndarray) -> Callable[[bytes], float]:
    """The loop's latency measure: 1-thread ms of one call on ``x``. fp32 is timed once; a
    candidate is timed against fp32 in PAIRED calls (back to back, the order alternating:
    ``runtime.timing.paired_ratios``) and given as the median ratio x fp32's figure, so
    load drifting during the loop does not move it against the budget. Why paired: p50s of
    interleaved chunks (``timing.ratio_to``, this measure until session 10) read 0.78-1.28x
    for one model at load 8, the paired median 0.98x (the detector loop's measure,
    docs/detection/); measured separately, plain int8 read 0.65x fp32 in the loop and 0.55x
    interleaved (docs/int8/control.md)."""
    from edgeinfer.runtime.loader import open_backend
    from edgeinfer.runtime.timing import median_ms, paired_ratios

    ref = open_backend(float_blob, 1)
    fp32_ms = median_ms(lambda: ref.run(x), runs=LATENCY_RUNS, warmup=3)

    def latency(model: bytes) -> float:
        if model is float_blob:
            return fp32_ms
        b = open_backend(model, 1)
        return fp32_ms * float(np.median(paired_ratios(lambda: b.run(x), lambda: ref.run(x),
                                                       runs=LATENCY_RUNS)))

    return latency


def at_frame_size(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """One held-out frame resized to the artifact's frame size, as ``[1, H, W, C]``: what
    the loop times. A TFLite artifact then runs its ``frame`` signature, as a camera at that
    size feeds it, not the host resize other sizes take (it made fp32 look slower: 0.67x
    in the loop was 0.77x at the frame size, docs/int8/control.md)."""
    import cv2

    f = frame if frame.shape[:2] == tuple(hw) else cv2.resize(frame, (hw[1], hw[0]),
                                                              interpolation=cv2.INTER_AREA)
    return f.reshape(hw[0], hw[1], -1)[None]


def captured_if(fmt: str, verbose: bool) -> Any:
    """The TFLite quantiser prints progress bars; ONNX's is quiet."""
    import contextlib

    if fmt == "onnx":
        return contextlib.nullcontext()
    from edgeinfer.converter.quiet import captured

    return captured(verbose)
