"""Real frames for parity: bundled data sets, an image folder (flat or one subfolder per
class) or a CSV of ``image,label`` rows, as raw uint8 frames with labels when known.

Bundled sets are spelled ``builtin:fashion-test``, ``builtin:fashion-train``,
``builtin:photos`` and ``builtin:photo-calibration`` (real photos from installed packages
plus seeded augmentations: the int8 calibration set for photo models, see
``data/calibration.py``); a path that exists always wins, so a user folder named ``photos`` is
never shadowed (the bare names still work when no such path exists).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import edgeinfer.data.datasets as datasets
from edgeinfer.data.files import read_regular
from edgeinfer.errors import ConfigError, EdgeInferError, ImageDecodeError
from edgeinfer.spec import PreprocessSpec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
BUILTIN = ("fashion-test", "fashion-train", "photos", "photo-calibration")
PREFIX = "builtin:"
#: ``probe(data, source)``: raises a one-line ImageError naming why encoded bytes are not a
#: usable image (truncated, corrupt, not an image). The runtime's header walker
#: (``runtime.image_probe.probe``) is passed in by the callers: this floor may not import it.
Probe = Callable[[bytes, str], object]


@dataclass
class FrameSet:
    """Frames in the spec's frame colour order, with ground-truth labels when known.

    ``labels`` are class indices into ``class_names`` (the model's label order).
    """

    name: str
    frames: list[np.ndarray]
    labels: np.ndarray | None = None
    ids: list[str] | None = None
    class_names: tuple[str, ...] | None = None
    #: "file: reason" of each undecodable file left out (``skip_bad``)
    skipped: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """The name, with the files ``--skip-bad`` left out counted: verdicts say it, so a
        PASS on 28 of 30 files never reads as a PASS on all of them."""
        k = len(self.skipped)
        return f"{self.name}, {k} undecodable file{'s' * (k != 1)} skipped" if k else self.name


def to_frame_color(bgr_or_gray: np.ndarray, frame_color: str) -> np.ndarray:
    """Convert an OpenCV BGR (or gray) image to the colour order a spec's frame uses."""
    img = bgr_or_gray
    if img.ndim == 2:
        return img if frame_color == "GRAY" else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if frame_color == "GRAY":
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if frame_color == "RGB" else img


def builtin_name(source: str) -> str | None:
    """The bundled set ``source`` names, or None when it is a path (an existing path wins)."""
    if Path(source).exists():
        return None
    name = source.removeprefix(PREFIX)
    if name in BUILTIN:
        return name
    if source.startswith(PREFIX):
        raise ConfigError(f"unknown bundled data set {source!r}; bundled: "
                          f"{', '.join(PREFIX + b for b in BUILTIN)}")
    return None


# Convert's parity data when the user chose none: frames that resemble the model's input
# (a gray 28x28 model is never gated on colour photos shrunk to 28x28 gray), each with the
# qualifier its verdict carries: the gate proves the export, not the model on the user's data.
GRAY_SMALL_MAX = 112  # px: Fashion-MNIST (28x28) upscaled at most 4x
COLOUR_MIN = 16  # px: photos shrunk below this are no longer pictures of anything
DEFAULT_NOTES = {"builtin:fashion-test": "bundled Fashion-MNIST only: not your data",
                 "builtin:photos": "bundled photos only: not your data"}


def default_parity_data(spec: PreprocessSpec) -> tuple[str, str]:
    """(data, note) for a model whose user gave no parity data; ConfigError when no bundled
    set resembles the model's input (then only the user's own images can gate it)."""
    small, large = min(spec.size), max(spec.size)
    if spec.model_color == "GRAY" and large <= GRAY_SMALL_MAX:
        name = "builtin:fashion-test"
    elif small >= COLOUR_MIN:
        name = "builtin:photos"  # colour models; gray models above 112 px see them in gray
    else:
        raise ConfigError(f"no bundled images resemble this model's input ({spec.model_color} "
                          f"{spec.size[0]}x{spec.size[1]}): pass --parity-data with your own "
                          "images (an image folder, a labelled folder or a CSV)")
    return name, DEFAULT_NOTES[name]


def check_source(source: str, what: str) -> None:
    """A data argument that names nothing is refused at once: ``convert`` reads its
    calibration frames after the export and the gate, minutes of work a typo wasted."""
    if builtin_name(str(source)) is None and not Path(source).exists():
        raise ConfigError(f"{what} {source!r} does not exist: pass an image folder, a CSV of "
                          f"image,label rows or one of {', '.join(PREFIX + b for b in BUILTIN)}")


def load_frames(source: str, spec: PreprocessSpec, limit: int | None = None,
                class_names: Sequence[str] | None = None, *, skip_bad: bool = False,
                probe: Probe | None = None) -> FrameSet:
    """``builtin:NAME`` | an image folder | a labelled folder | a CSV (``image,label``).

    ``class_names``: the model's labels, in output order; a labelled folder's or CSV's class
    names must all be among them. Without them, sorted folder names give the order.

    Every file is read before any is refused: undecodable ones raise one ImageDecodeError
    listing each with its reason (``probe``'s when given, the same words ``predict`` uses),
    or with ``skip_bad`` are left out and listed in ``FrameSet.skipped``.
    """
    return _load(source, spec, limit, class_names, (skip_bad, probe))


def _load(source: str, spec: PreprocessSpec, limit: int | None,
          class_names: Sequence[str] | None, how: tuple[bool, Probe | None]) -> FrameSet:
    name = builtin_name(str(source))
    if name is not None:
        return _builtin(name, spec, limit)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _from_csv(path, spec, limit, class_names, how)
    if not path.is_dir():
        raise EdgeInferError(f"data {source!r} is neither a directory of images, a CSV of "
                             f"image,label rows nor one of "
                             f"{', '.join(PREFIX + b for b in BUILTIN)}")
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    flat = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if subdirs and not flat:
        items = [(f, d.name) for d in subdirs for f in sorted(d.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
        return _labelled(str(path), items, spec, limit, class_names, [d.name for d in subdirs],
                         how)
    if not flat:
        raise EdgeInferError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    files = flat[:limit]
    frames, kept, bad = _read_all(str(path), files, spec, how)
    return FrameSet(str(path), frames, None, [files[i].name for i in kept], skipped=bad)


def _builtin(name: str, spec: PreprocessSpec, limit: int | None) -> FrameSet:
    if name in ("fashion-test", "fashion-train"):
        split = name.split("-")[1]
        images, labels = datasets.load_fashion_mnist(split)
        if limit:
            # spread over the whole split (the files are not shuffled by class everywhere)
            idx = np.linspace(0, len(images) - 1, min(limit, len(images))).astype(int)
            images, labels = images[idx], labels[idx]
        frames = [to_frame_color(im, spec.frame_color) for im in images]
        return FrameSet(name, frames, labels, [f"{split}[{i}]" for i in range(len(frames))],
                        datasets.FASHION_LABELS)
    if name == "photo-calibration":
        from edgeinfer.data.calibration import calibration_frames

        frames, ids = calibration_frames(limit or 400)
        return FrameSet(name, [to_frame_color(f, spec.frame_color) for f in frames], None, ids)
    photos = datasets.sample_photos()
    names = sorted(photos)[:limit] if limit else sorted(photos)
    return FrameSet(name, [to_frame_color(photos[n], spec.frame_color) for n in names],
                    None, names)


def _read(f: Path, spec: PreprocessSpec, probe: Probe | None) -> np.ndarray:
    data = read_regular(f, "image file", ImageDecodeError)
    if probe is not None:  # truncated / corrupt / not an image: named as predict names it
        probe(data, f"image file {f}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"image file {f} cannot be decoded by OpenCV (not an image, "
                               "or a format it does not read)")
    return to_frame_color(img, spec.frame_color)


def _read_all(name: str, files: Sequence[Path], spec: PreprocessSpec,
              how: tuple[bool, Probe | None],
              ) -> tuple[list[np.ndarray], list[int], tuple[str, ...]]:
    """(frames, indices of the files kept, the bad ones with reasons).

    Why read them all first: stopping at the first bad file made a folder with three bad
    files cost three runs (and one export each) to clean up; every one is named at once.
    """
    skip_bad, probe = how
    frames, kept, bad = [], [], []
    for i, f in enumerate(files):
        try:
            frames.append(_read(f, spec, probe))
            kept.append(i)
        except EdgeInferError as e:
            bad.append(" ".join(str(e).split()))
    if bad and (not skip_bad or not frames):
        raise ImageDecodeError(
            f"{len(bad)} of {len(files)} images in {name} cannot be used: " + "; ".join(bad)
            + ("" if skip_bad else "; fix or remove them, or pass --skip-bad to go on without "
               "them (the verdict counts them)"))
    return frames, kept, tuple(bad)


def _from_csv(path: Path, spec: PreprocessSpec, limit: int | None,
              class_names: Sequence[str] | None, how: tuple[bool, Probe | None]) -> FrameSet:
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EdgeInferError(f"cannot read CSV {path}: {e}") from None
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise EdgeInferError(f"CSV {path} needs a header with the columns image,label")
    items = [((path.parent / r["image"]), r["label"].strip()) for r in rows]
    return _labelled(str(path), items, spec, limit, class_names,
                     sorted({lab for _f, lab in items}), how)


def safe_spelling(label: str) -> str:
    """A folder name for a label: '/' (and '\\') cannot be in one, so they become '_'."""
    return label.replace("/", "_").replace("\\", "_")


def label_spellings(order: Sequence[str]) -> dict[str, int]:
    """Every accepted spelling of each class -> its index: the label itself, its safe
    spelling (``T-shirt_top`` for ``T-shirt/top``) and its index (``0``); a real label
    always wins over another class's index or safe spelling."""
    index = {str(i): i for i in range(len(order))}
    index |= {safe_spelling(c): i for i, c in enumerate(order)}
    return index | {c: i for i, c in enumerate(order)}


def _order_without_labels(name: str, found: Sequence[str]
                           ) -> tuple[tuple[str, ...], dict[str, int]]:
    """The class order of folders (or CSV labels) when the model's labels are not given.

    Index names (``0``, ``1``, ... ``11``) are class indices: folder ``10`` is class 10, not
    the third name in string order (``0, 1, 10, 11, 2``), which scored a right spec at 15%.
    Names that are all words keep their sorted order (what ImageFolder and Keras's
    ``image_dataset_from_directory`` train with). A mix of both is ambiguous: refused.
    """
    numeric = [c for c in found if c.isdigit()]
    if numeric and len(numeric) == len(found):
        k = max(int(c) for c in numeric) + 1
        return tuple(str(i) for i in range(k)), {c: int(c) for c in found}
    if numeric:
        raise ConfigError(f"{name}: class folders mix indices ({', '.join(numeric[:3])}) and "
                          "names, so their order is ambiguous; pass --labels (labels.txt in "
                          "the model's output order)")
    return tuple(found), {c: i for i, c in enumerate(found)}


def _labelled(name: str, items: list[tuple[Path, str]], spec: PreprocessSpec,
              limit: int | None, class_names: Sequence[str] | None,
              found: Sequence[str], how: tuple[bool, Probe | None]) -> FrameSet:
    order, index = ((tuple(class_names), label_spellings(class_names)) if class_names
                    else _order_without_labels(name, found))
    unknown = sorted(set(found) - set(index))
    if unknown:
        raise ConfigError(f"{name}: classes {unknown[:5]} are not among the model's labels "
                          f"({', '.join(order[:5])}{', ...' if len(order) > 5 else ''}); "
                          "name the folders (or CSV labels) after labels.txt, with '_' for "
                          "'/' (T-shirt/top -> T-shirt_top), or by class index (0, 1, ...)")
    if limit and len(items) > limit:
        idx = np.linspace(0, len(items) - 1, limit).astype(int)  # keep every class
        items = [items[i] for i in idx]
    if not items:
        raise EdgeInferError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {name}")
    frames, kept, bad = _read_all(name, [f for f, _lab in items], spec, how)
    items = [items[i] for i in kept]
    labels = np.array([index[lab] for _f, lab in items], np.int64)
    ids = [f"{lab}/{f.name}" for f, lab in items]
    return FrameSet(name, frames, labels, ids, order, skipped=bad)
