"""tools/zoo_models.py loaded as a module (tools/ is not a package): the zoo's architectures
for the tests that sample them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def zoo_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zoo_models", ROOT / "tools/zoo_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_models"] = module
    spec.loader.exec_module(module)
    return module
