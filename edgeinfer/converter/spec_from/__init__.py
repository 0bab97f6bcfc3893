"""``spec_from``: the PreprocessSpec read from the training pipeline, not typed by hand.

Every library ships its evaluation preprocessing as data (timm ``pretrained_cfg``,
torchvision presets, Hugging Face ``preprocessor_config.json``, albumentations
``to_dict``, Keras preprocessing layers); copying those numbers by hand is how a wrong
spec is born. One module per source kind, one dispatcher here; each returns a
:class:`Derived` (the spec, the source kind, the fields it read, what is inevitable)
that ``convert`` stores in the provenance. Anything the spec cannot express is refused
with one line naming the step. Reading is duck-typed (no framework import); then every
derived spec is proven against the pipeline's own output on real frames (proof.py:
transformers, albumentations, Keras run; timm and torchvision through Pillow oracles of
their source) and refused, naming the step and the figure, when it differs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeinfer.converter.spec_from import albumentations as _alb
from edgeinfer.converter.spec_from import hf as _hf
from edgeinfer.converter.spec_from import proof as _prove
from edgeinfer.converter.spec_from import timm as _timm
from edgeinfer.converter.spec_from import torchvision as _tv
from edgeinfer.converter.spec_from.common import Derived
from edgeinfer.errors import SpecError
from edgeinfer.spec import PreprocessSpec

__all__ = ["Derived", "derive", "derive_detection", "prove", "spec_from"]

KINDS = "a Hugging Face image processor or preprocessor_config.json (file or model folder), " \
        "a timm model or pretrained_cfg, a torchvision preset/weights/Compose, an " \
        "albumentations Compose or its to_dict JSON, a Keras model"


def spec_from(obj: Any, *, frame_color: str = "BGR", layout: str | None = None,
              frames: Any = None) -> PreprocessSpec:
    """The PreprocessSpec of ``obj``'s evaluation preprocessing (see :func:`derive`)."""
    return derive(obj, frame_color=frame_color, layout=layout, frames=frames).spec


def prove(d: Derived, frames: Any = None) -> Derived:
    """Prove (again) a derived spec on ``frames`` (the user's parity frames, uint8, in
    the spec's frame colour); see spec_from/proof.py."""
    return _prove.prove(d, frames)


def derive(obj: Any, *, frame_color: str = "BGR", layout: str | None = None,
           frames: Any = None) -> Derived:
    """Read the evaluation preprocessing of ``obj`` into a spec, and say what was read.

    ``frame_color`` is the deployed frame's colour order (OpenCV gives BGR); every
    library here trains on RGB images. ``layout`` defaults to the library's own (NCHW for
    torch-based ones, NHWC for Keras). A config with a missing or mistyped field (an HF
    ``do_center_crop`` without ``crop_size``, a timm ``input_size`` of two values, an
    albumentations ``Resize`` without ``height``) is refused in one line naming it.

    The result is proven on ``frames`` (default: the bundled photos) against the
    pipeline's own output, within the ("spec_from", "proof") tolerance, or refused.
    """
    try:
        d = _derive(obj, frame_color, layout)
    except SpecError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        what = f"{obj}" if isinstance(obj, (str, os.PathLike)) else f"a {type(obj).__name__}"
        why = f"the field {e.args[0]!r} is missing" if isinstance(e, KeyError) else str(e)
        raise SpecError(f"cannot derive a spec from {what}: a field is missing or has the "
                        f"wrong type ({type(e).__name__}: {why}); fix the config or pass "
                        "--spec") from None
    return _prove.prove(d, frames)


def derive_detection(obj: Any, *, frame_color: str = "BGR", layout: str | None = None,
                     frames: Any = None) -> Derived:
    """A transformers object-detection processor (the object, its config dict, its
    ``preprocessor_config.json`` or model folder) read into the pixel spec and the
    detector's fit, box decoder and suppression (``Derived.detection``), proven on
    ``frames`` (default: the bundled photos cropped portrait, landscape and square) against
    the processor's ``pixel_values`` and its ``post_process_object_detection``
    (spec_from/detection.py, detect_proof.py); a step edgeinfer cannot express is refused
    by name."""
    from edgeinfer.converter.spec_from import detect_proof, detection
    from edgeinfer.converter.spec_from.pipelines import hf_build

    cfg, proc = (_read_json(Path(obj)), None) if isinstance(obj, (str, os.PathLike)) else (
        (dict(obj), None) if isinstance(obj, dict) else (None, obj))
    if proc is not None:
        if not (callable(getattr(proc, "to_dict", None)) and hasattr(proc, "image_mean")):
            raise SpecError(f"cannot derive a detector spec from a {type(proc).__name__}: "
                            "give a transformers object-detection image processor or its "
                            "preprocessor_config.json")
        cfg = _hf.config_of(proc)
    assert cfg is not None
    if not detection.is_detection_processor(proc if proc is not None else cfg):
        name = type(proc).__name__ if proc is not None else cfg.get("image_processor_type")
        raise SpecError(f"cannot derive a detector spec: {name or 'this config'} is not a "
                        "transformers object-detection processor (spec_from reads "
                        f"{', '.join(sorted(detection.POSTPROCESS))})")
    d = detection.derive_detection(cfg, frame_color, layout or "NCHW")
    if proc is None:
        proc, why = hf_build(cfg)
        if proc is None:
            raise SpecError(f"cannot derive a detector spec: {why}, so neither its pixels nor "
                            "its boxes can be proven; pass --spec")
    return detect_proof.prove_detection(replace(d, pipeline=proc), frames)


def _derive(obj: Any, frame_color: str, layout: str | None) -> Derived:
    if isinstance(obj, PreprocessSpec):
        return Derived(obj, "spec")
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        cfg = _read_json(path)
        return _from_dict(cfg, frame_color, layout, str(path))
    if isinstance(obj, dict):
        return _from_dict(obj, frame_color, layout, None)
    d = _derive_object(obj, frame_color, layout)
    return d if d.pipeline is not None else replace(d, pipeline=obj)


def _derive_object(obj: Any, frame_color: str, layout: str | None) -> Derived:
    lay = layout or "NCHW"
    if _keras_model(obj):
        return _keras(obj, frame_color, layout or "NHWC")
    preset = _tv.from_weights(obj)
    if preset is not None:
        obj = preset
    if _alb.is_albumentations(obj):  # before torchvision: it is a Compose with .transforms
        return replace(_alb.derive(_alb.to_dict(obj), frame_color, lay), pipeline=obj)
    if _tv.is_torchvision(obj):
        return _tv.derive(obj, frame_color, lay)
    cfg = _timm.config_of(obj)
    if cfg is not None:
        return replace(_timm.derive(cfg, frame_color, lay), pipeline=cfg)
    if callable(getattr(obj, "to_dict", None)) and hasattr(obj, "image_mean"):
        return _hf.derive(_hf.config_of(obj), frame_color, lay)
    raise SpecError(f"cannot derive a spec from a {type(obj).__name__}: give {KINDS}")


def _from_dict(cfg: dict, frame_color: str, layout: str | None, path: str | None) -> Derived:
    lay = layout or "NCHW"
    if _alb.is_albumentations_dict(cfg):
        d = _alb.derive(cfg, frame_color, lay)
    elif _hf.is_hf_config(cfg):
        d = _hf.derive(cfg, frame_color, lay)
    elif isinstance(cfg.get("pretrained_cfg"), dict):  # a timm hub folder's config.json
        d = replace(_timm.derive(cfg["pretrained_cfg"], frame_color, lay),
                    pipeline=cfg["pretrained_cfg"])
    elif _timm.is_timm_config(cfg):
        d = _timm.derive(cfg, frame_color, lay)
    elif "size" in cfg:
        d = Derived(PreprocessSpec.from_dict(cfg), "spec")
    else:
        where = f"{path}: " if path else ""
        raise SpecError(f"{where}this configuration is none of: {KINDS}")
    if path is not None:
        d.read["file"] = path
    return d if d.pipeline is not None else replace(d, pipeline=cfg)


def _read_json(path: Path) -> dict:
    if path.is_dir():
        for name in ("preprocessor_config.json", "config.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise SpecError(f"{path} holds no preprocessor_config.json or config.json")
    if not path.is_file():
        raise SpecError(f"{path} does not exist (give a config file, a model folder or an "
                        "object)")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise SpecError(f"{path} holds a JSON {type(cfg).__name__}, not an object")
    return cfg


def _keras_model(obj: Any) -> bool:
    import sys

    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _keras(model: Any, frame_color: str, layout: str) -> Derived:
    """Keras: the model's own preprocessing layers, through the one lifting code path
    (converter/sources/keras_lift.py); the size comes from the model's input shape."""
    from edgeinfer.converter.sources.keras_lift import analyse

    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None or shape[3] not in (1, 3):
        raise SpecError(f"cannot derive a spec from a Keras model with input shape {shape}: "
                        "it needs a fixed [H, W, 1 or 3] input")
    base = PreprocessSpec(size=(int(shape[1]), int(shape[2])), frame_color=frame_color,
                          model_color="GRAY" if shape[3] == 1 else "RGB", scale=1.0,
                          layout=layout)
    _core, lifted, report = analyse(model, base)
    return Derived(lifted, "keras", {"input_shape": list(shape)} | report.to_dict() |
                   {"base_spec": base.to_dict()},
                   ("the Keras frontend lifts the same layers at conversion",))
