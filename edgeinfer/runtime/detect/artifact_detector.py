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

A ``.tflite`` detector artifact (``converter/detect_tflite.py``) has the runtime ending
(LiteRT has no class-aware NMS op) in two signatures, as a classifier's: ``frame`` (uint8
at the frame size fixed at conversion, the letterbox in the graph) and ``resized`` (float
at the model size: the spec's letterbox run on the host, in float, for frames of any other
size); both write ``boxes [1, A, 4]`` and ``scores [1, A, C]``.

numpy, OpenCV and onnxruntime or LiteRT only (imported when an artifact is opened).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import (
    INPUT_NAME,
    SIG_FRAME,
    SIG_RESIZED,
    TFLITE_IDENTIFIER,
    ArtifactMetadata,
    sniff_format,
)
from edgeinfer.data.files import ModelSource, load_model_bytes
from edgeinfer.errors import ModelError, one_line
from edgeinfer.runtime.backend import default_threads
from edgeinfer.runtime.detect.detector import Detection
from edgeinfer.runtime.detect.geometry import fit
from edgeinfer.runtime.detect.nms import nms
from edgeinfer.runtime.image import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageInput, _load

GRAPH_OUTPUTS = ("boxes", "scores", "classes")
RUNTIME_OUTPUTS = ("boxes", "scores")


class _TfliteCore:
    """A .tflite detector's two signatures: a frame of the fixed size through ``frame``,
    any other through the spec's host letterbox (float, the classifier backend's rule) and
    ``resized``. Returns the core outputs ``[boxes [1, A, 4], scores [1, A, C]]``."""

    def __init__(self, data: bytes, name: str, threads: int) -> None:
        from edgeinfer.runtime.tflite_backend import open_interpreter
        from edgeinfer.runtime.tflite_meta import check_signatures, read_props

        check_signatures(data, name)  # LiteRT trusts the table (a SIGSEGV otherwise)
        self.interp = open_interpreter(data, threads, source=name)
        props = read_props(data, name)
        if props is None:
            raise ModelError(f"{name} is a .tflite without edgeinfer metadata, not a "
                             "detector artifact")
        self.props = props
        try:
            self.frame = self.interp.get_signature_runner(SIG_FRAME)
            self.resized = self.interp.get_signature_runner(SIG_RESIZED)
            shape = self.frame.get_input_details()[SIG_FRAME]["shape"]
            outs = set(self.frame.get_output_details())
        except (KeyError, ValueError, IndexError, RuntimeError) as e:
            raise ModelError(f"{name} has no usable '{SIG_FRAME}'/'{SIG_RESIZED}' "
                             f"signatures ({one_line(e, 120)}): reconvert it") from None
        if not set(RUNTIME_OUTPUTS) <= outs:
            raise ModelError(f"{name} writes {sorted(outs)}; a TFLite detector writes "
                             f"{', '.join(RUNTIME_OUTPUTS)}")
        self.frame_size = (int(shape[1]), int(shape[2]))
        self._geometry: Any = None

    def run(self, x: np.ndarray, spec: Any) -> list[np.ndarray]:
        if tuple(x.shape[:2]) == self.frame_size:
            out = self.frame(**{SIG_FRAME: np.ascontiguousarray(x[None])})
        else:
            if self._geometry is None:
                self._geometry = spec.geometry()
            out = self.resized(**{SIG_RESIZED: self._geometry(x)})
        return [np.asarray(out[k]) for k in RUNTIME_OUTPUTS]


class ArtifactDetector:
    """An ONNX or TFLite detector artifact (path or bytes) with the interface of ``Detector``."""

    def __init__(self, model: ModelSource, *, threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                 extra_outputs: tuple[str, ...] = ()) -> None:
        data, name = load_model_bytes(model)
        self._lock = threading.Lock()  # a LiteRT interpreter is not thread-safe
        if sniff_format(data) == "tflite":
            if extra_outputs:
                raise ModelError(f"{name}: extra outputs are read from ONNX detectors only")
            self._tflite = _TfliteCore(data, name, threads or default_threads())
            self._init_common(model, name, self._tflite.props, RUNTIME_OUTPUTS,
                              max_pixels, max_bytes, ())
            return
        self._tflite = None
        import onnxruntime as ort

        from edgeinfer.runtime.onnx_backend import session_props

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or default_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's several pybind error types
            raise ModelError(f"{name} cannot be loaded as an ONNX model: {one_line(e)}") from None
        outs = tuple(o.name for o in self._session.get_outputs())
        self._init_common(model, name, session_props(self._session, name), outs, max_pixels,
                          max_bytes, extra_outputs)

    def _init_common(self, model: ModelSource, name: str, props: dict[str, str],
                     outs: tuple[str, ...], max_pixels: int, max_bytes: int,
                     extra_outputs: tuple[str, ...]) -> None:
        self.metadata = ArtifactMetadata.from_props(props, name)
        if self.metadata.task != "detect" or self.metadata.detection is None:
            raise ModelError(f"{name} is a {self.metadata.task} artifact, not a detector: "
                             "serve it with Predictor")
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

    # ------------------------------------------------------------------ steps
    def frame(self, image: ImageInput) -> np.ndarray:
        """The checked uint8 frame (``H x W x C`` in the spec's frame colour)."""
        return _load(image, self.spec, self.max_pixels, self.max_bytes)

    def raw(self, frame: np.ndarray) -> list[np.ndarray]:
        """The artifact's outputs for one frame (its ending's outputs, then extras)."""
        x = frame if frame.ndim == 3 else frame[:, :, None]
        if self._tflite is not None:
            with self._lock:
                return self._tflite.run(x, self.spec)
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
                "format": "onnx" if self._tflite is None else "tflite",
                "nms": "graph" if self.nms_in_graph else "runtime",
                "detection": self.task.to_dict(), "labels": list(self.labels)}


def detector_props(data: bytes, name: str) -> dict[str, str] | None:
    """An ONNX detector artifact's metadata props, read without a classifier backend (which
    refuses an artifact without ``probs``); None when ``data`` is not a detector. A byte
    search first: a classifier costs no second session."""
    if b"edgeinfer.task" not in data:
        return None
    if data[4:8] == TFLITE_IDENTIFIER:
        from edgeinfer.artifact import KEY_TASK
        from edgeinfer.runtime.tflite_meta import read_props

        try:
            tprops = read_props(data, name)
        except ModelError:
            return None  # damaged: the classifier path says why
        return tprops if tprops and tprops.get(KEY_TASK) == "detect" else None
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
