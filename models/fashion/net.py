"""FashionNet: the small Fashion-MNIST CNN bundled as edgeinfer's reference model.

Loaded by file path (``models/`` is a data directory, not a package), so this file only
needs torch. Input is (N, 1, 28, 28) float already normalised by ``spec.json``; output is
(N, 10) logits in the class order of ``labels.txt``.

The layers are chosen to exercise the converter, not only to score well:

* Conv2d(bias=False) -> BatchNorm2d -> ReLU blocks: the common case for BN folding.
* Linear(bias=True) -> BatchNorm1d: Gemm+BN folding, including an existing bias.
* Dropout: must vanish in eval mode; an export left in train mode would be caught.
* MaxPool 7 -> 3 (floor): an odd size that a wrong ceil/floor mode would change.

It stays small (about 0.5 MB of fp32 weights, ~5.6 M multiply-adds per image) so it
trains in minutes and serves well over 1000 images/s on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10


def _block(cin: int, cout: int) -> list[nn.Module]:
    """3x3 conv without bias (the following BatchNorm's shift makes it redundant) + BN + ReLU."""
    return [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class FashionNet(nn.Module):
    """32 @28x28 -> pool -> 64 @14x14 -> pool -> 64 @7x7 -> pool -> 576 -> 128 -> 10."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(1, 32),
            nn.MaxPool2d(2),  # 28 -> 14
            *_block(32, 64),
            nn.MaxPool2d(2),  # 14 -> 7
            *_block(64, 64),
            nn.MaxPool2d(2),  # 7 -> 3 (floor)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 128),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build() -> nn.Module:
    """A freshly initialised FashionNet (load ``weights.pt`` into it for the trained one)."""
    return FashionNet()
