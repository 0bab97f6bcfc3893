"""A realistic int8 calibration set for photo models, from photos that install offline.

Why: int8 ranges calibrated on the six bundled photos (which were also the gate's parity
frames) fit those six; on 1000 other real photos EfficientNet-Lite0's int8 ONNX artifact
agreed with fp32 on only 95.7% (docs/int8/). A calibration set must look like what the
camera will see: many scenes, scales and framings. This one takes every real colour photo
that ships with the packages the project already uses or that Debian installs offline, and
adds seeded random crops, scales, flips and mild exposure changes of them
(docs/int8/README.md measures what each part buys).

Photos: scikit-image (astronaut, chelsea, coffee, rocket, motorcycle), scikit-learn
(china, flower), matplotlib (grace_hopper), and when installed the Debian packages
``opencv-doc`` (its sample photos) and ``mate-backgrounds`` (nature photos).
Only numpy/OpenCV at import; the photo packages load lazily.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_PHOTOS = ("HappyFish.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg",
                 "fruits.jpg", "home.jpg", "messi5.jpg", "orange.jpg", "squirrel_cls.jpg",
                 "stuff.jpg", "aero1.jpg", "aero3.jpg", "aloeL.jpg", "basketball1.png",
                 "leuvenA.jpg", "lena.jpg", "pic1.png", "smarties.png", "board.jpg")
MATE = Path("/usr/share/backgrounds/mate")
MATE_PHOTOS = ("nature/Aqua.jpg", "nature/Blinds.jpg", "nature/Dune.jpg",
               "nature/FreshFlower.jpg", "nature/Garden.jpg", "nature/GreenMeadow.jpg",
               "nature/LadyBird.jpg", "nature/RainDrops.jpg", "nature/Storm.jpg",
               "nature/TwoWings.jpg", "nature/Wood.jpg", "nature/YellowFlower.jpg",
               "abstract/Elephants.jpg")
#: Longest side photos are reduced to before cropping (wallpapers are 4K).
MAX_SIDE = 1024
#: Crops are written at a shorter side of 256 and a long side rounded to 32: few distinct
#: shapes, so calibration batches equal-sized frames.
SHORT_SIDE = 256


def _bgr(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb, np.uint8)
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(a[:, :, :3][:, :, ::-1])


def _shrink(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = MAX_SIDE / max(h, w)
    return img if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)),
                                         interpolation=cv2.INTER_AREA)


def package_photos() -> dict[str, np.ndarray]:
    """Every real colour photo found in the installed packages, as BGR frames."""
    out: dict[str, np.ndarray] = {}
    try:
        import skimage.data as sk
        from sklearn.datasets import load_sample_image
    except ImportError as e:
        raise EdgeInferError(f"calibration photos need scikit-image and scikit-learn ({e}); "
                             "pip install 'edgeinfer[reference]'") from e
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        out[f"skimage/{name}"] = _bgr(getattr(sk, name)())
    with contextlib.suppress(Exception):  # a skimage without the bundled stereo pair
        out["skimage/motorcycle"] = _bgr(sk.stereo_motorcycle()[0])
    for name in ("china.jpg", "flower.jpg"):
        out[f"sklearn/{name}"] = _bgr(load_sample_image(name))
    try:
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            data = np.frombuffer(f.read(), np.uint8)
        out["matplotlib/grace_hopper"] = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except Exception:  # noqa: BLE001 - matplotlib is optional (report extra)
        pass
    for base, names in ((OPENCV_DOC, OPENCV_PHOTOS), (MATE, MATE_PHOTOS)):
        for n in names:
            img = cv2.imread(str(base / n), cv2.IMREAD_COLOR) if (base / n).is_file() else None
            if img is not None:
                out[f"{base.name}/{n}"] = img
    return {k: _shrink(v) for k, v in out.items() if v is not None}


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (25-100% of the area, aspect 3:4..4:3), maybe flipped, exposure +-15%."""
    h, w = img.shape[:2]
    for _ in range(10):
        area = rng.uniform(0.25, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch, cw = int(round(np.sqrt(area / aspect))), int(round(np.sqrt(area * aspect)))
        if 16 <= ch <= h and 16 <= cw <= w:
            break
    else:
        ch, cw = h, w
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = img[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = _canonical(crop)
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
    return np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def _canonical(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = SHORT_SIDE / min(h, w)
    nh, nw = (SHORT_SIDE, max(SHORT_SIDE, round(w * s / 32) * 32)) if h <= w else \
        (max(SHORT_SIDE, round(h * s / 32) * 32), SHORT_SIDE)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(img, (nw, nh), interpolation=interp))


def calibration_frames(n: int = 400, *, augmented: bool = True,
                       seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """``n`` BGR frames: every package photo once, then seeded augmentations of them."""
    photos = package_photos()
    names = sorted(photos)
    frames = [_canonical(photos[k]) for k in names]
    ids = list(names)
    if augmented:
        rng = np.random.default_rng(seed)
        i = 0
        while len(frames) < n:
            k = names[i % len(names)]
            frames.append(augment(photos[k], rng))
            ids.append(f"{k}#aug{i // len(names)}")
            i += 1
    return frames[:n], ids[:n]


def write_folder(directory: str | Path, n: int = 400, seed: int = 0) -> Path:
    """Write the calibration frames as PNG files: ``--calibration DIRECTORY`` then uses them."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    frames, ids = calibration_frames(n, seed=seed)
    for i, (f, name) in enumerate(zip(frames, ids, strict=True)):
        safe = name.replace("/", "_").replace("#", "_").rsplit(".", 1)[0]
        cv2.imwrite(str(d / f"{i:04d}_{safe}.png"), f)
    return d


def held_out_split(calibration: list[np.ndarray],
                   frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """(calibration frames, indices of ``frames`` held out from calibration).

    Why: int8 agreement measured on frames the ranges were calibrated on flatters it. A
    frame counts as calibrated on when the same pixels are in ``calibration``; frames in
    both sets are split alternately (every other one is held out AND dropped from the
    calibration), so that a user who gives one folder for both still gets a held-out set.
    """
    import hashlib

    def key(f: np.ndarray) -> str:
        return hashlib.sha1(f.tobytes() + str(f.shape).encode()).hexdigest()

    cal_at = {key(f): i for i, f in enumerate(calibration)}
    shared = [i for i, f in enumerate(frames) if key(f) in cal_at]
    moved = shared[1::2]
    drop = {cal_at[key(frames[i])] for i in moved}
    held = sorted(set(range(len(frames))) - set(shared) | set(moved))
    return [f for j, f in enumerate(calibration) if j not in drop], held


if __name__ == "__main__":  # python -m edgeinfer.data.calibration OUT_DIR [N]
    import sys

    out = write_folder(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400)
    print(f"{out}: {len(list(out.glob('*.png')))} calibration frames")
