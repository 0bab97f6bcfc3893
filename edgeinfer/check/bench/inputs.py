"""What ``edgeinfer bench`` measures: the artifacts (format by content) and their input.

Why the input comes from the model's own parity data: "end to end" on a 28x28 model fed
a 768x576 JPEG measures mostly the JPEG decode. The default input is therefore one real
frame of the data the artifact was checked on, at its natural size and encoding: a
Fashion-MNIST test image encoded as PNG for fashion models, a camera JPEG for photo
models, the first image of a user's parity folder for theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeinfer.artifact import ArtifactMetadata, sniff_format
from edgeinfer.data.files import load_model_bytes, read_regular
from edgeinfer.errors import ConfigError, EdgeInferError, ModelError
from edgeinfer.runtime.metadata import read_metadata

IMREAD = {"BGR": cv2.IMREAD_COLOR, "RGB": getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR),
          "GRAY": cv2.IMREAD_GRAYSCALE}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class BenchArtifact:
    """One artifact to benchmark: its bytes, format (by content), metadata and FLOPs."""

    path: Path
    label: str
    format: str  # onnx | tflite, from the file's content
    dtype: str  # fp32 | fp16 | int8
    model: str  # groups the artifacts of one source model
    meta: ArtifactMetadata
    data: bytes
    frame_size: tuple[int, int] | None = None  # TFLite: the fixed frame size
    flops: float | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> BenchArtifact:
        data, name = load_model_bytes(path)
        try:
            fmt = sniff_format(data)
        except ModelError as e:
            raise ModelError(f"{name}: {e}") from None
        meta = read_metadata(data)
        prov = meta.provenance
        p = Path(path)
        fs = prov.get("frame_size")
        return cls(p, p.name, fmt, prov.get("quantize") or "fp32",
                   str(prov.get("reference") or prov.get("source") or p.stem), meta, data,
                   (int(fs[0]), int(fs[1])) if fs else None)


@dataclass
class BenchInput:
    """The encoded image every case gets, what it is, and its decoded frame."""

    name: str
    data: bytes
    frame: np.ndarray
    note: str | None = None  # why this input was chosen when it is not the parity data's


def decode(data: bytes, frame_color: str) -> np.ndarray:
    """What a user does with encoded bytes: cv2.imdecode in the frame's colour order."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), IMREAD[frame_color])
    if img is None:
        raise ConfigError("the benchmark image cannot be decoded by OpenCV")
    return img[..., None] if img.ndim == 2 else img


def parity_data_of(meta: ArtifactMetadata) -> str | None:
    """The data the artifact was checked on: its metadata, else the bundled model's default."""
    data = (meta.parity or {}).get("data")
    if data:
        return str(data)
    ref = meta.provenance.get("reference")
    if ref:
        from edgeinfer.converter.sources.reference import REFERENCE_MODELS

        r = REFERENCE_MODELS.get(str(ref))
        if r is not None:
            return r.parity_data
    return None


def fashion_png(split: str = "test", index: int = 0) -> tuple[str, bytes]:
    """A Fashion-MNIST image at its natural 28x28, PNG-encoded (lossless: decoding it gives
    the data set's own pixels)."""
    from edgeinfer.data.datasets import load_fashion_mnist

    images, _ = load_fashion_mnist(split)
    ok, buf = cv2.imencode(".png", images[index])
    if not ok:
        raise ConfigError("OpenCV cannot encode PNG")
    return f"Fashion-MNIST {split}[{index}] (28x28 PNG)", buf.tobytes()


def camera_jpeg() -> tuple[str, bytes]:
    """scikit-learn's ``china.jpg`` (one of the bundled photos): a 640x427 camera JPEG, its
    own bytes, not a re-encode."""
    try:
        import sklearn.datasets
    except ImportError:
        raise ConfigError("no default benchmark image (scikit-learn, which holds the bundled "
                          "photos, is missing): pass --image PATH") from None
    p = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    return "china.jpg (640x427 JPEG, builtin:photos)", p.read_bytes()


def _first_image(folder: Path) -> Path | None:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(IMAGE_SUFFIXES):
                return Path(root) / f
    return None


def _from_parity_data(source: str) -> tuple[str, bytes] | None:
    """The first image of the parity data ``source``, encoded as it is stored."""
    from edgeinfer.data.frames import builtin_name

    try:
        name = builtin_name(source)
    except EdgeInferError:
        return None
    if name in ("fashion-test", "fashion-train"):
        return fashion_png(name.split("-")[1])
    if name == "photos":
        return camera_jpeg()
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        import csv

        with path.open(newline="") as f:
            row = next(csv.DictReader(f), None)
        path = path.parent / row["image"] if row and row.get("image") else path
    image = path if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES else (
        _first_image(path) if path.is_dir() else None)
    if image is None:
        return None
    return f"{image.name} (first image of the parity data)", read_regular(
        image, "parity image", ConfigError)


def default_input(meta: ArtifactMetadata, image: str | os.PathLike | None = None) -> BenchInput:
    """The image to benchmark with: ``image`` if given, else a frame of the parity data."""
    spec = meta.spec
    if image is not None:
        data = read_regular(image, "benchmark image", ConfigError, 64 << 20)
        return BenchInput(Path(image).name, data, decode(data, spec.frame_color))
    source = parity_data_of(meta)
    got = _from_parity_data(source) if source else None
    note = None
    if got is None:
        got = fashion_png() if spec.frame_color == "GRAY" else camera_jpeg()
        note = (f"parity data {source!r} is not available here" if source else
                "the artifact names no parity data") + f": benchmarked on {got[0]}"
    name, data = got
    return BenchInput(name, data, decode(data, spec.frame_color), note)


def describe(inp: BenchInput) -> dict[str, Any]:
    """The input as the JSON report records it: its name, size and frame shape (no path)."""
    return {"name": inp.name, "bytes": len(inp.data), "shape": list(inp.frame.shape)}


__all__ = ["BenchArtifact", "BenchInput", "decode", "default_input", "describe",
           "parity_data_of"]
