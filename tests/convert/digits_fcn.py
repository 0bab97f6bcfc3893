"""A 32-pixel digits CNN of our own, fully convolutional, trained on real handwritten digits.

Issue 25's first case: a model like this converted with a 224-pixel Hugging Face processor
config passed the gate at chance (10.6%) because nothing checked that the spec made sense.
The digits are scikit-learn's bundled 8x8 scans (1,797 real handwritten digits, installed
offline), upscaled to 32x32 white-on-black frames. ``train`` takes a seed and which half of
the digits to learn from, so two models "of the same kind, trained on other digits" exist.
Training takes a few seconds on two cores. Shared by the sanity tests and
``tools/sanity_study.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

SIZE = 32
MEAN, STD = 0.5, 0.5  # the training normalisation: (x/255 - 0.5) / 0.5, as ViT's processor


def build(width: int = 16) -> nn.Module:
    """Conv-BN-ReLU x3 (two stride-2), global average pooling, a 1x1 classifier: any input
    size runs, which is why a wrong size is not caught by a shape error."""
    def block(i: int, o: int, s: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(3, width, 1), *block(width, 2 * width, 2),
                         *block(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(4 * width, 10, 1), nn.Flatten())


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as uint8 [N, 32, 32] frames and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
                    for im in small])
    return big, d.target.astype(np.int64)


def split(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out indices: ``half`` 0 trains on even indices, 1 on odd; both
    hold out the last 397 digits (never trained on by either)."""
    n_train = 1400
    train = np.arange(half, n_train, 2)
    return train, np.arange(n_train, 1797)


def _tensor(frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frames).float().div(255.0).sub(MEAN).div(STD)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def train(half: int = 0, seed: int = 0, epochs: int = 30, width: int = 16) -> nn.Module:
    """Train on half of the digits; eval mode, BN running statistics of the real data."""
    torch.manual_seed(seed)
    frames, labels = digits()
    tr, _ = split(half)
    model = build(width)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = _tensor(frames[tr]), torch.from_numpy(labels[tr])
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for b in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, frames: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(_tensor(frames)).argmax(1).numpy() == labels).mean())


def write_folder(root: Path, frames: np.ndarray, labels: np.ndarray) -> Path:
    """Index-named class folders of PNG frames (the layout the README recommends)."""
    for i, (f, y) in enumerate(zip(frames, labels, strict=True)):
        d = root / str(int(y))
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:04d}.png"), f)
    return root


def vit_config(size: int = 224) -> dict:
    """A Hugging Face ViT processor config at ``size`` pixels: the right normalisation for
    these models, the wrong size (the issue's case) unless ``size`` is 32."""
    return {"image_processor_type": "ViTImageProcessor", "do_resize": True,
            "size": {"height": size, "width": size}, "resample": 2, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [MEAN] * 3,
            "image_std": [STD] * 3}
