"""The measurements behind docs/doctor/: the spec audit on wrong specs, the doctor on
deliberately broken device pipelines, and shift/TTA curves.

    python tools/doctor_study.py [--part a|b|c|all]

(a) our own small Fashion-MNIST model (tests/doctor/small_fashion) with the training spec,
    0.5/0.5 and the mean/std on the 0-255 scale: labelled and label-free audit verdicts; the
    bundled models' correct specs; the audit's share of a 256-frame conversion.
(b) broken devices written here in plain numpy/OpenCV (independent of the simulation code)
    run the framework model; the doctor ranks the culprits against their predictions.
    EfficientNet-Lite0 on 57 real photo crops, the bundled fashion model on the test split
    and, as a final check on data no test tunes on, the train split.
(c) ``edgeinfer doctor --shift`` on fashion (500 test frames) and on EfficientNet-Lite0
    (19 real photos, unlabelled: agreement with the clean prediction).
Outputs: docs/doctor/study.json, docs/doctor/study.md and the CLI report folders.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "doctor"
SMALL = ROOT / "tests" / "doctor" / "small_fashion"


def env() -> dict:
    flags = sorted({f for f in ("avx2", "avx512f", "avx512_vnni")
                    if f in Path("/proc/cpuinfo").read_text()})
    return {"cpu_flags": flags, "load_average": os.getloadavg(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def photo_pool() -> dict[str, np.ndarray]:
    """19 real photos that install offline (scikit-image, scikit-learn), BGR."""
    import skimage.data as d
    from sklearn.datasets import load_sample_image

    rgb = {n: getattr(d, n)() for n in ("astronaut", "coffee", "chelsea", "rocket",
                                         "immunohistochemistry", "hubble_deep_field",
                                         "retina")}
    left, right, _ = d.stereo_motorcycle()
    rgb |= {"motorcycle_left": left, "motorcycle_right": right,
            "china": load_sample_image("china.jpg"), "flower": load_sample_image("flower.jpg")}
    out = {k: np.ascontiguousarray(v[:, :, :3][:, :, ::-1]) for k, v in rgb.items()}
    for n in ("camera", "coins", "moon", "brick", "grass", "gravel", "clock", "cell"):
        g = np.asarray(getattr(d, n)(), np.uint8)
        out[n] = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    return out


def crops(photos: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Each photo whole and two 75% windows (top-left, bottom-right): 57 frames."""
    frames, ids = [], []
    for name, f in photos.items():
        h, w = f.shape[:2]
        ch, cw = int(h * 0.75), int(w * 0.75)
        for tag, img in (("full", f), ("tl", f[:ch, :cw]), ("br", f[h - ch:, w - cw:])):
            frames.append(np.ascontiguousarray(img))
            ids.append(f"{name}_{tag}.png")
    return frames, ids


# ------------------------------------------------------------------ (a) spec audit
def part_a() -> dict:
    from edgeinfer.converter.api import convert
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import FrameSet, load_frames
    from edgeinfer.diagnose.audit import audit_spec
    from edgeinfer.spec import PreprocessSpec

    spec = PreprocessSpec.from_json((SMALL / "spec.json").read_text())
    specs = {"correct": spec,
             "mean/std 0.5/0.5": replace(spec, mean=(0.5,), std=(0.5,)),
             "mean/std on the 0-255 scale": replace(spec, mean=(spec.mean[0] * 255,),
                                                    std=(spec.std[0] * 255,))}
    factory = f"{SMALL / 'net.py'}:build"
    src = resolve_source(factory, spec, SMALL / "weights.pt")
    fs = load_frames("builtin:fashion-test", spec, limit=256)
    rows = []
    for name, sp in specs.items():
        for labelled in (True, False):
            frames = FrameSet(fs.name, fs.frames, fs.labels if labelled else None)
            r = audit_spec(src, sp, frames)
            rows.append({"spec": name, "labelled": labelled, "verdict": r.verdict,
                         "culprit": r.culprit, "given_accuracy": r.given.accuracy,
                         "given_bn_fit": r.given.bn_fit, "seconds": r.seconds,
                         "corrected": r.corrected_spec.to_dict() if r.corrected_spec else None,
                         "message": r.message,
                         "best": _best_row(r)})
            print(f"(a) {name:28s} labelled={labelled!s:5s} {r.verdict:7s} {r.culprit:22s} "
                  f"{r.seconds:.1f}s", flush=True)
    bundled = []
    pool = photo_pool()
    for name, data in (("fashion", "builtin:fashion-test"), ("efficientnet-lite0", None)):
        sp = resolve(name, None).spec
        s = resolve_source(name, sp)
        f = (load_frames(data, sp, limit=256) if data else
             FrameSet(f"{len(pool)} photos", list(pool.values()), None, list(pool)))
        for labelled in ((True, False) if f.labels is not None else (False,)):
            r = audit_spec(s, sp, FrameSet(f.name, f.frames, f.labels if labelled else None))
            bundled.append({"model": name, "data": f.name, "n": r.n, "labelled": labelled,
                            "verdict": r.verdict, "given_bn_fit": r.given.bn_fit,
                            "best_other_bn_fit": min((x.bn_fit for x in r.rows
                                                      if x.bn_fit is not None), default=None),
                            "seconds": r.seconds})
            print(f"(a) bundled {name} labelled={labelled} {r.verdict} {r.seconds:.1f}s",
                  flush=True)
    # speed: a whole 256-frame conversion with the audit inside it
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = convert(factory, Path(tmp) / "m.onnx", weights=SMALL / "weights.pt", spec=spec,
                      labels=SMALL / "labels.txt", parity_data="builtin:fashion-test",
                      parity_limit=256)
        total = time.perf_counter() - t0
    speed = {"convert_seconds": total,
             "audit_seconds": res.metadata.provenance["spec_audit"]["seconds"], "frames": 256}
    print(f"(a) speed {speed}", flush=True)
    return {"own_model": rows, "bundled": bundled, "speed": speed}


def _best_row(r) -> dict | None:
    ok = [x for x in r.rows if x.culprit == r.culprit] if r.culprit != "none" else []
    if not ok:
        return None
    x = ok[0] if r.corrected_spec is None else next(
        (x for x in ok if x.spec == r.corrected_spec), ok[0])
    return {"detail": x.detail, "accuracy": x.accuracy, "agreement": x.agreement,
            "bn_fit": x.bn_fit}


# ------------------------------------------------------------------ (b) broken devices
def _run_device(module, frames, prep, train: bool = False, batch: int = 1) -> np.ndarray:
    m = copy.deepcopy(module)
    m.train(train)
    torch.manual_seed(123)  # the device's own dropout masks (not the simulation's)
    out = []
    with torch.no_grad():
        for s in range(0, len(frames), batch):
            x = np.stack([prep(f) for f in frames[s:s + batch]]).astype(np.float32)
            out += m(torch.from_numpy(x)).argmax(-1).tolist()
    return np.array(out)


def effnet_prep(rgb: bool = True, scale: float = 1.0, mean=127.0, std=128.0,
                interp: int = cv2.INTER_LINEAR, crop: bool = True):
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def prep(f: np.ndarray) -> np.ndarray:
        img = cv2.cvtColor(f, cv2.COLOR_BGR2RGB) if rgb else f
        if interp != cv2.INTER_NEAREST:
            img = img.astype(np.float32)
        h, w = img.shape[:2]
        if crop:
            nh, nw = round(h * 256 / min(h, w)), round(w * 256 / min(h, w))
            img = cv2.resize(img, (nw, nh), interpolation=interp)
            t, le = (nh - 224) // 2, (nw - 224) // 2
            img = img[t:t + 224, le:le + 224]
        else:
            img = cv2.resize(img, (224, 224), interpolation=interp)
        return ((img.astype(np.float32) * scale - mean) / std).transpose(2, 0, 1)

    return prep


def gray_prep(scale=1 / 255, mean=0.2860, std=0.3530, transpose=False):
    def prep(f: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32)
        g = g.T if transpose else g
        return ((g * scale - mean) / std)[None]

    return prep


EFFNET_SCENARIOS = {  # name: (expected culprit, device preprocessing, train mode)
    "unbroken pipeline": ("none", effnet_prep(), False),
    "BGR frames fed as RGB": ("channel_order", effnet_prep(rgb=False), False),
    "/255 twice": ("double_scaling", effnet_prep(scale=1 / 255 ** 2, mean=0.498, std=0.502),
                   False),
    "no /255": ("missing_scaling", effnet_prep(scale=1.0, mean=0.498, std=0.502), False),
    "ImageNet mean/std": ("mean_std_mismatch", effnet_prep(
        scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)), False),
    "nearest-neighbour resize": ("resize_interpolation", effnet_prep(interp=cv2.INTER_NEAREST),
                                 False),
    "stretch instead of centre crop": ("resize_policy", effnet_prep(crop=False), False),
    "training mode, batch 1": ("train_mode", effnet_prep(), True),
}
FASHION_SCENARIOS = {
    "unbroken pipeline": ("none", gray_prep(), False),
    "no /255": ("missing_scaling", gray_prep(scale=1.0), False),
    "/255 twice": ("double_scaling", gray_prep(scale=1 / 255 ** 2), False),
    "ImageNet mean/std (gray)": ("mean_std_mismatch", gray_prep(mean=0.449, std=0.226), False),
    "0.5/0.5 mean/std": ("mean_std_mismatch", gray_prep(mean=0.5, std=0.5), False),
    "height/width transposed": ("layout", gray_prep(transpose=True), False),
    "training mode, batch 32": ("train_mode", gray_prep(), True),
}


def _scenarios(name: str, source, spec, frames, labels, scenarios) -> list[dict]:
    from edgeinfer.check.doctor.run import culprit_outcomes, rank

    t0 = time.perf_counter()
    outcomes, _notes = culprit_outcomes(source, spec, frames)
    sim_s = time.perf_counter() - t0
    rows = []
    for scen, (expected, prep, train) in scenarios.items():
        dev = _run_device(source.module, frames, prep, train, batch=32 if "32" in scen else 1)
        ranked, _, fbn = rank(outcomes, labels, dev)
        top, second = ranked[0], ranked[1]
        rows.append({"model": name, "scenario": scen, "expected": expected, "top": top.name,
                     "top_detail": top.detail, "top_agreement": top.score,
                     "second": second.name, "second_agreement": second.score,
                     "margin": top.score - second.score, "correct": top.name == expected,
                     "device_accuracy": float((dev == labels).mean())
                     if labels is not None else None,
                     "reference_agreement": next(r.score for r in ranked if r.name == "none"),
                     "frames": len(frames), "simulation_seconds": sim_s})
        print(f"(b) {name:28s} {scen:32s} top {top.name:22s} {top.score:.3f} "
              f"2nd {second.name:22s} {second.score:.3f} {'OK' if rows[-1]['correct'] else 'X'}",
              flush=True)
    return rows


def part_b() -> dict:
    from edgeinfer.cli import main as cli
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames

    rows = []
    sp = resolve("efficientnet-lite0", None).spec
    eff = resolve_source("efficientnet-lite0", sp)
    frames, ids = crops(photo_pool())
    rows += _scenarios(f"efficientnet-lite0 ({len(frames)} crops)", eff, sp, frames, None,
                       EFFNET_SCENARIOS)
    fsp = resolve("fashion", None).spec
    fas = resolve_source("fashion", fsp)
    for split in ("test", "train"):
        fs = load_frames(f"builtin:fashion-{split}", fsp, limit=512)
        rows += _scenarios(f"fashion ({split} split, 512)", fas, fsp, fs.frames, fs.labels,
                           FASHION_SCENARIOS)
    # one real CLI run, report kept: EfficientNet-Lite0, BGR device
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photo-crops"
        data.mkdir()
        for f, i in zip(frames, ids, strict=True):
            cv2.imwrite(str(data / i), f)
        dev = _run_device(eff.module, frames, effnet_prep(rgb=False))
        with open(Path(tmp) / "device.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("image", "prediction"), *zip(ids, dev.tolist(),
                                                                     strict=True)])
        code = cli(["doctor", "efficientnet-lite0", "--data", str(data), "--device-predictions",
                    str(Path(tmp) / "device.csv"), "--report", str(DOCS / "effnet-bgr")])
    return {"scenarios": rows, "cli_exit_code": code}


# ------------------------------------------------------------------ (d) verdicts
def _jpeg(q: int):
    def f(fr: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", fr, [cv2.IMWRITE_JPEG_QUALITY, q])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return f


def _gamma(g: float):
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return lambda fr: lut[fr]


def _verdicts(name: str, source, spec, frames, labels, scenarios) -> list[dict]:
    """Each device -> rank -> the doctor's verdict (device_verdict), as the CLI decides."""
    from edgeinfer.check.doctor.run import culprit_outcomes, device_verdict, rank
    from edgeinfer.parity.stats import wilson

    t0 = time.perf_counter()
    outcomes, _notes = culprit_outcomes(source, spec, frames)  # the CSV lists data order
    sim_s = time.perf_counter() - t0
    ref_pred = outcomes[0].probs.argmax(-1)
    rows = []
    for scen, (expected, prep, train, batch, shuffled) in scenarios.items():
        order = (np.random.default_rng(7).permutation(len(frames)) if shuffled
                 else np.arange(len(frames)))
        dev = np.empty(len(frames), np.int64)
        dev[order] = _run_device(source.module, [frames[i] for i in order], prep, train,
                                 batch=batch)
        ranked, _, fbn = rank(outcomes, labels, dev)
        top, verdict = device_verdict(ranked, len(dev), fbn)
        named = next((r for r in ranked if r.name == top), None)
        nxt = next((r for r in ranked if r is not named), None)
        agree = float((dev == ref_pred).mean())
        best = max((r for r in ranked if r.share is not None), key=lambda r: r.share,
                   default=None)
        rows.append({"model": name, "scenario": scen, "expected": expected, "top": top,
                     "ok": top in expected,
                     "detail": named.detail if named else None,
                     "agreement": named.score if named else None,
                     "share": named.share if named else None,
                     "next": f"{nxt.name} ({nxt.detail})" if nxt else None,
                     "next_agreement": nxt.score if nxt else None,
                     "margin": named.score - nxt.score if named and nxt else None,
                     "reference_agreement": agree,
                     "reference_ci95": wilson(int((dev == ref_pred).sum()), len(dev)),
                     "best_share": best.share if best else None,
                     "best_share_culprit": f"{best.name} ({best.detail})" if best else None,
                     "device_accuracy": float((dev == labels).mean())
                     if labels is not None else None,
                     "verdict": verdict, "frames": len(frames), "simulation_seconds": sim_s})
        print(f"(d) {name:26s} {scen:40s} -> {top:22s} "
              f"{'OK' if rows[-1]['ok'] else 'X'}", flush=True)
    return rows


def part_d() -> dict:
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames

    mode = ("batchnorm_batch_stats", "train_mode")
    g = gray_prep()
    fashion = {
        "unbroken pipeline": (("none",), g, False, 1, False),
        "training mode, batch 8": (mode, g, True, 8, False),
        "training mode, batch 32": (mode, g, True, 32, False),
        "training mode, batch 8, rows not in call order": (mode + ("unexplained",), g, True,
                                                            8, True),
        "gamma 0.5 on the camera (outside the vocabulary)": (("unexplained",),
                                                            lambda f: g(_gamma(0.5)(f)),
                                                            False, 1, False),
        "JPEG quality 10 (outside the vocabulary)": (("unexplained",),
                                                    lambda f: g(_jpeg(10)(f)), False, 1,
                                                    False),
        "vertical flip (outside the vocabulary)": (("unexplained",), lambda f: g(f[::-1]),
                                                  False, 1, False),
    }
    e = effnet_prep()
    effnet = {
        "unbroken pipeline": (("none",), e, False, 1, False),
        "training mode, batch 8": (mode, e, True, 8, False),
        "vertical flip (outside the vocabulary)": (("unexplained",), lambda f: e(f[::-1]),
                                                  False, 1, False),
        "JPEG quality 10 (outside the vocabulary)": (("unexplained",),
                                                    lambda f: e(_jpeg(10)(f)), False, 1,
                                                    False),
    }
    fsp = resolve("fashion", None).spec
    fs = load_frames("builtin:fashion-test", fsp, limit=512)
    rows = _verdicts("fashion (test split, 512)", resolve_source("fashion", fsp), fsp,
                     fs.frames, fs.labels, fashion)
    sp = resolve("efficientnet-lite0", None).spec
    frames, _ids = crops(photo_pool())
    rows += _verdicts(f"efficientnet-lite0 ({len(frames)} crops)",
                      resolve_source("efficientnet-lite0", sp), sp, frames, None, effnet)
    return {"scenarios": rows}


def part_e() -> dict:
    """Two real CLI runs with their reports kept: the bundled fashion model, 256 test
    frames written as PNG files, a device in training mode at batch 8 and one whose camera
    applies gamma 0.5 (outside the vocabulary); the CSV also names 3 images not in --data."""
    from edgeinfer.cli import main as cli
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames

    sp = resolve("fashion", None).spec
    src = resolve_source("fashion", sp)
    fs = load_frames("builtin:fashion-test", sp, limit=256)
    g = gray_prep()
    devices = {"train-b8": (g, True, 8), "unexplained-gamma": (lambda f: g(_gamma(0.5)(f)),
                                                               False, 1)}
    codes = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-test"
        data.mkdir()
        ids = [f"{i:04d}.png" for i in range(len(fs.frames))]
        for f, i in zip(fs.frames, ids, strict=True):
            cv2.imwrite(str(data / i), f)
        for name, (prep, train, batch) in devices.items():
            dev = _run_device(src.module, fs.frames, prep, train, batch=batch)
            path = Path(tmp) / f"{name}.csv"
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerows([("image", "prediction"),
                                          *zip(ids, dev.tolist(), strict=True),
                                          *[(f"other-camera/{k}.png", 0) for k in range(3)]])
            codes[name] = cli(["doctor", "fashion", "--data", str(data), "--device-predictions",
                               str(path), "--report", str(DOCS / name)])
    return {"exit_codes": codes}


# ------------------------------------------------------------------ (c) shift / TTA
def part_c() -> dict:
    from edgeinfer.cli import main as cli

    codes = {"fashion": cli(["doctor", "fashion", "--data", "builtin:fashion-test", "--limit",
                             "500", "--shift", "--report", str(DOCS / "shift-fashion")])}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "photos"
        data.mkdir()
        for name, f in photo_pool().items():
            cv2.imwrite(str(data / f"{name}.png"), f)
        codes["efficientnet-lite0"] = cli(["doctor", "efficientnet-lite0", "--data", str(data),
                                           "--shift", "--report",
                                           str(DOCS / "shift-effnet")])
    return {"exit_codes": codes}


def _p(v) -> str:
    return "-" if v is None else f"{v:.1%}"


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def write_md(study: dict) -> str:
    out = ["# Spec audit and doctor: measurements", "",
           "Generated by `python tools/doctor_study.py` (see docs/doctor/README.md for the "
           "reading).", ""]
    if "a" in study:
        a = study["a"]
        e = a["env_start"]
        out += ["## (a) Spec audit on our own model", "",
                f"tests/doctor/small_fashion (86.0% on the 10k test split), 256 test frames. "
                f"CPU flags {', '.join(e['cpu_flags'])}; load average "
                f"{e['load_average'][0]:.1f} at the start; torch {e['torch_threads']} thread.",
                "", "| spec | labels | verdict | culprit | given spec: accuracy / BN fit | "
                "best hypothesis: accuracy / BN fit / agreement | seconds |",
                "|---|---|---|---|---|---|---|"]
        for r in a["own_model"]:
            b = r["best"] or {}
            out.append(f"| {r['spec']} | {'yes' if r['labelled'] else 'no'} | "
                       f"**{r['verdict']}** | `{r['culprit']}` | {_p(r['given_accuracy'])} / "
                       f"{_g(r['given_bn_fit'])} | " + (f"{b.get('detail')}: "
                       f"{_p(b.get('accuracy'))} / {_g(b.get('bn_fit'))} / "
                       f"{_p(b.get('agreement'))}" if b else "-") + f" | {r['seconds']:.1f} |")
        out += ["", "Correct specs of the bundled models (no false alarm):", "",
                "| model | data | n | labels | verdict | BN fit given | best other BN fit | "
                "seconds |", "|---|---|---|---|---|---|---|---|"]
        for r in a["bundled"]:
            out.append(f"| {r['model']} | {r['data']} | {r['n']} | "
                       f"{'yes' if r['labelled'] else 'no'} | {r['verdict']} | "
                       f"{_g(r['given_bn_fit'])} | {_g(r['best_other_bn_fit'])} | "
                       f"{r['seconds']:.1f} |")
        sp = a["speed"]
        out += ["", f"Speed: a whole conversion of the small model with 256 parity frames "
                f"took {sp['convert_seconds']:.1f} s, of which the audit "
                f"{sp['audit_seconds']:.1f} s.", ""]
    if "b" in study:
        b = study["b"]
        e = b["env_start"]
        out += ["## (b) The doctor on broken device pipelines", "",
                f"Devices = plain numpy/OpenCV preprocessing + the framework model (torch "
                f"{e['torch']}), written in tools/doctor_study.py independently of the "
                f"simulation. Load average {e['load_average'][0]:.1f}.", "",
                "| model (frames) | broken pipeline | expected | ranked first | agreement | "
                "second | agreement | margin | device accuracy | ok |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in b["scenarios"]:
            out.append(f"| {r['model']} | {r['scenario']} | `{r['expected']}` | "
                       f"`{r['top']}` ({r['top_detail']}) | {_p(r['top_agreement'])} | "
                       f"`{r['second']}` | {_p(r['second_agreement'])} | "
                       f"{r['margin']:+.1%} | {_p(r['device_accuracy'])} | "
                       f"{'yes' if r['correct'] else '**no**'} |")
        out += ["", "Report of one real CLI run (EfficientNet-Lite0, BGR device): "
                "[effnet-bgr/doctor.md](effnet-bgr/doctor.md)", ""]
    if "d" in study:
        d = study["d"]
        e = d["env_start"]
        out += ["## (d) Verdicts: training mode at a device batch size, and unexplained drops",
                "", f"Devices as in (b); the doctor's verdict as the CLI decides it "
                f"(`device_verdict`). CPU flags {', '.join(e['cpu_flags'])}; load average "
                f"{e['load_average'][0]:.1f} at the start, {d['env_end']['load_average'][0]:.1f}"
                f" at the end; torch {e['torch_threads']} thread. 'share' = the part of the "
                "device's disagreement with the reference that the named culprit explains "
                "(50% needed).", "",
                "| model (frames) | device | verdict | named variant | agrees | share | next | "
                "margin | reference agrees [95% CI] | best share (unexplained) | accuracy "
                "| ok |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in d["scenarios"]:
            lo, hi = r["reference_ci95"]
            unexplained = r["top"] == "unexplained"
            out.append(
                f"| {r['model']} | {r['scenario']} | `{r['top']}` | {r['detail'] or '-'} | "
                f"{_p(r['agreement'])} | {_p(r['share'])} | {r['next'] or '-'} "
                f"{_p(r['next_agreement'])} | "
                + (f"{r['margin']:+.1%}" if r["margin"] is not None else "-")
                + f" | {r['reference_agreement']:.1%} [{lo:.1%}, {hi:.1%}] | "
                + (f"{_p(r['best_share'])} ({r['best_share_culprit']})" if unexplained
                   else "-")
                + f" | {_p(r['device_accuracy'])} | {'yes' if r['ok'] else '**no**'} |")
        sims = {r["model"]: r["simulation_seconds"] for r in d["scenarios"]}
        out += ["", "Simulation time (all variants, once per model): "
                + "; ".join(f"{k} {v:.0f} s" for k, v in sims.items()) + ".", "",
                "Verdict texts:", ""]
        out += [f"- {r['model']}, {r['scenario']}: {r['verdict']}" for r in d["scenarios"]]
        out.append("")
    if "e" in study:
        out += ["## (e) Two real CLI runs", "",
                "Bundled fashion, 256 test frames as PNG files; the device CSV also names 3 "
                "images that are not in --data. Exit codes "
                f"{study['e']['exit_codes']}.", "",
                "- training mode at batch 8: [train-b8/doctor.md](train-b8/doctor.md)",
                "- gamma 0.5 on the camera: [unexplained-gamma/doctor.md]"
                "(unexplained-gamma/doctor.md)", ""]
    if "c" in study:
        out += ["## (c) Shift and TTA", "",
                "- fashion, 500 test frames: [shift-fashion/doctor.md](shift-fashion/doctor.md)",
                "- EfficientNet-Lite0, 19 photos: [shift-effnet/doctor.md](shift-effnet/doctor.md)",
                ""]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["a", "b", "c", "d", "e", "all"])
    args = ap.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine: one thread is faster under load
    DOCS.mkdir(parents=True, exist_ok=True)
    out_path = DOCS / "study.json"
    study = json.loads(out_path.read_text()) if out_path.exists() else {}
    for part, fn in (("a", part_a), ("b", part_b), ("c", part_c), ("d", part_d),
                     ("e", part_e)):
        if args.part in (part, "all"):
            t0 = time.perf_counter()
            before = env()
            study[part] = fn() | {"env_start": before, "env_end": env()}
            study[part]["seconds"] = time.perf_counter() - t0
            out_path.write_text(json.dumps(study, indent=2, default=float) + "\n")
            (DOCS / "study.md").write_text(write_md(study))
    print(f"wrote {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
