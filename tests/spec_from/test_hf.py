"""spec_from on real Hugging Face image processors (transformers, PIL backend, offline).

The oracle is the processor itself, called on real photos: the artifact's prefix must
reproduce its pixel values; it computes Pillow's uint8 arithmetic exactly (rounding after
each of its two passes, bicubic overshoot clipped between them; issue 25).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer import SpecError, spec_from
from edgeinfer.converter.spec_from import derive

from .conftest import grey_levels, prefix_output

T = pytest.importorskip("transformers")

PROCESSORS = {
    "vit": lambda: T.ViTImageProcessorPil(),
    "convnext-224": lambda: T.ConvNextImageProcessorPil(size={"shortest_edge": 224},
                                                        resample=3),
    "convnext-384": lambda: T.ConvNextImageProcessorPil(),
    "efficientnet-offset": lambda: T.EfficientNetImageProcessorPil(
        rescale_offset=True, rescale_factor=1 / 127.5, size={"height": 289, "width": 289}),
    "mobilenet-v2": lambda: T.MobileNetV2ImageProcessorPil(),
    # stretched to 256x256, aspect ignored, then the centre 224x224 (resize='stretch_crop')
    "deit": lambda: T.DeiTImageProcessorPil(),
}


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_prefix_matches_the_processor_on_real_photos(name: str, photos) -> None:
    proc = PROCESSORS[name]()
    spec = spec_from(proc)
    for photo, frame in photos.items():
        want = proc(images=np.ascontiguousarray(frame[..., ::-1]),
                    return_tensors="np")["pixel_values"][0]
        got = prefix_output(spec, frame)
        assert got.shape == want.shape, (photo, got.shape, want.shape)
        d = grey_levels(spec, got, want)
        # the prefix is Pillow's uint8 resize bit for bit (issue 25; before: up to 1 grey
        # level for linear, 8 for cubic): only float32 normalisation remains, < 1e-4
        assert d.max() <= 0.01, (photo, d.max())


def test_convnext_rule_and_provenance() -> None:
    small = derive(T.ConvNextImageProcessorPil(size={"shortest_edge": 224}, resample=3))
    assert (small.spec.resize, small.spec.resize_shorter, small.spec.size) == (
        "shorter_crop", 256, (224, 224))  # int(224 / (224/256)) then a 224 crop
    assert small.spec.size_rounding == "floor" and small.spec.antialias
    assert small.source == "hf" and small.read["crop_pct"] == pytest.approx(0.875)
    big = derive(T.ConvNextImageProcessorPil()).spec  # 384: stretched, no crop
    assert (big.resize, big.size) == ("stretch", (384, 384))


def test_efficientnet_include_top_divides_by_std_twice() -> None:
    spec = spec_from(T.EfficientNetImageProcessorPil())
    std = np.array(T.EfficientNetImageProcessorPil().image_std)
    np.testing.assert_allclose(spec.std, std * std, rtol=1e-6)


def test_a_stretch_then_a_crop_is_read_as_stretch_crop() -> None:
    spec = spec_from(T.DeiTImageProcessorPil())
    assert (spec.resize, spec.crop_from, spec.size) == ("stretch_crop", (256, 256), (224, 224))
    vit = spec_from(T.ViTImageProcessorPil(do_center_crop=True,
                                           crop_size={"height": 200, "width": 180}))
    assert (vit.resize, vit.crop_from, vit.size) == ("stretch_crop", (224, 224), (200, 180))


def test_saved_config_file_and_folder(tmp_path) -> None:
    proc = PROCESSORS["convnext-224"]()
    proc.save_pretrained(tmp_path)
    assert spec_from(tmp_path) == spec_from(tmp_path / "preprocessor_config.json") == \
        spec_from(proc)


@pytest.mark.parametrize("kwargs, step", [
    ({"resample": 1}, "resample"),  # PIL code 1 is Lanczos (OpenCV's 1 would be linear)
    ({"resample": 4}, "resample"),  # box
    ({"do_pad": True}, "do_pad"),
])
def test_what_cannot_be_expressed_is_refused_naming_the_step(kwargs, step) -> None:
    with pytest.raises(SpecError, match=step):
        spec_from(T.ViTImageProcessorPil(**kwargs))
