"""The proof of a derived detector spec (issue 28, point 2): pixels and boxes, both against
the processor's own code, on real frames of three aspects.

Why two halves: a detector's spec can be right about pixels and wrong about boxes (a
letterbox read where the processor stretches moves boxes by tens of pixels; a cxcywh box
read as xyxy moves every one) and the gate cannot see it, since the framework runner is fed
the derived spec. So:

1. pixels - the derived PreprocessSpec's reference vs the processor's ``pixel_values`` on
   the frames (spec_from/proof.py, registry ("spec_from", "proof"));
2. boxes - one fixed set of model outputs per frame (seeded random logits and cxcywh boxes,
   what any model could write; the mapping is what is proven, not a model) decoded two ways:
   the processor's own ``post_process_object_detection`` with the frame's size, and
   edgeinfer's reading (the DetectionSpec's decoder, the derived scoring rule, the fit's
   inverse ``geometry.fit(...).to_frame`` unclipped, as the processor does not clip). Each of
   the processor's detections is matched to one of ours (same class, nearest box) and the
   figure is the worst box corner in frame pixels and the worst score, within the registry's
   ("detect_boxes", "fp32") and ("detect_scores", "fp32") bounds, with the same count.

Accepted only when both hold; else one SpecError line names the step and the figure.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

import edgeinfer.converter.spec_from.proof as pixel_proof
from edgeinfer.converter.spec_from.common import Derived, refuse
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.detect.geometry import fit

ASPECTS = {"portrait": 4 / 3, "landscape": 3 / 4, "square": 1.0}  # height / width
QUERIES, CLASSES, SEED = 300, 80, 2028  # RT-DETR's 300 queries, COCO's 80 classes


@lru_cache(maxsize=1)
def aspect_frames() -> tuple[np.ndarray, ...]:
    """18 real BGR frames: the six bundled photos, each cropped (centred) to a portrait
    (3:4), a landscape (4:3) and a square frame, at the photo's own resolution."""
    from edgeinfer.data.datasets import sample_photos

    out = []
    for img in sample_photos().values():
        h, w = img.shape[:2]
        for ratio in ASPECTS.values():
            ch, cw = (h, int(h / ratio)) if h / ratio <= w else (int(w * ratio), w)
            y, x = (h - ch) // 2, (w - cw) // 2
            out.append(np.ascontiguousarray(img[y:y + ch, x:x + cw]))
    return tuple(out)


def outputs(index: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits [1, Q, C(+1)], pred_boxes [1, Q, 4] cxcywh in 0..1) for frame ``index``:
    fixed by the seed; softmax rules get the last "no object" class."""
    rng = np.random.default_rng([SEED, index])
    logits = rng.normal(0.0, 2.0, (1, QUERIES, CLASSES + (rule == "softmax"))).astype(
        np.float32)
    centre = rng.uniform(0.0, 1.0, (1, QUERIES, 2))
    size = rng.uniform(0.02, 0.9, (1, QUERIES, 2))
    return logits, np.concatenate([centre, size], -1).astype(np.float32)


def decode(d: Derived, logits: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """edgeinfer's reading of one image's outputs: (boxes [K, 4] xyxy frame pixels, scores,
    labels), from the DetectionSpec and the derived scoring rule only."""
    det, rule = d.detection, d.read["post_process_object_detection"]
    assert det is not None
    ih, iw = d.spec.size
    b = np.asarray(boxes[0], np.float64)
    if det.decoder.get("box_format") == "cxcywh":
        b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    if det.decoder.get("normalized"):
        b = b * [iw, ih, iw, ih]
    b = fit(frame_hw, d.spec.size, det.fit).to_frame(b, clip=False)
    lg = np.asarray(logits[0], np.float64)
    if rule["scores"] == "sigmoid":
        p = (1 / (1 + np.exp(-lg))).ravel()
        k = min(len(lg) if rule["top_k"] == "queries" else int(rule["top_k"]), p.size)
        idx = np.argsort(-p, kind="stable")[:k]
        scores, labels, query = p[idx], idx % lg.shape[1], idx // lg.shape[1]
    else:
        e = np.exp(lg - lg.max(1, keepdims=True))
        p = (e / e.sum(1, keepdims=True))[:, :-1]
        labels, query = p.argmax(1), np.arange(len(p))
        scores = p[query, labels]
    keep = scores > det.nms.score_threshold
    return b[query[keep]], scores[keep], labels[keep].astype(np.int64)


def library(d: Derived, logits: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The processor's own post_process_object_detection on the same outputs."""
    import torch

    out = SimpleNamespace(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes))
    r = d.pipeline.post_process_object_detection(
        out, threshold=d.read["post_process_object_detection"]["threshold"],
        target_sizes=[tuple(frame_hw)])[0]
    return (r["boxes"].double().numpy(), r["scores"].double().numpy(),
            r["labels"].numpy().astype(np.int64))


def match(lib: tuple[np.ndarray, ...], ours: tuple[np.ndarray, ...]
          ) -> tuple[float, float, int]:
    """(worst box corner px, worst score, unmatched count): each library detection paired
    with one of ours of its class, the nearest box among those with the nearest score."""
    (lb, ls, ll), (ob, os_, ol) = lib, ours
    used = np.zeros(len(ob), bool)
    box_err, score_err, missing = 0.0, 0.0, abs(len(lb) - len(ob))
    for i in range(len(lb)):
        cand = np.flatnonzero((ol == ll[i]) & ~used)
        if not len(cand):
            missing += 1
            continue
        ds = np.abs(os_[cand] - ls[i])
        near = cand[ds <= ds.min() + 1e-6]
        j = near[np.argmin(np.abs(ob[near] - lb[i]).max(1))]
        used[j] = True
        box_err = max(box_err, float(np.abs(ob[j] - lb[i]).max()))
        score_err = max(score_err, float(abs(os_[j] - ls[i])))
    return box_err, score_err, missing


def prove_boxes(d: Derived, frames: list[np.ndarray]) -> dict[str, Any]:
    """The box half of the proof: its figure, or a SpecError naming the step."""
    rule = d.read["post_process_object_detection"]
    tb, ts = tolerance("detect_boxes", "fp32"), tolerance("detect_scores", "fp32")
    box_err = score_err = 0.0
    n = missing = 0
    for i, f in enumerate(frames):
        logits, boxes = outputs(i, rule["scores"])
        hw = (int(f.shape[0]), int(f.shape[1]))
        lib = library(d, logits, boxes, hw)
        b, s, m = match(lib, decode(d, logits, boxes, hw))
        box_err, score_err, missing, n = max(box_err, b), max(score_err, s), missing + m, \
            n + len(lib[0])
    klass = type(d.pipeline).__name__
    where = f"{len(frames)} real frames ({', '.join(ASPECTS)}), {n} detections"
    det = d.detection
    assert det is not None
    if missing or score_err > ts.max_abs:
        raise refuse(f"{klass} post_process_object_detection: scores ({rule['scores']}, "
                     f"top-k {rule['top_k']}, score > {rule['threshold']})", f"the derived "
                     f"rule differs from the processor's on {where}: {missing} unmatched, "
                     f"scores up to {score_err:.2g} apart (bound {ts.max_abs}); pass --spec")
    if box_err > tb.max_abs:
        norm = " normalised" if det.decoder.get("normalized") else ""
        raise refuse(f"{klass} post_process_object_detection: boxes (decoder "
                     f"{det.decoder.get('box_format')}{norm}, the inverse of fit {det.fit})",
                     f"the derived mapping puts boxes up to {box_err:.1f} px from the "
                     f"processor's own on {where} (bound "
                     f"{tb.max_abs} px, registry ('detect_boxes', 'fp32')); pass --spec")
    return {"proven": True, "frames": len(frames), "detections": n,
            "max_box_px": round(box_err, 6), "max_score": float(f"{score_err:.3g}"),
            "outputs": f"seeded random: {QUERIES} queries x {CLASSES} classes, seed {SEED}",
            "bounds": {"box_px": tb.max_abs, "score": ts.max_abs}}


def prove_detection(d: Derived, frames: Any = None) -> Derived:
    """``d`` (a detection derivation with its processor in ``pipeline``) with its proof:
    the pixel figure, and under ``boxes`` the box figure; or a SpecError."""
    fs = None if frames is None else list(frames)
    d = pixel_proof.prove(replace(d, proof=None), fs if fs else list(aspect_frames()))
    if fs:
        fs, _ = pixel_proof.proof_frames(fs, d.spec.frame_color)
    boxes = prove_boxes(d, fs or list(aspect_frames()))
    proof = dict(d.proof or {})
    if not fs:
        proof["frames_from"] = "bundled photos: portrait, landscape and square crops"
    return replace(d, proof=proof | {"boxes": boxes})
