"""The models a server holds: one Predictor per artifact, named by the file's stem.

A served model turns a parsed request into frames (decoding each image by the runtime's
own rules, so a JPEG served over HTTP gives exactly the probabilities ``Predictor.predict``
gives in process) and a stack of equal-size frames into probabilities, with the
Predictor's TTA views. It also answers the protocol's metadata and Triton-style config.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import INPUT_NAME, OUTPUT_NAME, TFLITE_IDENTIFIER
from edgeinfer.data.files import load_model_bytes
from edgeinfer.errors import ConfigError, ImageTooLargeError, ModelError
from edgeinfer.runtime.detect import is_detector
from edgeinfer.runtime.image import load_image
from edgeinfer.runtime.image_probe import probe
from edgeinfer.runtime.monitor import Monitor, ReferenceProfile
from edgeinfer.runtime.predictor import Predictor
from edgeinfer.runtime.topk import rank
from edgeinfer.runtime.tta import average_views, get_policy
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.limits import Charge
from edgeinfer.serve.protocol import InferRequest, encode_infer_response, parse_infer

VERSION = "1"


class Abandoned(Exception):
    """The request timed out while its job was waiting or running: stop working on it."""


def check_abandoned(flag: threading.Event | None) -> None:
    if flag is not None and flag.is_set():
        raise Abandoned()
PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}


class ServedModel:
    """One artifact behind the protocol: metadata, frame preparation, batched inference."""

    def __init__(self, name: str, predictor: Predictor, fmt: str, tta: str | None = None,
                 monitor: bool = True) -> None:
        self.name = name
        self.version = VERSION
        self.predictor = predictor
        self.platform = PLATFORMS.get(fmt, fmt)
        self.spec = predictor.spec
        self.labels = predictor.labels
        self._policy = get_policy(tta)
        self._views = self._policy.num_views
        self._run = predictor.backend.run
        self._k = len(self.labels)
        prof = predictor.metadata.monitor
        #: the field monitor fed by every inference (None: no profile, or --no-monitor)
        self.monitor: Monitor | None = (
            Monitor(ReferenceProfile.from_dict(prof), labels=self.labels)
            if monitor and prof else None)
        # the artifact's feature moments come from the same session call (drift['features'])
        self._moments = (predictor.backend.run_moments if self.monitor is not None
                         and self._views == 1 and self.monitor.profile.features
                         and getattr(predictor.backend, "has_moments", False) else None)

    # ------------------------------------------------------------------ inference
    def infer(self, frames: np.ndarray) -> np.ndarray:
        """float32 ``[n, K]`` for a stack of equal-size frames ``[n, H, W, C]``.

        Runs the TTA views of all n frames in one backend call; a frame's result is
        bit-identical to ``Predictor.predict_probs`` on it alone (the runtime guarantees
        that a frame's probabilities do not depend on its batch).
        """
        v = self._views
        if v == 1:
            batch = frames
        else:
            n = frames.shape[0]
            batch = np.empty((n * v, *self._policy.view_shape(frames.shape[1:])), np.uint8)
            for j in range(n):
                self._policy.views(frames[j], out=batch[j * v:(j + 1) * v])
        feats = None
        if self._moments is not None:  # shrinks onnxruntime's arena after a big batch too
            probs, feats = self._moments(batch)
        else:
            probs = self._run(batch)
        if probs.shape != (batch.shape[0], self._k):
            raise ModelError(f"{self.name} returned probabilities of shape {probs.shape} for "
                             f"{batch.shape[0]} frames; expected (N, {self._k})")
        out = average_views(probs, v)
        if self.monitor is not None:
            self.monitor.update(out, frames, features=feats)
        return out

    def cost(self, h: int, w: int) -> tuple[int, int]:
        """(pixels computed, bytes held) for one h x w frame: the frame and its TTA views.

        Why views count: ``hflip+crops`` turns a frame into 10 views of 7/8 size (7.7x its
        pixels), all resized inside the model in one call; a budget on frame pixels alone
        let one 25 MP request cost ~5 GB.
        """
        c = self.spec.frame_channels
        if self._views == 1:
            return h * w, h * w * c
        vh, vw, _ = self._policy.view_shape((h, w, c))
        computed = self._views * vh * vw
        return computed, h * w * c + computed * c

    def frames(self, req: InferRequest, cfg: ServeConfig,
               abandoned: threading.Event | None = None, charge: Charge | None = None
               ) -> list[np.ndarray]:
        """The request's images as frames, refusing oversize input before decoding it.

        The pixel budget (``max_pixels``) is charged for the whole request — all its frames
        times their TTA views — from the image headers (each probed once) before anything is
        decoded; the bytes the frames will hold are charged to the server's in-flight
        budget (``charge``; 503 when it is spent). ``abandoned`` (set when the request
        timed out) stops decoding between images, so a request nobody waits for any more
        frees its worker thread early.
        """
        spec, budget = self.spec, cfg.max_pixels
        tta = f" with {self._policy.name} TTA ({self._views} views per frame)" \
            if self._views > 1 else ""
        if req.images is not None:
            total, held, headers = 0, 0, []
            for i, data in enumerate(req.images):
                header = probe(data, f"image {i}")  # header only: no pixels allocated yet
                computed, nbytes = self.cost(header[1], header[2])
                total += computed
                held += nbytes
                if total > budget:
                    raise ImageTooLargeError(
                        f"the request's images add up to more than {budget / 1e6:g} MP to "
                        f"compute{tta} (image {i} is {header[2]}x{header[1]}): send fewer or "
                        "smaller images per request")
                headers.append(header)
            if charge is not None:
                charge.add(held, "decoding the request's images")
            out = []
            for d, header in zip(req.images, headers, strict=True):
                check_abandoned(abandoned)
                out.append(load_image(d, spec, budget, cfg.max_body_bytes, header=header))
            return out
        t = req.tensor
        n, h, w = t.shape[:3]
        computed, nbytes = self.cost(h, w)
        if n * computed > budget:
            raise ImageTooLargeError(f"the frame tensor holds {n} x {w}x{h} pixels, "
                                     f"{n * computed / 1e6:.1f} MP to compute{tta}, above the "
                                     f"limit of {budget / 1e6:g} MP per request")
        if charge is not None:
            charge.add(n * nbytes, "the request's frames")
        check_abandoned(abandoned)
        return [load_image(t[i], spec, budget) for i in range(n)]

    # ------------------------------------------------------------------ protocol
    def parse(self, body: bytes, header_length: str | None, cfg: ServeConfig) -> InferRequest:
        return parse_infer(body, header_length, INPUT_NAME, OUTPUT_NAME, cfg.max_images,
                           cfg.max_json_bytes)

    def encode(self, req: InferRequest, probs: np.ndarray) -> tuple[bytes, dict[str, str]]:
        return encode_infer_response(self.name, self.version, req, probs, self.labels)

    def simple(self, probs: np.ndarray, top_k: int) -> dict[str, Any]:
        """``/predict``'s JSON for one image's probabilities (a detector: its boxes,
        serve/detect.py)."""
        return {"predictions": [{"label": p.label, "index": p.index,
                                 "probability": p.probability}
                                for p in rank(probs, self.labels, top_k)]}

    # ------------------------------------------------------------------ descriptions
    def metadata(self) -> dict[str, Any]:
        """The protocol's model metadata response."""
        c = self.spec.frame_channels
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, -1, -1, c]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, self._k]}],
            "parameters": self.certification(),
        }

    def certification(self) -> dict[str, Any]:
        """The parity verdict convert stored (parity.certify's word, never re-judged here:
        serve imports no parity code), with what it was measured on."""
        meta = self.predictor.metadata
        par = meta.parity if meta is not None else {}
        word = par.get("verdict") or ("unknown (no verdict stored)" if par
                                      else "unknown (no edgeinfer metadata)")
        return {"certification": word, "parity_frames": par.get("n"),
                "parity_data": par.get("data"),
                "top1_agreement": par.get("top1_agreement"),
                "judged_by": (par.get("int8_target") or {}).get("describe")
                or (f">= {par['tolerance_min_top1']:.0%} top-1 agreement"
                    if isinstance(par.get("tolerance_min_top1"), (int, float)) else None)}

    def config(self, max_batch: int) -> dict[str, Any]:
        """A Triton-style model configuration (what ``GET .../config`` returns in Triton)."""
        c = self.spec.frame_channels
        return {
            "name": self.name,
            "platform": self.platform,
            "max_batch_size": max_batch,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_UINT8", "dims": [-1, -1, c],
                       "format": "FORMAT_NHWC"}],
            "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [self._k]}],
            "parameters": {
                "edgeinfer.frame_color": {"string_value": self.spec.frame_color},
                "edgeinfer.spec": {"string_value": self.spec.to_json()},
                "edgeinfer.tta": {"string_value": self._policy.name},
            },
            "labels": list(self.labels),
        }


class ModelSet:
    """The served models by name (an artifact's file stem), loaded once at start-up."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self._models: dict[str, ServedModel] = {}
        for m in models:
            if m.name in self._models:
                raise ConfigError(f"two artifacts would both be served as {m.name!r}: rename "
                                  "one (models are named by their file stem)")
            self._models[m.name] = m

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike], cfg: ServeConfig) -> ModelSet:
        """One Predictor per artifact. A TFLite artifact gets one LiteRT interpreter per
        worker (an interpreter is not thread-safe: with one, ``--workers N`` took turns);
        an onnxruntime session is thread-safe and shared by the workers."""
        if not paths:
            raise ConfigError("give at least one artifact to serve")
        models = []
        for p in paths:
            if is_detector(p):  # blazeface:VARIANT: boxes out (serve/detect.py)
                from edgeinfer.serve.detect import open_served

                models.append(open_served(str(p), cfg))
                continue
            data, name = load_model_bytes(p)
            fmt = "tflite" if bytes(data[4:8]) == TFLITE_IDENTIFIER else "onnx"  # by content
            if fmt == "tflite":
                from edgeinfer.runtime.tflite_backend import TFLiteBackend

                if cfg.providers not in (None, "cpu"):
                    raise ConfigError(f"{name} is a TFLite model: it runs on the CPU with "
                                      "LiteRT; --provider is for ONNX artifacts")
                backend = TFLiteBackend(data, threads=cfg.threads, pool_size=cfg.workers,
                                        source=name)
                pred = Predictor.from_backend(backend, max_pixels=cfg.max_pixels,
                                              max_bytes=cfg.max_body_bytes, source=name)
            else:
                pred = Predictor(p, threads=cfg.threads, providers=cfg.providers,
                                 allow_fallback=cfg.allow_fallback, max_pixels=cfg.max_pixels,
                                 max_bytes=cfg.max_body_bytes)
            models.append(ServedModel(Path(p).stem, pred, fmt, cfg.tta, cfg.monitor))
        return cls(models)

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)
