"""The baselines edgeinfer is compared with: the raw runtime and the PyTorch eager pipeline.

* raw runtime: the artifact in its runtime exactly as a user calls it without edgeinfer
  (``onnxruntime.InferenceSession.run``, LiteRT's ``frame`` signature runner). This is the
  one deliberate own session in ``check``: it measures what the Predictor adds.
* torch eager: what a user writes without edgeinfer: OpenCV decode, numpy preprocessing
  (:func:`user_preprocess`), the eval-mode module under ``inference_mode``. torch is
  imported only here, lazily. When the source cannot be loaded (torch missing on a lean
  install, a factory that does not import, weights that are not on this machine) the
  baseline is skipped with a :class:`Skipped` reason that the report prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeinfer.check.bench.inputs import BenchArtifact
from edgeinfer.errors import EdgeInferError
from edgeinfer.spec import PreprocessSpec

Runner = Callable[[np.ndarray], np.ndarray]


class Skipped(Exception):  # noqa: N818 - a reason, not an error: it becomes a report note
    """A baseline that cannot run here; ``str()`` is the note for the report."""


def raw_runner(a: BenchArtifact, threads: int) -> Runner:
    """uint8 frames -> probabilities in the bare runtime, opened from the file as its
    examples do (the format was decided by content when the artifact was opened)."""
    if a.format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(a.path), num_threads=threads)
        it.allocate_tensors()  # as every TFLite example does; else the first call allocates
        run = it.get_signature_runner("frame")
        return lambda x: run(frame=x)["probs"]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(a.path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"frame": x})[0]


def raw_runtime_name(a: BenchArtifact) -> str:
    return "litert" if a.format == "tflite" else "onnxruntime"


# ---------------------------------------------------------------------------- torch eager
def pipeline_params(spec: PreprocessSpec) -> dict[str, Any]:
    """The numbers a user would copy from their training code, taken from the spec."""
    return {"color": spec.model_color, "size": list(spec.size), "resize": spec.resize,
            "shorter": spec.shorter, "crop_from": spec.crop_from,
            "interpolation": "area" if spec.antialias else spec.interpolation,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std),
            "layout": spec.layout, "pad": spec.pad_value}


def user_preprocess(data: bytes, p: dict[str, Any]) -> np.ndarray:
    """The preprocessing a user writes by hand for a torch model: OpenCV decode, colour,
    uint8 resize/crop, then normalise in numpy -> float32 [1, C, H, W] (or NHWC).

    ``p`` holds the spec's numbers (:func:`pipeline_params`). Deliberately plain: this is the
    baseline edgeinfer is compared with, not a reimplementation of the artifact's prefix.
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # BGR
    if p["color"] == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif p["color"] == "GRAY":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    th, tw = p["size"]
    h, w = img.shape[:2]
    interp = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[
        p["interpolation"]]
    if p["resize"] == "stretch":
        img = cv2.resize(img, (tw, th), interpolation=interp)
    elif p["resize"] in ("shorter_crop", "stretch_crop"):
        k = p["shorter"] / min(h, w)
        nh, nw = ((max(th, round(h * k)), max(tw, round(w * k))) if p["resize"] == "shorter_crop"
                  else p["crop_from"])
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (nh - th) // 2, (nw - tw) // 2
        img = img[top:top + th, left:left + tw]
    else:  # letterbox
        k = min(th / h, tw / w)
        nh, nw = max(1, round(h * k)), max(1, round(w * k))
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = (th - nh) // 2, (tw - nw) // 2
        img = cv2.copyMakeBorder(img, top, th - nh - top, left, tw - nw - left,
                                 cv2.BORDER_CONSTANT, value=[p["pad"]] * 3)
    x = img.astype(np.float32) * np.float32(p["scale"])
    x = (x - np.asarray(p["mean"], np.float32)) / np.asarray(p["std"], np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if p["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def torch_source(prov: dict[str, Any]) -> tuple[str, str | None]:
    """(source, weights) of the torch model behind an artifact, from its provenance: the
    bundled model's name, or the ``pkg.mod:fn`` / ``file.py:fn`` factory ``convert`` read.

    Raises :class:`Skipped` saying why there is none."""
    if prov.get("framework") != "torch":
        raise Skipped(f"the source is not a torch model (framework: "
                      f"{prov.get('framework') or 'unknown'})")
    ref = prov.get("reference")
    if ref:
        return str(ref), None
    src, w = prov.get("source"), prov.get("weights")
    if not src or ":" not in str(src):
        raise Skipped("the artifact's provenance names no torch factory")
    if w and not Path(w).is_file():
        raise Skipped(f"the weights file {w} named in the provenance is not on this machine")
    return str(src), w


def load_torch_model(source: str, weights: str | None, spec: PreprocessSpec) -> Any:
    """The eval-mode module of ``source`` (a bundled name or a factory) + its weights.

    Loaded by the converter's own source resolver, as ``convert`` loaded it (weights with
    ``weights_only=True, strict=True``). A package in the current folder imports when the
    current folder is on ``sys.path``, as under ``python -m`` and the CLI."""
    from edgeinfer.converter.sources.load import resolve_source

    s = resolve_source(source, spec, weights)
    if s.framework != "torch" or s.module is None:
        raise Skipped(f"{source!r} is not a torch model ({s.framework})")
    return s.module.eval()


def open_torch_baseline(prov: dict[str, Any], spec: PreprocessSpec
                        ) -> tuple[Any, str, str | None]:
    """(eval module, source, weights) of the torch source; :class:`Skipped` with the reason
    when torch is missing or the source cannot be loaded (never a traceback)."""
    source, weights = torch_source(prov)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Skipped("torch is not installed (a lean runtime install); the PyTorch eager "
                      "baseline needs pip install 'edgeinfer[convert]'") from None
    try:
        return load_torch_model(source, weights, spec), source, weights
    except EdgeInferError as e:
        raise Skipped(f"the torch source could not be loaded: {e}") from None
    except ImportError as e:  # the converter's own imports (onnx) on a partial install
        raise Skipped(f"the torch source could not be loaded ({e}); pip install "
                      "'edgeinfer[convert]'") from None


def torch_cases(net: Any, data: bytes, params: dict[str, Any], labels: Sequence[str], top_k: int
                ) -> tuple[dict[str, Callable[[], Any]], int]:
    """The two timed torch cases (model call, encoded image -> top-k) and the top-1."""
    import torch

    xt = torch.from_numpy(user_preprocess(data, params))

    def model() -> Any:
        with torch.inference_mode():
            return net(xt)

    def e2e() -> list[tuple[str, float]]:
        x = torch.from_numpy(user_preprocess(data, params))
        with torch.inference_mode():
            probs = torch.softmax(net(x), -1)[0]
        top = torch.topk(probs, top_k)
        return [(labels[i] if i < len(labels) else str(i), v)
                for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)]

    return {"torch.model": model, "torch.e2e": e2e}, int(np.argmax(model()[0].numpy()))


__all__ = ["Skipped", "load_torch_model", "open_torch_baseline", "pipeline_params",
           "raw_runner", "raw_runtime_name", "torch_cases", "torch_source", "user_preprocess"]
