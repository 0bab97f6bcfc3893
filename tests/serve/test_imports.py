"""`edgeinfer.serve` stays lean (no framework imports) and says which extra is missing."""

from __future__ import annotations

import subprocess
import sys

LEAN = """
import sys
import edgeinfer.serve, edgeinfer.serve.app, edgeinfer.serve.server, edgeinfer.serve.triton
import edgeinfer.runtime.stream, edgeinfer.cli.serve
heavy = sorted(m for m in ("torch", "tensorflow", "keras", "onnx") if m in sys.modules)
print(heavy)
"""

MISSING = """
import sys
sys.modules["starlette"] = None  # what an install without the serve extra looks like
import edgeinfer.serve, edgeinfer.serve.triton  # the package and the export need no extra
from edgeinfer.errors import MissingExtraError
try:
    import edgeinfer.serve.app
except MissingExtraError as e:
    assert isinstance(e, ImportError)
    print(e)
"""


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_serve_imports_no_framework() -> None:
    assert _run(LEAN) == "[]"


def test_missing_extra_names_the_install() -> None:
    assert "pip install 'edgeinfer[serve]'" in _run(MISSING)


RAY_MISSING = """
import sys
sys.modules["ray"] = None  # an install without the ray extra
from edgeinfer.errors import MissingExtraError
try:
    import edgeinfer.serve.ray_serve
except MissingExtraError as e:
    print(e)
"""


def test_ray_serve_lean_and_names_its_extra() -> None:
    assert _run("import sys, edgeinfer.serve.ray_serve\nprint(sorted(m for m in ('torch', "
                "'tensorflow', 'keras', 'onnx') if m in sys.modules))") == "[]"
    assert "pip install 'edgeinfer[ray]'" in _run(RAY_MISSING)
