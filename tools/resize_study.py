"""Resizing: speed of the ONNX prefix at 1 thread and agreement with Pillow, measured.

Writes docs/resize.json and docs/resize.md (python tools/resize_study.py). Times the
onnxruntime Resize node alone (a 500x375 float frame to 341x256) and the whole baked prefix
(a 640x480 uint8 frame to a 224 centre crop) for plain linear/cubic and antialiased
(Pillow) linear/cubic, plus OpenCV and the numpy host filter on the same frame; then the
grey-level difference of the three executions to Pillow's own resize (float mode: its
kernel; uint8 mode: what a PIL-fed training pipeline saw) on real photos.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from PIL import Image

from edgeinfer import PreprocessSpec
from edgeinfer.converter.preprocess_graph import build_preprocess_model
from edgeinfer.data.calibration import package_photos

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODES = {  # name: (Resize attributes, spec fields)
    "linear": ({"mode": "linear"}, {"interpolation": "linear"}),
    "cubic (a=-0.75)": ({"mode": "cubic", "cubic_coeff_a": -0.75}, {"interpolation": "cubic"}),
    "linear antialias": ({"mode": "linear", "antialias": 1, "exclude_outside": 1},
                         {"interpolation": "linear", "antialias": True}),
    "cubic antialias (a=-0.5, Pillow)": (
        {"mode": "cubic", "cubic_coeff_a": -0.5, "antialias": 1, "exclude_outside": 1},
        {"interpolation": "cubic", "antialias": True}),
}


def session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def median_ms(fn, n: int = 30) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def resize_node(attrs: dict):
    node = helper.make_node("Resize", ["x", "", "", "s"], ["y"],
                            coordinate_transformation_mode="half_pixel", **attrs)
    g = helper.make_graph([node], "r", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None]),
        helper.make_tensor_value_info("s", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    return m


def timings(frames: list[np.ndarray]) -> dict:
    big = cv2.resize(frames[0], (640, 480), interpolation=cv2.INTER_AREA)
    f = cv2.resize(frames[0], (500, 375), interpolation=cv2.INTER_AREA)
    x = np.ascontiguousarray(f.astype(np.float32).transpose(2, 0, 1)[None])
    sizes = np.array([1, 3, 256, 341], np.int64)
    out = {"resize_node_500x375_to_341x256": {}, "prefix_640x480_to_224": {}}
    for name, (attrs, fields) in MODES.items():
        s = session(resize_node(attrs))
        out["resize_node_500x375_to_341x256"][name] = median_ms(
            lambda s=s: s.run(None, {"x": x, "s": sizes}))
        spec = PreprocessSpec(size=(224, 224), resize="shorter_crop", resize_shorter=256,
                              **fields)
        p = session(build_preprocess_model(spec))
        out["prefix_640x480_to_224"][name] = median_ms(
            lambda p=p: p.run(None, {"frame": big[None]}))
    ff = f.astype(np.float32)
    out["opencv_500x375_float"] = {
        "linear": median_ms(lambda: cv2.resize(ff, (341, 256), interpolation=cv2.INTER_LINEAR)),
        "cubic": median_ms(lambda: cv2.resize(ff, (341, 256), interpolation=cv2.INTER_CUBIC)),
        "area": median_ms(lambda: cv2.resize(ff, (341, 256), interpolation=cv2.INTER_AREA))}
    host = {}
    full = cv2.resize(frames[0], (1920, 1080))
    for interp in ("linear", "cubic"):
        g = PreprocessSpec(size=(224, 224), resize="shorter_crop", resize_shorter=256,
                           interpolation=interp, antialias=True).geometry()
        host[f"{interp} antialias, 640x480"] = median_ms(lambda g=g: g(big), 10)
        host[f"{interp} antialias, 1920x1080"] = median_ms(lambda g=g: g(full), 5)
    out["numpy_host_filter_to_224_crop (TFLite resized signature)"] = host
    return out


def pillow_agreement(frames: list[np.ndarray]) -> dict:
    import torch

    res = {}
    for interp, rs in (("linear", Image.BILINEAR), ("cubic", Image.BICUBIC)):
        spec = PreprocessSpec(size=(224, 224), interpolation=interp, antialias=True,
                              scale=1.0, model_color="RGB", layout="NHWC")
        sess = session(build_preprocess_model(spec))
        mod = spec.to_torch()
        acc = {k: [] for k in ("onnx", "torch", "numpy")}
        u8 = []
        for fr in frames:
            rgb = np.ascontiguousarray(fr[..., ::-1])
            pil_f = np.clip(np.stack([np.asarray(Image.fromarray(rgb[..., c].astype(
                np.float32), "F").resize((224, 224), rs)) for c in range(3)], -1), 0, 255)
            pil_u8 = np.asarray(Image.fromarray(rgb).resize((224, 224), rs), np.float32)
            with torch.inference_mode():
                t = mod(torch.from_numpy(fr[None])).numpy()[0]
            runs = {"onnx": sess.run(None, {"frame": fr[None]})[0][0], "torch": t,
                    "numpy": spec.reference(fr)[0]}
            for k, v in runs.items():
                acc[k].append(float(np.abs(v - pil_f).max()))
            d = np.abs(runs["onnx"] - pil_u8)
            u8.append((float(d.max()), float(d.mean()), float((d > 1).mean())))
        res[interp] = {
            "vs_pillow_float_max": {k: round(max(v), 4) for k, v in acc.items()},
            "vs_pillow_uint8": {"max": round(max(u[0] for u in u8), 3),
                                "mean": round(float(np.mean([u[1] for u in u8])), 3),
                                "p99_frame_max": round(float(np.quantile([u[0] for u in u8],
                                                                         0.99)), 3),
                                "fraction_over_1": round(float(np.mean([u[2] for u in u8])),
                                                         5)}}
    return res


def photo_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """The installed real photos at native resolution, then seeded crops of them (sizes
    from 240 px to the whole photo, any aspect): resizing is measured on real pixels, never
    on frames a resize has already smoothed."""
    photos = list(package_photos().values())
    rng = np.random.default_rng(seed)
    frames = list(photos)
    while len(frames) < n:
        p = photos[int(rng.integers(len(photos)))]
        h, w = p.shape[:2]
        ch, cw = int(rng.integers(240, h + 1)), int(rng.integers(240, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        frames.append(np.ascontiguousarray(p[y:y + ch, x:x + cw]))
    return frames[:n]


def main() -> int:
    frames = photo_frames(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    flags = Path("/proc/cpuinfo").read_text()
    env = {"cpu_flags": [f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f}" in flags],
           "load_average_before": os.getloadavg(), "threads": 1,
           "onnxruntime": ort.__version__, "pillow": Image.__version__,
           "frames": len(frames)}
    result = {"env": env, "timings_ms": timings(frames),
              "pillow_agreement_grey_levels": pillow_agreement(frames)}
    result["env"]["load_average_after"] = os.getloadavg()
    (DOCS / "resize.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
