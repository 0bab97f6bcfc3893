"""A torch that is installed but cannot load (its native library missing: ``import torch``
raises OSError, e.g. "libcudart.so...: cannot open shared object file") is a missing torch
for the int8 default: MinMax with the reason, as ``conversion._torch_imports`` says ("a
broken install is missing too") - not a traceback on every default int8 conversion.

Found in review (session 10): only ImportError was caught.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder

import pytest

from edgeinfer.converter.int8.conversion import NO_TORCH, int8_method
from edgeinfer.errors import MissingExtraError


class _BrokenTorch(MetaPathFinder):
    """``import torch`` fails as a torch whose shared library cannot be loaded fails."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name == "torch":
            raise OSError("libtorch_cpu.so: cannot open shared object file: No such file")
        return None


@pytest.fixture
def broken_torch(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorch(), *sys.meta_path])


def test_a_torch_that_cannot_load_falls_back_like_a_missing_one(broken_torch) -> None:  # noqa: ANN001
    m = int8_method(None, "int8")
    assert m == "minmax" and m.fallback == NO_TORCH
    with pytest.raises(MissingExtraError, match="--int8-method minmax"):
        int8_method("adaround", "int8")
