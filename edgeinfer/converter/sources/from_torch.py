"""PyTorch frontend: load a module and its weights safely, lint it, force eval, export to ONNX.

Why lint: the classic accuracy drops on devices come from models exported in training
mode (dropout on, BatchNorm using batch statistics) and from BatchNorm layers that have
no running statistics (they use batch statistics even in eval mode, so a single image is
normalised by itself). The first is fixed by forcing eval; the second cannot be fixed
and is refused.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from torch import nn

from edgeinfer.converter.sources.base import Source
from edgeinfer.converter.sources.frameworks import require_version
from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

# An older torch lacks the exporter options used below: refused here, in one line.
require_version("torch", torch.__version__, "converting torch models")

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class LintReport:
    """What the lint found; ``warnings`` are fixed by the converter, errors are raised."""

    warnings: list[str] = field(default_factory=list)
    train_mode_modules: int = 0
    batchnorm_layers: int = 0
    dropout_layers: int = 0


def load_factory(factory: str):
    """``package.module:function`` or ``path/to/file.py:function`` -> the callable."""
    target, sep, attr = factory.rpartition(":")
    if not sep or not target or not attr:
        raise ConversionError(f"model factory {factory!r} must look like "
                              "'package.module:function' or 'path/to/file.py:function'")
    try:
        if target.endswith(".py"):
            from edgeinfer.converter.sources.reference import _load_file

            module = _load_file(Path(target))
        else:
            module = importlib.import_module(target)
        fn = getattr(module, attr)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - any import error becomes one clear line
        raise ConversionError(f"cannot load model factory {factory!r}: "
                              f"{type(e).__name__}: {e}") from e
    if not callable(fn):
        raise ConversionError(f"{factory!r} is not callable")
    return fn


def load_weights(model: nn.Module, weights: str | Path) -> str:
    """Load a state dict with ``weights_only=True, strict=True``; returns its sha256."""
    path = Path(weights)
    if not path.is_file():
        raise ConversionError(f"weights file {path} does not exist")
    data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for damaged files
        raise ConversionError(f"weights file {path} cannot be read (corrupted, truncated or "
                              f"not a torch state dict): {type(e).__name__}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConversionError(f"weights file {path} holds a {type(state).__name__}, "
                              "not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConversionError(f"weights file {path} does not match the model: "
                              f"{' '.join(first[:2])[:300]}") from e
    return hashlib.sha256(data).hexdigest()


def lint(model: nn.Module) -> LintReport:
    """Find what would make device predictions differ; raise for what cannot be fixed."""
    report = LintReport()
    for name, m in model.named_modules():
        if m.training:
            report.train_mode_modules += 1
        if isinstance(m, _BN_TYPES):
            report.batchnorm_layers += 1
            if not m.track_running_stats or m.running_mean is None or m.running_var is None:
                raise ConversionError(
                    f"BatchNorm layer '{name or type(m).__name__}' has no running statistics "
                    "(track_running_stats=False): it normalises every image by itself, so "
                    "single-image predictions differ from batched ones; retrain with running "
                    "statistics")
            if int(m.num_batches_tracked) == 0 and bool(
                    (m.running_mean == 0).all() and (m.running_var == 1).all()):
                report.warnings.append(
                    f"BatchNorm layer '{name}' still has its initial running statistics "
                    "(mean 0, var 1): was the model trained, and were its weights loaded?")
        if isinstance(m, nn.Dropout | nn.Dropout2d | nn.AlphaDropout):
            report.dropout_layers += 1
    # Every freshly built module is in training mode, so that alone is no warning: the
    # converter switches to eval mode and records it in the provenance.
    return report


class SelectOutput(nn.Module):
    """The user's module with its logits picked out of a dict, dataclass or tuple output.

    Everything downstream (export, TFLite, the torch runner, parity) sees one tensor; the
    wrapped module stays ``self.model`` so its weights and state-dict names are unchanged
    underneath.
    """

    def __init__(self, model: nn.Module, how: str, key: str | int) -> None:
        super().__init__()
        self.model = model
        self.how = how  # "key" (mapping), "attr" (dataclass / named tuple) or "index"
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.how == "key":
            return out[self.key]
        if self.how == "attr":
            return getattr(out, str(self.key))
        return out[int(self.key)]


def _is_aux(name: str) -> bool:
    return name.lower().startswith("aux")


def pick_output(out: object) -> tuple[str, str | int, str] | None:
    """How to find the logits in one forward's output: (how, key, description), None for
    a plain tensor. Named outputs: ``logits`` (Hugging Face ``*ForImageClassification``),
    else the one 2-D tensor whose name does not start with ``aux``; a plain tuple: its one
    2-D tensor. Anything else is ambiguous and refused (ConversionError, one line)."""
    if isinstance(out, torch.Tensor):
        return None
    named: dict[str, object] | None = None
    how = "attr"
    if isinstance(out, dict):  # HF ModelOutput is an OrderedDict too
        named, how = dict(out), "key"
    elif hasattr(out, "_fields"):  # named tuple (torchvision GoogLeNetOutputs, ...)
        named = {f: getattr(out, f) for f in out._fields}
    elif hasattr(out, "__dataclass_fields__"):
        named = {f: getattr(out, f) for f in out.__dataclass_fields__}
    kind = type(out).__name__

    def shapes(items: dict) -> str:
        return ", ".join(f"{k}: {list(v.shape)}" if isinstance(v, torch.Tensor)
                         else f"{k}: {type(v).__name__}" for k, v in items.items())

    if named is not None:
        if isinstance(named.get("logits"), torch.Tensor):
            return how, "logits", f"{kind}.logits"
        cands = [k for k, v in named.items()
                 if isinstance(v, torch.Tensor) and v.ndim == 2 and not _is_aux(k)]
        if len(cands) == 1:
            return how, cands[0], f"{kind}.{cands[0]}"
        raise ConversionError(f"the model returns a {kind} ({shapes(named)}): no 'logits' "
                              "and not exactly one 2-D tensor; wrap it in a module that "
                              "returns the class scores")
    if isinstance(out, (tuple, list)):
        items = {str(i): v for i, v in enumerate(out)}
        cands = [i for i, v in enumerate(out) if isinstance(v, torch.Tensor) and v.ndim == 2]
        if len(cands) == 1:
            return "index", cands[0], f"{kind}[{cands[0]}]"
        raise ConversionError(f"the model returns a {kind} of {len(out)} ({shapes(items)}): "
                              "which one are the logits is ambiguous; wrap it in a module "
                              "that returns the class scores")
    raise ConversionError(f"the model returns a {kind}, not a tensor of class scores")


def select_output(module: nn.Module, spec: PreprocessSpec) -> tuple[nn.Module, str]:
    """(the module to convert, what its output is) after one forward on a zero input."""
    example = torch.zeros(spec.model_input_shape(1), dtype=torch.float32)
    try:
        with torch.no_grad():  # not inference_mode: lazy layers would get inference tensors
            out = module(example)
    except Exception as e:  # noqa: BLE001 - user code: one line, the exporter says more
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConversionError(f"the model cannot run on the spec's input "
                              f"{list(example.shape)}: {type(e).__name__}: {msg}") from None
    picked = pick_output(out)
    if picked is None:
        return module, "tensor"
    how, key, desc = picked
    return SelectOutput(module, how, key).eval(), f"{desc} (picked as the logits)"


def export_onnx(model: nn.Module, spec: PreprocessSpec) -> onnx.ModelProto:
    """Export an eval-mode module with a dynamic batch axis; input is the spec's model input."""
    model.eval()
    example = torch.zeros(spec.model_input_shape(2), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter logs one warning per missing torchvision op; nothing here uses them.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, external_data=False, verbose=False,
                input_names=["x"], dynamic_shapes=({0: batch},), optimize=True,
            )
        except Exception as e:  # noqa: BLE001 - exporter errors are long; keep the gist
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConversionError(f"torch.onnx.export failed: {msg}") from e
    return program.model_proto


def build_from_factory(factory: str) -> nn.Module:
    """Call a ``pkg.module:fn`` factory; it must take no arguments and return an nn.Module."""
    fn = load_factory(factory)
    try:
        module = fn()
    except TypeError as e:
        raise ConversionError(f"model factory {factory!r} cannot be called without arguments "
                              f"({e}); wrap it in a function that takes none") from None
    except Exception as e:  # noqa: BLE001 - user code: any failure becomes one line
        raise ConversionError(f"model factory {factory!r} failed: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}") from None
    if not isinstance(module, nn.Module):
        raise ConversionError(f"{factory!r} returned {type(module).__name__}, not a torch "
                              "nn.Module")
    return module


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over the state dict (names, shapes, bytes): provenance of an in-memory module."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def torch_source(module: nn.Module, spec: PreprocessSpec, weights: str | Path | None,
                 name: str, progress: Progress) -> Source:
    """An nn.Module (built by a factory or handed over as is) as a converter source."""
    from edgeinfer.parity.runners import TorchRunner

    sha = load_weights(module, weights) if weights is not None else None
    report = lint(module)
    was_training = report.train_mode_modules > 0
    module.eval()
    cls = f"{type(module).__module__}.{type(module).__qualname__}"
    original = module
    module, output = select_output(module, spec)  # its forward also initialises lazy layers
    fingerprint = sha or weights_fingerprint(original)
    prov = {"framework": "torch", "framework_version": torch.__version__, "source": name,
            "class": cls,
            "weights": str(weights) if weights else None,
            "weights_sha256": fingerprint, "output": output,
            "exporter": "torch.onnx.export(dynamo=True)",
            "batchnorm_in_source": report.batchnorm_layers,
            "dropout_in_source": report.dropout_layers,
            "eval_mode": "switched from training mode" if was_training else "already in eval"}

    def export() -> onnx.ModelProto:
        progress(f"exporting with torch.onnx (dynamo), {report.batchnorm_layers} BatchNorm, "
                 f"{report.dropout_layers} dropout layers")
        return export_onnx(module, spec)

    def runner(apply_softmax: bool) -> TorchRunner:
        return TorchRunner(module, spec, apply_softmax, name="source (torch eval)")

    def to_tflite(hw: tuple[int, int], quantize: str | None, calibration: list,
                  say: Progress, per_channel: bool) -> bytes:
        from edgeinfer.converter.export.tflite_torch import export_tflite

        return export_tflite(module, spec, hw, quantize, calibration, say, per_channel)

    return Source("source (torch eval)", "torch", prov, runner, export, None,
                  report.warnings, module, to_tflite=to_tflite)
