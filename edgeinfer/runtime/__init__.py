"""The lean runtime: serve an edgeinfer artifact with numpy, onnxruntime and OpenCV only.

Nothing here imports torch, tensorflow, onnx or ``edgeinfer.converter``.
"""

from __future__ import annotations

from edgeinfer.runtime.image import load_image
from edgeinfer.runtime.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor", "load_image"]
