"""spec_from for timm configs and torchvision pipelines (duck-typed: neither imports here).

timm configs are real ``pretrained_cfg`` values copied from huggingface/pytorch-image-models
(timm/models/resnet.py ``_rcfg`` for 'resnet50.a1_in1k'; timm/models/eva.py ``_cfg`` and
'eva_large_patch14_336.in22k_ft_in22k_in1k'). The torchvision stand-ins carry the class
names and attributes torchvision's own objects have (the input format, not the thing under
test). The oracle is Pillow run with torchvision's PIL-path rules (transforms/functional.py:
``Resize(int)``: ``int(size * long / short)``; ``CenterCrop``: ``int(round(margin / 2))``).
"""

from __future__ import annotations

import enum
import json

import numpy as np
import pytest
from PIL import Image

from edgeinfer import SpecError, spec_from
from edgeinfer.converter.spec_from import derive

from .conftest import grey_levels, prefix_output

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# grey levels: antialiased specs are Pillow's uint8 resize bit for bit (issue 25), so only
# float32 normalisation differs from torchvision's (measured < 1e-4; 8-16 before)
PILLOW_EXACT = 0.01
RESNET50_A1 = {  # timm 'resnet50.a1_in1k' = _cfg(...) | _rcfg(...)
    "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
    "crop_pct": 0.95, "interpolation": "bicubic", "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD, "first_conv": "conv1", "classifier": "fc",
    "test_input_size": (3, 288, 288), "test_crop_pct": 1.0,
}
EVA_L_336 = {  # timm 'eva_large_patch14_336.in22k_ft_in22k_in1k'
    "num_classes": 1000, "input_size": (3, 336, 336), "pool_size": None, "crop_pct": 1.0,
    "interpolation": "bicubic", "fixed_input_size": True, "crop_mode": "squash",
    "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711),
}


def pil_eval(frame_bgr: np.ndarray, shorter: int, crop: int, resample: int, mean, std
             ) -> np.ndarray:
    """torchvision's Resize(shorter) + CenterCrop(crop) + ToTensor + Normalize on PIL."""
    img = Image.fromarray(np.ascontiguousarray(frame_bgr[..., ::-1]))
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = shorter, int(shorter * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), resample)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    x = np.asarray(img.crop((left, top, left + crop, top + crop)), np.float32) / 255
    return ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1)


def test_timm_resnet50_a1_matches_pillow_on_real_photos(photos) -> None:
    d = derive(RESNET50_A1)
    s = d.spec
    assert (s.resize, s.resize_shorter, s.size, s.interpolation, s.antialias) == (
        "shorter_crop", 235, (224, 224), "cubic", True)  # floor(224 / 0.95) = 235
    assert (s.size_rounding, s.crop_rounding) == ("floor", "half_even")
    assert d.source == "timm" and d.read["crop_pct"] == 0.95
    for name, frame in photos.items():
        want = pil_eval(frame, 235, 224, Image.BICUBIC, IMAGENET_MEAN, IMAGENET_STD)
        diff = grey_levels(s, prefix_output(s, frame), want)
        # the prefix computes Pillow's uint8 resize exactly (issue 25; 8 grey levels
        # before): what remains is float32 normalisation, measured < 1e-4
        assert diff.max() <= PILLOW_EXACT, (name, diff.max())


def test_timm_squash_border_and_refusals() -> None:
    eva = spec_from(EVA_L_336)
    assert (eva.resize, eva.size, eva.mean) == ("stretch", (336, 336), EVA_L_336["mean"])
    with pytest.raises(SpecError, match="crop_mode='border'"):
        spec_from(RESNET50_A1 | {"crop_mode": "border", "crop_pct": 1.0})  # mean-colour fill
    grey = spec_from(RESNET50_A1 | {"crop_mode": "border", "crop_pct": 1.0,
                                    "mean": (0.5, 0.5, 0.5)})
    assert (grey.resize, grey.pad_value) == ("letterbox", 128.0)
    with pytest.raises(SpecError, match="interpolation='random'"):
        spec_from(RESNET50_A1 | {"interpolation": "random"})


def test_timm_squash_with_crop_pct_matches_pillow_on_real_photos(photos) -> None:
    """timm squash: Resize((336/0.9 floored,) * 2) then CenterCrop(336), i.e. stretch_crop."""
    s = spec_from(EVA_L_336 | {"crop_pct": 0.9})
    assert (s.resize, s.crop_from, s.size, s.crop_rounding) == (
        "stretch_crop", (373, 373), (336, 336), "half_even")
    for name, frame in photos.items():
        img = Image.fromarray(np.ascontiguousarray(frame[..., ::-1])).resize(
            (373, 373), Image.BICUBIC)
        top = int(round((373 - 336) / 2.0))  # torchvision's CenterCrop: 18.5 -> 18
        x = np.asarray(img.crop((top, top, top + 336, top + 336)), np.float32) / 255
        want = ((x - np.array(EVA_L_336["mean"], np.float32))
                / np.array(EVA_L_336["std"], np.float32)).transpose(2, 0, 1)
        diff = grey_levels(s, prefix_output(s, frame), want)
        # Pillow clips its first pass's cubic overshoot (uint8) before the second: 8.4 grey
        # levels on coffee here before issue 25, when the prefix did not; now it does
        assert diff.max() <= PILLOW_EXACT, (name, diff.max())


def test_timm_model_and_hub_folder(tmp_path) -> None:
    class VisionTransformer:  # a timm model exposes its eval config as pretrained_cfg
        pretrained_cfg = EVA_L_336

    assert spec_from(VisionTransformer()) == spec_from(EVA_L_336)
    (tmp_path / "config.json").write_text(json.dumps(
        {"architecture": "resnet50", "num_classes": 1000, "pretrained_cfg": RESNET50_A1}))
    assert spec_from(tmp_path) == spec_from(RESNET50_A1)


# -------------------------------------------------------------- torchvision stand-ins
class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"


class Compose:
    def __init__(self, transforms: list) -> None:
        self.transforms = transforms


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
                 antialias=True) -> None:
        self.size, self.interpolation = size, interpolation
        self.max_size, self.antialias = max_size, antialias


class CenterCrop:
    def __init__(self, size) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)


class ToTensor:
    pass


class Normalize:
    def __init__(self, mean, std, inplace=False) -> None:
        self.mean, self.std, self.inplace = mean, std, inplace


class RandomHorizontalFlip:
    def __init__(self, p=0.5) -> None:
        self.p = p


class ImageClassification:  # torchvision.transforms._presets.ImageClassification
    def __init__(self, *, crop_size, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 interpolation=InterpolationMode.BILINEAR, antialias=True) -> None:
        self.crop_size, self.resize_size = [crop_size], [resize_size]
        self.mean, self.std = list(mean), list(std)
        self.interpolation, self.antialias = interpolation, antialias


def test_torchvision_compose_matches_pillow_on_real_photos(photos) -> None:
    pipe = Compose([Resize(256), CenterCrop(224), ToTensor(),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    s = spec_from(pipe)
    assert (s.resize, s.resize_shorter, s.size, s.interpolation, s.antialias) == (
        "shorter_crop", 256, (224, 224), "linear", True)
    for name, frame in photos.items():
        want = pil_eval(frame, 256, 224, Image.BILINEAR, IMAGENET_MEAN, IMAGENET_STD)
        diff = grey_levels(s, prefix_output(s, frame), want)
        assert diff.max() <= 1.001, (name, diff.max())  # Pillow: two uint8 roundings


def test_torchvision_preset_equals_its_compose() -> None:
    """ResNet50_Weights.IMAGENET1K_V2.transforms(): resize 232, crop 224, bilinear."""
    preset = ImageClassification(crop_size=224, resize_size=232)
    compose = Compose([Resize(232), CenterCrop(224), ToTensor(),
                       Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert spec_from(preset) == spec_from(compose)


@pytest.mark.parametrize("pipe, step", [
    (Compose([RandomHorizontalFlip(), Resize(256), CenterCrop(224)]), "RandomHorizontalFlip"),
    (Compose([Resize(256, InterpolationMode.LANCZOS), CenterCrop(224)]), "lanczos"),
    (Compose([Resize(256, 1), CenterCrop(224)]), "lanczos"),  # PIL code 1 is Lanczos
    (Compose([Resize(256), ToTensor()]), "without CenterCrop"),
    (Compose([Resize((256, 256)), CenterCrop(224)]), "CenterCrop"),
])
def test_torchvision_refusals_name_the_step(pipe, step) -> None:
    with pytest.raises(SpecError, match=step):
        spec_from(pipe)
