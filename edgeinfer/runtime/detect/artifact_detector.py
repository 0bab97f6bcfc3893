"""``ArtifactDetector``: an edgeinfer ONNX detector artifact served, frame of any size in,
boxes in that frame's own pixels out (issue 28).

The sibling of :class:`~edgeinfer.runtime.detect.detector.Detector` (which serves
third-party ``.tflite`` files from a bundled description): here the artifact describes
itself - the ``edgeinfer.task`` / ``edgeinfer.detection`` metadata, and its preprocessing
is baked in its graph, so the runtime hands it the raw uint8 frame and nothing else.
Two endings (``converter/detect_graph.py``) are told apart by the outputs:

* ``boxes, scores, classes``: suppression and the inverse letterbox ran in the graph;
  the boxes are already in the frame's pixels.
* ``boxes [1, A, 4], scores [1, A, C]``: input-pixel boxes and per-class scores; this
  module suppresses them with :func:`~edgeinfer.runtime.detect.nms.nms` (ONNX
  ``NonMaxSuppression`` semantics) and maps them back with the fit's exact inverse
  (:func:`~edgeinfer.runtime.detect.geometry.fit`).

numpy, OpenCV and onnxruntime only (onnxruntime imported when an artifact is opened).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import INPUT_NAME, ArtifactMetadata
from edgeinfer.data.files import ModelSource, load_model_bytes
from edgeinfer.errors import ModelError, one_line
from edgeinfer.runtime.backend import default_threads
from edgeinfer.runtime.detect.detector import Detection
from edgeinfer.runtime.detect.geometry import fit
from edgeinfer.runtime.detect.nms import nms
from edgeinfer.runtime.image import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageInput, _load

GRAPH_OUTPUTS = ("boxes", "scores", "classes")
RUNTIME_OUTPUTS = ("boxes", "scores")


class ArtifactDetector:
    """An ONNX detector artifact (path or bytes) with the interface of ``Detector``."""

    def __init__(self, model: ModelSource, *, threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                 extra_outputs: tuple[str, ...] = ()) -> None:
        import onnxruntime as ort

        from edgeinfer.runtime.onnx_backend import session_props

        data, name = load_model_bytes(model)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or default_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's several pybind error types
            raise ModelError(f"{name} cannot be loaded as an ONNX model: {one_line(e)}") from None
        self.metadata = ArtifactMetadata.from_props(session_props(self._session, name), name)
        if self.metadata.task != "detect" or self.metadata.detection is None:
            raise ModelError(f"{name} is a {self.metadata.task} artifact, not a detector: "
                             "serve it with Predictor")
        outs = tuple(o.name for o in self._session.get_outputs())
        if outs[:3] == GRAPH_OUTPUTS:
            self.nms_in_graph = True
        elif outs[:2] == RUNTIME_OUTPUTS:
            self.nms_in_graph = False
        else:
            raise ModelError(f"{name} has outputs {list(outs)}; a detector artifact writes "
                             f"{', '.join(GRAPH_OUTPUTS)} or {', '.join(RUNTIME_OUTPUTS)}")
        # DetectorLike (runtime/detect/detector.py): serve, watch and bench plug this in
        self.source = Path(model) if isinstance(model, (str, os.PathLike)) else Path(name)
        self.spec = self.metadata.spec
        self.task, self.labels = self.metadata.detection, self.metadata.labels
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self._outputs = list(outs[:3 if self.nms_in_graph else 2]) + list(extra_outputs)
        self._lock = threading.Lock()  # run() is thread-safe; kept for parity with Detector

    # ------------------------------------------------------------------ steps
    def frame(self, image: ImageInput) -> np.ndarray:
        """The checked uint8 frame (``H x W x C`` in the spec's frame colour)."""
        return _load(image, self.spec, self.max_pixels, self.max_bytes)

    def raw(self, frame: np.ndarray) -> list[np.ndarray]:
        """The artifact's outputs for one frame (its ending's outputs, then extras)."""
        x = frame if frame.ndim == 3 else frame[:, :, None]
        return self._session.run(self._outputs, {INPUT_NAME: x[None]})

    def arrays(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes [K, 4] in the frame's pixels, scores [K], classes [K]), best first."""
        out = self.raw(frame)
        if self.nms_in_graph:
            return (np.asarray(out[0], np.float64), np.asarray(out[1], np.float64),
                    np.asarray(out[2], np.int64))
        return self.suppress(out[0][0], out[1][0], frame.shape[:2])

    def suppress(self, boxes: np.ndarray, scores: np.ndarray, frame_hw: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runtime NMS over every (box, class) pair, then the fit's inverse, clipped."""
        n = self.task.nms
        # class-major candidates: equal scores (a saturated sigmoid is exactly 1.0) then
        # keep the order of the graph's NonMaxSuppression + TopK and the framework's
        cls, anchor = np.nonzero(n.score_threshold < scores.T)
        s = scores[anchor, cls]
        kept = nms(boxes[anchor], s, cls, iou_threshold=n.iou_threshold,
                   score_threshold=n.score_threshold, top_k=n.top_k)
        place = fit(frame_hw, self.spec.size, self.task.fit)
        return (place.to_frame(boxes[anchor[kept]]), s[kept].astype(np.float64),
                cls[kept].astype(np.int64))

    def __call__(self, image: ImageInput) -> list[Detection]:
        boxes, scores, classes = self.arrays(self.frame(image))
        return [Detection(tuple(float(v) for v in b), float(s), self._label(int(c)), int(c))
                for b, s, c in zip(boxes, scores, classes, strict=True)]

    def _label(self, c: int) -> str:
        return self.labels[c] if 0 <= c < len(self.labels) else str(c)

    def describe(self) -> dict[str, Any]:
        return {"source": str(self.source), "task": self.metadata.task,
                "nms": "graph" if self.nms_in_graph else "runtime",
                "detection": self.task.to_dict(), "labels": list(self.labels)}


def detector_props(data: bytes, name: str) -> dict[str, str] | None:
    """An ONNX detector artifact's metadata props, read without a classifier backend (which
    refuses an artifact without ``probs``); None when ``data`` is not a detector. A byte
    search first: a classifier costs no second session."""
    if b"edgeinfer.task" not in data:
        return None
    import onnxruntime as ort

    from edgeinfer.artifact import KEY_TASK
    from edgeinfer.runtime.onnx_backend import session_props

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - not loadable: the classifier path says why
        return None
    props = session_props(session, name)
    return props if props.get(KEY_TASK) == "detect" else None
