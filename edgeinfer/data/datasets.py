"""Real data for tests, benchmarks and the bundled reference model, without any download.

Everything here comes from packages that install offline: Fashion-MNIST from the Debian
package ``dataset-fashion-mnist`` and photos bundled with scikit-image and scikit-learn
(the ``reference`` extra). Tests of preprocessing and parity are only convincing on real
images: synthetic noise has no edges, no smooth gradients and no saturated regions, which
is exactly where resize/colour/quantisation mistakes show up.

This module imports only numpy and OpenCV (plus skimage/sklearn lazily, inside the photo
functions), so the runtime can use it without torch.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_DIR_ENV = "EDGEINFER_FASHION_DIR"

# Class index -> name, in the order of the official Fashion-MNIST label ids.
FASHION_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
# IDX magic numbers: two zero bytes, the element type (0x08 = uint8), the number of dims.
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


def fashion_dir(root: str | Path | None = None) -> Path:
    """Where the Fashion-MNIST files are: ``root``, else $EDGEINFER_FASHION_DIR, else Debian's.

    The environment variable lets CI or a non-Debian machine point at a copy elsewhere
    without changing any code or test.
    """
    if root is not None:
        return Path(root)
    env = os.environ.get(FASHION_DIR_ENV)
    return Path(env) if env else DEFAULT_FASHION_DIR


def load_fashion_mnist(
    split: str = "test", root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split as (images uint8 (N, 28, 28), labels int64 (N,)).

    The IDX files are parsed with numpy directly (a 16-byte / 8-byte big-endian header,
    then raw uint8), so neither torchvision nor a network connection is needed. Headers
    are checked rather than trusted: a truncated or mismatched file would otherwise give
    silently misaligned images and labels, and a model that "only" reaches 10% accuracy.
    """
    if split not in _SPLIT_PREFIX:
        raise EdgeInferError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    base = fashion_dir(root)
    prefix = _SPLIT_PREFIX[split]
    img_path = base / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = base / f"{prefix}-labels-idx1-ubyte.gz"
    missing = [str(p) for p in (img_path, lbl_path) if not p.is_file()]
    if missing:
        raise EdgeInferError(
            f"Fashion-MNIST file(s) not found: {', '.join(missing)}; install the Debian "
            f"package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set "
            f"{FASHION_DIR_ENV} to a directory holding the four *-ubyte.gz files"
        )
    images = _read_idx(img_path, _IDX_IMAGES_MAGIC, ndim=3)
    labels = _read_idx(lbl_path, _IDX_LABELS_MAGIC, ndim=1).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise EdgeInferError(
            f"Fashion-MNIST {split} files disagree: images {images.shape}, labels "
            f"{labels.shape}; expected (N, 28, 28) and (N,)"
        )
    if labels.size and labels.max() >= len(FASHION_LABELS):
        raise EdgeInferError(f"Fashion-MNIST {split} labels exceed 9 in {lbl_path}")
    return images, labels


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse one gzipped IDX file of uint8 elements, checking magic and payload length."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise EdgeInferError(f"cannot read {path}: {e}") from e
    # Magic first: it names the element type and rank, so a swapped or foreign file gets
    # the most useful message rather than a generic length complaint.
    got_magic = int.from_bytes(data[:4], "big")
    if got_magic != magic:
        raise EdgeInferError(f"{path} has IDX magic {got_magic:#010x}, expected {magic:#010x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise EdgeInferError(f"{path} is too short to be an IDX file")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise EdgeInferError(
            f"{path} holds {len(data) - header} bytes of data, its header says {count}"
        )
    # frombuffer gives a read-only view of `data`; copy so callers may modify the array.
    return np.frombuffer(data, np.uint8, count, header).reshape(dims).copy()


def sample_photos() -> dict[str, np.ndarray]:
    """Six real photos as OpenCV-style BGR uint8 frames (H, W, 3), keyed by name.

    They span what preprocessing must survive: faces and fine texture (astronaut),
    smooth gradients (coffee), fur (chelsea), saturated sky (rocket), and JPEG-decoded
    landscapes at a non-square 427x640 (china, flower). Frames are BGR because that is
    what cv2.imread and cv2.VideoCapture hand a deployed model.
    """
    try:
        import skimage.data
        from sklearn.datasets import load_sample_image
    except ImportError as e:
        raise EdgeInferError(
            f"sample photos need scikit-image and scikit-learn ({e}); "
            f"pip install 'edgeinfer[reference]'"
        ) from e
    rgb = {
        "astronaut": skimage.data.astronaut(),
        "coffee": skimage.data.coffee(),
        "chelsea": skimage.data.chelsea(),
        "rocket": skimage.data.rocket(),
        "china": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
    }
    return {k: _rgb_to_bgr(v) for k, v in rgb.items()}


def document_photo() -> np.ndarray:
    """A real scanned text page (skimage.data.page, 191x384) as a BGR uint8 frame.

    Text has a strong, unambiguous orientation, so rotated copies of it are a natural
    real-image test for an orientation classifier. The gray scan is replicated into three
    identical channels so it goes through the same BGR frame path as any camera image.
    """
    try:
        import skimage.data
    except ImportError as e:
        raise EdgeInferError(
            f"the document photo needs scikit-image ({e}); pip install 'edgeinfer[reference]'"
        ) from e
    page = np.asarray(skimage.data.page(), dtype=np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(page, cv2.COLOR_GRAY2BGR))


def _rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    """Contiguous BGR uint8 copy of an RGB image (drops an alpha channel if present)."""
    img = np.asarray(img, dtype=np.uint8)[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1])
