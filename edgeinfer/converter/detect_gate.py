"""The detection gate: a detector artifact is written only if it finds what the framework
finds, where the framework finds it, stage by stage (issue 28).

On real frames of each aspect (portrait, landscape, square - the letterbox and its inverse
are where exported detectors drift: ultralytics #26269, D-FINE #358):

1. **preprocessing**: the artifact's own prefix output vs the spec's numpy/OpenCV
   reference, in grey levels (the classifier's stage and bound);
2. **model**: the framework module fed the artifact's own pixels vs the artifact's core
   outputs on those identical tensors - raw box corners in input pixels, scores;
3. **detections**: the artifact frame -> boxes (served by the runtime's
   :class:`~edgeinfer.runtime.detect.artifact_detector.ArtifactDetector`, exactly as it
   deploys) vs the framework's own pipeline (reference preprocessing, module, its own
   NMS, inverse letterbox), matched at IoU >= 0.5 by
   :func:`~edgeinfer.parity.boxes.compare_boxes`: F1, box error in the frame's pixels,
   score error - per aspect and over all frames.

Bounds from the registry (``detect_boxes`` / ``detect_scores``). The verdict is the one
vocabulary (:func:`~edgeinfer.parity.certify.certify_detections`): FAIL on any figure out
of bounds or an F1 below the target; NOT CERTIFIED when the F1 meets it but too few
detections were compared for its 95% lower bound to show F1 >= 0.99 (the artifact is
written, the reason stored, as a classifier's); PASS otherwise. The stages run on a copy
of the artifact with the prefix and core outputs exposed; the detections on the artifact
itself (exposing a tensor can stop onnxruntime fusing across it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.parity.boxes import compare_boxes
from edgeinfer.parity.certify import (
    FAIL,
    Certification,
    DetectionAgreement,
    certify_detections,
)
from edgeinfer.parity.stages import grey_levels
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.progress import Progress


def with_outputs(blob: bytes, names: Sequence[str]) -> bytes:
    """The model with ``names`` appended as graph outputs (float, shape left open)."""
    import onnx
    from onnx import helper

    m = onnx.load_from_string(blob)
    m.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                          for n in names)
    return m.SerializeToString()


def _agg(rows: list[Any]) -> dict[str, Any]:
    matched = sum(r.matched for r in rows)
    only_a = sum(r.only_a for r in rows)
    only_b = sum(r.only_b for r in rows)
    total = 2 * matched + only_a + only_b
    return {"frames": len(rows), "matched": matched, "only_artifact": only_a,
            "only_framework": only_b, "f1": 1.0 if total == 0 else 2 * matched / total,
            "max_box_error_px": max((r.max_box_error_px for r in rows), default=0.0),
            "max_score_error": max((r.max_score_error for r in rows), default=0.0)}


def agreement(a: dict[str, Any]) -> DetectionAgreement:
    """The certified proportion's counts from one :func:`detections_vs` entry."""
    return DetectionAgreement(a["matched"], a["only_artifact"], a["only_framework"],
                              a["frames"])


def verdict(cert: Certification) -> dict[str, Any]:
    """The verdict keys a detector's parity entry stores: ``passed`` (written: PASS or NOT
    CERTIFIED), the word, and why; the failures when it FAILs."""
    return {"passed": cert.base != FAIL, "verdict": cert.word, "certified": cert.certified,
            "certification": cert.reason or "certified",
            "failures": [cert.reason] if cert.base == FAIL else []}


def detections_vs(candidate: Any, reference: Any, frames: Sequence[Any]) -> dict[str, Any]:
    """``candidate`` and ``reference`` (each frame -> (boxes, scores, classes)) compared on
    ``frames`` (``detect_frames.Frame``): per aspect and ``all``."""
    by: dict[str, list[Any]] = defaultdict(list)
    for f in frames:
        c = compare_boxes(*candidate(f.image), *reference(f.image))
        by[f.aspect or "frame"].append(c)
        by["all"].append(c)
    return {k: _agg(v) for k, v in by.items()}


def set_predictions(nms: Any) -> bool:
    """Whether a detector's raw outputs are a SET of predictions, not a dense map: a
    detector that suppresses nothing (``iou_threshold`` >= 1: DETR, RT-DETR, D-FINE - the
    Hungarian-trained query detectors, whose order carries no meaning) vs one whose outputs
    are per cell/anchor (our FCOS-style detector, SSD, YOLO) and need NMS. RT-DETR picks its
    queries by a top-k over encoder scores: near-equal scores rank differently in torch and
    onnxruntime, so query i on one side is not query i on the other."""
    return float(getattr(nms, "iou_threshold", 0.0)) >= 1.0


def match_queries(a_boxes: np.ndarray, a_scores: np.ndarray, b_boxes: np.ndarray,
                  b_scores: np.ndarray, floor: float, box_bound: float,
                  score_bound: float) -> tuple[float, float, int]:
    """Two sides' queries (``[Q, 4]`` boxes, ``[Q, C]`` scores) compared as sets: paired
    greedily, nearest first, by the largest box-corner or score difference in units of
    its bound (so an in-bounds pair costs <= 1); then the worst box and score errors over
    the pairs where either side scores above ``floor``. A pair below it on both sides
    cannot become a detection on either (the detections stage judges those that can);
    returns (box error px, score error, pairs ignored under the floor)."""
    a_boxes, b_boxes = (np.asarray(x, np.float64).reshape(-1, 4) for x in (a_boxes, b_boxes))
    a_scores = np.asarray(a_scores, np.float64).reshape(len(a_boxes), -1)
    b_scores = np.asarray(b_scores, np.float64).reshape(len(b_boxes), -1)
    db = np.abs(a_boxes[:, None] - b_boxes[None]).max(-1)
    ds = np.abs(a_scores[:, None] - b_scores[None]).max(-1)
    cost = np.maximum(db / box_bound, ds / score_bound)
    free_a, free_b = np.ones(len(a_boxes), bool), np.ones(len(b_boxes), bool)
    box = score = 0.0
    ignored = 0
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), cost.shape[1])
        if not (free_a[i] and free_b[j]):
            continue
        free_a[i] = free_b[j] = False
        if max(a_scores[i].max(), b_scores[j].max()) <= floor:
            ignored += 1
        else:
            box, score = max(box, float(db[i, j])), max(score, float(ds[i, j]))
        if not (free_a.any() and free_b.any()):
            break
    # a query left without a partner (unequal counts) scoring above the floor
    for side, free in ((a_scores, free_a), (b_scores, free_b)):
        if free.any() and side[free].max() > floor:
            box, score = float("inf"), float("inf")
    return box, score, ignored


def model_stages(blob: bytes, src: Any, frames: Sequence[Any]) -> dict[str, Any]:
    """Preprocessing in grey levels and the model on identical tensors (stages 1 and 2).
    The model's outputs are compared element by element for a dense map, as a set
    (:func:`match_queries`, floor the deployed score threshold) for a set predictor
    (:func:`set_predictions`); ``model_comparison`` says which."""
    if blob[4:8] == b"TFL3":  # a .tflite detector: its prefix read from the interpreter
        from edgeinfer.converter.detect_tflite import tflite_stages

        return tflite_stages(blob, src, frames)
    import torch

    from edgeinfer.artifact import PREFIX_OUTPUT
    from edgeinfer.converter.detect_graph import CORE_BOXES, CORE_SCORES
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    names = (PREFIX_OUTPUT, CORE_BOXES, CORE_SCORES)
    probe = ArtifactDetector(with_outputs(blob, names), extra_outputs=names)
    k = 3 if probe.nms_in_graph else 2
    nms = src.detection.nms
    as_set = set_predictions(nms)
    tb, ts = tolerance("detect_boxes", "fp32"), tolerance("detect_scores", "fp32")
    grey, box, score, ignored = 0.0, 0.0, 0.0, 0
    for f in frames:
        out = probe.raw(f.image)
        px, a_boxes, a_scores = out[k:]
        ref = src.spec.reference(f.image)
        grey = max(grey, float(grey_levels(px.astype(np.float64) - ref, src.spec).max()))
        with torch.inference_mode():
            t_boxes, t_scores = src.module(torch.from_numpy(np.ascontiguousarray(px)))
        t_b, t_s = t_boxes.double().numpy(), t_scores.double().numpy()
        if as_set:
            b, s, n = match_queries(a_boxes, a_scores, t_b, t_s, nms.score_threshold,
                                    tb.max_abs, ts.max_abs)
            box, score, ignored = max(box, b), max(score, s), ignored + n
        else:
            box = max(box, float(np.abs(t_b - a_boxes).max()))
            score = max(score, float(np.abs(t_s - a_scores).max()))
    how = ("element-wise (a dense per-cell/anchor map)" if not as_set else
           f"as a set (queries paired nearest first; {ignored} pairs scoring <= "
           f"{nms.score_threshold:g} on both sides over {len(frames)} frames not judged)")
    return {"preprocessing_grey_levels": grey, "model_box_error_px": box,
            "model_score_error": score, "frames": len(frames), "model_comparison": how}


def figure_failures(a: dict[str, Any], dtype: str = "fp32") -> list[str]:
    """The matched boxes' and scores' errors (one :func:`detections_vs` entry) out of the
    registry's ``detect_boxes`` / ``detect_scores`` bounds, as lines (``verify`` on the
    device judges the stored detections by these too)."""
    tb, ts = tolerance("detect_boxes", dtype), tolerance("detect_scores", dtype)
    return (beyond(a["max_box_error_px"], tb.max_abs, "matched boxes differ by {} px in the "
                   "frame")
            + beyond(a["max_score_error"], ts.max_abs, "matched scores differ by {}"))


def beyond(value: float, bound: float, text: str) -> list[str]:
    """``text`` with the value (``{}``) and the bound, as a one-item list, when ``value`` is
    beyond ``bound`` or not a number (NaN fails); else nothing. The gate's one bound check."""
    return [] if value <= bound else [f"{text.format(f'{value:.3g}')} (bound {bound:g})"]


def detection_gate(blob: bytes, src: Any, frames: Sequence[Any], say: Progress,
                   dtype: str = "fp32") -> dict[str, Any]:
    """The three stages of one fp32 artifact and the verdict (``passed``, ``failures``)."""
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    pre = tolerance("stage", "preprocessing")
    tb, ts = tolerance("detect_boxes", dtype), tolerance("detect_scores", dtype)
    stages = model_stages(blob, src, frames)
    served = ArtifactDetector(blob)
    det = detections_vs(served.arrays, src.framework, frames)
    failures = (beyond(stages["preprocessing_grey_levels"], pre.max_abs,
                       "preprocessing differs by {} grey levels")
                + beyond(stages["model_box_error_px"], tb.max_abs,
                         "model boxes differ by {} px on identical inputs")
                + beyond(stages["model_score_error"], ts.max_abs,
                         "model scores differ by {} on identical inputs"))
    a = det["all"]
    failures += figure_failures(a, dtype)
    for aspect, r in det.items():
        say(f"detections {aspect}: {r['frames']} frames, F1 {r['f1']:.4f}, boxes within "
            f"{r['max_box_error_px']:.2g} px, scores within {r['max_score_error']:.2g}")
    say(f"stages: preprocessing {stages['preprocessing_grey_levels']:.3g} grey levels, "
        f"model {stages['model_box_error_px']:.3g} px / {stages['model_score_error']:.3g}"
        + (f", compared {stages['model_comparison']}" if "model_comparison" in stages
           else ""))
    cert = certify_detections(agreement(a), tb.min_top1, extra_failures=failures)
    say(f"verdict: {cert.line()}")
    return {"data": "bundled photos with Fashion-MNIST test items pasted (not your data)",
            "nms": "graph" if served.nms_in_graph else "runtime", "stages": stages,
            "detections": det} | verdict(cert)


def parity_line(parity: dict[str, Any]) -> str:
    """``info``'s parity line for a detector: the verdict, where NMS runs, the detection
    figures over all frames and the stage figures."""
    a = parity.get("detections", {}).get("all", {})
    st = parity.get("stages", {})
    kinds = ", ".join(f"{v['frames']} {k}" for k, v in parity.get("detections", {}).items()
                      if k != "all")
    # the stored word (PASS / NOT CERTIFIED / FAIL); artifacts from before it was stored
    # passed or failed on F1 alone
    word = parity.get("verdict") or ("PASS" if parity.get("passed") else "FAIL")
    return (f"parity:     {word} on {a.get('frames')} frames ({kinds}; {parity.get('data')}),"
            f" NMS in the {parity.get('nms')}: F1 {a.get('f1', float('nan')):.4f}, boxes "
            f"within {a.get('max_box_error_px', float('nan')):.2g} px, scores within "
            f"{a.get('max_score_error', float('nan')):.2g}; stages: preprocessing "
            f"{st.get('preprocessing_grey_levels', float('nan')):.2g} grey levels, model "
            f"{st.get('model_box_error_px', float('nan')):.2g} px"
            + (" (queries as a set)" if str(st.get("model_comparison", "")).startswith(
                "as a set") else "")
            + (f"\n            {parity['certification']}"
               if parity.get("certification") not in (None, "certified") else "")
            + int8_line(parity.get("int8")))


def int8_line(v: dict[str, Any] | None) -> str:
    """The int8 gate's verdict under the parity line (empty for an fp32 artifact)."""
    if not isinstance(v, dict) or "vs_fp32" not in v:
        return ""
    a = v["vs_fp32"].get("all", {})
    word = v.get("verdict") or ("PASS" if v.get("passed") else "FAIL")
    why = v.get("certification")
    return (f"\n            int8 vs fp32: {word}, F1 {a.get('f1', float('nan')):.4f} on "
            f"{a.get('frames')} frames ({a.get('matched')} matched)"
            + (f" - {why}" if why not in (None, "certified") else ""))


def int8_gate(blob: bytes, fp32: bytes, src: Any, frames: Sequence[Any], say: Progress
              ) -> dict[str, Any]:
    """An int8 detector judged on detection F1 against its fp32 artifact (the registry's
    ``detect_boxes``/int8 bound); the framework comparison is reported alongside."""
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    tb = tolerance("detect_boxes", "int8")
    q, f = ArtifactDetector(blob), ArtifactDetector(fp32)
    vs_fp32 = detections_vs(q.arrays, f.arrays, frames)
    vs_framework = detections_vs(q.arrays, src.framework, frames)["all"]
    cert = certify_detections(agreement(vs_fp32["all"]), tb.min_top1,
                              sides=("int8", "fp32"))
    for aspect, r in vs_fp32.items():
        say(f"int8 vs fp32 {aspect}: {r['frames']} frames, F1 {r['f1']:.4f}, boxes within "
            f"{r['max_box_error_px']:.2g} px, scores within {r['max_score_error']:.2g}")
    say(f"int8 verdict: {cert.line()}")
    return {"vs_fp32": vs_fp32, "vs_framework": vs_framework} | verdict(cert)
