"""AdaRound for one layer, format-free: choose each int8 weight's rounding, up or down.

Why: round-to-nearest minimises each WEIGHT's error, not the LAYER's output error; on
EfficientNet-Lite0 the nearest rounding of onnxruntime's MinMax agreed with fp32 on 98.50%
of untouched photos, AdaRound (Quark's, on the same QDQ graph) on 99.50%, every layer int8
(docs/int8/reconstruction.md). The study's decision was to build the technique in-house,
on top of onnxruntime's quantiser (ONNX, :mod:`edgeinfer.converter.int8.adaround_onnx`) and
ai-edge-quantizer's (TFLite): this module is the part they share.

The method is Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization", as AIMET and AMD Quark implement it: per weight a continuous V, soft
rounding ``h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)`` with zeta 1.1, gamma
-0.1, V initialised so that ``h`` equals the weight's fractional part; the loss is the
squared output error (summed over output channels, averaged over positions) plus
``reg_param * sum(1 - |2h - 1| ** beta)``, off for the first ``warm_start`` of the steps,
then with beta decayed 20 -> 2 by a cosine (Quark's ``_calculate_beta``); Adam on V at lr
0.1 (Quark's ``initial_lr``); the result rounds up where ``V >= 0`` (``h >= 0.5``).

What makes it fit a few seconds per layer on 2 shared cores (Quark: 427 s for the 50 layers
of EfficientNet-Lite0 at 200 steps): the layer is a matrix product on a SAMPLE of output
positions, gathered once (im2col on a random subset of (frame, y, x), capped in bytes);
each step takes a minibatch of those rows; the loop stops once every ``h`` is exactly 0 or 1
(the clip then passes no gradient: nothing can move). The rounding is returned only if its
output error on all the sampled rows is no worse than round-to-nearest's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ZETA, GAMMA = 1.1, -0.1
#: steps per layer (Quark's default 1000, AIMET's 10,000). EfficientNet-Lite0, 8-bit weights,
#: on 936 photos it was not fitted on: 200 steps x 32 frames 98.72% (nearest 98.82%),
#: 500 x 64 99.25% in 200 CPU s for 50 layers (docs/int8/adaround.md)
ITERATIONS = 500
BATCH_ROWS = 1024  # sampled output positions per step
MAX_ROWS = 8192  # output positions gathered per layer (fewer when a row is wide)
MAX_ROW_BYTES = 96 * 2**20  # the gathered input rows of one layer, at most
#: one step's rows, at most: a depthwise 5x5 layer of 1152 channels has 115 KB rows, and
#: 833 of them per step took 33-68 s per layer (memory-bound); each row is one sample per
#: channel, so 64 rows still give every weight 64 samples a step
BATCH_BYTES = 8 * 2**20
LR, REG_PARAM, WARM_START, BETA_RANGE = 0.1, 0.01, 0.2, (20.0, 2.0)
HOLDOUT = 0.25


def adaround_layer(weight: np.ndarray, scale: np.ndarray, inputs: np.ndarray,
                   target: np.ndarray, *, bias: np.ndarray | None = None, kind: str = "conv",
                   stride: tuple[int, int] = (1, 1), pads: tuple[int, int, int, int] = (0, 0, 0, 0),
                   dilation: tuple[int, int] = (1, 1), group: int = 1, qmin: int = -128,
                   qmax: int = 127, iterations: int = ITERATIONS, seed: int = 0,
                   batch_rows: int = BATCH_ROWS, max_rows: int = MAX_ROWS,
                   lr: float = LR, reg_param: float = REG_PARAM, threads: int | None = 1,
                   holdout: float = HOLDOUT, activation: tuple[float, float] | None = None,
                   output_quant: tuple[float, int, int, int] | None = None,
                   stats: dict[str, Any] | None = None) -> np.ndarray:
    """The int8 weight whose layer output best matches ``target`` (AdaRound).

    weight: float (O, I/group, kh, kw) for conv (torch/ONNX layout) or (O, I) for linear;
    scale: per-output-channel (O,) or scalar, symmetric (zero point 0);
    inputs: float NCHW (or N,I) activations AS THE QUANTISED MODEL FEEDS THIS LAYER;
    target: the fp32 model's output of this layer (pre-activation, bias included) on the same
    frames; pads: (top, left, bottom, right). Returns the int8 weight (same layout), each
    element floor(w/s) or floor(w/s)+1 clipped to [qmin, qmax]. ``stats``, when given, is
    filled with what the fit did (rows, steps, output error before and after).
    ``activation``: (low, high) of a ReLU/ReLU6/Clip that follows the layer; the error is
    then measured after it (AIMET's ``apply_activation_fn``: an error the activation clips
    away costs nothing). ``output_quant``: (scale, zero point, qmin, qmax) of the
    requantisation of the layer's output; the fitted output is then rounded to that grid
    (straight-through gradient), as Quark's module with its output QDQ. ``holdout``: the
    share of the frames (the first axis of ``inputs``) kept out of the fit; the rounding is
    returned only if its output error on them is no worse than round-to-nearest's (else
    round-to-nearest is). ``threads``: torch's, for the call (1: on 2 shared cores at load
    12 one thread ran a small layer in 5 s, two in 14 s).
    """
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _fit(weight, scale, inputs, target, bias, kind, stride, pads, dilation, group,
                    qmin, qmax, iterations, seed, batch_rows, max_rows, lr, reg_param, holdout,
                    activation, output_quant, stats)
    finally:
        torch.set_num_threads(before)


def _fit(weight: np.ndarray, scale: np.ndarray, inputs: np.ndarray, target: np.ndarray,
         bias: np.ndarray | None, kind: str, stride: tuple[int, int],
         pads: tuple[int, int, int, int], dilation: tuple[int, int], group: int, qmin: int,
         qmax: int, iterations: int, seed: int, batch_rows: int, max_rows: int, lr: float,
         reg_param: float, holdout: float, activation: tuple[float, float] | None,
         output_quant: tuple[float, int, int, int] | None,
         stats: dict[str, Any] | None) -> np.ndarray:
    import torch

    if kind not in ("conv", "linear"):
        raise ValueError(f"kind must be 'conv' or 'linear', not {kind!r}")
    w = np.asarray(weight, np.float32)
    o = w.shape[0]
    s = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (o,)) if np.size(scale) > 1 \
        else np.full(o, float(np.asarray(scale).reshape(-1)[0]), np.float32)
    if np.any(s <= 0):
        raise ValueError("weight scales must be positive")
    g = group if kind == "conv" else 1
    rng = np.random.default_rng(seed)
    n = len(inputs)
    cut = n - int(round(holdout * n)) if n > 1 else n
    if cut < 1:
        raise ValueError("AdaRound needs at least one frame to fit on")

    def rows(a: np.ndarray, b: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        return (_conv_rows(a, b, w.shape, stride, pads, dilation, g, cap, rng)
                if kind == "conv" else _linear_rows(a, b, w.shape, cap, rng))

    x, t = rows(inputs[:cut], target[:cut], max_rows)
    hx, ht = (rows(inputs[cut:], target[cut:], max(256, max_rows // 4)) if cut < n
              else (x, t))
    ws = w / s.reshape((o,) + (1,) * (w.ndim - 1))
    floor = np.floor(ws)
    rest = np.clip(ws - floor, 0.0, 1.0)
    nearest = np.clip(np.round(ws), qmin, qmax)

    tb = torch.zeros(g, o // g) if bias is None else \
        torch.from_numpy(np.asarray(bias, np.float32).reshape(g, o // g))
    ts = torch.from_numpy(s.reshape(g, o // g, 1).copy())
    tfloor = torch.from_numpy(floor.reshape(g, o // g, -1).astype(np.float32))
    v = torch.nn.Parameter(torch.from_numpy(
        -np.log((ZETA - GAMMA) / (rest.reshape(g, o // g, -1) - GAMMA) - 1.0).astype(np.float32)))

    lo, hi = activation if activation is not None else (None, None)
    if activation is not None:
        t = np.clip(t, lo, hi)
        ht = np.clip(ht, lo, hi)

    def out(q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if o == g:  # depthwise: one output per group, a product + sum beats a batched matmul
            y = (rows * (q * ts)[:, 0]).sum(-1, keepdim=True) + tb
        else:
            y = torch.einsum("mgi,goi->mgo", rows, q * ts) + tb
        y = y if activation is None else torch.clamp(y, lo, hi)
        if output_quant is None:
            return y
        so, zo, qlo, qhi = output_quant
        y = torch.clamp(y, (qlo - zo) * so, (qhi - zo) * so)
        return y + (torch.round(y / so) * so - y).detach()  # the grid, straight through

    tx, tt = torch.from_numpy(x), torch.from_numpy(t)  # (M, G, Cg*K), (M, G, Og)
    thx, tht = torch.from_numpy(hx), torch.from_numpy(ht)

    def error(q: np.ndarray, on: tuple[torch.Tensor, torch.Tensor]) -> float:
        with torch.no_grad():
            qq = torch.from_numpy(q.reshape(g, o // g, -1).astype(np.float32))
            return float(((out(qq, on[0]) - on[1]) ** 2).sum((1, 2)).mean())

    opt = torch.optim.Adam([v], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    m = len(x)
    batch_rows = min(batch_rows, max(64, BATCH_BYTES // (x[0].size * 4)))
    warm = int(WARM_START * iterations)
    done = 0
    for it in range(iterations):
        rows = torch.randint(0, m, (min(batch_rows, m),), generator=gen) if m > batch_rows \
            else slice(None)
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        q = torch.clamp(tfloor + h, qmin, qmax)
        loss = ((out(q, tx[rows]) - tt[rows]) ** 2).sum((1, 2)).mean()
        if it >= warm:
            rel = (it - warm) / max(1, iterations - warm)
            beta = BETA_RANGE[1] + 0.5 * (BETA_RANGE[0] - BETA_RANGE[1]) * (1 + np.cos(rel * np.pi))
            loss = loss + reg_param * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = it + 1
        if it >= warm and it % 10 == 0:
            with torch.no_grad():
                hh = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
                if not bool(((hh > 0) & (hh < 1)).any()):
                    break  # every h saturated: the clip passes no gradient, nothing moves
    up = (v.detach().numpy() >= 0).reshape(w.shape)
    ada = np.clip(floor + up, qmin, qmax)
    e_near, e_ada = error(nearest, (thx, tht)), error(ada, (thx, tht))
    chosen = ada if e_ada <= e_near else nearest
    if stats is not None:
        stats.update(rows=m, heldout_rows=len(hx), steps=done, error_nearest=e_near,
                     error_adaround=e_ada, fit_error_nearest=error(nearest, (tx, tt)),
                     fit_error_adaround=error(ada, (tx, tt)),
                     kept_nearest=bool(e_ada > e_near),
                     changed=int((chosen != nearest).sum()), weights=int(w.size))
    return chosen.astype(np.int8 if qmin >= -128 and qmax <= 127 else np.int32)


def versus_nearest(stats: dict[str, Any]) -> str:
    """A fitted layer's held-out output error against round-to-nearest's, in words that
    cannot be read backwards (``stats`` as :func:`adaround_layer` fills it).

    Why: the progress line printed ``output error +96% vs nearest`` for an error that went
    DOWN 96%, and nothing when the layer was kept at nearest (session 10).
    """
    e_near, e_ada = float(stats["error_nearest"]), float(stats["error_adaround"])
    where = "on held-out frames"
    if stats.get("kept_nearest"):
        above = (f"{_share(e_ada / e_near - 1)} above nearest's" if e_near > 0
                 else "above nearest's, which is 0")
        return f"kept nearest: AdaRound's output error {above} {where}"
    if e_near <= 0 or e_ada == e_near:
        return f"output error equal to nearest's {where}"
    return f"output error {_share(1 - e_ada / e_near)} below nearest's {where}"


def _share(x: float) -> str:
    """A fraction as a percentage, one decimal under 1% (0.3%, not 0%)."""
    return f"{x:.1%}" if abs(x) < 0.01 else f"{x:.0%}"


def _conv_rows(inputs: np.ndarray, target: np.ndarray, wshape: tuple[int, ...],
               stride: tuple[int, int], pads: tuple[int, int, int, int],
               dilation: tuple[int, int], group: int, max_rows: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """im2col on a random sample of output positions: (M, G, Cg*kh*kw) inputs and their
    (M, G, Og) targets, without unfolding the whole input (a 112x112 layer on 32 frames
    would be hundreds of MB)."""
    x = np.asarray(inputs, np.float32)
    t = np.asarray(target, np.float32)
    n, c = x.shape[:2]
    o, cg, kh, kw = wshape
    if c != cg * group or o % group:
        raise ValueError(f"input channels {c} do not match the weight {wshape} in {group} "
                         "group(s)")
    _, _, oh, ow = t.shape
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    row_bytes = c * kh * kw * 4
    m = int(min(max_rows, max(64, MAX_ROW_BYTES // row_bytes), n * oh * ow))
    flat = rng.choice(n * oh * ow, size=m, replace=False)
    fn, rem = np.divmod(flat, oh * ow)
    oy, ox = np.divmod(rem, ow)
    cols = np.empty((m, c, kh * kw), np.float32)
    for ky in range(kh):
        for kx in range(kw):
            iy = oy * stride[0] + ky * dilation[0]
            ix = ox * stride[1] + kx * dilation[1]
            cols[:, :, ky * kw + kx] = xp[fn, :, iy, ix]
    rows = cols.reshape(m, group, cg * kh * kw)
    tgt = t[fn, :, oy, ox].reshape(m, group, o // group)
    return np.ascontiguousarray(rows), np.ascontiguousarray(tgt)


def _linear_rows(inputs: np.ndarray, target: np.ndarray, wshape: tuple[int, ...],
                 max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    o, i = wshape
    x = np.asarray(inputs, np.float32).reshape(-1, i)
    t = np.asarray(target, np.float32).reshape(-1, o)
    if len(x) > max_rows:
        pick = rng.choice(len(x), size=max_rows, replace=False)
        x, t = x[pick], t[pick]
    return np.ascontiguousarray(x[:, None, :]), np.ascontiguousarray(t[:, None, :])
