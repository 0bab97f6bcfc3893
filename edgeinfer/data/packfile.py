"""Parity packs: the framework's answers on real frames, in one file a device can check against.

Why: a Raspberry Pi or a Jetson has the lean runtime, not torch or TensorFlow, so the
framework half of a parity check must be computed on the workstation and carried over.
A pack holds everything the device needs to judge an artifact without the framework:

Format (``edgeinfer-parity-pack``, version 1) - a zip archive (deflate) of:

- ``manifest.json``: ``format``, ``version``, ``created``, ``edgeinfer_version``, ``spec``
  (the PreprocessSpec the frames and references were made with), ``labels`` (the model's
  class names, in output order), ``source`` (the framework source's provenance: framework,
  version, source, weights sha256), ``data`` (name, n, ids, labelled, class_names),
  ``tolerances`` (the registry entries that apply, ``"format/dtype"`` -> max_abs, min_top1,
  reason, and ``over`` where max_abs bounds the 99th-percentile frame), ``members``
  (name -> sha256, dtype, shape of every array) and ``encoded``.
- ``frames.npy``: uint8, every frame flattened and concatenated (lossless, any sizes);
  ``frame_shapes.npy``: int64 ``[N, 3]`` (H, W, C) to cut them apart again.
- ``reference.npy``: float32 ``[N, K]``, the framework's softmax probabilities (float32
  rounding, <= 6e-8, is far below every tolerance).
- ``labels.npy`` (optional): int64 ``[N]`` ground-truth class indices.
- ``artifact_reference.npy`` (optional, ``pack --artifact``): float32 ``[N, K]``, the
  framework fed ONE artifact's own prefix output (the pixels its baked preprocessing hands
  the model) instead of the reference pixels; the manifest's ``artifact`` (name, sha256,
  format, dtype) says which file. ``verify`` of that very file judges its model stage
  against these, as convert's stage gate does, so a network whose outputs move with the
  rounding of the pixels is not failed for it on the device.
- a detector's pack (manifest ``task = "detect"``, ``detection``: its fit, decoder and
  NMS settings) holds the framework's detections per frame instead of ``reference.npy``
  (``det_*.npy``, :mod:`edgeinfer.data.packdetect`).
- ``encoded.npy`` + ``encoded_offsets.npy`` (optional): the original encoded image files
  (JPEG/PNG bytes) concatenated, with ``N + 1`` offsets, so the device's own decoder can be
  checked against the frames the workstation decoded.

Only numpy and the standard library: packs are read on the lean install. The manifest is
checked against one schema and every member's .npy header against it before anything is
allocated (:mod:`edgeinfer.data.packschema`); members are read once from the zip stream,
with their sha256; a damaged, truncated, foreign or over-large file is one ``ModelError``
line naming the field or member (issue 31).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgeinfer.data.files import display, reason
from edgeinfer.data.packdetect import Detections, check_members, detection_arrays, read_detections
from edgeinfer.data.packschema import (
    MAX_UNPACKED_BYTES,
    PACK_FORMAT,
    PACK_VERSION,
    REQUIRED,
    REQUIRED_DETECT,
    Manifest,
    ManifestError,
    check_manifest,
    read_array,
    read_blobs,
)
from edgeinfer.errors import ConfigError, ModelError, SpecError, one_line
from edgeinfer.spec import PreprocessSpec

MANIFEST = "manifest.json"
#: A pack file above this is refused before it is read (200 photos are ~100 MB).
MAX_PACK_BYTES = 2 * 2**30
#: The manifest is parsed whole; 10,000 frame ids are ~200 kB of it.
MAX_MANIFEST_BYTES = 16 * 2**20


@dataclass
class ParityPack:
    """Frames, the framework's reference probabilities and what they were made with."""

    spec: PreprocessSpec
    labels: tuple[str, ...]
    frames: list[np.ndarray]
    reference: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    data_name: str = "frames"
    ids: list[str] | None = None
    truth: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    encoded: list[bytes] | None = None
    tolerances: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    edgeinfer_version: str = ""
    artifact: dict[str, Any] | None = None  # name, sha256, format, dtype of the file below
    artifact_reference: np.ndarray | None = None  # framework on that artifact's pixels
    task: str = "classify"  # "detect": ``detections`` instead of ``reference`` ([N, 0])
    detection: dict[str, Any] | None = None  # the detector's DetectionSpec, as a dict
    detections: list[Detections] | None = None  # the framework's, per frame

    @property
    def n(self) -> int:
        return len(self.frames)

    def manifest(self) -> dict[str, Any]:
        return {
            "format": PACK_FORMAT, "version": PACK_VERSION, "created": self.created,
            "edgeinfer_version": self.edgeinfer_version, "spec": self.spec.to_dict(),
            "labels": list(self.labels), "source": self.source,
            "data": {"name": self.data_name, "n": self.n, "ids": self.ids,
                     "labelled": self.truth is not None,
                     "class_names": list(self.class_names) if self.class_names else None},
            "tolerances": self.tolerances, "encoded": self.encoded is not None,
            "artifact": self.artifact,
        } | ({"task": self.task, "detection": self.detection} if self.task != "classify"
             else {})


def make_pack(spec: PreprocessSpec, labels: Sequence[str], frames: Sequence[np.ndarray],
              reference: np.ndarray, *, source: dict[str, Any] | None = None,
              data_name: str = "frames", ids: Sequence[str] | None = None,
              truth: np.ndarray | None = None, class_names: Sequence[str] | None = None,
              encoded: Sequence[bytes] | None = None,
              tolerances: dict[str, dict[str, Any]] | None = None,
              detection: dict[str, Any] | None = None,
              detections: Sequence[Detections] | None = None) -> ParityPack:
    """A pack in memory; checks that everything has one entry per frame.

    ``tolerances``: the registry entries stored for the device (the caller reads them from
    :func:`edgeinfer.parity.tolerances.pack_entries`; the file format does not judge).
    A detector's pack: ``detections`` (one entry per frame) and ``detection``, with
    ``reference`` None."""
    from edgeinfer import __version__

    n = len(frames)
    if detections is not None and len(detections) != n:
        raise ValueError(f"detections has {len(detections)} entries for {n} frames")
    ref = np.asarray(reference) if detections is None else np.zeros((n, 0), np.float32)
    if ref.ndim != 2 or ref.shape[0] != n:
        raise ValueError(f"reference probabilities {ref.shape} do not match {n} frames")
    if labels and detections is None and ref.shape[1] != len(labels):
        raise ValueError(f"{len(labels)} labels for {ref.shape[1]} outputs")
    for what, seq in (("ids", ids), ("truth", truth), ("encoded", encoded)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{what} has {len(seq)} entries for {n} frames")
    return ParityPack(
        spec=spec, labels=tuple(labels), frames=[_frame(f) for f in frames],
        reference=ref.astype(np.float32), source=dict(source or {}), data_name=data_name,
        ids=list(ids) if ids is not None else None,
        truth=None if truth is None else np.asarray(truth, np.int64),
        class_names=tuple(class_names) if class_names else None,
        encoded=[bytes(b) for b in encoded] if encoded is not None else None,
        tolerances=dict(tolerances or {}),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        edgeinfer_version=__version__, task="classify" if detections is None else "detect",
        detection=dict(detection) if detection is not None else None,
        detections=list(detections) if detections is not None else None)


def _frame(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f)
    if f.dtype != np.uint8 or f.ndim not in (2, 3):
        raise ValueError(f"frames must be uint8 H x W [x C], got {f.dtype} {f.shape}")
    return np.ascontiguousarray(f if f.ndim == 3 else f[..., None])


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def write_pack(pack: ParityPack, path: str | Path) -> Path:
    """Write ``pack`` as one zip file (written to a temporary name, then renamed)."""
    arrays: dict[str, np.ndarray] = {
        "frames.npy": (np.concatenate([f.ravel() for f in pack.frames]) if pack.frames
                       else np.zeros(0, np.uint8)),
        "frame_shapes.npy": np.array([f.shape for f in pack.frames], np.int64).reshape(-1, 3),
    } | ({"reference.npy": pack.reference.astype(np.float32)} if pack.detections is None
         else detection_arrays(pack.detections))
    if pack.truth is not None:
        arrays["labels.npy"] = pack.truth.astype(np.int64)
    if pack.artifact_reference is not None:
        arrays["artifact_reference.npy"] = pack.artifact_reference.astype(np.float32)
    if pack.encoded is not None:
        arrays["encoded.npy"] = np.frombuffer(b"".join(pack.encoded), np.uint8)
        arrays["encoded_offsets.npy"] = np.cumsum([0] + [len(b) for b in pack.encoded],
                                                  dtype=np.int64)
    total = sum(a.nbytes for a in arrays.values())
    if total > MAX_UNPACKED_BYTES:
        biggest = max((f.shape[0] * f.shape[1] for f in pack.frames), default=0)
        raise ConfigError(f"this pack would unpack to {total / 2**20:.0f} MiB, above the "
                          f"{MAX_UNPACKED_BYTES / 2**20:.0f} MiB a device reads ({pack.n} "
                          f"frames, the largest {biggest / 1e6:.1f} MP): pass --max-side "
                          "1600 (or less) or fewer frames (--limit)")
    blobs = {k: _npy(v) for k, v in arrays.items()}
    manifest = pack.manifest() | {"members": {
        k: {"sha256": hashlib.sha256(blobs[k]).hexdigest(), "dtype": str(v.dtype),
            "shape": list(v.shape)} for k, v in arrays.items()}}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for k, b in blobs.items():
            z.writestr(k, b)
    tmp.replace(out)
    return out


def read_pack(path: str | Path) -> ParityPack:
    """Read and check a pack; anything damaged, truncated or foreign is a ``ModelError``.

    Nothing is allocated before it is checked: the manifest (at most
    :data:`MAX_MANIFEST_BYTES`) against its schema, then each member's .npy header against
    the manifest and :data:`MAX_UNPACKED_BYTES`; then each member is read once from the zip
    stream (see :mod:`edgeinfer.data.packschema`)."""
    name = display(path)

    def bad(why: str) -> ModelError:
        return ModelError(f"parity pack {name} {why}; make it again with `edgeinfer pack`")

    with _open_regular(path, name) as f:
        try:
            z = zipfile.ZipFile(f)
            members = {i.filename: i for i in z.infolist()}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise bad("is not an edgeinfer parity pack (not a zip archive, or truncated)"
                      ) from None
        if MANIFEST not in members:
            raise bad(f"is not an edgeinfer parity pack (no {MANIFEST})")
        if members[MANIFEST].file_size > MAX_MANIFEST_BYTES:
            raise bad(f"has a {members[MANIFEST].file_size}-byte manifest (the limit is "
                      f"{MAX_MANIFEST_BYTES})")
        try:
            m = json.loads(z.read(MANIFEST))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RecursionError,
                zlib.error) as e:
            raise bad(f"has a damaged manifest ({_kind(e)})") from None
        if not isinstance(m, dict) or m.get("format") != PACK_FORMAT:
            raise bad(f"is not an edgeinfer parity pack (format {_get(m, 'format')!r})")
        if m.get("version") != PACK_VERSION or isinstance(m.get("version"), bool):
            raise ModelError(f"parity pack {name} has version {m.get('version')!r}; this "
                             f"edgeinfer reads version {PACK_VERSION}: make it again or upgrade")
        try:
            man = check_manifest(m)
            spec = PreprocessSpec.from_dict(man.spec)
        except (ManifestError, SpecError) as e:
            raise bad(f"has a damaged manifest ({one_line(e, 200)})") from None
        for key in [*(REQUIRED_DETECT if man.task == "detect" else REQUIRED), *man.members]:
            if key not in man.members or key not in members:
                raise bad(f"lacks {key}")
        try:
            _consistent(man)
        except ValueError as e:
            raise bad(f"is inconsistent ({one_line(e, 200)})") from None
        try:
            return _assemble(z, man, spec)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise bad(f"is damaged ({_kind(e)})") from None
        except ValueError as e:
            raise bad(f"is damaged ({one_line(e, 200)})") from None


def _open_regular(path: str | Path, name: str) -> BinaryIO:
    """The pack, opened without blocking (a FIFO is refused, not waited on) and read
    lazily: the zip is read member by member, never as one bytes object."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelError(f"parity pack {name} does not exist: check the path") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read parity pack {name}: {reason(e)}") from None
    st = os.fstat(fd)
    kind = ("a directory" if stat.S_ISDIR(st.st_mode) else None if stat.S_ISREG(st.st_mode)
            else "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "not a regular file")
    if kind or st.st_size > MAX_PACK_BYTES:
        os.close(fd)
        raise ModelError(f"parity pack {name} is {kind}, not a file" if kind else
                         f"parity pack {name} is {st.st_size} bytes, above the limit of "
                         f"{MAX_PACK_BYTES}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _kind(e: BaseException) -> str:
    """An exception's kind for a message: zlib's is called just 'error'."""
    return "corrupt deflate data" if isinstance(e, zlib.error) else type(e).__name__


def _get(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else None


def _consistent(man: Manifest) -> None:
    """Every member's declared shape against the others, before any array is read."""
    ms = man.members
    n = ms["frame_shapes.npy"].shape[0]
    if ms["frame_shapes.npy"].shape[1] != 3:
        raise ValueError("frame shapes must be [N, 3]")
    if n == 0:
        raise ValueError("it holds no frames")
    check_members(ms, n, man.task)
    ref = ms["reference.npy"].shape if "reference.npy" in ms else (n, 0)
    if man.task == "detect" and "reference.npy" in ms:
        raise ValueError("a detector pack holds detections, not reference.npy")
    if man.task != "detect" and (ref[0] != n or ref[1] < 1):
        raise ValueError(f"reference {list(ref)} for {n} frames")
    if man.task != "detect" and man.labels and len(man.labels) != ref[1]:
        raise ValueError(f"{len(man.labels)} labels for {ref[1]} reference outputs")
    for what, count in (("data.n", man.n), ("ids", None if man.ids is None else len(man.ids))):
        if count is not None and count != n:
            raise ValueError(f"{what} is {count} for {n} frames")
    if "labels.npy" in ms and ms["labels.npy"].shape != (n,):
        raise ValueError(f"ground-truth labels {list(ms['labels.npy'].shape)} for {n} frames")
    if man.labelled is not None and man.labelled != ("labels.npy" in ms):
        raise ValueError("data.labelled does not match labels.npy")
    if ("encoded.npy" in ms) != ("encoded_offsets.npy" in ms) or (
            "encoded_offsets.npy" in ms and ms["encoded_offsets.npy"].shape != (n + 1,)):
        raise ValueError("encoded offsets do not match the frames")
    if man.encoded is not None and man.encoded != ("encoded.npy" in ms):
        raise ValueError("'encoded' does not match encoded.npy")
    art = ms.get("artifact_reference.npy")
    if (art is None) != (man.artifact is None) or (art is not None and art.shape != ref):
        raise ValueError("the artifact reference does not match the reference or its entry")


def _assemble(z: zipfile.ZipFile, man: Manifest, spec: PreprocessSpec) -> ParityPack:
    """The arrays, small ones first so the big ones are checked against them before they
    are read; NaN/inf or out-of-range values are the pack's damage, named by member."""
    ms = man.members
    shapes = read_array(z, "frame_shapes.npy", ms["frame_shapes.npy"])
    sizes = [math.prod(int(v) for v in s) for s in shapes]
    if (shapes < 1).any() or sum(sizes) != ms["frames.npy"].shape[0]:
        raise ValueError(f"frame shapes account for {sum(sizes)} bytes, frames.npy holds "
                         f"{ms['frames.npy'].shape[0]}")
    k = ms["reference.npy"].shape[1] if "reference.npy" in ms else len(man.labels)
    truth = None
    if "labels.npy" in ms:
        truth = read_array(z, "labels.npy", ms["labels.npy"])
        if truth.min() < 0 or truth.max() >= k:
            raise ValueError(f"labels.npy holds class indices outside [0, {k})")
    refs = {}
    for key in ("reference.npy", "artifact_reference.npy"):
        if key in ms:
            r = read_array(z, key, ms[key])
            if not np.isfinite(r).all() or r.min() < 0 or r.max() > 1 + 1e-5:
                raise ValueError(f"{key} holds NaN, inf or values outside [0, 1]: not "
                                 "probabilities")
            refs[key] = r.astype(np.float64)
    dets = read_detections(z, ms, len(man.labels)) if man.task == "detect" else None
    encoded = None
    if "encoded.npy" in ms:
        offsets = read_array(z, "encoded_offsets.npy", ms["encoded_offsets.npy"])
        encoded = read_blobs(z, "encoded.npy", ms["encoded.npy"], offsets)
    flat = read_array(z, "frames.npy", ms["frames.npy"])
    ends = np.cumsum(sizes).tolist()
    frames = [flat[e - s:e].reshape(tuple(int(v) for v in sh))
              for e, s, sh in zip(ends, sizes, shapes, strict=True)]
    return ParityPack(
        spec=spec, labels=man.labels, frames=frames,
        reference=refs.get("reference.npy", np.zeros((len(frames), 0))),
        source=man.source, data_name=man.data_name, ids=man.ids, truth=truth,
        class_names=man.class_names, encoded=encoded, tolerances=man.tolerances,
        created=man.created, edgeinfer_version=man.edgeinfer_version, artifact=man.artifact,
        artifact_reference=refs.get("artifact_reference.npy"), task=man.task,
        detection=man.detection, detections=dets)
