"""The PreprocessSpec as an ONNX graph prefix: raw uint8 NHWC frame in, model input out.

Standard ONNX ops only (Cast, Transpose, Shape, integer arithmetic, Resize, Slice, Pad,
Conv), so every runtime and execution provider loads it. Frame height and width are
dynamic: output sizes are computed inside the graph with the same integer
round-half-up arithmetic as ``PreprocessSpec.resized_size``.

Colour conversion, scale, mean and std are one 1x1 Conv: ``y = (diag(a) @ M) x + b``,
where M maps frame colour to model colour and (a, b) is the spec's affine map. It runs
after the resize, on the small image, which is exact because both are linear.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.artifact import PREFIX_OUTPUT
from edgeinfer.resample import PIL_CUBIC_A, PLAIN_CUBIC_A
from edgeinfer.spec import PreprocessSpec

FRAME_INPUT = "frame"
PREFIX_NODE_PREFIX = "edgeinfer_pre/"
MIN_OPSET = 13  # Resize with `sizes` and Slice/Pad with tensor inputs
ANTIALIAS_OPSET = 18  # Resize's antialias attribute


class _Builder:
    """Accumulates nodes and initializers with unique, prefixed names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{PREFIX_NODE_PREFIX}{hint}_{self._n}"

    def const(self, value: np.ndarray | list[int] | int, hint: str = "c") -> str:
        arr = np.asarray(value)
        if arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs)
        )
        return out


def build_preprocess_model(spec: PreprocessSpec, opset: int = 18) -> onnx.ModelProto:
    """A standalone model: ``frame`` (uint8 [N,H,W,C]) -> ``edgeinfer_pixels`` (float32)."""
    if opset < MIN_OPSET:
        raise ValueError(f"the preprocessing prefix needs opset >= {MIN_OPSET}, got {opset}")
    if spec.antialias and opset < ANTIALIAS_OPSET:
        raise ValueError(f"antialiased resizing needs opset >= {ANTIALIAS_OPSET}, got {opset}")
    b = _Builder()
    th, tw = spec.size
    x = b.op("Cast", [FRAME_INPUT], "float", to=TensorProto.FLOAT)
    x = b.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    shape = b.op("Shape", [x], "shape")
    nc = b.op("Slice", [shape, b.const([0]), b.const([2])], "nc")
    h = b.op("Slice", [shape, b.const([2]), b.const([3])], "h")
    w = b.op("Slice", [shape, b.const([3]), b.const([4])], "w")

    def round_div(num: str, den: str) -> str:
        # (2*num + den) // (2*den): integer round-half-up, identical to spec.resized_size;
        # or num // den for size_rounding="floor" (torchvision's int(size * long / short))
        if spec.size_rounding == "floor":
            return b.op("Div", [num, den])
        two = b.const([2])
        return b.op("Div", [b.op("Add", [b.op("Mul", [num, two]), den]), b.op("Mul", [den, two])])

    if spec.resize in ("stretch", "stretch_crop"):
        nh, nw = (b.const([v]) for v in spec.resized_size(th, tw))  # fixed, frame-independent
    elif spec.resize == "shorter_crop":
        s = b.const([spec.shorter])
        short = b.op("Min", [h, w], "short")
        nh = round_div(b.op("Mul", [h, s]), short)
        nw = round_div(b.op("Mul", [w, s]), short)
    else:  # letterbox: height-limited when th * W <= tw * H
        c_th, c_tw, one = b.const([th]), b.const([tw]), b.const([1])
        hlim = b.op("LessOrEqual", [b.op("Mul", [c_th, w]), b.op("Mul", [c_tw, h])], "hlim")
        nw_h = b.op("Max", [round_div(b.op("Mul", [w, c_th]), h), one])
        nh_w = b.op("Max", [round_div(b.op("Mul", [h, c_tw]), w), one])
        nh = b.op("Where", [hlim, c_th, nh_w], "nh")
        nw = b.op("Where", [hlim, nw_h, c_tw], "nw")

    sizes = b.op("Concat", [nc, nh, nw], "sizes", axis=0)
    # half_pixel + a=-0.75 is what cv2.resize and torch (align_corners=False) compute.
    # Antialiased: Pillow's resampling. exclude_outside=1 drops the taps outside the image
    # and renormalises, as Pillow and torch do; without it onnxruntime clamps them to the
    # edge pixel and the outermost rows differ by up to 10 grey levels (docs/resize.md).
    resize_attrs: dict = {"mode": spec.interpolation,
                          "coordinate_transformation_mode": "half_pixel",
                          "cubic_coeff_a": PLAIN_CUBIC_A}
    if spec.antialias:
        resize_attrs.update(antialias=1, exclude_outside=1, cubic_coeff_a=PIL_CUBIC_A)
    x = b.op("Resize", [x, "", "", sizes], "resized", **resize_attrs)
    if spec.clips_overshoot:  # cubic overshoot clipped to 0..255, as uint8 pipelines do
        x = b.op("Clip", [x, b.const(np.array(0.0, np.float32)),
                          b.const(np.array(255.0, np.float32))], "clipped")

    if spec.crops:
        two = b.const([2])

        def half(margin: str, hint: str) -> str:
            # margin // 2, or half to even: k + (margin % 2) * (k % 2), as spec.crop_offsets
            k = b.op("Div", [margin, two], hint)
            if spec.crop_rounding == "floor":
                return k
            odd_k = b.op("Mul", [b.op("Mod", [margin, two]), b.op("Mod", [k, two])])
            return b.op("Add", [k, odd_k], hint)

        top = half(b.op("Sub", [nh, b.const([th])]), "top")
        left = half(b.op("Sub", [nw, b.const([tw])]), "left")
        starts = b.op("Concat", [top, left], axis=0)
        ends = b.op("Add", [starts, b.const([th, tw])])
        x = b.op("Slice", [x, starts, ends, b.const([2, 3])], "crop")
    elif spec.resize == "letterbox":
        two = b.const([2])
        dh = b.op("Sub", [b.const([th]), nh])
        dw = b.op("Sub", [b.const([tw]), nw])
        top = b.op("Div", [dh, two])
        left = b.op("Div", [dw, two])
        zero = b.const([0, 0])
        pads = b.op("Concat", [zero, top, left, zero, b.op("Sub", [dh, top]),
                               b.op("Sub", [dw, left])], "pads", axis=0)
        pad_value = b.const(np.array(spec.pad_value, np.float32), "pad_value")
        x = b.op("Pad", [x, pads, pad_value], "letterbox", mode="constant")

    a, bias = spec.affine()
    weight = (spec.color_matrix() * a[:, None])[:, :, None, None].astype(np.float32)
    x = b.op("Conv", [x, b.const(weight, "color_w"), b.const(bias, "color_b")], "normalized")
    if spec.layout == "NHWC":
        x = b.op("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    b.nodes.append(helper.make_node("Identity", [x], [PREFIX_OUTPUT], name=PREFIX_OUTPUT))

    graph = helper.make_graph(
        b.nodes,
        "edgeinfer_preprocess",
        [helper.make_tensor_value_info(
            FRAME_INPUT, TensorProto.UINT8, ["batch", "height", "width", spec.frame_channels])],
        [helper.make_tensor_value_info(
            PREFIX_OUTPUT, TensorProto.FLOAT, ["batch", *spec.model_input_shape()[1:]])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    return model
