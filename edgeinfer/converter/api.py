"""``edgeinfer.convert``: a trained model in, one parity-checked artifact out.

Two phases, kept apart: *build* (frontend -> fp32 ONNX with folded BatchNorm and the
baked preprocessing prefix -> optionally int8 ONNX or a TFLite file) and *gate* (the
candidate against the framework, and against fp32 ONNX for derived formats, on real
frames; :mod:`edgeinfer.converter.gate`). The artifact is written only after the gate
passed; otherwise ``ParityError`` is raised and nothing is written.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._version import __version__
from edgeinfer.artifact import FORMATS, ArtifactMetadata
from edgeinfer.converter.gate import GateResult, artifact_stages, gate
from edgeinfer.converter.profile import reference_profile
from edgeinfer.converter.result import ConversionResult
from edgeinfer.converter.sources.base import Source
from edgeinfer.converter.sources.load import resolve_labels, resolve_source
from edgeinfer.converter.spec_from import prove as prove_spec  # on the parity frames
from edgeinfer.converter.spec_resolve import artifact_spec, resolve
from edgeinfer.data.frames import (
    FrameSet,
    builtin_name,
    check_source,
    default_parity_data,
    load_frames,
)
from edgeinfer.diagnose.audit import CONVERT_FRAMES
from edgeinfer.errors import (
    ConfigError,
    ConversionError,
    EdgeInferError,
    ParityError,
    one_line,
    require,
)
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

QUANTIZE = {"onnx": (None, "int8"), "tflite": (None, "fp16", "int8")}
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def load_source(source: Any, spec: Any = None, weights: str | Path | None = None, *,
                apply_softmax: bool = True, fallback_spec: PreprocessSpec | None = None,
                progress: Progress | None = None) -> tuple[Any, PreprocessSpec]:
    """The source model in inference mode behind a runner, without exporting it.

    For ``check``, ``pack`` and ``doctor``. The spec by
    :func:`edgeinfer.converter.spec_resolve.resolve` (``fallback_spec``: an artifact's).
    Returns (runner, the artifact-side spec).
    """
    spec = resolve(source, spec, fallback=fallback_spec).spec
    s = resolve_source(source, spec, weights, progress)
    return s.make_runner(apply_softmax), artifact_spec(s, spec)


def output_format(output: str | Path, format: str | None) -> str:
    """The artifact format; an output extension that contradicts it is refused."""
    suffix = Path(output).suffix.lower()
    by_suffix = {v: k for k, v in SUFFIX.items()}.get(suffix)
    fmt = format or by_suffix or "onnx"
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if by_suffix is not None and by_suffix != fmt:
        raise ConfigError(f"output {output} ends in {suffix} but the format is {fmt}: name it "
                          f"*{SUFFIX[fmt]} (the runtime reads the content, people read the name)")
    return fmt


def convert(
    source: Any,
    output: str | Path,
    *,
    weights: str | Path | None = None,
    spec: PreprocessSpec | str | Path | dict | None = None,
    spec_from: Any = None,
    labels: Sequence[str] | str | Path | None = None,
    format: str | None = None,
    quantize: str | None = None,
    calibration: str | None = None,
    calibration_limit: int | None = 256,
    per_channel: bool = True,
    target: str | None = None,
    frame_size: tuple[int, int] | None = None,
    parity_data: str | None = None,
    parity_limit: int | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
    accept_spec: bool = False,
    strict: bool = False,
    min_agreement: float | None = None,
    max_drop: float | None = None,
    max_float_layers: int | None = None,
    max_latency_ratio: float | None = None,
    skip_bad: bool = False,
    audit_frames: int | None = CONVERT_FRAMES,
    fit: str | None = None,
    int8_method: str | None = None,
) -> ConversionResult:
    """Convert ``source`` to an artifact at ``output`` and prove its parity.

    ``source``: a bundled name, a torch factory (``pkg.module:fn`` with ``weights``), an
    ``.onnx`` file, a Keras ``.keras``/``.h5`` file or SavedModel directory, or a
    ``torch.nn.Module`` / ``keras.Model`` object (used as is). ``spec="auto"`` reads the
    preprocessing from the source, ``spec_from`` from a training pipeline (HF processor,
    timm config, torchvision preset, albumentations; :mod:`edgeinfer.converter.spec_from`).
    ``format`` is ``onnx``
    or ``tflite`` (default: from the output's extension). ``quantize`` is ``int8`` (ONNX
    QDQ or TFLite full-integer, calibrated on ``calibration`` frames) or ``fp16``
    (TFLite). ``frame_size`` (height, width) fixes the TFLite frame size. The fp32 ONNX
    graph is always built and gated first: it is the reference every other format is
    compared with, step by step. ``verbose`` shows the exporters' own output.
    The spec audit (``converter.audit``) runs on the parity frames: a spec that labelled
    frames show to be wrong raises ``SpecAuditError`` unless ``accept_spec``; label-free
    evidence only warns, unless ``strict``. Without ``parity_data``, a user's model is gated
    on bundled frames resembling its input and the verdict says ``not your data``;
    ``strict`` refuses that (ConfigError). ``min_agreement`` / ``max_drop`` (int8 only): the
    accuracy control (:mod:`edgeinfer.converter.int8.control`) keeps the fewest layers float
    (at most ``max_float_layers``, and no more than keep the 1-thread latency within
    ``max_latency_ratio`` x fp32's) until the target holds on held-out parity frames;
    ``max_latency_ratio`` alone keeps float the most harmful layers that fit the budget.
    Paths, the label count and every parity image are checked before the export; an
    undecodable image is refused with its reason, or left out with ``skip_bad`` (the
    verdict counts it). ``audit_frames``: how many parity frames the spec audit uses.
    ``int8_method``: ``adaround`` (the default) or ``minmax`` (converter/int8/conversion.py).
    """
    say: Progress = progress or (lambda _msg: None)
    from edgeinfer.converter.detect_convert import as_result, is_detector
    from edgeinfer.converter.int8.conversion import int8_method as resolve_method

    int8_method = resolve_method(int8_method, quantize, detector=is_detector(source))
    if is_detector(source):  # issue 28: a detector has its own build and gate
        return as_result(source, output, weights=weights, quantize=quantize, progress=say,
                         format=format, frame_size=frame_size, fit=fit, spec_from=spec_from,
                         accept_spec=accept_spec, max_latency_ratio=max_latency_ratio)
    if fit is not None:
        raise ConfigError("--fit places a detector's frames (letterbox or stretch): "
                          f"{source!r} is not a detector")
    fmt = output_format(output, format)
    if quantize not in QUANTIZE[fmt]:
        raise ConversionError(f"quantize={quantize!r} is not available for {fmt}; choose "
                              f"from {', '.join(str(q) for q in QUANTIZE[fmt])}")
    if target is not None and (quantize != "int8" or fmt != "onnx"):
        raise ConfigError("--target selects onnxruntime's int8 settings: use it with "
                          "--quantize int8 and an ONNX output (LiteRT int8 needs no target)")
    controlled_ = (min_agreement is not None or max_drop is not None
                   or max_latency_ratio is not None)
    if controlled_ and quantize != "int8":
        raise ConfigError("--min-agreement/--max-drop/--max-latency-ratio control int8 "
                          "quantisation: use them with --quantize int8")
    require("onnx", "convert", "converting models")
    chosen = resolve(source, spec, spec_from=spec_from)
    spec, derived_spec = chosen.spec, chosen.derived
    s = resolve_source(source, spec, weights, say)
    if derived_spec is not None:
        say(f"spec derived from {derived_spec.source}: {derived_spec.spec.to_json()}")
        s.provenance["spec_derived"] = derived_spec.to_dict()
    given_spec = spec  # what the source runner preprocesses with (and the audit judges)
    spec = artifact_spec(s, spec)  # a frontend may have lifted preprocessing layers into it
    data_name, data_note = _parity_data(parity_data, s, spec, strict)
    # What a user can get wrong is checked before the export (7-8 s on a small model).
    from edgeinfer.runtime.image_probe import probe

    if quantize == "int8" and calibration:
        check_source(calibration, "--calibration")
    frames = load_frames(data_name, spec, limit=parity_limit, skip_bad=skip_bad, probe=probe,
                         class_names=_labels_before_export(s, spec, labels))
    if derived_spec is not None and (derived_spec.proof or {}).get("proven"):  # re-proven
        s.provenance["spec_derived"] = prove_spec(derived_spec, frames.frames).to_dict()
    warnings = _warnings(s, spec)
    for w in warnings:
        say(f"warning: {w}")
    if fmt == "tflite" and s.to_tflite is None:
        raise ConversionError(f"TFLite conversion needs a framework source (torch or Keras); "
                              f"this {s.framework} source converts to ONNX artifacts only")

    fp32 = _build_onnx(s, spec, labels, fmt, quantize, warnings)
    if data_note and tuple(frames.class_names or ()) != tuple(fp32.labels):
        # a bundled set's labels are not this model's classes: no accuracy, no labelled audit
        frames = replace(frames, labels=None, class_names=None)
    for bad in frames.skipped:
        say(f"skipped (--skip-bad): {bad}")
    say(f"parity on {len(frames.frames)} real frames ({frames.description})"
        + (f": {data_note}; pass --parity-data with your own images" if data_note else ""))
    src_runner = s.make_runner(fp32.softmax_added)
    ref_probs = src_runner.run(frames.frames)
    fp32_probs = ArtifactRunner(fp32.blob(), name="onnx-fp32").run(frames.frames)
    result = gate(fp32_probs, "onnx-fp32", "onnx", "fp32", frames,
                  {s.framework: ref_probs}, say, data_note,
                  stages=artifact_stages(fp32.blob(), s, src_runner, frames, ref_probs, say))
    if fp32.bn_left:
        raise ConversionError(f"artifact not written: {fp32.bn_left} BatchNormalization "
                              "node(s) left after folding")
    from edgeinfer.diagnose.audit import audit_spec, enforce

    audit = audit_spec(s, given_spec, frames, limit=audit_frames,
                       own_frames=data_note is None)
    fp32.provenance["spec_audit"] = audit.to_dict()
    enforce(audit, accept_spec, strict, say)
    if fmt == "onnx" and quantize is None:
        from edgeinfer.converter.moments import with_moments  # imports onnx: after `require`

        fp32.model = with_moments(fp32.model)[0]  # the monitor's feature output (probs unchanged)
        fp32.monitor = reference_profile(ArtifactRunner(fp32.blob()), fp32_probs, frames,
                                         spec.frame_color, say, data_note)
        return _write(output, fp32.blob(fp32.final(result, frames)), fp32, result, s, say)

    tag = f"{fmt}-{quantize or 'fp32'}"
    cal = _calibration(fp32, calibration, data_name, spec, calibration_limit, quantize, say,
                       per_channel, skip_bad)
    hw = frame_size or _default_frame_size(frames.frames, spec)
    from edgeinfer.converter.int8.judge import Int8Judge  # int8: by the target asked, on
    i8 = Int8Judge(quantize, fmt, min_agreement, max_drop, max_latency_ratio, strict, say)
    cal, frames, ref_probs, fp32_probs = i8.split(cal, frames, ref_probs, fp32_probs,
                                                  fp32.provenance)  # frames not calibrated on
    if quantize == "int8" and controlled_:
        from edgeinfer.converter.int8.conversion import controlled

        with_props = controlled(s, fp32, fmt, cal, hw, per_channel, target, frames,
                                min_agreement=min_agreement, max_drop=max_drop,
                                max_float=max_float_layers, verbose=verbose, say=say,
                                max_latency_ratio=max_latency_ratio, int8_method=int8_method)
    else:
        with_props = _build_derived(s, fp32, fmt, quantize, cal, hw, per_channel, verbose,
                                    say, target, int8_method)
    candidate = with_props(fp32.meta())
    out_probs = ArtifactRunner(candidate, name=tag).run(frames.frames)
    # a float TFLite artifact is judged stage by stage like fp32 ONNX (its prefix output is
    # read from the file); int8 keeps the end-to-end agreement rule of its tolerance
    stages = (artifact_stages(candidate, s, src_runner, frames, ref_probs, say, fmt,
                              quantize or "fp32", tag) if quantize != "int8" else [])
    try:
        derived = gate(out_probs, tag, fmt, quantize or "fp32", frames,
                       {s.framework: ref_probs, "onnx_fp32": fp32_probs}, i8.gate_say(say),
                       data_note, stages=stages, tol=i8.tolerance)
        i8.judge(derived, fp32.provenance, data_note)
    except ParityError as e:
        if quantize != "int8":
            raise
        from edgeinfer.converter.int8.control import int8_hints

        raise ParityError(f"{e}. Try: " + "; ".join(int8_hints(target, fmt, controlled_))) from e
    derived.others["onnx_fp32_vs_source"] = result.primary
    fp32.monitor = reference_profile(ArtifactRunner(candidate, name=tag), out_probs, frames,
                                     spec.frame_color, say, data_note)
    return _write(output, with_props(fp32.final(derived, frames)), fp32, derived, s, say)


def _parity_data(parity_data: str | None, s: Source, spec: PreprocessSpec,
                 strict: bool) -> tuple[str, str | None]:
    """(data, note): the user's data, else a bundled model's own test data (its domain),
    else bundled frames resembling the input, whose verdict the note qualifies as not a
    check on the user's domain; ``strict`` refuses that last case."""
    if parity_data:
        return parity_data, None
    if s.reference is not None:
        return s.reference.parity_data, None
    name, note = default_parity_data(spec)
    if strict:
        raise ConfigError(f"--strict: no --parity-data given, and the bundled {name} is not "
                          "your data: pass --parity-data with images of your domain")
    return name, note


# ---------------------------------------------------------------- build steps
@dataclass
class _Built:
    """The fp32 ONNX artifact and the metadata every format of this conversion shares."""

    model: Any  # onnx.ModelProto, with the prefix and softmax, no metadata
    spec: PreprocessSpec
    labels: tuple[str, ...]
    provenance: dict[str, Any]
    softmax_added: bool
    bn_left: int
    parity: dict[str, Any] = field(default_factory=dict)
    monitor: dict[str, Any] = field(default_factory=dict)  # the field monitor's profile

    def meta(self) -> ArtifactMetadata:
        return ArtifactMetadata(self.spec, self.labels, self.provenance, self.parity,
                                self.monitor)

    def final(self, result: GateResult, frames: FrameSet) -> ArtifactMetadata:
        self.parity = result.to_parity(frames.description)
        return self.meta()

    def blob(self, meta: ArtifactMetadata | None = None) -> bytes:
        from edgeinfer.converter.assemble import with_metadata

        return with_metadata(self.model, meta or self.meta()).SerializeToString()


def _labels_before_export(s: Source, spec: PreprocessSpec, labels: Any) -> tuple[str, ...]:
    """The model's labels, their count checked on one forward pass of the source (a zero
    frame) instead of after the export; that pass also proves the model runs on the spec's
    input. Unnamed classes are their indices, as the artifact will name them."""
    zero = np.zeros((*spec.size, spec.frame_channels), np.uint8)
    try:
        n = int(np.asarray(s.make_runner(False).run([zero])).shape[-1])
    except EdgeInferError:
        raise
    except Exception as e:  # the framework's own error: the spec's input is not the model's
        raise ConversionError(
            f"the source model does not run on the spec's model input "
            f"{list(spec.model_input_shape())} ({spec.layout}, {spec.model_color}): "
            f"{one_line(e)}; check the spec's size, colour and layout against the model"
        ) from None
    given = resolve_labels(labels, s.reference) or s.labels
    if given and len(given) != n:
        raise ConversionError(f"{len(given)} labels given for a model with {n} outputs")
    return tuple(given) if given else tuple(str(i) for i in range(n))


def _warnings(s: Source, spec: PreprocessSpec) -> list[str]:
    out = list(s.lint_warnings)
    if spec.interpolation == "cubic" and not spec.antialias:
        out.append("the spec resizes bicubically without antialias: onnxruntime's plain "
                   "cubic Resize is ~80x slower than linear (42 ms for a 500x375 frame, 1 "
                   "thread); Pillow-trained models (timm, torchvision, Hugging Face) want "
                   "antialias=true, which is Pillow's bicubic and ~25x faster "
                   "(docs/resize.md)")
    return out


def _build_onnx(s: Source, spec: PreprocessSpec, labels: Any, fmt: str,
                quantize: str | None, warnings: list[str]) -> _Built:
    import onnx

    from edgeinfer.converter.assemble import assemble, num_classes

    core = s.export()
    asm = assemble(core, spec)
    n_classes = num_classes(asm.model)
    labels_t = (resolve_labels(labels, s.reference) or s.labels
                or tuple(str(i) for i in range(n_classes)))
    if n_classes and len(labels_t) != n_classes:
        raise ConversionError(f"{len(labels_t)} labels given for a model with {n_classes} "
                              "outputs")
    provenance = s.provenance | {
        "edgeinfer_version": __version__, "onnx_version": onnx.__version__,
        "opset": asm.opset, "batchnorm_before": asm.bn_before, "batchnorm_left": asm.bn_after,
        "softmax_added": asm.softmax_added, "lint_warnings": warnings,
        "format": fmt, "quantize": quantize,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    built = _Built(asm.model, spec, labels_t, provenance, asm.softmax_added, asm.bn_after)
    onnx.checker.check_model(built.model, full_check=True)
    return built


def _calibration(fp32: _Built, calibration: str | None, parity_data: str,
                 spec: PreprocessSpec, limit: int | None, quantize: str | None,
                 say: Progress, per_channel: bool, skip_bad: bool = False) -> list[np.ndarray]:
    if quantize != "int8":
        return []
    from edgeinfer.runtime.image_probe import probe

    name = calibration or _default_calibration(parity_data)
    cal = load_frames(name, spec, limit=limit, skip_bad=skip_bad, probe=probe)
    say(f"calibrating on {len(cal.frames)} real frames ({cal.description})")
    fp32.provenance["calibration"] = {"data": cal.description, "n": len(cal.frames),
                                      "per_channel": per_channel}
    return cal.frames


def _build_derived(s: Source, fp32: _Built, fmt: str, quantize: str | None,
                   cal: list[np.ndarray], hw: tuple[int, int], per_channel: bool,
                   verbose: bool, say: Progress,
                   target: str | None = None,
                   int8_method: str = "minmax") -> Callable[[ArtifactMetadata], bytes]:
    """Build the int8 ONNX or TFLite artifact once; returns metadata -> file bytes."""
    if quantize == "int8":
        from edgeinfer.converter.int8.conversion import plain

        return plain(s, fp32, fmt, cal, hw, per_channel, verbose, say, target, int8_method)
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.quiet import captured

    fp32.provenance["frame_size"] = list(hw)
    with captured(verbose):
        bare = s.to_tflite(hw, quantize, cal, say, per_channel)
    return lambda meta: embed_metadata(bare, meta.to_props())


def _write(output: str | Path, data: bytes, fp32: _Built, result: GateResult, s: Source,
           say: Progress) -> ConversionResult:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    say(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return ConversionResult(out, fp32.meta(), result.primary, s.lint_warnings)


def _default_calibration(parity_data: str) -> str:
    """Calibrate on data disjoint from the parity data where a split exists: fashion's train
    split, and for the bundled photos the realistic photo set (docs/int8/: calibrating on
    the six parity photos fits those six and certifies nothing)."""
    name = builtin_name(parity_data)
    if name == "fashion-test":
        return "builtin:fashion-train"
    if name == "photos":
        return "builtin:photo-calibration"
    return parity_data


def _default_frame_size(frames: Sequence, spec: PreprocessSpec) -> tuple[int, int]:
    """TFLite frames have a fixed size: the parity frames' size when they agree, else the
    spec's model size (frames of other sizes are then resized on the host, inside parity)."""
    shapes = {f.shape[:2] for f in frames}
    return tuple(shapes.pop()) if len(shapes) == 1 else tuple(spec.size)
