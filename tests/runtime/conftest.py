"""Runtime fixtures: real artifacts from the real converter, real photos and their encodings.

``fashion_artifact`` overrides the root fixture of the same name: with trained weights
(``models/fashion/weights.pt``) it is the root's parity-checked conversion, shared with
the converter tests; without them (a checkout where training has not run) it converts
a seeded, freshly initialised FashionNet, which is all the runtime tests need (shapes,
dtypes, bit-identity, errors), so they never wait on training.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.datasets import sample_photos
from edgeinfer.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
FASHION_WEIGHTS = REPO / "models" / "fashion" / "weights.pt"


@pytest.fixture(scope="session")
def fashion_weights(tmp_path_factory) -> Path:
    """Trained weights if present, else a seeded freshly initialised FashionNet's."""
    if FASHION_WEIGHTS.exists():
        return FASHION_WEIGHTS
    import importlib.util

    import torch

    net_py = FASHION_WEIGHTS.parent / "net.py"
    mod_spec = importlib.util.spec_from_file_location("fashion_net", net_py)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("fashion-untrained") / "weights.pt"
    torch.save(module.build().state_dict(), weights)
    return weights


@pytest.fixture(scope="session")
def fashion_artifact(request, tmp_path_factory, fashion_weights) -> Path:
    if FASHION_WEIGHTS.exists():
        return request.getfixturevalue("fashion_conversion").path
    from edgeinfer.converter.api import convert

    out = tmp_path_factory.mktemp("artifacts-runtime") / "fashion.onnx"
    return convert("fashion", out, weights=fashion_weights, parity_limit=200).path


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
