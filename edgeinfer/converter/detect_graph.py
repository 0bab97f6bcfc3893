"""A detector's ONNX graph after the model: NMS and the inverse letterbox (issue 28).

The core writes ``boxes [N, A, 4]`` (xyxy, input pixels) and ``scores [N, A, C]``
(per-class probabilities). Two endings are built, and measured against each other
(docs/detection/own_detector.md):

* ``nms="graph"``: ONNX ``NonMaxSuppression`` (class-aware by its class axis; a box is
  dropped at a score not above the threshold and suppressed at an IoU above it, as
  :func:`edgeinfer.runtime.detect.nms.nms`), a ``TopK`` over all kept pairs, then the
  letterbox inverted with the frame's own size read from ``frame`` by ``Shape``, in the
  prefix's own integer arithmetic, and the boxes clipped to the frame. Outputs ``boxes``
  ``[K, 4]`` in frame pixels, ``scores [K]``, ``classes [K]`` int64: the artifact is
  self-contained (one frame per call: NMS's TopK runs over the whole call).
* ``nms="runtime"``: the core outputs renamed ``boxes`` / ``scores`` (input pixels); the
  lean runtime suppresses with ``runtime.detect.nms`` and maps back with
  ``geometry.Fit.to_frame``.

Suppression runs on input-pixel boxes in both, as the framework does: a letterbox scales
the two axes by ratios that differ by up to half a pixel, so IoU in frame pixels is not
exactly IoU in input pixels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.artifact import INPUT_NAME
from edgeinfer.detect_spec import DetectionSpec

BOXES, SCORES, CLASSES = "boxes", "scores", "classes"
#: the core's own outputs inside the artifact (the gate reads them as the model stage)
CORE_BOXES, CORE_SCORES = "edgeinfer_det_boxes", "edgeinfer_det_scores"
NMS_PLACES = ("graph", "runtime")
_P = "edgeinfer_post/"


class _G:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, v, dtype=np.int64) -> str:
        self.n += 1
        name = f"{_P}c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(v, dtype), name))
        return name

    def op(self, t: str, ins: list[str], out: str | None = None, **kw) -> str:
        self.n += 1
        out = out or f"{_P}{t.lower()}_{self.n}"
        self.nodes.append(helper.make_node(t, ins, [out], name=f"{out}_node", **kw))
        return out


def _letterbox_inverse(g: _G, boxes: str, size: tuple[int, int], fit: str = "letterbox"
                       ) -> str:
    """Input-pixel boxes ``[K, 4]`` -> the frame's pixels, clipped to it: the sizes the
    prefix resized to (its integer round-half-up, ``PreprocessSpec.resized_size``), the
    centred padding, each axis's own ratio (``geometry.fit``'s letterbox); ``stretch``:
    the whole input, no padding (a transformers RT-DETR's fit, spec_from.derive_detection)."""
    th, tw = size
    shape = g.op("Shape", [INPUT_NAME])
    h = g.op("Slice", [shape, g.const([1]), g.const([2])])
    w = g.op("Slice", [shape, g.const([2]), g.const([3])])
    c_th, c_tw, one, two = g.const([th]), g.const([tw]), g.const([1]), g.const([2])

    def round_div(num: str, den: str) -> str:
        return g.op("Div", [g.op("Add", [g.op("Mul", [num, two]), den]),
                            g.op("Mul", [den, two])])

    if fit == "stretch":
        nh, nw, top, left = c_th, c_tw, g.const([0]), g.const([0])
    else:
        hlim = g.op("LessOrEqual", [g.op("Mul", [c_th, w]), g.op("Mul", [c_tw, h])])
        nw_h = g.op("Max", [round_div(g.op("Mul", [w, c_th]), h), one])
        nh_w = g.op("Max", [round_div(g.op("Mul", [h, c_tw]), w), one])
        nh = g.op("Where", [hlim, c_th, nh_w])
        nw = g.op("Where", [hlim, nw_h, c_tw])
        top = g.op("Div", [g.op("Sub", [c_th, nh]), two])
        left = g.op("Div", [g.op("Sub", [c_tw, nw]), two])
    f = TensorProto.FLOAT

    def cast(t: str) -> str:
        return g.op("Cast", [t], to=f)

    pad = cast(g.op("Concat", [left, top, left, top], axis=0))  # [4]: x, y, x, y
    scale = g.op("Div", [cast(g.op("Concat", [nw, nh, nw, nh], axis=0)),
                         cast(g.op("Concat", [w, h, w, h], axis=0))])
    out = g.op("Div", [g.op("Sub", [boxes, pad]), scale])
    hi = cast(g.op("Concat", [w, h, w, h], axis=0))
    return g.op("Min", [g.op("Max", [out, g.const(0.0, np.float32)]), hi])


def add_postprocess(model: onnx.ModelProto, det: DetectionSpec, size: tuple[int, int],
                    nms: str = "graph") -> onnx.ModelProto:
    """Append the ending to an assembled model whose two outputs are the core's (boxes,
    scores), in that order; the outputs become ``boxes``, ``scores`` (, ``classes``)."""
    if nms not in NMS_PLACES:
        raise ValueError(f"nms must be one of {', '.join(NMS_PLACES)}, got {nms!r}")
    if det.fit not in ("letterbox", "stretch"):
        raise ValueError(f"the detector graph inverts a letterbox or a stretch, not {det.fit!r}")
    gr = model.graph
    b_out, s_out = (o.name for o in gr.output)
    g = _G()
    f = TensorProto.FLOAT
    g.op("Identity", [b_out], CORE_BOXES)
    g.op("Identity", [s_out], CORE_SCORES)
    del gr.output[:]
    if nms == "runtime":
        g.op("Identity", [CORE_BOXES], BOXES)
        g.op("Identity", [CORE_SCORES], SCORES)
        outs = [helper.make_tensor_value_info(BOXES, f, ["batch", "anchors", 4]),
                helper.make_tensor_value_info(SCORES, f, ["batch", "anchors", "classes"])]
    else:
        n = det.nms
        top_k = n.top_k or 1 << 20
        per_class = g.const([top_k])
        sel = g.op("NonMaxSuppression", [
            CORE_BOXES, g.op("Transpose", [CORE_SCORES], perm=[0, 2, 1]), per_class,
            g.const([n.iou_threshold], np.float32), g.const([n.score_threshold], np.float32)],
            center_point_box=0)  # [K, 3]: batch, class, anchor
        cls = g.op("Gather", [sel, g.const(1)], axis=1)
        # scores[batch, anchor, class] of each kept pair
        idx = g.op("Concat", [g.op("Gather", [sel, g.const([0])], axis=1),
                              g.op("Gather", [sel, g.const([2])], axis=1),
                              g.op("Gather", [sel, g.const([1])], axis=1)], axis=1)
        kept = g.op("GatherND", [CORE_SCORES, idx])
        batch_anchor = g.op("Gather", [sel, g.const([0, 2])], axis=1)
        kept_boxes = g.op("GatherND", [CORE_BOXES, batch_anchor])
        k = g.op("Min", [g.op("Shape", [kept]), g.const([top_k])])
        g.nodes.append(helper.make_node("TopK", [kept, k], [f"{_P}best", f"{_P}order"],
                                        name=f"{_P}topk", axis=0, largest=1, sorted=1))
        best, order = f"{_P}best", f"{_P}order"
        g.op("Identity", [best], SCORES)
        g.op("Gather", [cls, order], CLASSES, axis=0)
        in_px = g.op("Gather", [kept_boxes, order], axis=0)
        g.op("Identity", [_letterbox_inverse(g, in_px, size, det.fit)], BOXES)
        outs = [helper.make_tensor_value_info(BOXES, f, ["detections", 4]),
                helper.make_tensor_value_info(SCORES, f, ["detections"]),
                helper.make_tensor_value_info(CLASSES, TensorProto.INT64, ["detections"])]
    gr.node.extend(g.nodes)
    gr.initializer.extend(g.inits)
    gr.output.extend(outs)
    onnx.checker.check_model(model, full_check=True)
    return model
