"""The lean runtime: serve an edgeinfer artifact with numpy, onnxruntime and OpenCV only.

Nothing here imports torch, tensorflow, onnx or ``edgeinfer.converter``.
"""

from __future__ import annotations

from edgeinfer.runtime.image import load_image
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.predictor import Predictor
from edgeinfer.runtime.stream import Stream, StreamResult, StreamStats
from edgeinfer.runtime.topk import Prediction

__all__ = ["Prediction", "Predictor", "Stream", "StreamResult", "StreamStats", "load_image",
           "open_backend"]
