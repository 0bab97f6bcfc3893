"""Convert a torch detector to an ONNX detector artifact (issue 28): the uint8 frame of
any size in, boxes in that frame's own pixels out, with the same guarantees as a
classifier - the preprocessing baked in the graph, the artifact written only after the
detection gate (:mod:`edgeinfer.converter.detect_gate`) passed.

A detector source is a model directory like ``models/fashion_detector``: ``net.py``
(``build()`` -> a module whose forward writes ``(boxes [N, A, 4] xyxy input pixels,
scores [N, A, C])`` and a ``postprocess`` - the framework's own NMS), ``weights.pt``,
``spec.json`` (pixels), ``detection.json`` (fit, decoder, NMS) and ``labels.txt``; or the
bundled name ``fashion-detector``.

Build: torch.onnx (dynamo) export of the core -> BatchNorm folded -> the preprocessing
prefix (``preprocess_graph``, its letterbox) in front -> the ending (``detect_graph``:
NMS and the inverse letterbox in the graph, or raw boxes for the runtime's NMS) ->
``edgeinfer.task = "detect"`` and the DetectionSpec in the metadata.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer._version import __version__
from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.converter.result import ConversionResult
from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.errors import ConfigError, ConversionError, ParityError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

#: bundled detectors: name -> directory under models/
DETECTORS = {"fashion-detector": "fashion_detector"}
_FILES = ("net.py", "spec.json", "detection.json", "labels.txt")
#: int8's accuracy-control frames: built as the gate's (bundled photos, Fashion-MNIST test
#: items) with another seed, so neither the calibration nor the gate's frames
TUNE_SEED, TUNE_PER_ASPECT = 2029, 32


@dataclass
class DetectorSource:
    """A torch detector and everything written down about it."""

    module: Any
    net: Any  # the net.py module (``postprocess``)
    spec: PreprocessSpec
    detection: DetectionSpec
    labels: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def framework(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What a torch user runs: the spec's reference preprocessing, the module, its own
        postprocess, the fit's inverse (clipped) - boxes [K, 4] in frame pixels, scores,
        classes, best first."""
        import torch

        from edgeinfer.runtime.detect.geometry import fit

        with torch.inference_mode():
            boxes, scores = self.module(torch.from_numpy(self.spec.reference(frame)))
        n = self.detection.nms
        b, s, c = self.net.postprocess(boxes[0], scores[0], score_threshold=n.score_threshold,
                                       iou_threshold=n.iou_threshold, top_k=n.top_k)
        place = fit(frame.shape[:2], self.spec.size, self.detection.fit)
        return (place.to_frame(b.double().numpy()), s.double().numpy(),
                c.numpy().astype(np.int64))


def detector_dir(source: Any) -> Path | None:
    """The model directory of a detector source, or None when ``source`` is not one."""
    if isinstance(source, str) and source in DETECTORS:
        from edgeinfer.converter.sources.reference import models_dir

        return models_dir() / DETECTORS[source]
    if isinstance(source, (str, Path)) and Path(source).is_dir() \
            and (Path(source) / "detection.json").is_file():
        return Path(source)
    return None


def is_detector(source: Any) -> bool:
    return detector_dir(source) is not None


def load_detector(source: Any, weights: str | Path | None = None, spec_from: Any = None
                  ) -> DetectorSource:
    """A detector source in eval mode (``weights`` default: the directory's weights.pt).
    ``spec_from``: a transformers detection processor (or its preprocessor_config.json):
    the pixel spec and the fit are read from it and proven (spec_from.derive_detection)
    instead of spec.json and detection.json's fit; the decoder and NMS stay the
    directory's (they describe its module's outputs)."""
    from edgeinfer.converter.sources.from_torch import load_weights
    from edgeinfer.converter.sources.reference import _load_file

    d = detector_dir(source)
    if d is None:
        raise ConfigError(f"{source!r} is not a detector: a bundled name "
                          f"({', '.join(DETECTORS)}) or a directory with detection.json")
    derived = None
    if spec_from is not None:
        from edgeinfer.converter.spec_from import derive_detection

        derived = derive_detection(spec_from)
    missing = [f for f in _FILES if not (d / f).is_file()
               and not (derived is not None and f == "spec.json")]
    if missing:
        raise ConversionError(f"detector directory {d} lacks {', '.join(missing)}")
    net = _load_file(d / "net.py")
    module = net.build()
    w = Path(weights) if weights is not None else d / "weights.pt"
    sha = load_weights(module, w)
    module.eval()
    spec = derived.spec if derived is not None else PreprocessSpec.from_json(
        (d / "spec.json").read_text())
    det = DetectionSpec.from_dict(json.loads((d / "detection.json").read_text()),
                                  f"{d / 'detection.json'}")
    if derived is not None and derived.detection is not None:
        det = DetectionSpec(fit=derived.detection.fit, decoder=det.decoder, nms=det.nms)
    labels = tuple(x.strip() for x in (d / "labels.txt").read_text().splitlines() if x.strip())
    import torch

    prov = {"framework": "torch", "framework_version": torch.__version__,
            "source": str(source), "class": type(module).__qualname__, "weights": str(w),
            "weights_sha256": sha, "exporter": "torch.onnx.export(dynamo=True)",
            "batchnorm_in_source": sum(isinstance(m, torch.nn.BatchNorm2d)
                                       for m in module.modules())}
    if derived is not None:
        prov["spec_derived"] = derived.to_dict()
    return DetectorSource(module, net, spec, det, labels, prov)


def build_onnx(src: DetectorSource, nms: str = "graph") -> tuple[Any, dict[str, Any]]:
    """(the assembled ONNX ModelProto without metadata, build facts for provenance)."""
    from onnx import compose, helper, version_converter

    from edgeinfer.artifact import PREFIX_OUTPUT
    from edgeinfer.converter.assemble import default_opset
    from edgeinfer.converter.detect_graph import add_postprocess
    from edgeinfer.converter.passes.base import count_ops
    from edgeinfer.converter.passes.fold_batchnorm import FoldBatchNorm
    from edgeinfer.converter.preprocess_graph import MIN_OPSET, build_preprocess_model
    from edgeinfer.converter.sources.from_torch import export_onnx

    core = export_onnx(src.module, src.spec)
    if len(core.graph.output) != 2:
        raise ConversionError(f"a detector's forward must return (boxes, scores); the export "
                              f"has {len(core.graph.output)} outputs")
    opset = default_opset(core)
    if opset < MIN_OPSET:
        core = version_converter.convert_version(core, MIN_OPSET)
        opset = MIN_OPSET
    bn_before = count_ops(core, "BatchNormalization")
    core = FoldBatchNorm().call(core).model
    prefix = build_preprocess_model(src.spec, opset=opset)
    prefix.ir_version = core.ir_version
    core_input = next(i.name for i in core.graph.input
                      if i.name not in {t.name for t in core.graph.initializer})
    merged = compose.merge_models(prefix, core, io_map=[(PREFIX_OUTPUT, core_input)])
    # merge_models lists the default domain once per side: one entry per domain
    best: dict[str, int] = {}
    for o in merged.opset_import:
        best[o.domain] = max(best.get(o.domain, 0), o.version)
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(d, v) for d, v in best.items())
    model = add_postprocess(merged, src.detection, src.spec.size, nms)
    return model, {"opset": opset, "batchnorm_before": bn_before,
                   "batchnorm_left": count_ops(core, "BatchNormalization"), "nms": nms}


def metadata(src: DetectorSource, facts: dict[str, Any], parity: dict[str, Any]
             ) -> ArtifactMetadata:
    prov = src.provenance | {"format": "onnx", "quantize": None} | facts | {
        "edgeinfer_version": __version__,
        "converted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    return ArtifactMetadata(src.spec, src.labels, prov, parity, task="detect",
                            detection=src.detection)


def convert_detector(source: Any, output: str | Path, *, weights: str | Path | None = None,
                     nms: str = "graph", quantize: str | None = None,
                     frames: Sequence[Any] | None = None, calibration: int = 256,
                     progress: Progress | None = None, format: str | None = None,
                     frame_size: tuple[int, int] | None = None, fit: str | None = None,
                     accept_spec: bool = False, spec_from: Any = None,
                     max_latency_ratio: float | None = None
                     ) -> tuple[Path, ArtifactMetadata]:
    """Convert, gate, write. ``frames``: :class:`~edgeinfer.converter.detect_frames.Frame`
    objects to gate on (default: ``detect_frames.gate_frames()``, 24 per aspect). ``quantize``:
    ``"int8"`` (:mod:`edgeinfer.converter.detect_int8`, ``calibration`` frames) judged by
    detection F1 against the fp32 artifact, which is built and gated first. ``format``:
    ``onnx`` or ``tflite`` (default: the output's suffix; ``frame_size``, HxW, is the
    TFLite ``frame`` signature's size, :mod:`edgeinfer.converter.detect_tflite`). Raises
    ``ParityError`` (nothing written) when a stage or the detections fail. ``fit``: the
    placement to bake instead of detection.json's; the spec audit
    (:mod:`edgeinfer.converter.detect_audit`) refuses a fit or spec the model's own
    detections disprove (``SpecAuditError``) unless ``accept_spec``. ``max_latency_ratio``
    (int8): the most layers float within that x fp32's 1-thread latency; without it an
    int8 that is not faster than fp32 is refused (``detect_control``)."""
    from edgeinfer.converter.assemble import with_metadata
    from edgeinfer.converter.detect_gate import detection_gate

    say: Progress = progress or (lambda _m: None)
    out = Path(output)
    fmt = format or ("tflite" if out.suffix.lower() == ".tflite" else "onnx")
    if fmt not in ("onnx", "tflite") or out.suffix.lower() != f".{fmt}":
        raise ConfigError(f"a detector converts to ONNX or TFLite: name the output *.onnx or "
                          f"*.tflite to match --format, not {out.name}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize={quantize!r}: a detector converts to fp32 or int8")
    if max_latency_ratio is not None and quantize != "int8":
        raise ConfigError("--max-latency-ratio budgets int8's speed: use it with "
                          "--quantize int8")
    if frame_size is not None and fmt != "tflite":
        raise ConfigError("--frame-size is the TFLite frame signature's size: an ONNX "
                          "detector takes frames of any size")
    from edgeinfer.converter.detect_graph import NMS_PLACES

    if nms not in NMS_PLACES:
        raise ConfigError(f"nms must be one of {', '.join(NMS_PLACES)}, got {nms!r}")
    src = load_detector(source, weights, spec_from)  # spec_from: a detection processor
    if fit is not None:  # the audit below judges it (issue 28: a wrong fit is refused)
        from edgeinfer.converter.detect_audit import with_fit

        src = with_fit(src, fit)
    say(f"detector {source}: {len(src.labels)} classes, {src.detection.describe()}")
    if frames is None:
        from edgeinfer.converter.detect_frames import gate_frames

        frames = gate_frames()  # 72: enough boxes to certify (146 on 48 frames could not)
    from edgeinfer.converter.detect_audit import audit_source

    src.provenance["detect_audit"] = audit_source(src, accept_spec=accept_spec,
                                                  say=say).to_dict()
    if fmt == "tflite":
        data, meta = _tflite(src, frames, frame_size, quantize, calibration, say,
                             max_latency_ratio)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        say(f"wrote {out}")
        return out, meta
    if src.detection.fit not in ("letterbox", "stretch"):  # what detect_graph inverts
        raise ConfigError(f"fit {src.detection.fit!r}: the ONNX detector graph inverts a "
                          "letterbox or a stretch so far; convert with --fit letterbox")
    model, facts = build_onnx(src, nms)
    if facts["batchnorm_left"]:
        raise ConversionError(f"{facts['batchnorm_left']} BatchNormalization node(s) left "
                              "after folding")
    blob = with_metadata(model, metadata(src, facts, {})).SerializeToString()
    report = detection_gate(blob, src, frames, say)
    if not report["passed"]:
        raise ParityError("detector artifact not written: " + "; ".join(report["failures"]))
    meta = metadata(src, facts, report)
    data = with_metadata(model, meta).SerializeToString()
    if quantize == "int8":
        data, meta = _int8(data, src, facts, report, frames, calibration, say,
                           budget=max_latency_ratio)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    say(f"wrote {out}")
    return out, meta


def _int8(fp32: bytes, src: DetectorSource, facts: dict[str, Any], report: dict[str, Any],
          frames: Sequence[Any], n_cal: int, say: Progress, bare: bytes | None = None,
          budget: float | None = None) -> tuple[bytes, ArtifactMetadata]:
    """The accuracy-controlled int8 artifact (``detect_control``: the fewest layers float
    for detection F1 vs fp32 >= the registry's int8 bar on the gate's frames AND on tune
    frames built like them from other crops and items, none calibrated on) and its
    metadata, after its gate on the gate's frames.
    ``bare``: the float .tflite without metadata (a TFLite artifact), else ONNX."""
    import onnx

    from edgeinfer.converter.detect_control import (
        LATENCY_FRAMES,
        control_f1,
        detections,
        latency_vs,
    )
    from edgeinfer.converter.detect_frames import calibration_frames, parity_frames
    from edgeinfer.converter.detect_gate import int8_gate
    from edgeinfer.converter.detect_int8 import OnnxDetInt8, tflite_builder
    from edgeinfer.parity.tolerances import tolerance

    cal = calibration_frames(n_cal)
    tune = parity_frames(per_aspect=TUNE_PER_ASPECT, seed=TUNE_SEED)
    target = tolerance("detect_boxes", "int8").min_top1
    sets = {"gate": list(frames), "tune": tune}
    step = max(1, len(frames) // LATENCY_FRAMES)
    latency = latency_vs(fp32, list(frames)[::step][:LATENCY_FRAMES])
    q_facts = facts | {"quantize": "int8", "calibration_frames": n_cal}
    if bare is None:
        b = OnnxDetInt8(onnx.load_from_string(fp32), cal, say)
        say(f"int8: QDQ U8S8 reduce_range, per-channel weights, Conv only, MinMax on {n_cal} "
            f"frames; accuracy control on the gate's {len(frames)} and {len(tune)} tune frames")
        try:
            q, res = control_f1(b.build, b.candidates, detections, fp32, sets, target, say,
                                labels=b.labels, fmt="onnx", latency=latency,
                                max_latency_ratio=budget)
        finally:
            b.close()
    else:
        from edgeinfer.converter.export.tflite_metadata import embed_metadata

        hw = tuple(facts["frame_size"])
        props = metadata(src, q_facts, {}).to_props()
        build, cands, labels = tflite_builder(bare, src.spec, hw, cal, props, say)
        q, res = control_f1(build, cands, detections, fp32, sets, target, say,
                            labels=labels, fmt="tflite", latency=latency,
                            max_latency_ratio=budget)
    verdict = int8_gate(q, fp32, src, frames, say)
    if not verdict["passed"]:
        raise ParityError("int8 detector artifact not written: "
                          + "; ".join(verdict["failures"]))
    meta = metadata(src, q_facts | {"detect_int8_control": res.to_dict()},
                    report | {"int8": verdict})
    if bare is not None:
        return embed_metadata(q, meta.to_props()), meta
    from edgeinfer.converter.assemble import with_metadata

    return with_metadata(onnx.load_from_string(q), meta).SerializeToString(), meta


def _tflite(src: DetectorSource, frames: Sequence[Any], frame_size: tuple[int, int] | None,
            quantize: str | None, n_cal: int, say: Progress, budget: float | None = None
            ) -> tuple[bytes, ArtifactMetadata]:
    """(the .tflite artifact's bytes, its metadata) after the detection gate
    (:mod:`edgeinfer.converter.detect_tflite`); ``quantize="int8"``: the accuracy-controlled
    int8 judged on detection F1 vs this fp32 artifact."""
    import litert_torch

    from edgeinfer.converter.detect_gate import detection_gate
    from edgeinfer.converter.detect_tflite import DEFAULT_FRAME, build_tflite
    from edgeinfer.converter.export.tflite_metadata import embed_metadata

    hw = (int(frame_size[0]), int(frame_size[1])) if frame_size else DEFAULT_FRAME
    bare = build_tflite(src.module, src.spec, hw, say)
    facts = {"format": "tflite", "exporter": f"litert-torch {litert_torch.__version__}",
             "frame_size": list(hw), "nms": "runtime", "batchnorm_before": 0,
             "batchnorm_left": 0}  # TFLite has no BatchNorm op: litert-torch folds it
    blob = embed_metadata(bare, metadata(src, facts, {}).to_props())
    report = detection_gate(blob, src, frames, say)
    if not report["passed"]:
        raise ParityError("detector artifact not written: " + "; ".join(report["failures"]))
    meta = metadata(src, facts, report)
    data = embed_metadata(bare, meta.to_props())
    if quantize == "int8":
        return _int8(data, src, facts, report, frames, n_cal, say, bare=bare, budget=budget)
    return data, meta


def as_result(source: Any, output: str | Path, **kw: Any) -> Any:
    """:func:`convert_detector` as ``edgeinfer.convert`` returns it (a ConversionResult;
    ``parity`` None: a detector's figures are the metadata's ``parity`` entry)."""
    path, meta = convert_detector(source, output, **kw)
    return ConversionResult(path, meta, None)
