"""Runtime fixtures: real artifacts from the real converter, real photos and their encodings.

The fashion artifact is the root fixture's parity-checked conversion (trained weights
committed in ``models/fashion/weights.pt``), shared with the converter tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.data.datasets import sample_photos
from edgeinfer.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
FASHION_WEIGHTS = REPO / "models" / "fashion" / "weights.pt"


@pytest.fixture(scope="session")
def fashion_weights() -> Path:
    """The committed trained weights; their absence is a broken checkout, not a skip."""
    assert FASHION_WEIGHTS.exists(), f"{FASHION_WEIGHTS} is missing: the checkout is incomplete"
    return FASHION_WEIGHTS


@pytest.fixture(scope="session")
def fashion_gray_artifact(tmp_path_factory, fashion_weights) -> Path:
    """The fashion model behind a GRAY frame: input [N, H, W, 1]."""
    from edgeinfer.converter.api import convert

    spec = json.loads((FASHION_WEIGHTS.parent / "spec.json").read_text())
    spec["frame_color"] = "GRAY"
    out = tmp_path_factory.mktemp("artifacts-runtime") / "fashion-gray.onnx"
    return convert("fashion", out, weights=fashion_weights, spec=spec, parity_limit=200).path


@pytest.fixture(scope="session")
def fashion_meta(fashion_artifact) -> ArtifactMetadata:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(fashion_artifact), providers=["CPUExecutionProvider"])
    return ArtifactMetadata.from_props(sess.get_modelmeta().custom_metadata_map)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real BGR photos (read-only, so no test can modify them for the others)."""
    out = sample_photos()
    for v in out.values():
        v.setflags(write=False)
    return out


@pytest.fixture(scope="session")
def photo(photos) -> np.ndarray:
    return photos["astronaut"]


@pytest.fixture(scope="session")
def jpeg_bytes(photo) -> bytes:
    ok, enc = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return enc.tobytes()


@pytest.fixture(scope="session")
def png_bytes(photo) -> bytes:
    ok, enc = cv2.imencode(".png", photo)
    assert ok
    return enc.tobytes()


@pytest.fixture
def bgr_spec() -> PreprocessSpec:
    return PreprocessSpec(size=(28, 28), frame_color="BGR", model_color="GRAY")


@pytest.fixture
def rgb_spec() -> PreprocessSpec:
    return PreprocessSpec(size=(28, 28), frame_color="RGB", model_color="RGB")


@pytest.fixture
def gray_spec() -> PreprocessSpec:
    return PreprocessSpec(size=(28, 28), frame_color="GRAY", model_color="GRAY")
