"""Predictor: an artifact plus input handling, test-time augmentation and top-k.

    from edgeinfer import Predictor

    p = Predictor("fashion.onnx")
    p.predict("shoe.jpg", top_k=3)      # [Prediction(label='Sneaker', index=7, ...), ...]
    p.predict(frame_from_cv2)           # BGR uint8 H x W x 3, any size
    p.predict_batch(["a.jpg", b"...", frame])   # one result or one error per image

The artifact does all the preprocessing (resize, colour, normalisation) inside its graph,
so a frame of any size goes straight into one ``session.run``. The Predictor adds only
input checks (see :func:`edgeinfer.runtime.image.load_image`), the TTA views and top-k,
and copies a frame only when it must (colour conversion, TTA views, stacking a batch).

Thread safety: a Predictor holds no mutable state after construction (its optional field
monitor takes its own lock around every update) and onnxruntime's
``InferenceSession.run`` is thread-safe, so one Predictor may serve several threads at
once. Each call uses the session's intra-op thread pool (``threads``); with many
concurrent callers, fewer intra-op threads per call usually give more throughput.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.data.files import ModelSource
from edgeinfer.errors import ConfigError, EdgeInferError, ModelError, positive_int
from edgeinfer.runtime.backend import Backend
from edgeinfer.runtime.image import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageInput,
    _check_limits,
    _load,
)
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.monitor import Monitor, ReferenceProfile
from edgeinfer.runtime.topk import Prediction, rank
from edgeinfer.runtime.tta import TTAPolicy, average_views, get_policy
from edgeinfer.spec import PreprocessSpec

#: Default number of images per session call in ``predict_batch``.
DEFAULT_BATCH_SIZE = 32
#: ``monitor=True``: frame statistics on one monitored frame in this many
STATS_EVERY = 4
#: Decoded frames ``predict_batch`` holds while grouping them by size.
PENDING_BYTES = 256 * 2**20


BatchItem = list[Prediction] | EdgeInferError


class Predictor:
    """Serve single-image predictions from an edgeinfer ONNX artifact.

    ``threads``: intra-op threads (``None``: the CPUs this process may use, capped at 4).
    ``providers``: ``"cpu"`` (default), ``"cuda"``, ``"tensorrt"`` or a list in order of
    preference; a missing provider raises ``ProviderError`` unless ``allow_fallback``.
    ``tta``: ``None``/``"none"``, ``"hflip"`` or ``"hflip+crops"`` (see
    :mod:`edgeinfer.runtime.tta`). ``monitor=True``: a field monitor on the artifact's
    reference profile watches every prediction (``predictor.monitor.report()``).
    ``max_pixels`` / ``max_bytes``: input limits (see
    :func:`~edgeinfer.runtime.image.load_image`).

    The backend is chosen by the file's content (:func:`~edgeinfer.runtime.loader.open_backend`):
    a TFLite file is served by LiteRT (:mod:`edgeinfer.runtime.tflite_backend`,
    XNNPACK, ``threads`` interpreter threads); ``spec=`` (and ``labels=``) let it serve a
    third-party ``.tflite`` classifier that has no edgeinfer metadata.

    Raises ``ModelError`` for a missing, damaged or non-edgeinfer model file,
    ``ProviderError`` for an unavailable provider and ``ConfigError`` for bad arguments.
    """

    def __init__(
        self,
        path: ModelSource,
        threads: int | None = None,
        providers: str | Sequence[str] | None = None,
        tta: str | None = None,
        allow_fallback: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        trt_fp16: bool = False,
        trt_cache_dir: str | os.PathLike | None = None,
        spec: PreprocessSpec | dict | str | None = None,
        labels: Sequence[str] | None = None,
        monitor: bool | Monitor | None = None,
    ) -> None:
        policy = get_policy(tta)  # cheap argument checks before loading anything
        _check_limits(max_pixels, max_bytes)
        backend = open_backend(path, threads, providers=providers,
                               allow_fallback=allow_fallback, trt_fp16=trt_fp16,
                               trt_cache_dir=trt_cache_dir, spec=spec, labels=labels)
        name = getattr(backend, "source", None) or getattr(backend, "path", "artifact")
        self._setup(backend, policy, max_pixels, max_bytes, str(name))
        self._monitor = self._make_monitor(monitor)

    @classmethod
    def from_backend(
        cls,
        backend: Backend,
        tta: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        source: str = "artifact",
        monitor: bool | Monitor | None = None,
    ) -> Predictor:
        """A Predictor on any :class:`~edgeinfer.runtime.backend.Backend` (TFLite, a wrapper)."""
        policy = get_policy(tta)
        _check_limits(max_pixels, max_bytes)
        self = cls.__new__(cls)
        self._setup(backend, policy, max_pixels, max_bytes, source)
        self._monitor = self._make_monitor(monitor)
        return self

    def _make_monitor(self, monitor: bool | Monitor | None) -> Monitor | None:
        """``True``: a Monitor on the artifact's own reference profile (issue 27)."""
        if monitor is None or monitor is False:
            return None
        if isinstance(monitor, Monitor):
            return monitor
        if monitor is not True:
            raise ConfigError(f"monitor= takes True, False or a Monitor; got {monitor!r}")
        if not self._metadata.monitor:
            raise ConfigError(
                f"{self._source} has no monitor profile (converted before edgeinfer stored "
                "one, or a third-party model): convert it again, or build one from labelled "
                "frames with `edgeinfer monitor ARTIFACT SOURCE --reference DIR`")
        # statistics on one frame in 4: right after a model call the caches are cold and a
        # 640x427 frame's statistics cost ~170 us (docs/monitor/overhead.md); 75 frames of a
        # 300-frame window are plenty for an effect size
        return Monitor(ReferenceProfile.from_dict(self._metadata.monitor), labels=self._labels,
                       stats_every=STATS_EVERY)

    def _setup(self, backend: Backend, policy: TTAPolicy, max_pixels: int, max_bytes: int,
               source: str) -> None:
        meta = ArtifactMetadata.from_props(backend.metadata_props(), source=source)
        spec = meta.spec
        shape = tuple(backend.input_shape)
        c = shape[3] if len(shape) == 4 else None
        if isinstance(c, int) and c != spec.frame_channels:
            raise ModelError(f"{source} takes {c}-channel frames but its spec says "
                             f"frame_color={spec.frame_color}: the artifact is inconsistent")
        labels = meta.labels
        out_shape = getattr(backend, "output_shape", None)
        k = out_shape[-1] if out_shape else None
        if isinstance(k, int):
            if not labels:
                labels = tuple(str(i) for i in range(k))
            elif len(labels) != k:
                raise ModelError(f"{source} outputs {k} classes but its metadata has "
                                 f"{len(labels)} labels: the artifact is inconsistent")
        if not labels:
            raise ModelError(f"{source} has no labels and no fixed class count")
        self._backend = backend
        self._run = backend.run
        self._metadata = meta
        self._spec = spec
        self._labels = labels
        self._num_classes = len(labels)
        self._tta = policy
        self._views = policy.num_views
        self._max_pixels = max_pixels
        self._max_bytes = max_bytes
        self._source = source

    # ------------------------------------------------------------------ properties
    @property
    def spec(self) -> PreprocessSpec:
        return self._spec

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def metadata(self) -> ArtifactMetadata:
        return self._metadata

    @property
    def provider(self) -> str:
        """The execution provider actually running the model, e.g. 'CPUExecutionProvider'."""
        return self._backend.provider

    @property
    def tta(self) -> str:
        return self._tta.name

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def monitor(self) -> Monitor | None:
        """The field monitor fed by every prediction (``monitor=True``), else None."""
        return self._monitor

    # ------------------------------------------------------------------ single image
    def predict_probs(self, image: ImageInput) -> np.ndarray:
        """float32 ``[K]`` class probabilities of one image (averaged over TTA views)."""
        frame = _load(image, self._spec, self._max_pixels, self._max_bytes)
        return self._one(frame)[0]

    def predict(self, image: ImageInput, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most probable classes of one image, most probable first.

        ``image``: a path, encoded bytes or a uint8 array (see ``load_image``). ``top_k``
        above the number of classes returns all of them; equal probabilities are ordered
        by class index. Raises an ``ImageError`` for unusable input.
        """
        k = self._check_top_k(top_k)
        frame = _load(image, self._spec, self._max_pixels, self._max_bytes)
        return rank(self._one(frame)[0], self._labels, k)

    # ------------------------------------------------------------------ batches
    def predict_batch(self, images: Iterable[ImageInput], top_k: int = 5,
                      batch_size: int = DEFAULT_BATCH_SIZE) -> list[BatchItem]:
        """Predictions for several images: one item per image, in input order.

        Each item is either that image's ``list[Prediction]`` (as ``predict`` returns it)
        or the :class:`~edgeinfer.errors.EdgeInferError` instance that refused it (an
        ``ImageError`` for bad input, a ``ModelError`` if inference failed), so one bad
        image never loses the others. Nothing is raised for a bad image; check with
        ``isinstance(item, Exception)``. Bad arguments still raise ``ConfigError``.

        Frames of equal size (after decoding) run together, up to ``batch_size`` images
        per session call (times the TTA views); different sizes run in separate calls.
        An image's result is identical to ``predict``'s for it alone.
        ``images`` may be any iterable (a generator of paths, a list of arrays) or one
        ``N x H x W x C`` uint8 array.
        """
        k = self._check_top_k(top_k)
        positive_int("batch_size", batch_size)
        if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or (
                isinstance(images, np.ndarray) and images.ndim != 4):
            raise ConfigError("predict_batch takes a list of images (or an N x H x W x C "
                              "array); use predict() for a single image")
        results: list[BatchItem | None] = []
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        pending = 0
        # Decoded frames wait for same-size company, but hold at most this many bytes.
        budget = max(3 * self._max_pixels, PENDING_BYTES)
        for i, image in enumerate(images):
            results.append(None)
            try:
                frame = _load(image, self._spec, self._max_pixels, self._max_bytes)
            except EdgeInferError as e:
                results[i] = e
                continue
            group = groups.setdefault(frame.shape, [])
            group.append((i, frame))
            pending += frame.nbytes
            if len(group) >= batch_size:
                self._flush(group, k, results)
                pending -= sum(f.nbytes for _, f in group)
                del groups[frame.shape]
            elif pending > budget:
                for g in groups.values():
                    self._flush(g, k, results)
                groups.clear()
                pending = 0
        for g in groups.values():
            self._flush(g, k, results)
        return results  # type: ignore[return-value]

    def _flush(self, group: list[tuple[int, np.ndarray]], k: int,
               results: list[BatchItem | None]) -> None:
        v = self._views
        first = group[0][1]
        batch = np.empty((len(group) * v, *self._tta.view_shape(first.shape)), np.uint8)
        for j, (_, frame) in enumerate(group):
            self._tta.views(frame, out=batch[j * v:(j + 1) * v])
        try:
            probs = self._probs(batch)
        except EdgeInferError as e:
            for i, _ in group:
                results[i] = e
            return
        if self._monitor is not None:
            keep = [j for j in range(len(group)) if self._monitor.wants()]
            self._monitor.update(probs[keep], [group[j][1] for j in keep])
        for j, (i, _) in enumerate(group):
            results[i] = rank(probs[j], self._labels, k)

    # ------------------------------------------------------------------ internals
    def _one(self, frame: np.ndarray) -> np.ndarray:
        """``[1, K]`` for one decoded frame; a monitored call also feeds the monitor (with
        the artifact's feature moments, from the same session call, where it has them)."""
        views = self._tta.views(frame)
        m = self._monitor
        if m is None or not m.wants():
            return self._probs(views)
        if self._views == 1 and m.profile.features and m.takes_stats() and getattr(
                self._backend, "has_moments", False):
            probs, feats = self._backend.run_moments(views)
            probs = self._probs(views, probs)
            m.update(probs, (frame,), features=feats)
            return probs
        probs = self._probs(views)
        m.update(probs, (frame,))
        return probs

    def _probs(self, views: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
        """Run n frames' views ``[n * views, h, w, C]`` in one session call -> ``[n, K]``
        (``probs``: that call's output when it was already made)."""
        probs = self._run(views) if probs is None else probs
        if probs.shape != (views.shape[0], self._num_classes):
            raise ModelError(f"{self._source} returned probabilities of shape {probs.shape} for "
                             f"{views.shape[0]} frames; expected (N, {self._num_classes})")
        return average_views(probs, self._views)

    @staticmethod
    def _check_top_k(top_k: int) -> int:
        return positive_int("top_k", top_k)

    def __repr__(self) -> str:
        return (f"Predictor({self._source!r}, classes={self._num_classes}, "
                f"frame={self._spec.frame_color}, tta={self._tta.name!r}, "
                f"provider={self.provider!r})")
