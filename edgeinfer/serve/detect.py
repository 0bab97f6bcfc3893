"""A detector behind the Open Inference Protocol, next to the classifiers (issue 28).

``ServedDetector`` wraps any object with the runtime's detector interface
(:class:`~edgeinfer.runtime.detect.detector.DetectorLike`: BlazeFace served as it is today,
a converted detector artifact later) and answers what the app asks of a served model:
``parse`` / ``frames`` / ``infer`` / ``encode`` for ``/v2/models/NAME/infer``, ``simple``
for ``/predict``, ``metadata`` and ``config``.

Outputs, for ONE image per request (a detector's box count differs per image, and the
protocol has no ragged tensors; a batch is refused with 413 naming the limit):

* ``boxes``  FP32  ``[N, 4]``  x0, y0, x1, y1 in the frame's own pixels (not the model's
  input: the fit's inverse is applied, so a box can be drawn on the image that was sent);
* ``scores`` FP32  ``[N]``, best first;
* ``classes`` INT64 ``[N]``: indices into the labels of ``GET .../config``;
* ``keypoints`` FP32 ``[N, K, 2]`` (x, y in the frame's pixels), for a detector that gives
  them (BlazeFace: 6).

Values are the detector's own, cast to float32: a box over HTTP equals
``np.float32(detector(image)[i].box)``. The frame is decoded by the runtime's rules in the
detector's frame colour (``edgeinfer.frame_color`` in the config: RGB for BlazeFace), as
for a classifier; a raw UINT8 frame is taken in that order.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from edgeinfer.artifact import INPUT_NAME
from edgeinfer.errors import ImageTooLargeError
from edgeinfer.runtime.detect.detector import Detection, DetectorLike
from edgeinfer.runtime.image import load_image
from edgeinfer.runtime.image_probe import probe
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.limits import Charge
from edgeinfer.serve.protocol import InferRequest, RequestError, parse_infer, response_body

OUTPUTS = ("boxes", "scores", "classes", "keypoints")
#: numpy little-endian dtype of each output's protocol datatype
_TYPES = {"boxes": ("FP32", "<f4"), "scores": ("FP32", "<f4"), "classes": ("INT64", "<i8"),
          "keypoints": ("FP32", "<f4")}


class ServedDetector:
    """One detector behind the protocol; ``infer`` returns each frame's detections."""

    task = "detect"

    def __init__(self, name: str, detector: DetectorLike, version: str = "1") -> None:
        self.name, self.version, self.detector = name, version, detector
        self.spec = detector.spec
        self.labels = tuple(detector.labels)
        self.platform = "edgeinfer_detector"
        self.monitor = None  # no field monitor for detectors yet
        self.keypoints = int(detector.task.decoder.get("keypoints", 0) or 0)
        self.outputs = OUTPUTS if self.keypoints else OUTPUTS[:3]

    # ------------------------------------------------------------------ requests
    def parse(self, body: bytes, header_length: str | None, cfg: ServeConfig) -> InferRequest:
        req = parse_infer(body, header_length, INPUT_NAME, self.outputs, 1, cfg.max_json_bytes)
        if any(o.classification for o in req.outputs):
            raise RequestError(f"{self.name} is a detector: the classification extension is "
                               "for classifiers; ask for boxes, scores and classes")
        return req

    def frames(self, req: InferRequest, cfg: ServeConfig,
               abandoned: threading.Event | None = None, charge: Charge | None = None
               ) -> list[np.ndarray]:
        """The request's one frame, its pixels checked against ``max_pixels`` from the
        image header before anything is decoded, its bytes charged to the budget."""
        c = self.spec.frame_channels
        if req.images is not None:
            data = req.images[0]
            fmt, h, w = probe(data, "image 0")
            self._check_pixels(h, w, cfg)
            if charge is not None:
                charge.add(h * w * c, "decoding the request's image")
            return [load_image(data, self.spec, cfg.max_pixels, cfg.max_body_bytes,
                               header=(fmt, h, w))]
        t = req.tensor
        self._check_pixels(t.shape[1], t.shape[2], cfg)
        if charge is not None:
            charge.add(t.shape[1] * t.shape[2] * c, "the request's frame")
        return [load_image(t[0], self.spec, cfg.max_pixels)]

    @staticmethod
    def _check_pixels(h: int, w: int, cfg: ServeConfig) -> None:
        if h * w > cfg.max_pixels:
            raise ImageTooLargeError(f"the image is {w}x{h}, {h * w / 1e6:.1f} MP, above the "
                                     f"limit of {cfg.max_pixels / 1e6:g} MP per request")

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """``[n, H, W, C]`` uint8 -> an object array ``[n, 1]`` holding each frame's list of
        :class:`Detection` (the scheduler's batches slice and merge rows like probabilities)."""
        out = np.empty((frames.shape[0], 1), object)
        for i, frame in enumerate(frames):
            out[i, 0] = self.detector(frame)
        return out

    # ------------------------------------------------------------------ responses
    def tensors(self, dets: list[Detection]) -> dict[str, np.ndarray]:
        """The output tensors of one frame's detections."""
        n = len(dets)
        t = {"boxes": np.array([d.box for d in dets], "<f4").reshape(n, 4),
             "scores": np.array([d.score for d in dets], "<f4").reshape(n),
             "classes": np.array([d.index for d in dets], "<i8").reshape(n)}
        if self.keypoints:
            t["keypoints"] = np.array([d.keypoints for d in dets], "<f4").reshape(
                n, self.keypoints, 2)
        return t

    def encode(self, req: InferRequest, results: np.ndarray) -> tuple[bytes, dict[str, str]]:
        """(body, extra headers): the requested outputs, JSON or binary as asked."""
        t = self.tensors(results[0, 0])
        outputs, tail = [], []
        for o in req.outputs:
            a = t[o.name]
            entry: dict[str, Any] = {"name": o.name, "datatype": _TYPES[o.name][0],
                                     "shape": list(a.shape)}
            if o.binary:
                blob = a.tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                tail.append(blob)
            else:
                entry["data"] = a.ravel().tolist()
            outputs.append(entry)
        return response_body(self.name, self.version, req, outputs, tail)

    def simple(self, result: np.ndarray, top_k: int) -> dict[str, Any]:
        """``/predict``'s JSON: the boxes of the one image (``top_k`` is for classifiers)."""
        return {"detections": [d.to_dict() for d in result[0]]}

    # ------------------------------------------------------------------ descriptions
    def _shapes(self) -> dict[str, list[int]]:
        return {"boxes": [-1, 4], "scores": [-1], "classes": [-1],
                "keypoints": [-1, self.keypoints, 2]}

    def metadata(self) -> dict[str, Any]:
        """The protocol's model metadata: one frame in, the detection outputs."""
        c = self.spec.frame_channels
        shapes = self._shapes()
        return {"name": self.name, "versions": [self.version], "platform": self.platform,
                "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [1, -1, -1, c]}],
                "outputs": [{"name": n, "datatype": _TYPES[n][0], "shape": shapes[n]}
                            for n in self.outputs],
                "parameters": self.certification()}

    def certification(self) -> dict[str, Any]:
        """What this server knows of the detector's parity: the task line; the figures
        for BlazeFace vs its framework are in docs/detection/blazeface.md."""
        return {"task": self.task, "detection": self.detector.task.describe(),
                "source": self.detector.source.name}

    def config(self, max_batch: int) -> dict[str, Any]:
        """A Triton-style configuration: no batching (one image per request)."""
        c = self.spec.frame_channels
        shapes = self._shapes()
        return {
            "name": self.name, "platform": self.platform, "max_batch_size": 0,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_UINT8", "dims": [1, -1, -1, c],
                       "format": "FORMAT_NHWC"}],
            "output": [{"name": n, "data_type": f"TYPE_{_TYPES[n][0]}", "dims": shapes[n]}
                       for n in self.outputs],
            "parameters": {
                "edgeinfer.frame_color": {"string_value": self.spec.frame_color},
                "edgeinfer.spec": {"string_value": self.spec.to_json()},
                "edgeinfer.task": {"string_value": self.task},
                "edgeinfer.detection": {"string_value": self.detector.task.to_json()},
            },
            "labels": list(self.labels),
        }


def open_served(name: str, cfg: ServeConfig) -> ServedDetector:
    """``blazeface:VARIANT`` (or, later, a detector artifact) as a served model."""
    from edgeinfer.runtime.detect import served_name
    from edgeinfer.runtime.detect.loader import open_detector

    return ServedDetector(served_name(name), open_detector(
        name, threads=cfg.threads, max_pixels=cfg.max_pixels, max_bytes=cfg.max_body_bytes))
