"""A third-party-style .tflite for the bring-your-own tests (the edgeinfer TFLite
artifacts are session fixtures in tests/conftest.py, shared by every test folder)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def plain_fashion_tflite(tmp_path_factory) -> Path:
    """A third-party-style .tflite: the bare fashion net (float NCHW in, logits out),
    converted with litert-torch directly, without edgeinfer metadata or preprocessing."""
    import litert_torch
    import torch

    from edgeinfer.converter.sources.from_torch import load_factory, load_weights
    from edgeinfer.converter.sources.reference import get_reference

    ref = get_reference("fashion")
    model = load_factory(ref.factory())()
    load_weights(model, ref.weights())
    model.eval()
    out = tmp_path_factory.mktemp("byo") / "fashion_plain.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(model, (torch.zeros(1, 1, 28, 28),)).export(str(out))
    return out
