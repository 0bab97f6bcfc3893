"""Serving artifacts over HTTP (Open Inference Protocol / KServe v2) and Triton export.

    from edgeinfer.serve import ServeConfig, serve
    serve(["fashion.onnx"], ServeConfig(port=8000))          # blocks; SIGTERM drains and exits

The HTTP parts need the ``serve`` extra (uvicorn, starlette, prometheus-client,
python-multipart); without it, importing them raises
:class:`~edgeinfer.errors.MissingExtraError` naming ``pip install 'edgeinfer[serve]'``
instead of a bare ``ImportError``. Names are resolved lazily, so ``edgeinfer.serve.triton``
(the model-repository export, standard library only) works on a runtime-only install.

Like the runtime, nothing here imports torch, tensorflow, keras or onnx.
"""

from __future__ import annotations

from typing import Any

from edgeinfer.serve.config import ServeConfig

_LAZY = {
    "create_app": "edgeinfer.serve.app",
    "serve": "edgeinfer.serve.server",
    "export_triton": "edgeinfer.serve.triton",
    "ModelSet": "edgeinfer.serve.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeinfer.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["ModelSet", "ServeConfig", "create_app", "export_triton", "serve"]
