"""spec_from, measured: for each source kind, the spec derived from one real config and
the grey-level difference between the artifact's prefix and that library's own
preprocessing on real photos. Writes docs/spec_from.json (python tools/spec_from_study.py N).

Oracles: Hugging Face processors (transformers, PIL backend) and albumentations run for
real; timm and torchvision cannot be imported here (CUDA-linked torchvision wheel), so
their PIL evaluation path is run with Pillow under torchvision's own rules
(transforms/functional.py: Resize(int) -> int(size * long / short), CenterCrop ->
int(round(margin / 2))).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from edgeinfer.converter.preprocess_graph import build_preprocess_model
from edgeinfer.converter.spec_from import derive
from edgeinfer.converter.spec_from.torchvision import derive_steps as tv_steps
from edgeinfer.data.calibration import package_photos

DOCS = Path(__file__).resolve().parents[1] / "docs"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# timm 'resnet50.a1_in1k' (timm/models/resnet.py: _cfg | _rcfg), huggingface/pytorch-image-models
RESNET50_A1 = {"input_size": (3, 224, 224), "crop_pct": 0.95, "interpolation": "bicubic",
               "mean": MEAN, "std": STD, "test_input_size": (3, 288, 288)}


def pil_eval(bgr: np.ndarray, shorter: int, crop: int, resample: int) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    ns, nl = shorter, int(shorter * long / short)
    nw, nh = (ns, nl) if w <= h else (nl, ns)
    img = img.resize((nw, nh), resample)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    x = np.asarray(img.crop((left, top, left + crop, top + crop)), np.float32) / 255
    return ((x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def cases() -> dict:
    import albumentations as A
    import cv2
    import transformers as T

    def hf(proc):
        return derive(proc), lambda f: proc(images=np.ascontiguousarray(f[..., ::-1]),
                                            return_tensors="np")["pixel_values"][0]

    def alb(pipe):
        return derive(pipe), lambda f: pipe(image=np.ascontiguousarray(f[..., ::-1]))[
            "image"].numpy()

    tv = derive(RESNET50_A1)
    return {
        "hf ConvNextImageProcessor (shortest_edge 224, bicubic)": hf(
            T.ConvNextImageProcessorPil(size={"shortest_edge": 224}, resample=3)),
        "hf ViTImageProcessor (224 stretch, bilinear)": hf(T.ViTImageProcessorPil()),
        "hf EfficientNetImageProcessor (346 stretch, bicubic, include_top)": hf(
            T.EfficientNetImageProcessorPil()),
        "timm resnet50.a1_in1k (235 -> 224, bicubic)": (
            tv, lambda f: pil_eval(f, 235, 224, Image.BICUBIC)),
        "torchvision Resize(256) CenterCrop(224) (bilinear)": (
            # a torchvision Compose's steps, as spec_from reads them from the objects
            tv_steps([("Resize", {"size": 256, "interpolation": "bilinear",
                                  "max_size": None, "antialias": True}),
                      ("CenterCrop", {"size": (224, 224)}), ("ToTensor", {}),
                      ("Normalize", {"mean": MEAN, "std": STD})], "BGR", "NCHW"),
            lambda f: pil_eval(f, 256, 224, Image.BILINEAR)),
        "albumentations SmallestMaxSize(256) CenterCrop(224) (cv2 linear)": alb(A.Compose(
            [A.SmallestMaxSize(256), A.CenterCrop(224, 224), A.Normalize(), A.ToTensorV2()])),
        "albumentations SmallestMaxSize(256) CenterCrop(224) (cv2 cubic)": alb(A.Compose(
            [A.SmallestMaxSize(256, interpolation=cv2.INTER_CUBIC), A.CenterCrop(224, 224),
             A.Normalize(), A.ToTensorV2()])),
    }


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


def compare(spec, oracle, frames: list[np.ndarray]) -> dict:
    """Grey levels between the artifact's prefix and the library's own output."""
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    a, _ = spec.affine()
    maxes, means, over = [], [], []
    for f in frames:
        got = sess.run(None, {"frame": f[None]})[0][0]
        diff = np.abs(got - oracle(f)) / np.abs(a).reshape(-1, 1, 1)
        maxes.append(float(diff.max()))
        means.append(float(diff.mean()))
        over.append(float((diff > 1).mean()))
    return {"max": round(max(maxes), 3), "median_frame_max": round(float(np.median(maxes)), 3),
            "mean": round(float(np.mean(means)), 3),
            "fraction_over_1": round(float(np.mean(over)), 5)}


def main() -> int:
    frames = photo_frames(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    out = {"env": {"frames": len(frames), "load_average": os.getloadavg()}, "cases": {}}
    for name, (d, oracle) in cases().items():
        out["cases"][name] = {"source": d.source, "spec": d.spec.to_dict(), "read": d.read,
                              "notes": list(d.notes),
                              "grey_levels": compare(d.spec, oracle, frames)}
        if (d.spec.size_rounding, d.spec.crop_rounding) != ("half_up", "floor"):
            # what the same numbers typed by hand into the old spec (no rounding fields) gave
            old = replace(d.spec, size_rounding="half_up", crop_rounding="floor")
            out["cases"][name]["grey_levels_with_default_rounding"] = compare(old, oracle,
                                                                              frames)
        print(name, {k: v for k, v in out["cases"][name].items() if "grey" in k}, flush=True)
    (DOCS / "spec_from.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
