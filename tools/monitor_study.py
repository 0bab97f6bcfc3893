"""How well the field monitor sees an accuracy drop without labels (issue 27's goal).

    python tools/monitor_study.py [--datasets fashion,imagenet] [--out docs/monitor]

Two real data sets, each with its bundled artifact (built by ./scripts/demo into out/):
Fashion-MNIST test (reference: the first 2,000 frames, labelled; evaluation: the other
8,000) and the ImageNet sample photos (one per class; tools/imagenet_sample_split.py makes
out/imagenet_split/{tune,final}: reference = the 600 tune photos, evaluation = the 400 final
ones; photos shrunk to a shorter side of 256 before anything else).

Shifts: the six corruptions of edgeinfer's robustness report at severities 1, 3 and 5, and a
label shift (half of the evaluation frames from the class the reference gets wrong most).
The corruption KINDS are split: TUNE (gaussian_noise, blur, brightness_contrast) chose the
estimator and the alarm's settings; FINAL (rotation, jpeg, scale_crop, label shift) was run
once those were fixed. Probabilities and frame statistics are cached in out/monitor_cache.
Results: study.json + study.md (tools/monitor_study_report.py) in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer import Predictor  # noqa: E402
from edgeinfer.diagnose.corruptions import CORRUPTIONS, corrupt  # noqa: E402
from edgeinfer.runtime.monitor import (  # noqa: E402
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    Monitor,
    build_profile,
    estimate_accuracy,
    frames_stats,
    robustness_entry,
)

TUNE = ("gaussian_noise", "blur", "brightness_contrast")
FINAL = ("rotation", "jpeg", "scale_crop", "label_shift")
SEVERITIES = (1, 3, 5)
CACHE = ROOT / "out/monitor_cache"
DROP = 0.10
MARGIN = 2.0
CAUSE_AFTER = 100
#: words a right cause line contains, per shift kind
EXPECTED = {"gaussian_noise": ("noisier", "grainier", "noise alone"),
            "blur": ("blurrier", "smoother", "blur alone"),
            "brightness_contrast": ("darker", "lower in contrast", "darkness alone"),
            "rotation": ("rotation alone",), "jpeg": ("JPEG",), "scale_crop": ("zoom",),
            "label_shift": ("class mix",)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load(name: str) -> dict:
    """Predictor, colour, reference and evaluation frames with labels."""
    from edgeinfer.data.frames import load_frames, to_frame_color

    if name == "fashion":
        from edgeinfer.data.datasets import load_fashion_mnist

        p = Predictor(_artifact("fashion"), threads=1)
        im, lab = load_fashion_mnist("test")
        frames = [to_frame_color(f, p.spec.frame_color) for f in im]
        return {"p": p, "ref": frames[:2000], "ref_y": lab[:2000].astype(int),
                "eval": frames[2000:], "eval_y": lab[2000:].astype(int)}
    p = Predictor(_artifact("efficientnet-lite0"), threads=1)
    out = {"p": p}
    for part, key in (("tune", "ref"), ("final", "eval")):
        fs = load_frames(str(ROOT / f"out/imagenet_split/{part}"), p.spec,
                         class_names=p.labels)
        out[key] = [_shrink(f) for f in fs.frames]
        out[key + "_y"] = np.asarray(fs.labels, int)
    return out


def _artifact(name: str) -> Path:
    """The bundled model converted by this edgeinfer (with the feature-moments output)."""
    path = CACHE / f"{name}.onnx"
    if not path.exists():
        from edgeinfer.converter.api import convert

        CACHE.mkdir(parents=True, exist_ok=True)
        log(f"converting {name}")
        convert(name, path)
    return path


def _shrink(f: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = f.shape[:2]
    s = side / min(h, w)
    return cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) \
        if s < 1 else f


def probs_of(p: Predictor, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and the artifact's feature moments (``[N, 0]`` for an artifact without
    them), one frame at a time (as deployed)."""
    if not getattr(p.backend, "has_moments", False):
        probs = np.concatenate([p.backend.run(f[None]) for f in frames])
        return probs, np.zeros((len(frames), 0), np.float32)
    out = [p.backend.run_moments(f[None]) for f in frames]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def shifted(d: dict, part: str, kind: str, sev: int, seed: int) -> tuple[list, np.ndarray]:
    frames, y = d[part], d[part + "_y"]
    if kind == "clean":
        return frames, y
    if kind == "label_shift":
        return _label_shift(d, frames, y, sev, seed)
    value = CORRUPTIONS[kind][1][sev - 1]
    return corrupt(frames, kind, value, seed=seed), y


def _label_shift(d: dict, frames: list, y: np.ndarray, sev: int, seed: int):
    """Severity s: 20%/40%/60% (s = 1/3/5) of the frames drawn from the classes the
    reference gets wrong most (chosen on the reference, not on these frames)."""
    worst = d["worst_classes"]
    rng = np.random.default_rng(seed)
    share = {1: 0.2, 3: 0.4, 5: 0.6}[sev]
    pool = np.flatnonzero(np.isin(y, worst))
    rest = np.flatnonzero(~np.isin(y, worst))
    n = len(y)
    k = int(share * n)
    idx = np.concatenate([rng.choice(pool, k, replace=True),
                          rng.choice(rest, n - k, replace=False)])
    return [frames[i] for i in idx], y[idx]


def cached(d: dict, name: str, part: str, kind: str, sev: int) -> dict:
    path = CACHE / f"{name}_{part}_{kind}_{sev}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    frames, y = shifted(d, part, kind, sev, seed=1000 * sev + len(kind))
    probs, feats = probs_of(d["p"], frames)
    stats = frames_stats(frames, d["p"].spec.frame_color)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, probs=probs.astype(np.float32), stats=stats, y=y, features=feats)
    log(f"  {name} {part} {kind} s{sev}: {len(y)} frames, accuracy "
        f"{np.mean(probs.argmax(1) == y):.1%} ({time.perf_counter() - t0:.0f} s)")
    return {"probs": probs, "stats": stats, "y": y, "features": feats}


def profile_for(d: dict, name: str, estimator: str):
    """The profile convert would store: reference frames + robustness on corrupted copies."""
    ref = cached(d, name, "ref", "clean", 0)
    color = d["p"].spec.frame_color
    feats = {"features": ref["features"]} if ref["features"].size else {}
    base = build_profile(ref["probs"], d["ref"], color, ref["y"], estimator=estimator, **feats)
    rob: dict[str, list] = {}
    for kind in CORRUPTIONS:
        for sev in SEVERITIES:
            c = cached(d, name, "ref", kind, sev)
            rob.setdefault(kind, []).append(
                robustness_entry(base.signals, sev, c["probs"], c["y"], c["stats"]))
    return build_profile(ref["probs"], d["ref"], color, ref["y"], estimator=estimator,
                         robustness=rob, **feats)


def kinds() -> list[tuple[str, str, int]]:
    """(set, kind, severity) of every evaluated shift, the clean frames first."""
    out = [("clean", "clean", 0)]
    for group, names in (("tune", TUNE), ("final", FINAL)):
        out += [(group, k, s) for k in names for s in SEVERITIES]
    return out


def estimation(d: dict, name: str, prof, groups: tuple[str, ...]) -> list[dict]:
    rows = []
    for group, kind, sev in kinds():
        if group not in groups:
            continue
        c = cached(d, name, "eval", kind, sev)
        rows.append({"dataset": name, "set": group, "kind": kind, "severity": sev,
                     "n": int(len(c["y"])),
                     "accuracy": float(np.mean(c["probs"].argmax(1) == c["y"])),
                     "estimates": {m: estimate_accuracy(c["probs"], prof.calibration, m)
                                   for m in ESTIMATORS}})
    return rows


def false_alarms(d: dict, name: str, prof, total: int, seeds: int) -> dict:
    """Alarms and drift flags over ``total`` healthy frames (evaluation frames in a random
    order, drawn with replacement when there are fewer), ``seeds`` streams."""
    c = cached(d, name, "eval", "clean", 0)
    n = len(c["y"])
    alarms, flagged, reports, worst = 0, 0, 0, {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(n) if n >= total else rng.choice(n, total, replace=True)
        idx = idx[:total]
        m = Monitor(prof, drop=DROP, margin_se=MARGIN)
        for i in range(0, total, 100):
            j = idx[i:i + 100]
            m.update(c["probs"][j], stats=c["stats"][j])
            if (i + 100) % 300 == 0:
                r = m.report()
                reports += 1
                flagged += bool(r.drifted)
                for s, v in r.drift.items():
                    worst[s] = max(worst.get(s, 0.0), abs(v))
        alarms += m.report().alarms
    return {"frames_per_stream": total, "streams": seeds, "alarms": alarms,
            "drift_reports": reports, "reports_with_a_drifted_signal": flagged,
            "largest_drift": worst,
            "note": "evaluation frames in random order" + (
                ", drawn with replacement" if n < total else "")}


def detection(d: dict, name: str, prof, clean_acc: float, groups: tuple[str, ...],
              seeds: int = 3, before: int = 1000, limit: int = 3000) -> list[dict]:
    """Frames from the switch to the alarm, for every shift costing >= 10 points."""
    c0 = cached(d, name, "eval", "clean", 0)
    rows = []
    for group, kind, sev in kinds():
        if group not in groups or kind == "clean":
            continue
        c = cached(d, name, "eval", kind, sev)
        acc = float(np.mean(c["probs"].argmax(1) == c["y"]))
        cost = clean_acc - acc
        if cost < 0.10:
            continue
        delays, early, causes = [], 0, []
        for seed in range(seeds):
            rng = np.random.default_rng(100 + seed)
            m = Monitor(prof, labels=d["p"].labels, drop=DROP, margin_se=MARGIN)
            j = rng.choice(len(c0["y"]), before, replace=len(c0["y"]) < before)
            m.update(c0["probs"][j], stats=c0["stats"][j])
            if m.report().alarms:
                early += 1
            k = rng.choice(len(c["y"]), limit, replace=len(c["y"]) < limit)
            delay = None
            for i in range(0, limit, 10):
                m.update(c["probs"][k[i:i + 10]], stats=c["stats"][k[i:i + 10]])
                if m.alarm:
                    delay = m.report().first_alarm_frame - before
                    # the cause as a report reads it CAUSE_AFTER frames later: at the alarm
                    # itself CUSUM often dates the change a few dozen healthy frames early
                    j = k[i + 10:i + 10 + CAUSE_AFTER]
                    m.update(c["probs"][j], stats=c["stats"][j])
                    causes.append(m.report().cause)
                    break
            delays.append(delay)
        right = [any(w in (cz or "") for w in EXPECTED[kind]) for cz in causes]
        rows.append({"dataset": name, "set": group, "kind": kind, "severity": sev,
                     "cost_points": round(cost * 100, 1), "delays": delays,
                     "alarms_before_switch": early, "cause": causes[0] if causes else None,
                     "cause_right": sum(right), "causes": len(causes), "all_causes": causes})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="fashion,imagenet")
    ap.add_argument("--out", default=str(ROOT / "docs/monitor"))
    ap.add_argument("--groups", default="clean,tune,final",
                    help="which shift sets to evaluate (final last, once settings are fixed)")
    ap.add_argument("--estimator", default=DEFAULT_ESTIMATOR)
    ap.add_argument("--drop", type=float, default=0.10, help="Monitor(drop=...)")
    ap.add_argument("--margin", type=float, default=2.0, help="Monitor(margin_se=...)")
    a = ap.parse_args()
    groups = tuple(a.groups.split(","))
    global DROP, MARGIN
    DROP, MARGIN = a.drop, a.margin
    result = {"estimator": a.estimator, "drop": a.drop, "margin_se": a.margin,
              "groups": groups, "tune": TUNE, "final": FINAL,
              "severities": SEVERITIES, "datasets": {}}
    for name in a.datasets.split(","):
        log(f"{name}: loading")
        d = load(name)
        ref = cached(d, name, "ref", "clean", 0)
        wrong = np.bincount(ref["y"][ref["probs"].argmax(1) != ref["y"]],
                            minlength=ref["probs"].shape[1])
        d["worst_classes"] = np.argsort(-wrong / np.maximum(np.bincount(
            ref["y"], minlength=len(wrong)), 1))[:max(1, ref["probs"].shape[1] // 10)]
        prof = profile_for(d, name, a.estimator)
        rows = estimation(d, name, prof, groups)
        clean = next(r["accuracy"] for r in rows if r["kind"] == "clean")
        log(f"{name}: false alarms")
        fa = false_alarms(d, name, prof, total=20000 if name == "fashion" else 10000,
                          seeds=5)
        log(f"{name}: detection")
        det = detection(d, name, prof, clean, groups)
        from tools.monitor_study_features import feature_vs_confidence

        result["datasets"][name] = {"reference": {"n": prof.n,
                                                  "accuracy": prof.reference_accuracy},
                                    "estimation": rows, "false_alarms": fa,
                                    "detection": det,
                                    "signals": feature_vs_confidence(
                                        lambda g, k, s, d=d, n=name: cached(d, n, "eval", k, s),
                                        prof,
                                        kinds(), clean)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "study" if "final" in groups else "study_tune"
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1))
    from tools.monitor_study_report import write_report

    write_report(result, out, tag)
    log(f"wrote {out}/{tag}.json and .md")


if __name__ == "__main__":
    main()
