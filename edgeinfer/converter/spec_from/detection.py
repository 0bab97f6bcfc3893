"""``spec_from`` for transformers object-detection processors (issue 28, point 2): the
pixel spec, the detector's fit and the box convention of ``post_process_object_detection``,
each proven before use (detect_proof.py).

Why a module of its own: a classifier spec says where pixels go; a detector's also says how
its boxes come back to the frame. transformers' detection processors ship both as data
(``size``, ``do_pad``, ``pad_size``) plus a post-processing rule in code (cxcywh boxes
normalised to the model input, scaled by the frame's own size), so the reading here names
the rule per class and the proof checks it against the class's own code on real frames.

What edgeinfer's fits can express: ``size {height, width}`` is a stretch (RT-DETR, and
D-FINE, whose checkpoints name RTDetrImageProcessor: transformers has no D-FINE processor),
and a stretch's inverse is exactly the processor's ``boxes * (w, h, w, h)`` of the frame.
DETR's default (``shortest_edge`` 800 / ``longest_edge`` 1333: the aspect kept, the model
input's size then set by the frame, padded bottom-right to the batch's largest image) and
``max_height``/``max_width`` are refused by name: the artifact's input has one fixed size
and its fits pad centred or not at all - approximating them would move every box.
``do_pad`` without ``pad_size`` pads one frame to its own size: a no-op, noted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import edgeinfer.converter.spec_from.hf as _hf
import edgeinfer.converter.spec_from.pipelines as pipelines
from edgeinfer.converter.spec_from.common import Derived, refuse
from edgeinfer.detect_spec import DetectionSpec, NmsSpec

# base class -> how its post_process_object_detection scores (transformers 5, read from
# each class's source): "sigmoid" = every (query, class) pair, top-k over all pairs (k: the
# number of queries for RT-DETR, ``top_k=100`` for Conditional/Deformable DETR); "softmax"
# = softmax over the classes and a last "no object" class, the best real class per query.
# Every one: boxes cxcywh in 0..1 of the model input, times the frame's (w, h, w, h),
# score > threshold (0.5 by default), no NMS (set prediction), no clipping.
POSTPROCESS: dict[str, dict[str, Any]] = {
    "RTDetrImageProcessor": {"scores": "sigmoid", "top_k": "queries"},
    "ConditionalDetrImageProcessor": {"scores": "sigmoid", "top_k": 100},
    "DeformableDetrImageProcessor": {"scores": "sigmoid", "top_k": 100},
    "DetrImageProcessor": {"scores": "softmax", "top_k": None},
    "YolosImageProcessor": {"scores": "softmax", "top_k": None},
}
THRESHOLD = 0.5  # post_process_object_detection's default score threshold
DECODER = {"kind": "boxes", "box_format": "cxcywh", "normalized": True}


def is_detection_processor(obj: Any) -> bool:
    """Whether ``obj`` (a processor, its config dict) is one transformers uses for object
    detection (its model mappings; the table's list without transformers)."""
    name = type(obj).__name__ if not isinstance(obj, dict) else pipelines.hf_class_name(obj)
    if not isinstance(obj, dict) and not hasattr(obj, "post_process_object_detection"):
        return False
    task = pipelines.hf_task(name)
    if task is None:
        import edgeinfer.converter.spec_from.evidence as evidence

        task = evidence.OTHER_TASKS.get(pipelines.base_name(name))
    return task == "object detection"


def derive_detection(cfg: dict[str, Any], frame_color: str = "BGR", layout: str = "NCHW"
                     ) -> Derived:
    """The pixel spec and the DetectionSpec a detection processor's config says (not yet
    proven: detect_proof.prove_detection)."""
    name = pipelines.hf_class_name(cfg)
    base = pipelines.base_name(name)
    step = f"Hugging Face {name or 'detection processor'}"
    rule = POSTPROCESS.get(base)
    if rule is None:
        raise refuse(step, "its post_process_object_detection is not one edgeinfer has "
                     f"read (known: {', '.join(sorted(POSTPROCESS))}); pass --spec and the "
                     "detection settings")
    size = cfg.get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        raise refuse(f"{step} size={size}", "a legacy integer size (transformers reads it "
                     "as a shortest edge with a longest edge of 1333 for this class)")
    size = dict(size or {})
    if size.get("shortest_edge") or size.get("longest_edge"):
        raise refuse(f"{step} size {_plain(size)}", "the frame's aspect is kept (shorter "
                     f"side {size.get('shortest_edge')}, longer at most "
                     f"{size.get('longest_edge')}), so the model input's size depends on the "
                     "frame, then do_pad pads bottom-right to the batch's largest image: "
                     "edgeinfer's fits (stretch, letterbox, pad_resize) have one fixed input "
                     "size and pad centred or not at all, and an approximation would move "
                     "the boxes; set size to {height, width} if the model was trained so, or "
                     "pass --spec")
    if size.get("max_height") or size.get("max_width"):
        raise refuse(f"{step} size {_plain(size)}", "the aspect is kept within max_height x "
                     "max_width, so the model input's size depends on the frame (padded "
                     "bottom-right): not one of edgeinfer's fits; pass --spec")
    if not cfg.get("do_resize", True):
        raise refuse(f"{step} do_resize=False", "the model input then has the frame's size")
    if "height" not in size or "width" not in size:
        raise refuse(f"{step} size {_plain(size)}", "no {height, width}")
    hw = (int(size["height"]), int(size["width"]))
    notes = ["post_process_object_detection: boxes cxcywh normalised to the model input, "
             "times the frame's (w, h, w, h): the inverse of a stretch; it does not clip "
             "(the artifact clips to the frame)"]
    pad = cfg.get("pad_size")
    if cfg.get("do_pad"):
        if pad and (int(pad.get("height", 0)), int(pad.get("width", 0))) != hw:
            raise refuse(f"{step} do_pad=True pad_size={_plain(pad)}", f"the {hw[0]}x"
                         f"{hw[1]} image is padded bottom-right to {_plain(pad)}: a fit "
                         "edgeinfer does not have (its pads are centred); pass --spec")
        notes.append("do_pad pads to the batch's largest image: one frame at a time it is "
                     "already that size (pixel_mask all ones)")
    pixel_cfg = {k: v for k, v in cfg.items() if k not in ("do_pad", "pad_size")}
    d = _hf.derive(pixel_cfg, frame_color, layout, check_task=False)
    top_k = rule["top_k"]
    det = DetectionSpec(fit="stretch", decoder=dict(DECODER),
                        nms=NmsSpec(iou_threshold=1.0, score_threshold=THRESHOLD,
                                    top_k=top_k if isinstance(top_k, int) else None,
                                    class_aware=True))
    read = dict(d.read) | {"post_process_object_detection": {
        "scores": rule["scores"], "top_k": top_k, "threshold": THRESHOLD,
        "boxes": "cxcywh, 0..1 of the model input, times the frame's size",
        "nms": "none (iou_threshold 1.0: nothing suppressed)"}}
    for k in ("do_pad", "pad_size"):
        if k in cfg:
            read[k] = _plain(cfg[k])
    return replace(d, read=read, notes=d.notes + tuple(notes), detection=det)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    return _hf._plain(v)
