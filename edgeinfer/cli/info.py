"""``edgeinfer info``: what an artifact says about itself.

The verdict printed is the word ``convert`` stored (one certification rule,
:mod:`edgeinfer.parity.certify`), so ``info`` never re-judges with other words.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeinfer.cli.common import batchnorm_summary
from edgeinfer.detect_spec import task_line
from edgeinfer.errors import ModelError


def _int8_line(prov: dict[str, Any], quant: dict[str, Any] | None) -> str | None:
    """int8 settings: onnxruntime's (target, weight range, scheme) or LiteRT's calibration."""
    cal = prov.get("calibration") or {}
    if prov.get("quantize") != "int8":
        return None
    bits = []
    if quant:
        bits += [f"target {quant.get('target', 'unspecified')}",
                 f"{quant.get('format', 'QDQ')} {quant.get('scheme', '')}".strip(),
                 "7-bit weights (reduce_range)" if quant.get("reduce_range")
                 else "8-bit weights"]
    per_channel = (quant or cal).get("per_channel")
    if per_channel is not None:
        bits.append("per-channel" if per_channel else "per-tensor")
    if cal:
        bits.append(f"calibrated on {cal.get('n')} frames ({cal.get('data')})")
    from edgeinfer.converter.int8.targets import rounding_note

    if note := rounding_note(prov, quant):
        bits.append(note)
    return ", ".join(bits)


def _props(path: str) -> dict[str, str]:
    """Every metadata property (the quantisation settings too), from the backend itself."""
    from edgeinfer.data.files import load_model_bytes
    from edgeinfer.runtime.loader import open_backend

    data, name = load_model_bytes(path)
    from edgeinfer.runtime.detect.artifact_detector import detector_props

    if (props := detector_props(data, name)) is not None:  # no 'probs' to serve (issue 28)
        return props
    return dict(open_backend(data, 1, source=name).metadata_props())


def run(args: argparse.Namespace) -> int:
    from edgeinfer.artifact import ArtifactMetadata

    props = _props(args.artifact)
    meta = ArtifactMetadata.from_props(props, args.artifact)
    raw_q = props.get("edgeinfer.quantization")
    try:
        quant = json.loads(raw_q) if raw_q else None
    except ValueError:
        quant = "unreadable"
    if quant is not None and not isinstance(quant, dict):
        raise ModelError(f"{args.artifact}: its edgeinfer.quantization metadata is not a JSON "
                         "object; convert the model again")
    if args.json:
        print(json.dumps(meta.to_dict() | ({"quantization": quant} if quant else {}), indent=2))
        return 0
    try:
        lines = _lines(args.artifact, meta, quant)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise ModelError(f"{args.artifact}: its edgeinfer metadata is malformed "
                         f"({type(e).__name__}: {e}); convert the model again") from None
    print("\n".join(lines))
    return 0


def _lines(path: str, meta: Any, quant: dict[str, Any] | None) -> list[str]:
    """The human-readable report, built before anything is printed: a malformed value
    deep in the metadata is then one error line, not half a report and a traceback."""
    from edgeinfer.converter.int8.targets import float_layers, kept_float_line

    out: list[str] = []
    s, prov, par = meta.spec, meta.provenance, meta.parity
    out.append(f"artifact:   {path}")
    out.append(f"source:     {prov.get('source')} ({prov.get('framework')} "
          f"{prov.get('framework_version')})")
    # a detector's int8 control keeps its own record (F1, not top-1 agreement: issue 28)
    ctl = {"int8_control": prov["detect_int8_control"]} if "detect_int8_control" in prov else {}
    out.append(f"format:     {prov.get('format')} {prov.get('quantize') or 'fp32'}"
               + (f", {float_layers(prov | ctl, quant)}" if prov.get("quantize") == "int8"
                  else ""))
    out.append(f"task:       {task_line(meta.task, meta.detection)}")
    out.append(f"classes:    {len(meta.labels)} ({', '.join(meta.labels[:5])}"
          f"{', ...' if len(meta.labels) > 5 else ''})")
    out.append(f"frame:      uint8 NHWC, {s.frame_color}; model {s.model_color} {s.size[0]}x"
          f"{s.size[1]} {s.layout}, {_resize(s)}, "
          f"mean {list(s.mean)} std {list(s.std)} scale {s.scale:g}")
    out.append(batchnorm_summary(prov).replace("BatchNorm: ", "BatchNorm:  ", 1))
    int8 = _int8_line(prov, quant)
    if int8:
        out.append(f"int8:       {int8}")
    from edgeinfer.parity.stages import parity_figure

    if kept := kept_float_line(prov):
        out.append(f"            {kept}")
    if (tgt := prov.get("int8_target")) and isinstance(tgt, dict):
        out.append(f"            judged by: {tgt.get('describe')}")
    if par and meta.task == "detect" and "detections" in par:  # boxes (issue 28)
        from edgeinfer.converter.detect_gate import parity_line

        out.append(parity_line(par))
    elif par:
        lo, hi = par.get("top1_ci95", [float("nan")] * 2)
        out.append(f"parity:     {par.get('verdict', 'unknown (artifact made before verdicts)')} "
              f"on {par.get('n')} frames ({par.get('data')}): {parity_figure(par)}, "
              "top-1 agreement "
              f"{par.get('top1_agreement', float('nan')):.2%} [95% CI {lo:.1%}, {hi:.1%}]")
        if par.get("certification") not in (None, "certified"):
            out.append(f"            {par['certification']}")
        if par.get("data_note"):
            out.append(f"            {par['data_note']}: convert with --parity-data to check it on "
                  "your images")
    audit = prov.get("spec_audit") or prov.get("detect_audit")  # detectors: issue 28
    if audit:
        out.append(_audit_line(audit))
    out.append("monitor:    not for detectors yet (issue 28)" if meta.task == "detect"
               else _monitor_line(meta.monitor))
    return out


def _monitor_line(stored: dict[str, Any]) -> str:
    """The field monitor's reference, validated (a damaged profile is an error, as the
    Predictor would raise it)."""
    if not stored:
        return ("monitor:    no reference profile (converted before edgeinfer stored one, or "
                "on bundled frames that are not your data)")
    from edgeinfer.runtime.monitor import ReferenceProfile

    p = ReferenceProfile.from_dict(stored)
    acc = ("no labels: accuracy not estimated" if p.reference_accuracy is None
           else f"reference accuracy {p.reference_accuracy:.1%}, estimator {p.estimator}")
    rob = f"; robustness of {', '.join(p.robustness)}" if p.robustness else ""
    return f"monitor:    profile of {p.n} frames ({p.labelled} labelled), {acc}{rob}"


def _resize(s: Any) -> str:
    """Every field that decides the resize: the shorter side before a centre crop and
    Pillow-style antialiasing change the pixels as much as the filter does, and a spec that
    hides them cannot be compared with the training pipeline's."""
    how = [s.interpolation] + (["antialias"] if s.antialias else [])
    if s.resize == "shorter_crop":
        how.insert(0, f"shorter side {s.shorter}, centre crop {s.size[0]}x{s.size[1]}")
    return f"resize {s.resize} ({', '.join(how)})"


def _audit_line(audit: dict[str, Any]) -> str:
    """The stored message already starts with "spec audit:" and, for a pass, the verdict:
    said once ("spec audit: pass - spec audit: pass (...)" repeated both)."""
    verdict = str(audit.get("verdict", ""))
    msg = str(audit.get("message", "")).removeprefix("spec audit: ")
    return f"spec audit: {msg}" if msg.startswith(verdict) else f"spec audit: {verdict} - {msg}"



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what an artifact says about itself: spec, "
                       "BatchNorm, int8 settings, the parity verdict and the spec audit")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
