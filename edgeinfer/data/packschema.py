"""The parity pack's manifest as one schema, and its members read once, header first.

Why a schema: a pack arrives from another machine and ``verify`` trusts it to judge an
artifact. Every field was read with ``m.get(...)`` and used as whatever type it had, so a
manifest with ``"data": [1]`` was an AttributeError traceback and a tolerance of ``"big"``
was accepted (issue 31). Here every field has one type, checked once, and a wrong one is a
:class:`ManifestError` naming the field.

Why headers first: a member's ``.npy`` header says how much memory reading it takes; numpy
allocates whatever it says (a 70-byte header declaring 2**45 bytes was a 32 TiB
``_ArrayMemoryError``). The header is read from the zip stream, checked against the
manifest, the member's uncompressed size and :data:`MAX_UNPACKED_BYTES`, and only then is
the array allocated and filled from the same stream (hashing on the way), so each member
is held once, not once as bytes and again as an array (a 1.5 GB pack peaked at 3.0 GB).

Only numpy and the standard library (the lean install reads packs).
"""

from __future__ import annotations

import hashlib
import math
import re
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

PACK_FORMAT = "edgeinfer-parity-pack"
PACK_VERSION = 1
#: Everything a pack unpacks to, all members together. Chosen from what packs hold:
#: ``edgeinfer pack`` takes 200 frames by default; 200 of the bundled photos (about
#: 640x427) unpack to about 170 MB (a ~100 MB file), 200 frames of 1080p to 1.24 GB and
#: all 10,000 Fashion-MNIST test frames to 24 MB. 1 GiB holds 200 frames up to about
#: 1.8 MP (``pack --max-side 1600`` fits any photo) and, with the runtime, fits a 2 GB
#: Raspberry Pi; above it the writer refuses and names ``--max-side``.
MAX_UNPACKED_BYTES = 2**30
_CHUNK = 1 << 20
_SHA = re.compile(r"[0-9a-f]{64}")

#: Every member a version-1 pack may hold: (dtype, ndim). Anything else is refused.
MEMBERS: dict[str, tuple[np.dtype, int]] = {
    "frames.npy": (np.dtype(np.uint8), 1),
    "frame_shapes.npy": (np.dtype(np.int64), 2),
    "reference.npy": (np.dtype(np.float32), 2),
    "labels.npy": (np.dtype(np.int64), 1),
    "artifact_reference.npy": (np.dtype(np.float32), 2),
    "encoded.npy": (np.dtype(np.uint8), 1),
    "encoded_offsets.npy": (np.dtype(np.int64), 1),
    # a detector's pack (task "detect", data/packdetect.py): the framework's detections
    "det_boxes.npy": (np.dtype(np.float64), 2),
    "det_scores.npy": (np.dtype(np.float64), 1),
    "det_classes.npy": (np.dtype(np.int64), 1),
    "det_offsets.npy": (np.dtype(np.int64), 1),
}
REQUIRED = ("frames.npy", "frame_shapes.npy", "reference.npy")
#: What a detector's pack needs instead (no probabilities: detections per frame).
REQUIRED_DETECT = ("frames.npy", "frame_shapes.npy", "det_boxes.npy", "det_scores.npy",
                   "det_classes.npy", "det_offsets.npy")
TASKS = ("classify", "detect")


class ManifestError(ValueError):
    """A manifest field of the wrong type or value; the message names the field."""


@dataclass(frozen=True)
class Member:
    sha256: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:  # Python ints: a lying shape cannot overflow here
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass
class Manifest:
    """A checked manifest: every field of the type the reader relies on."""

    spec: dict[str, Any]
    members: dict[str, Member]
    created: str = ""
    edgeinfer_version: str = ""
    labels: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)
    data_name: str = "frames"
    n: int | None = None
    ids: list[str] | None = None
    labelled: bool | None = None
    class_names: tuple[str, ...] | None = None
    tolerances: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoded: bool | None = None
    artifact: dict[str, Any] | None = None
    task: str = "classify"
    detection: dict[str, Any] | None = None  # a detector's DetectionSpec, as stored


def _typed(m: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
           default: Any = None, required: bool = False) -> Any:
    if key not in m or m[key] is None:
        if required:
            raise ManifestError(f"field {where}{key} is missing")
        return default
    v = m[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(v, bool) and bool not in kinds:  # JSON true is not the number 1 here
        raise ManifestError(f"field {where}{key} must be {_names(kinds)}, not a boolean")
    if not isinstance(v, kinds):
        raise ManifestError(f"field {where}{key} must be {_names(kinds)}, not "
                            f"{type(v).__name__}")
    return v


def _names(kinds: tuple[type, ...]) -> str:
    words = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number", bool: "true or false"}
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def _strings(m: dict[str, Any], key: str, where: str) -> list[str] | None:
    v = _typed(m, key, list, where)
    if v is not None and not all(isinstance(s, str) for s in v):
        raise ManifestError(f"field {where}{key} must be a list of strings")
    return v


def _number(e: dict[str, Any], key: str, where: str, lo: float, hi: float) -> float | None:
    v = _typed(e, key, (int, float), where)
    if v is not None and not (math.isfinite(v) and lo <= v <= hi):
        raise ManifestError(f"field {where}{key} must be a number in [{lo:g}, {hi:g}], "
                            f"not {v!r}")
    return v


def check_manifest(m: Any) -> Manifest:
    """The manifest, every field type-checked (``format``/``version`` are checked by the
    caller first, so a foreign file or another version gets its own message)."""
    if not isinstance(m, dict):
        raise ManifestError(f"the manifest must be an object, not {type(m).__name__}")
    data = _typed(m, "data", dict, "", {})
    source = _typed(m, "source", dict, "", {})
    for key in ("framework", "weights_sha256"):  # verify reads these two
        _typed(source, key, str, "source.")
    tolerances = _typed(m, "tolerances", dict, "", {})
    for name, e in tolerances.items():
        where = f"tolerances.{name}."
        if not isinstance(e, dict):
            raise ManifestError(f"field tolerances.{name} must be an object")
        if _number(e, "max_abs", where, 0.0, math.inf) is None:
            raise ManifestError(f"field {where}max_abs is missing")
        _number(e, "min_top1", where, 0.0, 1.0)
        _typed(e, "reason", str, where)
        _typed(e, "over", str, where)  # the statistic max_abs bounds, where not the max
    artifact = _typed(m, "artifact", dict, "")
    if artifact is not None:
        for key in ("name", "format", "dtype"):
            _typed(artifact, key, str, "artifact.")
        sha = _typed(artifact, "sha256", str, "artifact.", required=True)
        if not _SHA.fullmatch(sha):
            raise ManifestError("field artifact.sha256 must be 64 hex digits")
    n = _typed(data, "n", int, "data.")
    if n is not None and n < 0:
        raise ManifestError(f"field data.n must be >= 0, not {n}")
    class_names = _strings(data, "class_names", "data.")
    task = _typed(m, "task", str, "", "classify")
    if task not in TASKS:
        raise ManifestError(f"field task must be one of {', '.join(TASKS)}, not {task!r}")
    return Manifest(
        spec=_typed(m, "spec", dict, "", required=True),
        members=_members(_typed(m, "members", dict, "", required=True)),
        created=_typed(m, "created", str, "", ""),
        edgeinfer_version=_typed(m, "edgeinfer_version", str, "", ""),
        labels=tuple(_strings(m, "labels", "") or ()), source=source,
        data_name=_typed(data, "name", str, "data.", "frames"), n=n,
        ids=_strings(data, "ids", "data."), labelled=_typed(data, "labelled", bool, "data."),
        class_names=tuple(class_names) if class_names else None, tolerances=tolerances,
        encoded=_typed(m, "encoded", bool, ""), artifact=artifact, task=task,
        detection=_typed(m, "detection", dict, ""))


def _members(raw: dict[str, Any]) -> dict[str, Member]:
    out = {}
    for name, e in raw.items():
        if name not in MEMBERS:
            raise ManifestError(f"field members names {name!r}, not a member of a version "
                                f"{PACK_VERSION} pack")
        where = f"members.{name}."
        if not isinstance(e, dict):
            raise ManifestError(f"field members.{name} must be an object")
        sha = _typed(e, "sha256", str, where, required=True)
        if not _SHA.fullmatch(sha):
            raise ManifestError(f"field {where}sha256 must be 64 hex digits")
        dtype, ndim = MEMBERS[name]
        if _typed(e, "dtype", str, where, required=True) != dtype.name:
            raise ManifestError(f"field {where}dtype must be {dtype.name!r}, not {e['dtype']!r}")
        shape = _typed(e, "shape", list, where, required=True)
        if (len(shape) != ndim or not all(isinstance(v, int) and not isinstance(v, bool)
                                          and v >= 0 for v in shape)):
            raise ManifestError(f"field {where}shape must be {ndim} sizes >= 0, not {shape!r}")
        out[name] = Member(sha, dtype, tuple(shape))
    total = sum(e.nbytes for e in out.values())
    if total > MAX_UNPACKED_BYTES:
        raise ManifestError(f"field members declares {total} bytes of arrays, above the "
                            f"limit of {MAX_UNPACKED_BYTES}")
    return out


class _Hashing:
    """A zip member stream that hashes what is read and counts it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha, self.count = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        b = self.raw.read(n)
        self.sha.update(b)
        self.count += len(b)
        return b


def _open(z: zipfile.ZipFile, name: str, entry: Member) -> tuple[_Hashing, int]:
    """The member's stream after its .npy header, and the bytes of data that follow,
    refused (ValueError) unless the header is exactly what the manifest declares."""
    info = z.getinfo(name)
    f = _Hashing(z.open(info))
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, SyntaxError, TypeError) as e:
        raise ValueError(f"{name}: unreadable .npy header ({str(e)[:80]})") from None
    if dtype != entry.dtype or fortran or tuple(shape) != entry.shape:
        raise ValueError(f"{name}: header {dtype} {list(shape)} does not match the manifest's "
                         f"{entry.dtype.name} {list(entry.shape)}")
    if f.count + entry.nbytes != info.file_size:
        raise ValueError(f"{name}: {info.file_size} bytes unpacked for a header declaring "
                         f"{entry.nbytes} bytes of data")
    return f, entry.nbytes


def _finish(f: _Hashing, name: str, entry: Member) -> None:
    if f.read(1):
        raise ValueError(f"{name}: data after the array")
    if f.sha.hexdigest() != entry.sha256:
        raise ValueError(f"{name} does not match its sha256")


def read_array(z: zipfile.ZipFile, name: str, entry: Member) -> np.ndarray:
    """One member as an array, allocated once from its checked header and filled from the
    zip stream in 1 MiB chunks."""
    f, nbytes = _open(z, name, entry)
    out = np.empty(entry.shape, entry.dtype)
    view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
    pos = 0
    while pos < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - pos))
        if not chunk:
            raise ValueError(f"{name}: truncated")
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    _finish(f, name, entry)
    return out


def read_blobs(z: zipfile.ZipFile, name: str, entry: Member,
               offsets: np.ndarray) -> list[bytes]:
    """``encoded.npy`` cut at ``offsets`` straight from the stream: each file's bytes are
    read once, never as one array and then again as slices."""
    f, nbytes = _open(z, name, entry)
    if offsets[0] != 0 or offsets[-1] != nbytes or (np.diff(offsets) < 0).any():
        raise ValueError("encoded offsets do not match encoded.npy")
    out = []
    for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        blob = f.read(b - a)
        if len(blob) != b - a:
            raise ValueError(f"{name}: truncated")
        out.append(blob)
    _finish(f, name, entry)
    return out


__all__ = ["MAX_UNPACKED_BYTES", "MEMBERS", "PACK_FORMAT", "PACK_VERSION", "REQUIRED",
           "REQUIRED_DETECT", "TASKS",
           "Manifest", "ManifestError", "Member", "check_manifest", "read_array",
           "read_blobs"]
