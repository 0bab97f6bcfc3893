"""PreprocessSpec: validation, JSON, and the three executions held together on real photos."""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeinfer import PreprocessSpec, SpecError
from edgeinfer.converter.preprocess_graph import build_preprocess_model
from edgeinfer.data.datasets import sample_photos
from edgeinfer.parity.tolerances import preprocess_tolerance, tolerance
from edgeinfer.spec_torch import PreprocessModule

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    p = sample_photos()
    # an odd-sized small crop exercises upscaling and odd rounding
    p["small_crop"] = np.ascontiguousarray(p["chelsea"][37:150, 11:88])
    return p


def _grid() -> list[PreprocessSpec]:
    specs = []
    for resize, interp, aa, color, layout in itertools.product(
        ["stretch", "shorter_crop", "letterbox"], ["linear", "cubic"], [False, True],
        ["RGB", "BGR", "GRAY"], ["NCHW", "NHWC"],
    ):
        if aa and layout == "NHWC":  # layout is independent of resizing: keep the grid small
            continue
        norm = IMAGENET if color != "GRAY" else {"mean": (0.5,), "std": (0.25,)}
        specs.append(PreprocessSpec(
            size=(224, 200), resize=resize, interpolation=interp, antialias=aa,
            model_color=color, layout=layout,
            resize_shorter=256 if resize == "shorter_crop" else None,
            pad_value=114.0 if resize == "letterbox" else 0.0, **norm,
        ))
    for interp, aa in itertools.product(["linear", "cubic"], [False, True]):
        # stretched to a fixed size, aspect ignored, then centre-cropped (odd margins)
        specs.append(PreprocessSpec(size=(224, 200), resize="stretch_crop",
                                    crop_from=(251, 229), interpolation=interp, antialias=aa,
                                    **IMAGENET))
    return specs


@pytest.mark.parametrize("spec", _grid(), ids=lambda s: (
    f"{s.resize}-{s.interpolation}-aa{int(s.antialias)}-{s.model_color}-{s.layout}"))
def test_three_executions_agree_on_real_photos(spec: PreprocessSpec, photos) -> None:
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    module = spec.to_torch()
    tol = preprocess_tolerance(spec.interpolation, spec.antialias)
    for name, frame in photos.items():
        ref = spec.reference(frame)
        graph = sess.run(None, {"frame": frame[None]})[0]
        with torch.inference_mode():
            eager = module(torch.from_numpy(frame[None])).numpy()
        assert ref.shape == graph.shape == eager.shape == spec.model_input_shape(), name
        assert np.isfinite(graph).all() and np.isfinite(eager).all()
        assert np.abs(graph - ref).max() <= tol.max_abs, (name, "onnx vs reference")
        assert np.abs(eager - ref).max() <= tol.max_abs, (name, "torch vs reference")


def test_tolerance_is_tight_enough_to_catch_a_wrong_mean(photos) -> None:
    """The registry bound must be far below the error of a classic preprocessing bug."""
    good = PreprocessSpec(size=(224, 224), resize="shorter_crop", **IMAGENET)
    wrong = PreprocessSpec(size=(224, 224), resize="shorter_crop", mean=(0.5, 0.5, 0.5),
                           std=IMAGENET["std"])
    swapped = PreprocessSpec(size=(224, 224), resize="shorter_crop", model_color="BGR",
                             **IMAGENET)
    tol = preprocess_tolerance("linear", False)
    frame = photos["astronaut"]
    for bad in (wrong, swapped):
        assert np.abs(good.reference(frame) - bad.reference(frame)).max() > 100 * tol.max_abs


def test_batch_of_frames_matches_single_frames(photos) -> None:
    spec = PreprocessSpec(size=(96, 96), resize="letterbox", **IMAGENET)
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    frame = photos["coffee"]
    batch = np.stack([frame, frame[:, ::-1]])
    out = sess.run(None, {"frame": batch})[0]
    for i in range(2):
        single = sess.run(None, {"frame": np.ascontiguousarray(batch[i:i + 1])})[0]
        np.testing.assert_array_equal(out[i:i + 1], single)


def test_gray_frame_into_gray_model() -> None:
    spec = PreprocessSpec(size=(28, 28), frame_color="GRAY", model_color="GRAY",
                          mean=(0.286,), std=(0.353,))
    frame = (np.arange(56 * 56) % 251).astype(np.uint8).reshape(56, 56)
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    graph = sess.run(None, {"frame": frame[None, :, :, None]})[0]
    assert graph.shape == (1, 1, 28, 28)
    np.testing.assert_allclose(graph, spec.reference(frame), atol=1e-5)


def test_json_round_trip() -> None:
    spec = PreprocessSpec(size=(240, 320), frame_color="RGB", model_color="BGR",
                          resize="letterbox", interpolation="cubic", pad_value=114,
                          layout="NHWC", **IMAGENET)
    again = PreprocessSpec.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)


@pytest.mark.parametrize("bad, match", [
    ({"size": [224, 224], "model_color": "YUV"}, "model_color"),
    ({"size": [224, 224], "interpolation": "nearest"}, "interpolation"),
    ({"size": [0, 224]}, "size"),
    ({"size": [224, 224], "std": [0.2, 0.0, 0.2]}, "std"),
    ({"size": [224, 224], "mean": [0.1, 0.2]}, "mean"),
    ({"size": [224, 224], "resize": "shorter_crop", "resize_shorter": 200}, "resize_shorter"),
    ({"size": [224, 224], "colour": "RGB"}, "unknown spec field"),
    ({"model_color": "RGB"}, "size"),
    ({"size": "big"}, "size"),
])
def test_invalid_specs_raise_spec_error(bad: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        PreprocessSpec.from_dict(bad)


def test_invalid_json_raises_spec_error() -> None:
    with pytest.raises(SpecError, match="JSON"):
        PreprocessSpec.from_json("{not json")
    with pytest.raises(SpecError, match="object"):
        PreprocessSpec.from_json("[1, 2]")


# ---------------------------------------------------------------- Pillow and colour oracles
def _pil_resize(frame: np.ndarray, size_hw: tuple[int, int], resample: int,
                mode: str) -> np.ndarray:
    """Pillow's own resize, per channel: mode 'F' (float32, Pillow's kernel, no rounding)
    or 'L' (uint8, what a training pipeline fed by PIL images sees)."""
    from PIL import Image

    h, w = size_hw
    chans = [np.asarray(Image.fromarray(frame[:, :, c].astype(
        np.float32 if mode == "F" else np.uint8), mode=mode).resize((w, h), resample))
        for c in range(frame.shape[2])]
    return np.stack(chans, axis=-1).astype(np.float32)


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_antialiased_resize_is_pillows_in_all_three_executions(interp: str, photos) -> None:
    """Pillow (independent C code) is the oracle: graph, torch and numpy all compute its
    uint8 resize - what a PIL-fed training pipeline saw - within the registry bound
    (measured bit-exact). Its float mode ('F', no rounding between the passes) is another
    filter now: tests/test_resample_pillow.py has stripes, noise and upscales."""
    from PIL import Image

    resample = {"linear": Image.BILINEAR, "cubic": Image.BICUBIC}[interp]
    spec = PreprocessSpec(size=(224, 200), interpolation=interp, antialias=True, scale=1.0,
                          model_color="BGR", layout="NHWC")
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    module = spec.to_torch()
    tol = tolerance("resample", "pillow")  # grey levels; share of identical values
    for name, frame in photos.items():
        pil_u8 = _pil_resize(frame, spec.size, resample, "L")
        with torch.inference_mode():
            eager = module(torch.from_numpy(frame[None])).numpy()[0]
            static = PreprocessModule(spec, static_resize=True)(
                torch.from_numpy(frame[None])).numpy()[0]
        runs = {"reference": spec.reference(frame)[0], "torch": eager,
                "torch-static (TFLite)": static,
                "onnx": sess.run(None, {"frame": frame[None]})[0][0]}
        for what, out in runs.items():
            assert np.abs(out - pil_u8).max() <= tol.max_abs, (name, what)
            assert np.mean(np.floor(out + 0.5) == pil_u8) >= tol.min_top1, (name, what)


def test_color_step_against_opencv_and_absolute_values(photos) -> None:
    """The three executions share spec.color_matrix(), so they cannot catch a wrong matrix:
    check it against cv2.cvtColor and against the absolute values of a pure-red frame."""
    import cv2

    red_bgr = np.zeros((8, 8, 3), np.uint8)
    red_bgr[..., 2] = 255
    for model_color, want in (("RGB", [255, 0, 0]), ("BGR", [0, 0, 255]),
                              ("GRAY", [0.299 * 255])):
        spec = PreprocessSpec(size=(8, 8), model_color=model_color, scale=1.0,
                              layout="NHWC")
        sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            eager = spec.to_torch()(torch.from_numpy(red_bgr[None])).numpy()
        for out in (spec.reference(red_bgr), eager,
                    sess.run(None, {"frame": red_bgr[None]})[0]):
            np.testing.assert_allclose(out[0, 0, 0], want, atol=1e-3)
    frame = photos["astronaut"]
    for model_color, code in (("RGB", cv2.COLOR_BGR2RGB), ("GRAY", cv2.COLOR_BGR2GRAY)):
        spec = PreprocessSpec(size=frame.shape[:2], model_color=model_color, scale=1.0,
                              layout="NHWC")
        oracle = cv2.cvtColor(frame.astype(np.float32), code).reshape(spec.model_input_shape())
        assert np.abs(spec.reference(frame) - oracle).max() < 1e-3, model_color


def test_spec_accepts_antialiased_cubic() -> None:
    spec = PreprocessSpec(size=(224, 224), interpolation="cubic", antialias=True)
    assert PreprocessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("size_rounding, crop_rounding", [("floor", "half_even"),
                                                          ("floor", "floor")])
def test_torchvision_and_hf_rounding_in_all_three_executions(size_rounding, crop_rounding,
                                                             photos) -> None:
    """torchvision: int(256 * 640 / 427) = 383 and a 235 -> 224 crop starting at
    round(5.5) = 6; HF/albumentations floor both. The three executions must pick the
    same pixel grid, so they agree to float rounding, not to a pixel."""
    spec = PreprocessSpec(size=(224, 224), resize="shorter_crop", resize_shorter=235,
                          size_rounding=size_rounding, crop_rounding=crop_rounding,
                          interpolation="cubic", antialias=True, **IMAGENET)
    assert spec.resized_size(427, 640) == (235, 352)  # half_up would give 353
    assert spec.crop_offsets(235, 352) == ((6, 64) if crop_rounding == "half_even"
                                           else (5, 64))
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    tol = preprocess_tolerance("cubic", True).max_abs
    for name, frame in photos.items():
        ref = spec.reference(frame)
        with torch.inference_mode():
            eager = spec.to_torch()(torch.from_numpy(frame[None])).numpy()
        assert np.abs(sess.run(None, {"frame": frame[None]})[0] - ref).max() <= tol, name
        assert np.abs(eager - ref).max() <= tol, name


def test_new_fields_at_their_defaults_stay_out_of_the_json() -> None:
    """Older readers reject unknown fields: a default spec must serialise as before."""
    assert "size_rounding" not in PreprocessSpec(size=(8, 8)).to_dict()
    assert "crop_rounding" not in PreprocessSpec(size=(8, 8)).to_dict()
    spec = PreprocessSpec(size=(8, 8), resize="shorter_crop", size_rounding="floor",
                          crop_rounding="half_even")
    assert PreprocessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("field,value,needle", [
    ("antialias", "false", "true or false"),  # a non-empty string meant True before
    ("antialias", 0, "true or false"),
    ("size", [224.7, 224], "whole pixels"),  # truncated to 224 before
    ("size", [True, 2], "whole pixels"),
    ("scale", "0.1", "a number"),
    ("mean", "0.5", "list of numbers"),
    ("resize_shorter", 256.0, "an integer"),
    ("layout", 1, "a string"),
    ("mean", ["0.5"], "list of numbers"),  # float("0.5") alone would have taken it
    ("std", True, "list of numbers"),  # a bool is not a number (float(True) == 1.0)
    ("version", "1", "an integer"),
])
def test_spec_fields_are_typed(field, value, needle):
    d = {"size": [8, 8], field: value}
    if field == "resize_shorter":
        d["resize"] = "shorter_crop"
    with pytest.raises(SpecError, match=needle):
        PreprocessSpec.from_dict(d)


def test_typed_fields_accept_what_json_and_numpy_give():
    s = PreprocessSpec.from_dict({"size": [224, 224], "mean": 0.5, "std": [0.25, 0.5, 1.0],
                                  "resize": "shorter_crop", "resize_shorter": 256,
                                  "antialias": True, "scale": 1, "pad_value": 0})
    assert s.mean == (0.5,) and s.std == (0.25, 0.5, 1.0) and s.antialias is True
    n = PreprocessSpec(size=(np.int64(32), np.int64(32)), mean=[np.float32(0.5)],
                       std=np.array([0.5]), scale=np.float64(1 / 255))
    assert n.size == (32, 32) and n.mean == (0.5,)
