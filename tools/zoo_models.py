"""The zoo's architectures: Hugging Face ``transformers`` configs (random init, no download)
and small hand-written nets, each with the spec it is evaluated with.

Why these: each stands for a family users bring (depthwise + SE + hard-swish, LayerNorm,
attention, re-parameterisable blocks, non-224 inputs). Widths and depths are reduced where
the library allows, so a two-core machine converts the whole zoo in about an hour; the
operators and block structure are the library's own. BatchNorm statistics are calibrated
on real photos (:func:`calibrate`), since a random-init net with default statistics (mean 0,
var 1) is far from what a trained net computes and hides exactly the sensitivity that
breaks a single end-to-end bound. Used by tools/zoo.py and tests/zoo/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeinfer.spec import PreprocessSpec

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
CLASSES = 10


@dataclass(frozen=True)
class Arch:
    """One zoo entry: how to build the module and the spec it takes."""

    name: str
    family: str
    features: str
    build: Callable[[], nn.Module]
    size: int = 224
    norm: dict[str, Any] = field(default_factory=lambda: IMAGENET)
    trained: bool = False  # real trained weights: no BatchNorm calibration
    spec_json: str | None = None  # a bundled model's own spec.json

    def spec(self) -> PreprocessSpec:
        if self.spec_json:
            return PreprocessSpec.from_json(open(self.spec_json).read())
        return PreprocessSpec(size=(self.size, self.size), resize="shorter_crop",
                              resize_shorter=round(self.size / 0.875), **self.norm)


class Logits(nn.Module):
    """A Hugging Face ``*ForImageClassification`` returns a ModelOutput: keep ``.logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


class Confident(nn.Module):
    """``logits * scale``: a random-init classifier is near-uniform (mean top-1 probability
    0.1-0.3 over 10 classes), a trained one is confident; :func:`calibrate` sets ``scale`` so
    the mean top-1 probability on the calibration photos is :data:`CONFIDENCE`. Without it
    the zoo would hide the sensitivity of probabilities to pixel rounding that a trained
    net shows (MobileNetV2: max |dprob| 1.8e-5 at scale 1, 2.4e-4 at 0.74 confidence)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


CONFIDENCE = 0.75


def hf(config: str, model: str, **kw: Any) -> Callable[[], nn.Module]:
    """A builder for ``transformers.<model>(transformers.<config>(**kw))`` behind Logits."""

    def build() -> nn.Module:
        import transformers

        cfg = getattr(transformers, config)(num_labels=CLASSES, **kw)
        return Logits(getattr(transformers, model)(cfg))

    return build


# ---------------------------------------------------------------- hand-written
class HSwishSE(nn.Module):
    """MobileNetV3's inverted residual: 1x1 expand, depthwise, SE (hard-sigmoid), 1x1."""

    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid),
                                    nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                                nn.BatchNorm2d(mid), nn.Hardswish())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, mid // 4, 1), nn.ReLU(),
                                nn.Conv2d(mid // 4, mid, 1), nn.Hardsigmoid())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.expand(x))
        y = self.project(y * self.se(y))
        return x + y if self.residual else y


def mobilenet_v3_like() -> nn.Module:
    """A MobileNetV3-Small-like net (hard-swish, SE, depthwise 3x3/5x5)."""
    cfg = [(16, 64, 24, 3, 2), (24, 72, 24, 3, 1), (24, 96, 40, 5, 2), (40, 240, 40, 5, 1),
           (40, 120, 48, 5, 1), (48, 288, 96, 5, 2), (96, 576, 96, 5, 1)]
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        *[HSwishSE(*c) for c in cfg],
        nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(576, 256), nn.Hardswish(),
        nn.Dropout(0.2), nn.Linear(256, CLASSES))


class RepBlock(nn.Module):
    """RepVGG's training-time block: 3x3+BN, 1x1+BN and identity BN branches, summed; at
    deployment they re-parameterise into one 3x3 conv (the converter folds each BN)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.k3 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                nn.BatchNorm2d(cout))
        self.k1 = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.id = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.k3(x) + self.k1(x)
        return torch.relu(y + self.id(x) if self.id is not None else y)


def repvgg_like() -> nn.Module:
    """A RepVGG-A0-like stack (widths 48-96-192-384)."""
    layers: list[nn.Module] = [RepBlock(3, 48, 2)]
    cin = 48
    for cout, n in ((48, 2), (96, 4), (192, 6), (384, 1)):
        for i in range(n):
            layers.append(RepBlock(cin, cout, 2 if i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, CLASSES))


def efficientnet_lite0() -> nn.Module:
    """The bundled, trained EfficientNet-Lite0 (models/efficientnet_lite0)."""
    from edgeinfer.converter.sources.from_torch import load_factory, load_weights
    from edgeinfer.converter.sources.reference import get_reference

    ref = get_reference("efficientnet-lite0")
    module = load_factory(ref.factory())()
    load_weights(module, ref.weights())
    return module.eval()


def _lite0_spec() -> str:
    from edgeinfer.converter.sources.reference import get_reference

    return str(get_reference("efficientnet-lite0").spec_path)


# ---------------------------------------------------------------- the zoo
SMALL_VIT = {"hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3,
             "intermediate_size": 768}
ARCHS: list[Arch] = [
    Arch("mobilenet_v1", "MobileNetV1", "depthwise", hf("MobileNetV1Config",
         "MobileNetV1ForImageClassification")),
    Arch("mobilenet_v2", "MobileNetV2", "depthwise, inverted residual, ReLU6",
         hf("MobileNetV2Config", "MobileNetV2ForImageClassification")),
    Arch("mobilenet_v2_160", "MobileNetV2", "depthwise, 0.5x width, 160 px input",
         hf("MobileNetV2Config", "MobileNetV2ForImageClassification", depth_multiplier=0.5,
            image_size=160), size=160),
    Arch("efficientnet_b0", "EfficientNet", "depthwise, SE, swish",
         hf("EfficientNetConfig", "EfficientNetForImageClassification", image_size=224,
            width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280)),
    Arch("efficientnet_b1_240", "EfficientNet", "depthwise, SE, swish, 240 px input",
         hf("EfficientNetConfig", "EfficientNetForImageClassification", image_size=240,
            width_coefficient=1.0, depth_coefficient=1.1, hidden_dim=1280), size=240),
    Arch("mobilenet_v3_like", "hand-written", "depthwise, SE, hard-swish, hard-sigmoid",
         mobilenet_v3_like),
    Arch("efficientnet_lite0", "bundled (trained)", "depthwise, ReLU6, ImageNet weights",
         efficientnet_lite0, trained=True, spec_json=_lite0_spec()),
    Arch("repvgg_like", "hand-written", "re-parameterisable 3x3+1x1+identity BN branches",
         repvgg_like),
    Arch("textnet", "TextNet (FAST)", "re-parameterisable kxk/kx1/1xk BN branches",
         hf("TextNetConfig", "TextNetForImageClassification")),
    Arch("hgnet_v2", "HGNetV2", "learnable affine blocks, light conv, ESE",
         hf("HGNetV2Config", "HGNetV2ForImageClassification")),
    Arch("resnet18", "ResNet", "basic blocks, BN", hf("ResNetConfig",
         "ResNetForImageClassification", layer_type="basic", depths=[2, 2, 2, 2],
         hidden_sizes=[64, 128, 256, 512])),
    Arch("resnet26_bottleneck", "ResNet", "bottleneck blocks, BN", hf("ResNetConfig",
         "ResNetForImageClassification", depths=[2, 2, 2, 2],
         hidden_sizes=[128, 256, 512, 1024], embedding_size=32)),
    Arch("regnet_y", "RegNet", "group conv, SE", hf("RegNetConfig",
         "RegNetForImageClassification", depths=[1, 2, 4, 1],
         hidden_sizes=[32, 64, 160, 384], groups_width=16, layer_type="y")),
    Arch("bit", "BiT", "weight-standardised conv, GroupNorm", hf("BitConfig",
         "BitForImageClassification", depths=[1, 1, 1, 1],
         hidden_sizes=[128, 256, 512, 1024], embedding_size=64)),
    Arch("convnext", "ConvNeXt", "LayerNorm, depthwise 7x7, GELU", hf("ConvNextConfig",
         "ConvNextForImageClassification", depths=[1, 1, 3, 1],
         hidden_sizes=[48, 96, 192, 384])),
    Arch("convnext_v2_288", "ConvNeXt V2", "LayerNorm, GRN, 288 px input", hf(
         "ConvNextV2Config", "ConvNextV2ForImageClassification", depths=[1, 1, 3, 1],
         hidden_sizes=[40, 80, 160, 320], image_size=288), size=288),
    Arch("poolformer", "PoolFormer", "GroupNorm, pooling token mixer", hf(
         "PoolFormerConfig", "PoolFormerForImageClassification", depths=[1, 1, 3, 1],
         hidden_sizes=[32, 64, 160, 256])),
    Arch("vit", "ViT", "attention, LayerNorm", hf("ViTConfig", "ViTForImageClassification",
         **SMALL_VIT), norm=HALF),
    Arch("deit", "DeiT", "attention, distillation token", hf("DeiTConfig",
         "DeiTForImageClassification", **SMALL_VIT)),
    Arch("beit", "BEiT", "attention, relative position bias", hf("BeitConfig",
         "BeitForImageClassification", use_relative_position_bias=True, **SMALL_VIT),
         norm=HALF),
    Arch("swin", "Swin", "shifted-window attention", hf("SwinConfig",
         "SwinForImageClassification", embed_dim=48, depths=[1, 1, 2, 1],
         num_heads=[3, 6, 12, 24])),
    Arch("levit", "LeViT", "attention with BN-folded linears, hard-swish", hf("LevitConfig",
         "LevitForImageClassification", hidden_sizes=[128, 192, 256], depths=[2, 2, 2],
         num_attention_heads=[4, 6, 8], key_dim=[16, 16, 16])),
    Arch("mobilevit_256", "MobileViT", "MobileNet blocks + attention, 256 px input", hf(
         "MobileViTConfig", "MobileViTForImageClassification", image_size=256,
         hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320]),
         size=256, norm={"mean": (0.0,), "std": (1.0,)}),
    Arch("segformer_mit", "SegFormer (MiT)", "efficient attention, Mix-FFN", hf(
         "SegformerConfig", "SegformerForImageClassification")),
    Arch("pvt_v2", "PVT v2", "spatial-reduction attention", hf("PvtV2Config",
         "PvtV2ForImageClassification", depths=[1, 1, 1, 1])),
    Arch("swiftformer", "SwiftFormer", "additive attention, BN", hf("SwiftFormerConfig",
         "SwiftFormerForImageClassification", depths=[1, 1, 2, 1],
         embed_dims=[32, 64, 128, 256])),
    Arch("focalnet", "FocalNet", "focal modulation, LayerNorm", hf("FocalNetConfig",
         "FocalNetForImageClassification", embed_dim=48, depths=[1, 1, 2, 1])),
]
BY_NAME = {a.name: a for a in ARCHS}


def calibrate(module: Confident, batches: list[np.ndarray]) -> Confident:
    """Set BatchNorm running statistics from real photos (train-mode forward passes with
    cumulative averaging), then eval: what a net trained on photos would hold; then the
    logit scale (bisection) for a mean top-1 probability of :data:`CONFIDENCE` on them."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the passes
    module.train()
    with torch.no_grad():
        for x in batches:
            module(torch.from_numpy(x))
        module.eval()
        z = torch.cat([module.model(torch.from_numpy(x)) for x in batches]).double()
        lo, hi = 0.0, 1e4
        for _ in range(60):
            mid = (lo + hi) / 2
            conf = torch.softmax(z * mid, -1).max(-1).values.mean().item()
            lo, hi = (mid, hi) if conf < CONFIDENCE else (lo, mid)
        module.scale.fill_((lo + hi) / 2)
    return module


def built(arch: Arch, calibration: list[np.ndarray], seed: int = 0,
          batch: int = 16) -> nn.Module:
    """The architecture with seeded random weights and BatchNorm calibrated on
    ``calibration`` (raw frames, preprocessed with the architecture's spec)."""
    torch.manual_seed(seed)
    if arch.trained:
        return arch.build().eval()
    module = Confident(arch.build())
    spec = arch.spec()
    x = np.concatenate([spec.reference(f) for f in calibration])
    return calibrate(module, [x[i:i + batch] for i in range(0, len(x), batch)])
