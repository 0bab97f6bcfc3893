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
from edgeinfer.resample import (
    PIL_CUBIC_A,
    PLAIN_CUBIC_A,
    PRECISION_BITS,
    SUPPORT,
)
from edgeinfer.spec import PreprocessSpec

FRAME_INPUT = "frame"
PREFIX_NODE_PREFIX = "edgeinfer_pre/"
MIN_OPSET = 13  # Resize with `sizes` and Slice/Pad with tensor inputs
BLOCK = 8  # outputs per band block of a Pillow pass (_pillow_pass)
ANTIALIAS_OPSET = 18  # as before; the Pillow passes below use opset-13 ops only (untested lower)


class _Builder:
    """Accumulates nodes and initializers with unique, prefixed names."""

    def __init__(self, parent: _Builder | None = None) -> None:
        # a branch of an If shares the parent's initializers (outer scope) and names
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = parent.inits if parent else []
        self._count = parent._count if parent else [0]

    def name(self, hint: str) -> str:
        self._count[0] += 1
        return f"{PREFIX_NODE_PREFIX}{hint}_{self._count[0]}"

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


def _pillow_pass(b: _Builder, x: str, n_in: str, n_out: str, interp: str) -> str:
    """Pillow's 8-bit resampling along axis 0 of ``x`` (float32 [n_in, M], uint8 values)
    -> [n_out, M], as ``resample.pillow_coefficients`` + ``pillow_round``.

    Sizes are dynamic, so the taps are computed in the graph, in double, with Pillow's
    operations in Pillow's order (bit-identical weights; the row sum is a sequential
    CumSum like its loop). The pass is a band MatMul: blocks of BLOCK outputs by their
    window's input rows, with the weights' three 8-bit digits as the band. Every product
    and partial sum is an integer below 2**24, so the float32 MatMul is exact in any order
    (TF32 on a GPU included) and the result is Pillow's integer, not an approximation.
    """
    f64, i64 = TensorProto.DOUBLE, TensorProto.INT64

    def d(v: float) -> str:
        return b.const(np.array(v, np.float64))

    def f(v: float) -> str:
        return b.const(np.array(v, np.float32))

    def op(t: str, *ins: str, **kw) -> str:
        return b.op(t, list(ins), **kw)

    scale = op("Div", op("Cast", n_in, to=f64), op("Cast", n_out, to=f64))
    fscale = op("Max", scale, d(1.0))
    support = op("Mul", d(SUPPORT[interp]), fscale)
    k = op("Add", op("Mul", op("Cast", op("Ceil", support), to=i64), b.const([2])), b.const([1]))
    zero, one = b.const(np.array(0, np.int64)), b.const(np.array(1, np.int64))
    squeeze = b.const([0])
    xx = op("Cast", op("Range", zero, op("Squeeze", n_out, squeeze), one), to=f64)
    center = op("Unsqueeze", op("Mul", op("Add", xx, d(0.5)), scale), b.const([1]))
    xmin = op("Max", op("Cast", op("Add", op("Sub", center, support), d(0.5)), to=i64),
              b.const([0]))
    xmax = op("Min", op("Cast", op("Add", op("Add", center, support), d(0.5)), to=i64), n_in)
    taps = op("Unsqueeze", op("Range", zero, op("Squeeze", k, squeeze), one), b.const([0]))
    idx = op("Add", xmin, taps)  # (n_out, K)
    pos = op("Mul", op("Add", op("Sub", op("Cast", idx, to=f64), center), d(0.5)),
             op("Div", d(1.0), fscale))
    dist = op("Abs", pos)
    if interp == "linear":
        kern = op("Where", op("Less", dist, d(1.0)), op("Sub", d(1.0), dist), d(0.0))
    else:
        a = PIL_CUBIC_A
        near = op("Add", op("Mul", op("Mul", op("Sub", op("Mul", d(a + 2.0), dist),
                                                    d(a + 3.0)), dist), dist), d(1.0))
        far = op("Mul", op("Sub", op("Mul", op("Add", op("Mul", op("Sub", dist, d(5.0)), dist),
                                                  d(8.0)), dist), d(4.0)), d(a))
        kern = op("Where", op("Less", dist, d(1.0)), near,
                  op("Where", op("Less", dist, d(2.0)), far, d(0.0)))
    inside = op("Less", taps, op("Sub", xmax, xmin))
    wgt = op("Where", inside, kern, d(0.0))
    total = op("Slice", op("CumSum", wgt, b.const(np.array(1, np.int64))), b.const([-1]),
               b.const([np.iinfo(np.int64).max]), b.const([1]))
    scaled = op("Mul", op("Div", wgt, total), d(float(1 << PRECISION_BITS)))
    coef = op("Where", op("Less", scaled, d(0.0)), op("Ceil", op("Add", d(-0.5), scaled)),
              op("Floor", op("Add", d(0.5), scaled)))  # C's (int) cast: toward zero
    digits = []  # signed base-256 digits, as resample.split_coefficients
    for _ in range(2):
        low = op("Sub", coef, op("Mul", op("Floor", op("Add", op("Div", coef, d(256.0)),
                                                          d(0.5))), d(256.0)))
        digits.append(low)
        coef = op("Div", op("Sub", coef, low), d(256.0))
    digits.append(coef)  # (d0, d1, d2), each (n_out, K)
    stacked = op("Cast", op("Concat", *(op("Unsqueeze", t, b.const([1]))
                                        for t in reversed(digits)), axis=1), to=TensorProto.FLOAT)
    # Blocks of BLOCK outputs share one contiguous input window (windows only move
    # forward): a band matrix per block, (BLOCK * 3 digits, L), times the window's rows.
    # No K-fold gather and GEMMs of 24 rows instead of 3 (onnxruntime's small-GEMM cost).
    blk = b.const([BLOCK])
    nb = op("Div", op("Add", n_out, b.const([BLOCK - 1])), blk)  # ceil(n_out / BLOCK)
    pad = op("Sub", op("Mul", nb, blk), n_out)
    zero2 = b.const([0, 0])
    idx = op("Pad", idx, op("Concat", zero2, pad, b.const([0]), axis=0), mode="edge")
    stacked = op("Pad", stacked, op("Concat", b.const([0, 0, 0]), pad, b.const([0, 0]),
                                    axis=0))  # padded outputs: weight 0
    first = op("Reshape", op("Slice", idx, b.const([0]), b.const([1]), b.const([1])),
               op("Concat", nb, b.const([BLOCK]), axis=0))  # xmin per output, (nb, BLOCK)
    start = op("Slice", first, b.const([0]), b.const([1]), b.const([1]))  # (nb, 1)
    span = op("Add", op("Sub", op("Slice", first, b.const([BLOCK - 1]), b.const([BLOCK]),
                                  b.const([1])), start), k)  # (nb, 1)
    width = op("ReduceMax", span, keepdims=0)  # L (scalar-ish [1] -> [])
    window = op("Range", zero, op("Squeeze", op("Reshape", width, b.const([1])), squeeze), one)
    local = op("Sub", op("Reshape", idx, op("Concat", nb, blk, op("Reshape", k, b.const([1])),
                                           axis=0)), op("Unsqueeze", start, b.const([2])))
    onehot = op("Cast", op("Equal", op("Unsqueeze", local, b.const([3])), window),
                to=TensorProto.FLOAT)
    digits = op("Reshape", stacked, op("Concat", nb, blk, b.const([3]),
                                       op("Reshape", k, b.const([1])), axis=0))
    band = op("Reshape", op("MatMul", digits, onehot),  # (nb, BLOCK, 3, L): exact
              op("Concat", nb, b.const([BLOCK * 3, -1]), axis=0))
    rows = op("Min", op("Add", start, op("Unsqueeze", window, b.const([0]))),
              op("Sub", n_in, b.const([1])))  # (nb, L); past the image: weight 0
    sums = op("MatMul", band, op("Gather", x, rows, axis=0))  # (nb, BLOCK * 3, M)
    sums = op("Slice", op("Reshape", sums, b.const([-1, 3, 0])), b.const([0]), n_out,
              b.const([0]))  # (n_out, 3, M): exact, see split_coefficients
    s2, s1, s0 = (op("Gather", sums, b.const(np.array(i, np.int64)), axis=1) for i in range(3))
    c0 = op("Floor", op("Div", op("Add", s0, f(float(1 << (PRECISION_BITS - 1)))), f(256.0)))
    c1 = op("Floor", op("Div", op("Add", s1, c0), f(256.0)))
    out = op("Floor", op("Div", op("Add", s2, c1), f(float(1 << (PRECISION_BITS - 16)))))
    return op("Clip", out, f(0.0), f(255.0))


def _pillow_resize(b: _Builder, x: str, nhwc: tuple[str, str, str, str], nh: str, nw: str,
                   interp: str) -> str:
    """Pillow's uint8 resize of the uint8 NHWC frame -> float NCHW, bit for bit: two
    :func:`_pillow_pass` es, each on a 2-D matrix whose rows are the resized axis, so a
    pass gathers whole rows and multiplies few, wide GEMMs (all planes side by side: 5x
    faster than one GEMM per plane, measured). Between passes only 2-D transposes, which
    onnxruntime does 10x faster than swapping H and W of an NHWC image (0.06-0.18 vs
    1.4 ms). In Pillow's order (``resample.vertical_first``; an If: dynamic frame size)."""
    n, h, w, c = nhwc
    f32 = TensorProto.FLOAT
    neg = b.const([-1])
    planes = b.op("Transpose", [x], "nchw_u8", perm=[0, 3, 1, 2])  # fast: channels out
    out_shape = b.op("Concat", [n, c, nh, nw], "nchw_shape", axis=0)

    def rows_of(sb: _Builder, t: str, cols: str) -> str:  # (A, cols) -> (cols, A)
        shape = sb.op("Concat", [neg, cols], axis=0)
        return sb.op("Transpose", [sb.op("Reshape", [t, shape])], perm=[1, 0])

    def width_first(sb: _Builder) -> str:
        y = sb.op("Cast", [rows_of(sb, planes, w)], to=f32)  # (W, P*H)
        y = rows_of(sb, _pillow_pass(sb, y, w, nw, interp), h)  # (H, nw*P)
        y = rows_of(sb, _pillow_pass(sb, y, h, nh, interp), sb.op("Mul", [n, c]))
        return sb.op("Reshape", [y, out_shape])  # (P, nh*nw)

    def height_first(sb: _Builder) -> str:
        y = sb.op("Reshape", [planes, sb.op("Concat", [neg, h, w], axis=0)])  # (P, H, W)
        y = sb.op("Transpose", [y], perm=[1, 0, 2])  # (H, P, W): whole rows move
        y = sb.op("Cast", [sb.op("Reshape", [y, sb.op("Concat", [h, neg], axis=0)])], to=f32)
        y = rows_of(sb, _pillow_pass(sb, y, h, nh, interp), w)  # (W, nh*P)
        y = sb.op("Transpose", [_pillow_pass(sb, y, w, nw, interp)], perm=[1, 0])  # (nh*P, nw)
        y = sb.op("Reshape", [y, sb.op("Concat", [nh, neg, nw], axis=0)])
        return sb.op("Reshape", [sb.op("Transpose", [y], perm=[1, 0, 2]), out_shape])

    def branch(build, label: str) -> onnx.GraphProto:
        sb = _Builder(b)
        out = build(sb)
        return helper.make_graph(sb.nodes, b.name(label), [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])

    # nh < h and nw != w and h - nh > 2 * (w - nw), as resample.vertical_first
    dh = b.op("Sub", [h, nh])
    dw2 = b.op("Mul", [b.op("Sub", [w, nw]), b.const([2])])
    cond = b.op("And", [b.op("And", [b.op("Less", [nh, h]),
                                     b.op("Not", [b.op("Equal", [nw, w])])]),
                        b.op("Greater", [dh, dw2])], "vertical_first")
    return b.op("If", [cond], "resized", then_branch=branch(height_first, "height_first"),
                else_branch=branch(width_first, "width_first"))


def build_preprocess_model(spec: PreprocessSpec, opset: int = 18) -> onnx.ModelProto:
    """A standalone model: ``frame`` (uint8 [N,H,W,C]) -> ``edgeinfer_pixels`` (float32)."""
    if opset < MIN_OPSET:
        raise ValueError(f"the preprocessing prefix needs opset >= {MIN_OPSET}, got {opset}")
    if spec.antialias and opset < ANTIALIAS_OPSET:
        raise ValueError(f"antialiased resizing needs opset >= {ANTIALIAS_OPSET}, got {opset}")
    b = _Builder()
    th, tw = spec.size
    shape = b.op("Shape", [FRAME_INPUT], "shape")
    n, h, w, c = (b.op("Slice", [shape, b.const([i]), b.const([i + 1])], name)
                  for i, name in enumerate("nhwc"))

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

    if spec.antialias:
        x = _pillow_resize(b, FRAME_INPUT, (n, h, w, c), nh, nw, spec.interpolation)
    else:
        # half_pixel + a=-0.75 is what cv2.resize and torch (align_corners=False) compute
        x = b.op("Cast", [FRAME_INPUT], "float", to=TensorProto.FLOAT)
        x = b.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        sizes = b.op("Concat", [n, c, nh, nw], "sizes", axis=0)
        x = b.op("Resize", [x, "", "", sizes], "resized", mode=spec.interpolation,
                 coordinate_transformation_mode="half_pixel", cubic_coeff_a=PLAIN_CUBIC_A)
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
