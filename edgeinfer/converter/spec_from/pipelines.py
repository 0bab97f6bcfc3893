"""The pipeline's own preprocessing, as a function of one frame: what a derived spec is
proven against (spec_from/proof.py).

Why here and not in each reader: the readers (hf.py, timm.py, ...) turn config numbers into
a spec; this module runs the library that owns those numbers - a transformers processor
(the object, or the class named in a ``preprocessor_config.json`` built from it), an
albumentations Compose, a Keras model's leading preprocessing layers - or, for timm and
torchvision, which do not import here, a Pillow oracle written from their source
(oracle.py). Each returns ``(run, library, class)``, ``run`` taking an RGB uint8 image;
``None`` when there is nothing to run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import edgeinfer.converter.spec_from.oracle as oracle
from edgeinfer.converter.spec_from.common import Derived

Runner = tuple[Callable[[np.ndarray], np.ndarray], str, str]

# A processor's task, from the transformers model types that use it: a classifier input is
# what spec_from derives; these tasks are refused (their processors pad, tile, keep the
# frame's size or post-process, and their models are not converted as classifiers).
CLASSIFY = ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
            "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES")
OTHER_TASKS = (
    ("MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES", "object detection"),
    ("MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES", "open-vocabulary detection"),
    ("MODEL_FOR_KEYPOINT_DETECTION_MAPPING_NAMES", "keypoint detection"),
    ("MODEL_FOR_KEYPOINT_MATCHING_MAPPING_NAMES", "keypoint matching"),
    ("MODEL_FOR_POSE_ESTIMATION_MAPPING_NAMES", "pose estimation"),
    ("MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES", "depth estimation"),
    ("MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES", "segmentation"),
    ("MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES", "segmentation"),
    ("MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES", "segmentation"),
    ("MODEL_FOR_MASK_GENERATION_MAPPING_NAMES", "mask generation"),
    ("MODEL_FOR_IMAGE_MATTING_MAPPING_NAMES", "image matting"),
    ("MODEL_FOR_IMAGE_TO_IMAGE_MAPPING_NAMES", "image-to-image"),
    ("MODEL_FOR_TEXT_RECOGNITION_MAPPING_NAMES", "OCR"),
    ("MODEL_FOR_TABLE_RECOGNITION_MAPPING_NAMES", "table recognition"),
    ("MODEL_FOR_DOCUMENT_QUESTION_ANSWERING_MAPPING_NAMES", "document QA"),
    ("MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES", "video classification"),
    ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "image-text-to-text"),
    ("MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES", "image-to-text"),
    ("MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES", "multimodal LM"),
)
# Methods a processor class may override with rules of its own: the step a failed proof
# names, in the order they run.
OWN_RULES = ("resize", "center_crop", "rescale", "normalize", "pad", "_preprocess",
             "preprocess")


def base_name(name: str) -> str:
    """``ViTImageProcessorPil``/``...Fast``/``ViTFeatureExtractor`` -> ``ViTImageProcessor``."""
    return name.removesuffix("Fast").removesuffix("Pil").replace("FeatureExtractor",
                                                                 "ImageProcessor")


def hf_class_name(cfg: dict[str, Any]) -> str:
    return str(cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or "")


def hf_build(cfg: dict[str, Any]) -> tuple[Any, str]:
    """(processor, "") built by transformers from a config dict, or (None, why not).

    The Pillow backend (``...Pil``) first: the torchvision one does not import here."""
    name = base_name(hf_class_name(cfg))
    if not name:
        return None, "the config names no image_processor_type"
    try:
        import transformers
    except Exception as e:  # noqa: BLE001 - any import failure means: no library
        return None, f"transformers does not import ({type(e).__name__})"
    why = f"transformers {transformers.__version__} has no class {name}"
    for cand in (name + "Pil", name):
        try:
            cls = getattr(transformers, cand)
        except AttributeError:
            continue
        except Exception as e:  # noqa: BLE001 - a lazy import can fail in many ways
            why = f"transformers cannot import {cand} ({type(e).__name__})"
            continue
        try:
            return cls.from_dict(dict(cfg)), ""
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else ""
            why = f"transformers cannot build {cand} from this config ({type(e).__name__}: " \
                f"{first})"
    return None, why


def hf_models(name: str) -> list[str]:
    """The transformers model types whose image processor is ``name`` (any backend)."""
    try:
        from transformers.models.auto.image_processing_auto import (
            IMAGE_PROCESSOR_MAPPING_NAMES as M,
        )
    except Exception:  # noqa: BLE001
        return []
    base = base_name(name)
    out = []
    for model_type, v in M.items():
        names = v.values() if isinstance(v, dict) else (v if isinstance(v, (list, tuple))
                                                         else [v])
        if any(n and base_name(n) == base for n in names):
            out.append(model_type)
    return out


def hf_task(name: str) -> str | None:
    """None for a classifier's processor; else the task transformers uses it for
    ("object detection", "OCR", ...), or "not image classification"; None when
    transformers cannot tell (unknown class: the caller's allowlist decides)."""
    models = hf_models(name)
    if not models:
        return None
    import transformers.models.auto.modeling_auto as m

    if any(t in getattr(m, k, {}) for k in CLASSIFY for t in models):
        return None
    for k, task in OTHER_TASKS:
        if any(t in getattr(m, k, {}) for t in models):
            return task
    return f"{', '.join(models)} models, none of them an image classifier in transformers"


def hf_step(processor: Any, cfg: dict[str, Any], normalisation: bool) -> str:
    """The step a failed proof names: a legacy integer size, a crop_pct the rule read did
    not use, or a method the class overrides with its own rule (with its docstring)."""
    cls = type(processor)
    parts: list[str] = []
    if normalisation:
        parts.append("rescale/normalize (image_mean, image_std, rescale_factor)")
    else:
        if isinstance(cfg.get("size"), int):
            parts.append(f"size={cfg['size']} (a legacy integer; transformers reads it as "
                         f"{dict(_size(processor))})")
        if cfg.get("crop_pct") not in (None, 1, 1.0) and not base_name(
                cls.__name__).startswith("ConvNext"):
            parts.append(f"crop_pct={cfg['crop_pct']}")
    own = [m for m in OWN_RULES if _overrides(cls, m)]
    geometry = [m for m in own if m in ("resize", "center_crop", "pad", "_preprocess",
                                        "preprocess")]
    for m in (own if normalisation else geometry)[:1]:
        doc = (getattr(cls, m).__doc__ or "").strip().splitlines()
        parts.append(f"{m}, its own rule" + (f" ({doc[0].rstrip('.')})" if doc else ""))
    if not parts:
        parts.append("resize/crop (size, crop_size, resample)")
    return f"{cls.__name__}: {'; '.join(parts)}"


def _size(processor: Any) -> dict[str, Any]:
    s = getattr(processor, "size", None)
    items = s.items() if hasattr(s, "items") else vars(s).items() if s is not None else []
    return {k: v for k, v in items if v is not None}


def _overrides(cls: type, method: str) -> bool:
    for k in cls.__mro__:
        if not k.__module__.startswith("transformers.models."):
            return False  # reached the shared backends: the default rule
        if method in vars(k):
            return True
    return False


def hf_runner(processor: Any) -> Runner:
    def run(rgb: np.ndarray) -> np.ndarray:
        out = processor(images=rgb, return_tensors="np")["pixel_values"]
        return np.asarray(out)[0]

    return run, f"transformers {_version('transformers')}", type(processor).__name__


def runner(d: Derived) -> Runner | None:
    """The pipeline's own preprocessing for a derived spec, or None (nothing to run)."""
    p = d.pipeline
    if d.source == "hf":
        return hf_runner(p) if p is not None and not isinstance(p, dict) else None
    if d.source == "timm":
        return oracle.timm_eval(p), "Pillow oracle of timm transforms_imagenet_eval " \
            "(timm does not import here)", "pretrained_cfg"
    if d.source == "torchvision":
        run = oracle.torchvision_steps(d.read["steps"])
        return None if run is None else (run, "Pillow oracle of torchvision's PIL path "
                                         "(torchvision does not import here)", "Compose")
    if d.source == "albumentations":
        return _albumentations(p)
    if d.source == "keras":
        return _keras(p, d)
    return None


def _albumentations(p: Any) -> Runner:
    import albumentations as A

    compose = A.from_dict(p) if isinstance(p, dict) else p

    def run(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(compose(image=np.ascontiguousarray(rgb))["image"])

    return run, f"albumentations {A.__version__}", type(compose).__name__


def _keras(model: Any, d: Derived) -> Runner:
    """The model's lifted leading layers, run by Keras on the base spec's resized frame.

    Keras preprocessing layers sit inside the model, after its fixed-size input: the
    resize is the spec's own choice, and what is derived (and proven) is the lifted
    affine map. The runner takes the RGB image back to the frame's colour order."""
    import keras

    from edgeinfer.converter.sources.keras_lift import leading_layers
    from edgeinfer.spec import PreprocessSpec

    base = PreprocessSpec.from_dict(d.read["base_spec"])
    layers = leading_layers(model)[:len(d.read.get("lifted_into_spec", []))]

    def run(rgb: np.ndarray) -> np.ndarray:
        frame = rgb[..., ::-1] if base.frame_color == "BGR" else rgb
        if base.frame_color == "GRAY":
            frame = rgb[..., :1]
        x = base.reference(np.ascontiguousarray(frame))
        for layer in layers:
            x = keras.ops.convert_to_numpy(layer(x))
        return np.asarray(x)[0]

    return run, f"keras {keras.__version__}", type(model).__name__


def _version(module: str) -> str:
    import importlib

    return str(getattr(importlib.import_module(module), "__version__", "?"))
