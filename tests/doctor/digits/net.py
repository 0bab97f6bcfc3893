"""DigitsNet: a tiny BatchNorm CNN on scikit-learn's 8x8 digits, trained by
``tools/train_digits.py``; the spec audit and doctor tests use it as "a model of the user's
own" (not one of the bundled references). Input (N, 1, 8, 8) normalised as in
``spec.json``; output (N, 10) logits."""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.MaxPool2d(2),  # 8 -> 4
        *block(32, 32), nn.MaxPool2d(2),  # 4 -> 2
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 2 * 2, 10),
    )
