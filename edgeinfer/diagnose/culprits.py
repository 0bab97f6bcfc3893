"""The culprit vocabulary: every way a deployment commonly prepares a frame (or runs a
model) differently from training, each simulated as a variant of the spec, of the frames,
or of the model's mode.

Two directions use the same vocabulary:

* :func:`device_variants` (the doctor): the spec is the TRAINING preprocessing and each
  variant is a device that made one mistake (``missing_scaling`` = the device forgot /255).
* :func:`spec_hypotheses` (the audit): the spec is what the user GAVE and each variant is a
  hypothesis for the training preprocessing if the given spec contains one mistake
  (``missing_scaling`` = the given spec lacks a /255, so the hypothesis divides once more).
  Only spec-expressible hypotheses: the audit must be able to print a corrected spec.

Mean/std variants work on the spec's canonical 0-1 form (``y = (x/255 - m) / s``), which
is exactly equivalent to any (scale, mean, std) triple, so "/255 twice" means the same for
a spec written as ``scale=1/255, mean=0.5`` as for one written as ``mean=127.5``.
:mod:`edgeinfer.diagnose.simulate` runs the variants through the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgeinfer.errors import ConfigError
from edgeinfer.spec import PreprocessSpec

#: name -> (what it means, how to fix it). Order = tie-break priority (simplest first).
CULPRITS: dict[str, tuple[str, str]] = {
    "none": ("the pipeline matches the spec", "nothing to fix in the preprocessing"),
    "mean_std_pixel_scale": ("mean/std given on the 0-255 scale but applied after /255",
                             "express mean and std on the scale the pixels have when they "
                             "are applied (0-1 after /255)"),
    "missing_scaling": ("the /255 is missing", "divide the pixels by 255 before mean/std"),
    "double_scaling": ("the pixels are divided by 255 twice", "divide by 255 once"),
    "normalization_missing": ("no mean/std normalisation", "subtract the training mean and "
                              "divide by the training std"),
    "mean_std_mismatch": ("another mean/std than in training", "use the training mean/std"),
    "channel_order": ("RGB and BGR swapped", "convert the frame to the model's colour order "
                      "(OpenCV decodes BGR)"),
    "resize_interpolation": ("another resize filter", "resize with the training filter"),
    "resize_policy": ("another resize geometry (stretch / centre crop / letterbox)",
                      "resize and crop as in training"),
    "input_size": ("another input size than in training", "resize to the size the model was "
                   "trained at"),
    "layout": ("NCHW/NHWC confused or height/width transposed", "feed the layout the model "
               "expects"),
    "train_mode": ("the model runs in training mode (dropout on, BN on batch statistics)",
                   "export/run the model in eval mode (model.eval())"),
    "batchnorm_batch_stats": ("BatchNorm uses batch statistics", "put BatchNorm layers in "
                              "eval mode (running statistics)"),
    "dropout_active": ("dropout is active at inference", "put Dropout layers in eval mode"),
    "distribution_shift": ("no pipeline mistake explains it, and the frames' statistics are "
                           "off the training statistics", "collect data like the deployment's "
                           "and fine-tune, or fix the camera/lighting"),
}
MODE_CULPRITS = ("train_mode", "batchnorm_batch_stats", "dropout_active")
#: device batch sizes at which training-mode BatchNorm is simulated (a doubling grid: a
#: device at batch 8 is matched by the batch-8 run, not by 4 or 16; see mode_variants)
MODE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
PRIORITY = {name: i for i, name in enumerate(CULPRITS)}
#: short names for families of culprits (``doctor --culprits resize,colour``)
GROUPS: dict[str, tuple[str, ...]] = {
    "scaling": ("missing_scaling", "double_scaling", "mean_std_pixel_scale"),
    "normalization": ("normalization_missing", "mean_std_mismatch", "mean_std_pixel_scale"),
    "colour": ("channel_order",), "color": ("channel_order",),
    "resize": ("resize_interpolation", "resize_policy", "input_size"),
    "mode": MODE_CULPRITS,
}
GROUPS["preprocessing"] = tuple(c for c in CULPRITS if c not in MODE_CULPRITS
                                and c not in ("none", "distribution_shift"))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
SAME_TOL = 0.02  # mean/std closer than this (0-1 scale) count as the same normalisation


@dataclass(frozen=True)
class Variant:
    """One simulated culprit: a spec plus what the spec cannot express."""

    culprit: str
    detail: str
    spec: PreprocessSpec
    frame_op: str | None = None  # nearest | area | transpose_hw (applied to the uint8 frame)
    input_op: str | None = None  # nhwc_as_nchw | nchw_as_nhwc (memory reinterpreted)
    mode: str = "eval"  # eval | train_mode | batchnorm_batch_stats | dropout_active
    batch: int = 1  # frames per device call: BatchNorm on batch statistics depends on it

    @property
    def fix(self) -> str:
        return CULPRITS[self.culprit][1]


def canonical(spec: PreprocessSpec) -> PreprocessSpec:
    """The same preprocessing written as ``(x/255 - m) / s`` (exactly equivalent)."""
    k = 255.0 * spec.scale
    return replace(spec, scale=1.0 / 255.0, mean=tuple(m / k for m in spec.mean),
                   std=tuple(s / k for s in spec.std))


def _norm(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    c = canonical(spec)
    n = spec.model_channels
    return (np.broadcast_to(np.asarray(c.mean), (n,)), np.broadcast_to(np.asarray(c.std), (n,)))


def _same_norm(spec: PreprocessSpec, mean: Sequence[float], std: Sequence[float]) -> bool:
    m, s = _norm(spec)
    return bool(np.all(np.abs(m - np.asarray(mean)) < SAME_TOL)
                and np.all(np.abs(s - np.asarray(std)) < SAME_TOL))


def _fit_channels(values: tuple[float, ...], n: int) -> tuple[float, ...]:
    """A 3-channel constant for a gray model becomes its channel mean."""
    return values if len(values) == n else (float(np.mean(values)),)


def data_stats(spec: PreprocessSpec, frames: Sequence[np.ndarray]) -> tuple[tuple, tuple]:
    """Per-channel mean/std of the frames after resizing and /255: what a training script
    computes when it normalises with its data set's statistics."""
    plain = replace(canonical(spec), mean=(0.0,), std=(1.0,), layout="NHWC")
    x = np.concatenate([plain.reference(f) for f in frames[:256]]).reshape(-1,
                                                                            spec.model_channels)
    return (tuple(round(float(v), 4) for v in x.mean(0)),
            tuple(round(max(float(v), 1e-3), 4) for v in x.std(0)))


def _norm_candidates(spec: PreprocessSpec, frames: Sequence[np.ndarray]) -> list[tuple]:
    n = spec.model_channels
    cands = [("data-set statistics of these frames", *data_stats(spec, frames)),
             ("ImageNet", _fit_channels(IMAGENET[0], n), _fit_channels(IMAGENET[1], n)),
             ("0.5/0.5 (127.5/127.5)", _fit_channels(HALF[0], n), _fit_channels(HALF[1], n))]
    return [(d, m, s) for d, m, s in cands if not _same_norm(spec, m, s)]


def select_culprits(names: Sequence[str]) -> frozenset[str]:
    """Culprit names (or :data:`GROUPS`) -> the culprits to simulate, ``none`` always
    included: it is the reference every other culprit is compared with. Why a filter at
    all: a user who suspects the resize need not wait for the training-mode grid."""
    out = {"none"}
    for raw in names:
        n = raw.strip().lower().replace("-", "_")
        if not n:
            continue
        if n in GROUPS:
            out.update(GROUPS[n])
        elif n in CULPRITS:
            out.add(n)
        else:
            raise ConfigError(f"unknown culprit {raw.strip()!r}: choose from "
                              f"{', '.join(c for c in CULPRITS if c != 'none')} or the groups "
                              f"{', '.join(GROUPS)}")
    if out == {"none"}:
        raise ConfigError("no culprit named: give culprit names or groups separated by "
                          "commas, e.g. resize,colour")
    return frozenset(out)


def device_variants(spec: PreprocessSpec, frames: Sequence[np.ndarray], framework: str,
                    has_dropout: bool = True, culprits: frozenset[str] | None = None,
                    batches: Sequence[int] | None = None) -> tuple[list[Variant], list[str]]:
    """Every culprit as a device mistake against the training ``spec``; and notes on the
    culprits that cannot be simulated here (e.g. model modes for an ONNX source).
    ``culprits`` (:func:`select_culprits`) and ``batches`` narrow the grid."""
    c = canonical(spec)
    m, s = _norm(spec)
    out = [Variant("none", "the spec as trained", spec)]
    if spec.model_channels == 3 and spec.frame_channels == 3:
        swap = {"RGB": "BGR", "BGR": "RGB"}[spec.model_color]
        out.append(Variant("channel_order", f"model fed {swap} instead of {spec.model_color}",
                           replace(spec, model_color=swap)))
    out += [Variant("missing_scaling", "no /255", replace(c, scale=1.0)),
            Variant("double_scaling", "/255 twice", replace(c, scale=1.0 / 255.0 ** 2)),
            Variant("mean_std_pixel_scale", "mean/std x255 applied after /255",
                    replace(c, mean=tuple(m * 255.0), std=tuple(s * 255.0)))]
    if not _same_norm(spec, (0.0,) * len(m), (1.0,) * len(s)):
        out.append(Variant("normalization_missing", "no mean/std", replace(c, mean=(0.0,),
                                                                         std=(1.0,))))
    for d, mm, ss in _norm_candidates(spec, frames):
        if d.startswith("data-set"):  # a device mistake uses a known constant, not our data
            continue
        out.append(Variant("mean_std_mismatch", f"{d} mean/std", replace(c, mean=mm, std=ss)))
    out += [Variant("resize_interpolation", f"{op} resize", spec, frame_op=op)
            for op in ("nearest", "area")]
    if spec.interpolation != "cubic":
        out.append(Variant("resize_interpolation", "cubic resize",
                           replace(spec, interpolation="cubic", antialias=False)))
    out += _policy_variants(spec)
    out.append(Variant("layout", "height/width transposed", spec, frame_op="transpose_hw"))
    if spec.model_channels > 1:
        op = "nhwc_as_nchw" if spec.layout == "NCHW" else "nchw_as_nhwc"
        a, b = op.upper().split("_AS_")
        out.append(Variant("layout", f"{a} memory read as {b}", spec, input_op=op))
    notes = []
    if framework in ("torch", "keras"):
        out += mode_variants(spec, framework, len(frames), has_dropout, batches)
        if framework == "keras":
            notes.append("batchnorm_batch_stats and dropout_active are simulated for torch "
                         "sources only (Keras: train_mode covers both)")
    else:
        notes.append(f"train_mode, batchnorm_batch_stats and dropout_active need a framework "
                     f"source (torch or Keras); a {framework} source cannot run in training "
                     "mode, so they were not simulated")
    if culprits is not None:
        out = [v for v in out if v.culprit in culprits]
    return out, notes


def mode_variants(spec: PreprocessSpec, framework: str, n_frames: int,
                  has_dropout: bool = True, batches: Sequence[int] | None = None
                  ) -> list[Variant]:
    """The model-mode culprits. BatchNorm on batch statistics gives another prediction at
    every batch size (a frame is normalised together with the others of its device call),
    so it is simulated at each of :data:`MODE_BATCHES` up to the first that holds all the
    frames, alone (``batchnorm_batch_stats``, dropout off) and with dropout
    (``train_mode``); dropout alone does not depend on the batch and runs once, BN in eval.
    One batch size cannot stand for the others: a fashion device at batch 8 is matched by
    the batch-8 run far better than by batch 4 or 16 (docs/doctor/README.md)."""
    sizes = [b for b in MODE_BATCHES if b == 1 or b < n_frames]
    sizes += [b for b in MODE_BATCHES if b >= n_frames > 1][:1]
    if batches is not None:  # the device's batch size, when the user knows it
        sizes = sorted({int(b) for b in batches})
    out = [Variant("train_mode", f"training mode, batch {b}", spec, mode="train_mode",
                   batch=b) for b in sizes]
    if framework == "torch":
        out += [Variant("batchnorm_batch_stats", f"BN on batch statistics, batch {b}, "
                        "dropout off", spec, mode="batchnorm_batch_stats", batch=b)
                for b in sizes]
        if has_dropout:
            out.append(Variant("dropout_active", "dropout on, BN on running statistics",
                               spec, mode="dropout_active"))
    return out


def _policy_variants(spec: PreprocessSpec) -> list[Variant]:
    out = []
    for pol in ("stretch", "shorter_crop", "letterbox"):
        if pol != spec.resize:
            v = replace(spec, resize=pol, resize_shorter=None if pol != "shorter_crop" else
                        spec.resize_shorter, crop_from=None)
            out.append(Variant("resize_policy", f"{pol.replace('_', ' ')} instead of "
                               f"{spec.resize.replace('_', ' ')}", v))
    return out


def _scaled(spec: PreprocessSpec, hw: tuple[int, int]) -> PreprocessSpec:
    """``spec`` at another model input size, its resize geometry scaled alike."""
    fy, fx = hw[0] / spec.size[0], hw[1] / spec.size[1]
    return replace(spec, size=hw,
                   resize_shorter=None if spec.resize_shorter is None
                   else max(1, round(spec.resize_shorter * min(fy, fx))),
                   crop_from=None if spec.crop_from is None
                   else (max(1, round(spec.crop_from[0] * fy)),
                         max(1, round(spec.crop_from[1] * fx))))


def size_variants(spec: PreprocessSpec, frames: Sequence[np.ndarray],
                  model_hw: tuple[int, int] | None = None) -> list[Variant]:
    """Input-size hypotheses: the frames' own size (when they all share one), the model's
    size where the framework reveals it, and the spec's size halved and doubled. A fully
    convolutional model runs at any size, so a wrong one is never a shape error (issue
    25: a 32-pixel digits CNN fed 224-pixel frames ran, at chance)."""
    h, w = spec.size
    cands: list[tuple[tuple[int, int], str]] = []
    if model_hw is not None:
        cands.append((tuple(model_hw), "the model's own input size"))
    shapes = {tuple(f.shape[:2]) for f in frames}
    if len(shapes) == 1:
        cands.append((next(iter(shapes)), "the frames' own size"))
    if min(h, w) >= 16:
        cands.append(((h // 2, w // 2), "half the spec's size"))
    if max(h, w) <= 512:
        cands.append(((h * 2, w * 2), "twice the spec's size"))
    out, seen = [], {(h, w)}
    for hw, why in cands:
        if hw not in seen and min(hw) >= 1:
            seen.add(hw)
            out.append(Variant("input_size", f"size {hw[0]}x{hw[1]} ({why})",
                               _scaled(spec, hw)))
    return out


def spec_hypotheses(spec: PreprocessSpec, frames: Sequence[np.ndarray],
                    model_hw: tuple[int, int] | None = None) -> list[Variant]:
    """Corrected-spec hypotheses, one per mistake the GIVEN spec may contain (see module doc).

    Hypotheses whose preprocessing is exactly the same as another's (e.g. "mean/std on the
    0-255 scale" and "no /255" can describe one and the same affine map) keep only the
    first in priority order.
    """
    c = canonical(spec)
    m, s = _norm(spec)
    hyp: list[Variant] = []
    if max(np.max(np.abs(m)), np.max(s)) > 1.5:  # values only plausible on the 0-255 scale
        hyp.append(Variant("mean_std_pixel_scale", "mean/std divided by 255",
                           replace(c, mean=tuple(m / 255.0), std=tuple(s / 255.0))))
    hyp += [Variant("missing_scaling", "with one more /255", replace(spec, scale=spec.scale
                                                                     / 255.0)),
            Variant("double_scaling", "with one /255 fewer", replace(spec, scale=spec.scale
                                                                     * 255.0))]
    trivial = _same_norm(spec, (0.0,) * len(m), (1.0,) * len(s))
    name = "normalization_missing" if trivial else "mean_std_mismatch"
    for d, mm, ss in _norm_candidates(spec, frames):
        hyp.append(Variant(name, f"{d} mean/std", replace(c, mean=mm, std=ss)))
    if not trivial:
        hyp.append(Variant("mean_std_mismatch", "no mean/std", replace(c, mean=(0.0,),
                                                                      std=(1.0,))))
    if spec.model_channels == 3 and spec.frame_channels == 3:
        swap = {"RGB": "BGR", "BGR": "RGB"}[spec.model_color]
        hyp.append(Variant("channel_order", f"model_color {swap}", replace(spec,
                                                                           model_color=swap)))
    other = "linear" if spec.interpolation == "cubic" else "cubic"
    hyp.append(Variant("resize_interpolation", f"{other} resize",
                       replace(spec, interpolation=other, antialias=False)))
    hyp += _policy_variants(spec)
    hyp += size_variants(spec, frames, model_hw)
    if spec.model_channels > 1:
        lay = "NHWC" if spec.layout == "NCHW" else "NCHW"
        hyp.append(Variant("layout", f"layout {lay}", replace(spec, layout=lay)))
    def key(sp: PreprocessSpec) -> tuple:
        a, b = sp.affine()
        return (sp.model_color, sp.resize, sp.resize_shorter, sp.interpolation, sp.layout,
                sp.size, sp.crop_from, tuple(np.round(a, 9)), tuple(np.round(b, 6)))

    seen = {key(spec)}
    out = []
    for v in hyp:
        if key(v.spec) not in seen:
            seen.add(key(v.spec))
            out.append(v)
    return out


# ---------------------------------------------------------------------- execution
def prepare(variant: Variant, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Model inputs ``[1, ...]`` per frame, as the variant's pipeline prepares them."""
    spec = variant.spec
    out = []
    for f in frames:
        if variant.frame_op == "transpose_hw":
            f = np.ascontiguousarray(np.swapaxes(f, 0, 1))
        elif variant.frame_op in ("nearest", "area"):
            nh, nw = spec.resized_size(*f.shape[:2])
            if (nh, nw) != f.shape[:2]:
                flag = cv2.INTER_NEAREST if variant.frame_op == "nearest" else cv2.INTER_AREA
                f = cv2.resize(f, (nw, nh), interpolation=flag).reshape(nh, nw, -1)
        x = spec.reference(f)
        if variant.input_op:
            # the device wrote the other layout's memory; the model reads it in its own shape
            other = (0, 2, 3, 1) if variant.input_op == "nhwc_as_nchw" else (0, 3, 1, 2)
            x = np.ascontiguousarray(x.transpose(other)).reshape(x.shape)
        out.append(x)
    return out
