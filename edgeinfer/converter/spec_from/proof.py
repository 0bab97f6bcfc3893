"""Derive, then prove: a derived spec is compared with the pipeline's own output on real
frames before anything uses it (issue 25).

Why: reading a config's numbers is not reading the processor's rules. A spec read from
LeViT's config ignored its own resize rule (36 grey levels off on average), a legacy integer
``size`` was read as a shortest edge where transformers reads a square (DeiT, 29), and
the gate could not see it because the framework runner is fed the same derived spec. So
the spec's numpy reference (:meth:`PreprocessSpec.reference`) is run beside the pipeline
(pipelines.py) on the user's parity frames, else the bundled photos, and compared in 0..255
grey levels (the difference divided by the spec's per-channel scale). Within the registry's
("spec_from", "proof") bounds at the worst pixel and on average the figure goes into the
provenance; otherwise one SpecError line names the step and the figure.

With nothing to run (a JSON file whose class transformers cannot build) only classes whose
rules were proven (evidence.py, with the measured figure) are accepted.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

import edgeinfer.converter.spec_from.evidence as evidence
import edgeinfer.converter.spec_from.pipelines as pipelines
from edgeinfer.converter.spec_from.common import Derived, refuse
from edgeinfer.errors import SpecError
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.spec import PreprocessSpec

MAX_FRAMES = 20  # enough to meet every aspect ratio; a proof stays well under a second


@lru_cache(maxsize=1)
def bundled_frames() -> tuple[np.ndarray, ...]:
    """The six bundled photos (BGR) with a portrait (9:16) and a wide (~32:9) crop and a
    quarter-size copy of each (which every pipeline upscales): 24 real frames of mixed
    aspect ratio; crops keep real pixels and vary the geometry."""
    import cv2

    from edgeinfer.data.datasets import sample_photos

    out: list[np.ndarray] = []
    for img in sample_photos().values():
        h, w = img.shape[:2]
        out.append(img)
        out.append(np.ascontiguousarray(img[: h, : max(8, h * 9 // 16)]))  # portrait 9:16
        out.append(np.ascontiguousarray(img[h // 4: h // 4 + max(8, w * 9 // 32),
                                            :]))  # wide, ~32:9
        out.append(cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_AREA))
    return tuple(out)


def proof_frames(frames: Any, frame_color: str) -> tuple[list[np.ndarray], str]:
    """(frames in the spec's frame colour, where they came from): the user's, spread
    evenly, up to MAX_FRAMES; the bundled photos when none fit the frame colour."""
    want = 1 if frame_color == "GRAY" else 3
    if frames is not None:
        fs = [np.asarray(f) for f in frames]
        fs = [f if f.ndim == 3 else f[:, :, None] for f in fs if f.ndim in (2, 3)]
        fs = [f for f in fs if f.shape[2] == want and f.dtype == np.uint8]
        if fs:
            idx = np.linspace(0, len(fs) - 1, min(MAX_FRAMES, len(fs))).round().astype(int)
            return [fs[i] for i in sorted(set(idx))], "parity frames"
    import cv2

    photos = list(bundled_frames())
    if want == 1:
        photos = [cv2.cvtColor(p, cv2.COLOR_BGR2GRAY)[:, :, None] for p in photos]
    elif frame_color == "RGB":
        photos = [np.ascontiguousarray(p[:, :, ::-1]) for p in photos]
    return photos, "bundled photos"


def to_rgb(frame: np.ndarray, frame_color: str) -> np.ndarray:
    """The RGB image a training pipeline is given for this frame."""
    if frame_color == "BGR":
        return np.ascontiguousarray(frame[:, :, ::-1])
    if frame_color == "GRAY":
        return np.ascontiguousarray(np.repeat(frame[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(frame)


class ShapeMismatch(Exception):
    """The pipeline's output has another shape than the spec's model input."""


def grey_levels(spec: PreprocessSpec, run: Any, frames: list[np.ndarray]
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(pipeline, spec) outputs per frame, both in the spec's layout (NCHW or NHWC with a
    batch axis of one), float32; ShapeMismatch names the first pair that differs."""
    got, ref = [], []
    for f in frames:
        r = spec.reference(f)
        g = np.asarray(run(to_rgb(f, spec.frame_color)), dtype=np.float32)
        r = r[0]
        if g.shape != r.shape and g.ndim == 3 and g.transpose(2, 0, 1).shape == r.shape:
            g = g.transpose(2, 0, 1)  # HWC pipeline, NCHW spec
        elif g.shape != r.shape and g.ndim == 3 and g.transpose(1, 2, 0).shape == r.shape:
            g = g.transpose(1, 2, 0)
        if g.shape != r.shape:
            raise ShapeMismatch(f"output shape {list(g.shape)} for a {f.shape[1]}x"
                                f"{f.shape[0]} frame where the spec gives {list(r.shape)}")
        got.append(g[None])
        ref.append(r[None])
    return got, ref


def figure(spec: PreprocessSpec, got: list[np.ndarray], ref: list[np.ndarray]
           ) -> tuple[float, float]:
    """(max, mean) |difference| in 0..255 grey levels: divided by the spec's scale a, over
    every value of every frame."""
    a, _ = spec.affine()
    shape = (1, -1, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, -1)
    inv = (1.0 / np.abs(a)).astype(np.float32).reshape(shape)
    mx, total, n = 0.0, 0.0, 0
    for g, r in zip(got, ref, strict=True):
        d = np.abs(g - r) * inv
        if not np.all(np.isfinite(d)):
            return float("inf"), float("inf")
        mx, total, n = max(mx, float(d.max())), total + float(d.sum(dtype=np.float64)), \
            n + d.size
    return mx, total / max(n, 1)


def _affine_explains(spec: PreprocessSpec, got: list[np.ndarray], ref: list[np.ndarray]
                     ) -> bool:
    """Whether a per-channel affine map of the spec's output fits the pipeline's within
    the bounds: then geometry is right and the normalisation is the wrong step."""
    axis = 1 if spec.layout == "NCHW" else 3
    g = np.moveaxis(np.concatenate(got).astype(np.float64), axis, 0)
    r = np.moveaxis(np.concatenate(ref).astype(np.float64), axis, 0)
    a, _ = spec.affine()
    a = np.broadcast_to(np.abs(a.astype(np.float64)), (g.shape[0],))
    resid = np.empty_like(g)
    for c in range(g.shape[0]):
        A = np.stack([r[c].ravel(), np.ones(r[c].size)], 1)
        coef = np.linalg.lstsq(A, g[c].ravel(), rcond=None)[0]
        # in the pipeline's own grey levels: its scale is the fitted slope times the spec's
        resid[c] = np.abs((A @ coef).reshape(g[c].shape) - g[c]) / max(
            abs(coef[0]) * a[c], 1e-12)
    mx, mean = float(resid.max()), float(resid.mean())
    tol = tolerance("spec_from", "proof")
    return mx <= tol.max_abs and mean <= (tol.max_mean or tol.max_abs)


def prove(d: Derived, frames: Any = None) -> Derived:
    """``d`` with its proof, or a SpecError naming the step and the figure."""
    if d.source == "spec":
        return d
    d = replace(d, proof=None)  # proven again (on the user's frames), never carried over
    if d.source == "hf":
        d = hf_prepare(d)
        if d.proof is not None:  # accepted on evidence, nothing to run
            return d
    r = pipelines.runner(d)
    if r is None:
        return replace(d, proof={"proven": False, "why": "no library or honest oracle to "
                                 "run this pipeline (a tensor resize without antialias)"})
    run, library, klass = r
    fs, where = proof_frames(frames, d.spec.frame_color)
    tol = tolerance("spec_from", "proof")
    bound = f"bounds {tol.max_abs} at the worst pixel and {tol.max_mean} on average"
    try:
        got, ref = grey_levels(d.spec, run, fs)
    except ShapeMismatch as e:
        raise refuse(_step(d, normalisation=False), f"{klass}'s own output ({library}) has "
                     f"{e}; pass --spec") from None
    except Exception as e:  # noqa: BLE001 - the library's own failure, in one line
        raise refuse(f"{klass}", f"{library} failed on a real frame ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); pass --spec") from None
    mx, mean = figure(d.spec, got, ref)
    proof = {"proven": True, "library": library, "class": klass, "frames": len(fs),
             "frames_from": where, "max_grey_levels": round(mx, 4),
             "mean_grey_levels": round(mean, 4),
             "bounds": {"max": tol.max_abs, "mean": tol.max_mean}}
    if mx <= tol.max_abs and mean <= (tol.max_mean or tol.max_abs):
        return replace(d, proof=proof)
    step = _step(d, normalisation=_affine_explains(d.spec, got, ref))
    raise refuse(step, f"the derived spec differs from {klass}'s own output ({library}) on "
                 f"{len(fs)} {where} by {mean:.2f} grey levels on average and {mx:.1f} at "
                 f"the worst pixel ({bound}); pass --spec")


def _step(d: Derived, normalisation: bool) -> str:
    if d.source == "hf":
        return pipelines.hf_step(d.pipeline, d.read, normalisation)
    what = "normalisation (mean, std, scale)" if normalisation else "resize/crop"
    return f"{d.source} {what}"


def refuse_other_task(name: str) -> None:
    """Refuse a processor of another task (detection, OCR, keypoints, depth, ...) by its
    class: transformers' model mappings say the task, else the table's list."""
    task = pipelines.hf_task(name) if name else None
    if task is None:
        task = evidence.OTHER_TASKS.get(pipelines.base_name(name))
    if task is not None:
        hint = "; a detector's spec and fit: spec_from.derive_detection" \
            if task == "object detection" else ""
        raise refuse(f"Hugging Face {name}", f"a processor for {task}, not for an image "
                     f"classifier; spec_from derives classifier inputs only: pass --spec{hint}")


def hf_prepare(d: Derived) -> Derived:
    """Build the class a config file names; with no library, accept only classes on the
    evidence list, by name."""
    p = d.pipeline
    name = type(p).__name__ if not isinstance(p, dict) else pipelines.hf_class_name(p)
    if not isinstance(p, dict):
        return d
    proc, why = pipelines.hf_build(p)
    if proc is not None:
        return replace(d, pipeline=proc)
    base = pipelines.base_name(name)
    ev = evidence.PROVEN.get(base)
    if ev is None:
        raise SpecError(f"cannot derive a spec: Hugging Face {name or 'config'}: {why}, so "
                        "the spec cannot be proven, and the class is not among the "
                        f"{len(evidence.PROVEN)} whose rules the spec is proven to express "
                        "(docs/spec_from_table.md); pass --spec")
    if isinstance(p.get("size"), int):
        raise refuse(f"Hugging Face {name} size={p['size']}", f"a legacy integer size "
                     f"means a square or a shortest edge depending on the class, and {why}; "
                     "pass --spec")
    return replace(d, proof={"proven": False, "why": why, "accepted_on": "evidence",
                             "evidence": ev})

