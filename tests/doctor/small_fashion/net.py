"""SmallFashionNet: a small BatchNorm CNN trained by ``tools/train_small_fashion.py`` on a
12,000-image subset of the Fashion-MNIST TRAIN split. The spec-audit and doctor tests use
it as "a model of the user's own" (not one of the bundled references). Input
(N, 1, 28, 28) normalised as in ``spec.json``; output (N, 10) logits."""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 32),  # 28 -> 14 -> 7 -> 3
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 3 * 3, 10))
