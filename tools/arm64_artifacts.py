"""Artifacts and parity packs for ``scripts/arm64-check`` (made on x86), and its summary.

    python tools/arm64_artifacts.py WORK              # make WORK/in/{*.onnx,*.tflite,*.pack}
    python tools/arm64_artifacts.py WORK --summary S  # WORK/summary.{json,md} from the runs

Photos for the EfficientNet-Lite0 pack: ``$EDGEINFER_PHOTO_PACK_DATA`` (an image folder,
flat or labelled) when set, else the bundled photos. Existing files are reused.
``$EDGEINFER_ARM64_EXTRA``: more artifacts made elsewhere (e.g. the int8 control study's
EfficientNet-Lite0 artifacts), ``path=pack`` separated by spaces, copied in and verified with
the named pack.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

ARTIFACTS = [  # (file, source, convert kwargs, pack)
    ("fashion.onnx", "fashion", {}, "fashion.pack"),
    ("fashion-int8.onnx", "fashion", {"quantize": "int8"}, "fashion.pack"),
    ("fashion-int8-arm64.onnx", "fashion", {"quantize": "int8", "target": "arm64"},
     "fashion.pack"),
    ("fashion.tflite", "fashion", {}, "fashion.pack"),
    ("fashion-int8.tflite", "fashion", {"quantize": "int8"}, "fashion.pack"),
    ("efficientnet-lite0.onnx", "efficientnet-lite0", {}, "effnet.pack"),
    ("efficientnet-lite0-int8-arm64.onnx", "efficientnet-lite0",
     {"quantize": "int8", "target": "arm64"}, "effnet.pack"),
    ("efficientnet-lite0.tflite", "efficientnet-lite0", {}, "effnet.pack"),
    # accuracy-controlled int8 (#19): tuned on the first 4000 test images, as in tests/int8
    ("fashion-int8-ctl-arm64.onnx", "fashion", {"quantize": "int8", "target": "arm64",
                                                "min_agreement": 0.993, "parity_limit": 4000},
     "fashion.pack"),
    ("fashion-int8-ctl.tflite", "fashion", {"quantize": "int8", "min_agreement": 0.995,
                                            "parity_limit": 4000}, "fashion.pack"),
]
PACKS = {"fashion.pack": ("fashion", "builtin:fashion-test", 200),
         "effnet.pack": ("efficientnet-lite0",
                         os.environ.get("EDGEINFER_PHOTO_PACK_DATA", "builtin:photos"), 30)}


def make(work: Path) -> None:
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.cli.common import progress
    from edgeinfer.converter.api import convert
    from edgeinfer.data.packfile import write_pack

    d = work / "in"
    d.mkdir(parents=True, exist_ok=True)
    for name, (src, data, limit) in PACKS.items():
        if not (d / name).exists():
            write_pack(build_pack(src, data, limit=limit, progress=progress), d / name)
    for name, src, kw, _pack in ARTIFACTS:
        if not (d / name).exists():
            progress(f"converting {name}")
            convert(src, d / name, **({"parity_limit": 200 if src == "fashion" else None,
                                       "calibration_limit": 256, "progress": None} | kw))
    pairs = [(a, p) for a, _s, _k, p in ARTIFACTS]
    for item in os.environ.get("EDGEINFER_ARM64_EXTRA", "").split():
        path, pack = item.split("=", 1)
        (d / Path(path).name).write_bytes(Path(path).read_bytes())
        pairs.append((Path(path).name, pack))
    (d / "pairs.txt").write_text("".join(f"{a} {p}\n" for a, p in pairs))


def summary(work: Path, wall: float, cpu: str = "max") -> None:
    rows = []
    pairs = [ln.split() for ln in (work / "in" / "pairs.txt").read_text().splitlines() if ln]
    for name, pack in pairs:
        x, a = work / f"x86-{name}.json", work / f"arm64-{name}.json"
        if not (x.exists() and a.exists()):
            rows.append({"artifact": name, "missing": True})
            continue
        jx, ja = json.loads(x.read_text()), json.loads(a.read_text())
        px, pa = np.load(work / f"x86-{name}.npy"), np.load(work / f"arm64-{name}.npy")
        sx, sa = jx["steps"][0], ja["steps"][0]
        rows.append({
            "artifact": name, "pack": pack, "n": sa["n"],
            "x86": {"verdict": jx["verdict"], "max_abs": sx["max_abs"],
                    "top1": sx["top1_agreement"]},
            "arm64": {"verdict": ja["verdict"], "max_abs": sa["max_abs"],
                      "top1": sa["top1_agreement"], "ci95": sa["top1_ci95"],
                      "decode": ja.get("decode"), "warnings": ja.get("warnings"),
                      "machine": ja["machine"]["machine"],
                      "wall_s": float((work / f"arm64-{name}.secs").read_text())},
            "arm64_vs_x86": {"max_abs": float(np.abs(pa - px).max()),
                             "top1": float((pa.argmax(1) == px.argmax(1)).mean())},
        })
    out = {"wall_s": wall, "host": platform.machine(), "qemu_cpu": cpu, "rows": rows}
    (work / f"summary-{cpu}.json").write_text(json.dumps(out, indent=2))
    lines = ["| artifact | n | arm64 verdict | arm64 max\\|dp\\| vs framework | arm64 top-1 vs "
             "framework | x86 max\\|dp\\| | arm64 vs x86 max\\|dp\\| | arm64 vs x86 top-1 | "
             "decode identical | emulated s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("missing"):
            lines.append(f"| {r['artifact']} | missing | | | | | | | | |")
            continue
        a, x, d = r["arm64"], r["x86"], r["arm64_vs_x86"]
        dec = f"{a['decode']['identical']}/{a['decode']['n']}" if a["decode"] else "-"
        lines.append(f"| {r['artifact']} | {r['n']} | {a['verdict']} | {a['max_abs']:.2e} | "
                     f"{a['top1']:.2%} | {x['max_abs']:.2e} | {d['max_abs']:.2e} | "
                     f"{d['top1']:.2%} | {dec} | "
                     f"{a['wall_s']:.0f} |")
    lines.append(f"\nQEMU_CPU={cpu}; whole run (root cached): {wall:.0f} s wall.")
    (work / f"summary-{cpu}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    w = Path(sys.argv[1])
    if "--summary" in sys.argv:
        i = sys.argv.index("--summary")
        summary(w, float(sys.argv[i + 1]), sys.argv[i + 2] if len(sys.argv) > i + 2 else "max")
    else:
        make(w)
