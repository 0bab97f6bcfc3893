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
  reason), ``members`` (name -> sha256, dtype, shape of every array) and ``encoded``.
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
- ``encoded.npy`` + ``encoded_offsets.npy`` (optional): the original encoded image files
  (JPEG/PNG bytes) concatenated, with ``N + 1`` offsets, so the device's own decoder can be
  checked against the frames the workstation decoded.

Only numpy and the standard library: packs are read on the lean install. Arrays are read
with ``allow_pickle=False``; every member's sha256 is checked; a damaged, truncated or
foreign file is one ``ModelError`` line.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.data.files import display, read_regular
from edgeinfer.errors import ModelError
from edgeinfer.spec import PreprocessSpec

PACK_FORMAT = "edgeinfer-parity-pack"
PACK_VERSION = 1
MANIFEST = "manifest.json"
#: A pack above this is refused before it is read (200 photos are ~100 MB).
MAX_PACK_BYTES = 2 * 2**30
#: Uncompressed members above this are refused (a zip bomb cannot allocate gigabytes).
MAX_MEMBER_BYTES = 4 * 2**30
REQUIRED = ("frames.npy", "frame_shapes.npy", "reference.npy")


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
        }


def make_pack(spec: PreprocessSpec, labels: Sequence[str], frames: Sequence[np.ndarray],
              reference: np.ndarray, *, source: dict[str, Any] | None = None,
              data_name: str = "frames", ids: Sequence[str] | None = None,
              truth: np.ndarray | None = None, class_names: Sequence[str] | None = None,
              encoded: Sequence[bytes] | None = None,
              tolerances: dict[str, dict[str, Any]] | None = None) -> ParityPack:
    """A pack in memory; checks that everything has one entry per frame.

    ``tolerances``: the registry entries stored for the device (the caller reads them from
    :func:`edgeinfer.parity.tolerances.pack_entries`; the file format does not judge)."""
    from edgeinfer import __version__

    n = len(frames)
    ref = np.asarray(reference)
    if ref.ndim != 2 or ref.shape[0] != n:
        raise ValueError(f"reference probabilities {ref.shape} do not match {n} frames")
    if labels and ref.shape[1] != len(labels):
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
        edgeinfer_version=__version__)


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
        "reference.npy": pack.reference.astype(np.float32),
    }
    if pack.truth is not None:
        arrays["labels.npy"] = pack.truth.astype(np.int64)
    if pack.artifact_reference is not None:
        arrays["artifact_reference.npy"] = pack.artifact_reference.astype(np.float32)
    if pack.encoded is not None:
        arrays["encoded.npy"] = np.frombuffer(b"".join(pack.encoded), np.uint8)
        arrays["encoded_offsets.npy"] = np.cumsum([0] + [len(b) for b in pack.encoded],
                                                  dtype=np.int64)
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
    """Read and check a pack; anything damaged, truncated or foreign is a ``ModelError``."""
    name = display(path)
    data = read_regular(path, "parity pack", ModelError, MAX_PACK_BYTES)

    def bad(why: str) -> ModelError:
        return ModelError(f"parity pack {name} {why}; make it again with `edgeinfer pack`")

    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        members = {i.filename: i for i in z.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise bad("is not an edgeinfer parity pack (not a zip archive, or truncated)") from None
    if MANIFEST not in members:
        raise bad(f"is not an edgeinfer parity pack (no {MANIFEST})")
    if sum(i.file_size for i in members.values()) > MAX_MEMBER_BYTES:
        raise bad(f"unpacks to more than {MAX_MEMBER_BYTES} bytes")
    try:
        m = json.loads(z.read(MANIFEST))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise bad(f"has a damaged manifest ({type(e).__name__})") from None
    if not isinstance(m, dict) or m.get("format") != PACK_FORMAT:
        raise bad(f"is not an edgeinfer parity pack (format {_get(m, 'format')!r})")
    if m.get("version") != PACK_VERSION:
        raise ModelError(f"parity pack {name} has version {m.get('version')!r}; this "
                         f"edgeinfer reads version {PACK_VERSION}: make it again or upgrade")
    declared = m.get("members") if isinstance(m.get("members"), dict) else {}
    arrays: dict[str, np.ndarray] = {}
    for key in declared:
        if key not in members:
            raise bad(f"lacks {key}")
        try:
            blob = z.read(key)
            if hashlib.sha256(blob).hexdigest() != declared[key].get("sha256"):
                raise bad(f"is damaged ({key} does not match its sha256)")
            arrays[key] = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, AttributeError) as e:
            raise bad(f"is damaged ({key}: {type(e).__name__})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    try:
        return _assemble(m, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise bad(f"is inconsistent ({type(e).__name__}: {str(e)[:120]})") from None


def _get(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else None


def _assemble(m: dict[str, Any], arrays: dict[str, np.ndarray]) -> ParityPack:
    flat, shapes, ref = arrays["frames.npy"], arrays["frame_shapes.npy"], arrays["reference.npy"]
    if flat.dtype != np.uint8 or shapes.ndim != 2 or shapes.shape[1] != 3:
        raise ValueError("frames must be uint8 with [N, 3] shapes")
    sizes = shapes.prod(axis=1)
    if (shapes < 1).any() or int(sizes.sum()) != flat.size:
        raise ValueError(f"frame shapes account for {int(sizes.sum())} bytes, "
                         f"frames hold {flat.size}")
    ends = np.cumsum(sizes)
    frames = [flat[e - s:e].reshape(tuple(int(v) for v in sh))
              for e, s, sh in zip(ends, sizes, shapes, strict=True)]
    n = len(frames)
    if ref.ndim != 2 or ref.shape[0] != n or not np.issubdtype(ref.dtype, np.floating):
        raise ValueError(f"reference {ref.dtype}{list(ref.shape)} for {n} frames")
    labels = tuple(str(v) for v in m.get("labels") or ())
    if labels and len(labels) != ref.shape[1]:
        raise ValueError(f"{len(labels)} labels for {ref.shape[1]} reference outputs")
    truth = arrays.get("labels.npy")
    if truth is not None and (truth.shape != (n,) or truth.min(initial=0) < 0
                              or truth.max(initial=0) >= ref.shape[1]):
        raise ValueError("ground-truth labels do not match the frames or the classes")
    encoded = None
    if "encoded.npy" in arrays:
        blob, off = arrays["encoded.npy"], arrays["encoded_offsets.npy"]
        if off.shape != (n + 1,) or off[0] != 0 or off[-1] != blob.size or (np.diff(off) < 0).any():
            raise ValueError("encoded offsets do not match the frames")
        raw = blob.tobytes()
        encoded = [raw[int(a):int(b)] for a, b in zip(off[:-1], off[1:], strict=True)]
    art_ref = arrays.get("artifact_reference.npy")
    artifact = m.get("artifact")
    if (art_ref is None) != (artifact is None) or (art_ref is not None and (
            art_ref.shape != ref.shape or not np.issubdtype(art_ref.dtype, np.floating)
            or not isinstance(artifact, dict) or not isinstance(artifact.get("sha256"), str))):
        raise ValueError("the artifact reference does not match the reference or its entry")
    data = m.get("data") or {}
    ids = data.get("ids")
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} frames")
    return ParityPack(
        spec=PreprocessSpec.from_dict(m["spec"]), labels=labels, frames=frames,
        reference=ref.astype(np.float64), source=dict(m.get("source") or {}),
        data_name=str(data.get("name", "frames")), ids=ids, truth=truth,
        class_names=tuple(data["class_names"]) if data.get("class_names") else None,
        encoded=encoded, tolerances=dict(m.get("tolerances") or {}),
        created=str(m.get("created", "")), edgeinfer_version=str(m.get("edgeinfer_version", "")),
        artifact=artifact,
        artifact_reference=None if art_ref is None else art_ref.astype(np.float64))
