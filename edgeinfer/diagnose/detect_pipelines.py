"""Pipelines for the detector audit (:mod:`edgeinfer.diagnose.detect_culprits`): one
hypothesis in, detections in the frame's own pixels out, for every frame.

:class:`CorePipeline` runs a model that maps an input tensor to input-pixel boxes and
per-class scores (a torch detector, a converted artifact's core): each hypothesis places
and normalises the frame with its own spec (the numpy/OpenCV reference the framework
runs), suppresses with the deployed NMS and maps boxes back with its own fit's inverse.
:class:`DetectorPipeline` runs a detector served as it is (BlazeFace) with the hypothesis's
pixels and fit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from edgeinfer.detect_spec import NmsSpec
from edgeinfer.runtime.detect.geometry import fit as place_fit
from edgeinfer.runtime.detect.nms import nms
from edgeinfer.spec import PreprocessSpec

Dets = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [K, 4] frame px, scores, classes
RECT_STRIDE = 32  # ultralytics' rectangular inference pads the short side to a multiple


@dataclass(frozen=True)
class DetVariant:
    """One hypothesis for how the detector was trained: pixels (``spec``) and placement."""

    culprit: str
    detail: str
    spec: PreprocessSpec
    fit: str
    rect: bool = False  # the input is the frame's aspect (long side = spec size)

    def input_spec(self, hw: tuple[int, int]) -> PreprocessSpec:
        """The pixel spec that places a frame of ``hw`` as this hypothesis says."""
        spec = self.spec
        if self.rect:
            spec = replace(spec, size=rect_size(hw, max(spec.size)))
        if self.fit == "stretch":
            return replace(spec, resize="stretch", resize_shorter=None, crop_from=None)
        if self.fit == "crop":
            return replace(spec, resize="shorter_crop", resize_shorter=max(spec.size),
                           crop_from=None)
        return replace(spec, resize="letterbox", resize_shorter=None, crop_from=None)


def rect_size(hw: tuple[int, int], side: int) -> tuple[int, int]:
    """Ultralytics' rectangular letterbox shape: the long side ``side``, the short side the
    frame's aspect rounded up to a multiple of :data:`RECT_STRIDE`."""
    h, w = hw
    s = side / max(h, w)
    short = min(side, int(math.ceil(min(h, w) * s / RECT_STRIDE)) * RECT_STRIDE)
    return (side, short) if h >= w else (short, side)


class Pipeline(Protocol):
    def run(self, variant: DetVariant, frames: Sequence[np.ndarray]
            ) -> tuple[list[Dets], float | None]: ...


def suppress(boxes: np.ndarray, scores: np.ndarray, n: NmsSpec) -> tuple[np.ndarray, ...]:
    """Input-pixel ``boxes [A, 4]`` and ``scores [A, C]`` -> kept (boxes, scores, classes),
    class-major candidates as the runtime's ending orders them."""
    scores = np.asarray(scores).reshape(len(boxes), -1)
    cls, anchor = np.nonzero(n.score_threshold < scores.T)
    s = scores[anchor, cls]
    kept = nms(boxes[anchor], s, cls if n.class_aware else None,
               iou_threshold=n.iou_threshold, score_threshold=n.score_threshold,
               top_k=n.top_k)
    return boxes[anchor[kept]], s[kept].astype(np.float64), cls[kept].astype(np.int64)


@dataclass
class CorePipeline:
    """A model from input tensor to ``(boxes [1, A, 4] input pixels, scores [1, A, C])``:
    each hypothesis places and normalises the frame with its own spec (the numpy/OpenCV
    reference the framework runs), suppresses with the deployed NMS and maps the boxes back
    with its own fit's inverse. ``bn_model``: a torch module to probe for the BN fit."""

    core: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    nms: NmsSpec
    bn_model: Any = None

    def run(self, variant: DetVariant, frames: Sequence[np.ndarray]
            ) -> tuple[list[Dets], float | None]:
        outs: list[tuple[np.ndarray, np.ndarray]] = []
        xs = [variant.input_spec(f.shape[:2]).reference(f) for f in frames]

        def forward(x: np.ndarray) -> np.ndarray:
            b, s = self.core(x)
            outs.append((np.asarray(b)[0].astype(np.float64), np.asarray(s)[0]))
            return np.zeros((1, 1))

        bn = None
        if self.bn_model is not None:
            from edgeinfer.diagnose.bn_fit import BNProbe

            probe = BNProbe(self.bn_model)
            _, fit_ = probe.evaluate(xs, forward)
            bn = fit_.score if fit_ is not None else None
        else:
            for x in xs:
                forward(x)
        dets = []
        for f, (b, s) in zip(frames, outs, strict=True):
            kb, ks, kc = suppress(b, s, self.nms)
            size = variant.input_spec(f.shape[:2]).size
            dets.append((place_fit(f.shape[:2], size, variant.fit).to_frame(kb), ks, kc))
        return dets, bn


@dataclass
class DetectorPipeline:
    """A detector served as it is (``runtime.detect.detector.Detector``: BlazeFace): each
    hypothesis is the same detector with the hypothesis's pixels and fit."""

    detector: Any
    fits: tuple[str, ...] = ("letterbox", "stretch", "pad_resize")

    def run(self, variant: DetVariant, frames: Sequence[np.ndarray]
            ) -> tuple[list[Dets], float | None]:
        if variant.rect or variant.fit not in self.fits:
            raise ValueError(f"{type(self.detector).__name__} takes only its fixed "
                             f"{self.detector.spec.size[0]}x{self.detector.spec.size[1]} "
                             f"input placed by {', '.join(self.fits)}")
        d = copy.copy(self.detector)
        d.spec, d.task = variant.spec, replace(self.detector.task, fit=variant.fit)
        d._a, d._b = variant.spec.affine()
        out = []
        for f in frames:
            found = d(f)
            out.append((np.array([x.box for x in found], np.float64).reshape(-1, 4),
                        np.array([x.score for x in found], np.float64),
                        np.array([x.index for x in found], np.int64)))
        return out, None
