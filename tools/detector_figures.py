"""Figures of the bundled detector's conversion (issue 28): docs/detection/own_detector.json.

    .venv/bin/python tools/detector_figures.py [--per-aspect 8] [--repeats 20]

1. Converts models/fashion_detector twice: NMS in the graph and NMS in the runtime; both
   go through the detection gate (stages + detections per aspect) and are compared with
   each other (F1, boxes, scores).
2. Latency, frame -> boxes, 1 thread, median over the parity frames x ``--repeats``:
   the torch pipeline (reference preprocessing, module, postprocess, inverse letterbox),
   each artifact through ArtifactDetector, and the split of the runtime-NMS artifact's time
   (session vs numpy NMS).
3. The wrong fit: the graph-NMS artifact fed each frame stretched to 160 x 160 (boxes mapped
   back by the stretch's inverse) vs the framework on the letterboxed frame - the F1 drop a
   letterbox/stretch mix-up costs.
CPU flags and load are recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.converter.detect_convert import convert_detector, load_detector  # noqa: E402
from edgeinfer.converter.detect_frames import parity_frames  # noqa: E402
from edgeinfer.converter.detect_gate import detections_vs  # noqa: E402
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector  # noqa: E402

OUT = ROOT / "docs" / "detection" / "own_detector.json"


def median_ms(fn, frames, repeats: int) -> float:
    for f in frames[:3]:
        fn(f.image)
    times = []
    for _ in range(repeats):
        for f in frames:
            t = time.perf_counter()
            fn(f.image)
            times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def stretched(det: ArtifactDetector):
    """The artifact fed the frame stretched to its input (the wrong fit), boxes mapped back
    by the stretch's inverse."""
    ih, iw = det.spec.size

    def run(frame: np.ndarray):
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_LINEAR)
        b, s, c = det.arrays(small)
        return b * [w / iw, h / ih, w / iw, h / ih], s, c
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-aspect", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    import torch

    frames = parity_frames(per_aspect=args.per_aspect)
    src = load_detector("fashion-detector")
    tmp = Path(tempfile.mkdtemp())
    result: dict = {"frames": {k: sum(f.aspect == k for f in frames)
                               for k in ("portrait", "landscape", "square")},
                    "frame_sizes": sorted({f"{f.image.shape[1]}x{f.image.shape[0]}"
                                           for f in frames})}
    dets = {}
    for nms in ("graph", "runtime"):
        t = time.perf_counter()
        path, meta = convert_detector("fashion-detector", tmp / f"det_{nms}.onnx", nms=nms,
                                      frames=frames, progress=print)
        result[f"nms_{nms}"] = {"convert_s": round(time.perf_counter() - t, 1),
                                "bytes": path.stat().st_size, "parity": meta.parity}
        dets[nms] = ArtifactDetector(path, threads=1)
    result["graph_vs_runtime_nms"] = detections_vs(dets["graph"].arrays,
                                                   dets["runtime"].arrays, frames)["all"]
    result["wrong_fit_stretch"] = detections_vs(stretched(dets["graph"]), src.framework,
                                                frames)
    truth = {id(f.image): (f.boxes, np.ones(len(f.boxes)), f.classes) for f in frames}
    vs = detections_vs(dets["graph"].arrays, lambda img: truth[id(img)], frames)
    result["vs_truth"] = {k: {"precision": v["matched"] / max(1, v["matched"] + v["only_artifact"]),
                              "recall": v["matched"] / max(1, v["matched"] + v["only_framework"]),
                              "f1": v["f1"]} for k, v in vs.items()}
    torch.set_num_threads(1)
    lat = {"torch_pipeline": median_ms(src.framework, frames, args.repeats)}
    for nms, d in dets.items():
        lat[f"artifact_nms_{nms}"] = median_ms(d.arrays, frames, args.repeats)
    rt = dets["runtime"]
    lat["runtime_nms_session_only"] = median_ms(rt.raw, frames, args.repeats)
    outs = {id(f): rt.raw(f.image) for f in frames}
    times = []
    for _ in range(args.repeats):
        for f in frames:
            b, s = outs[id(f)]
            t = time.perf_counter()
            rt.suppress(b[0], s[0], f.image.shape[:2])
            times.append((time.perf_counter() - t) * 1e3)
    lat["runtime_nms_numpy_only"] = round(statistics.median(times), 3)
    lat["speedup_graph_vs_torch"] = round(lat["torch_pipeline"] / lat["artifact_nms_graph"], 2)
    lat["speedup_runtime_vs_torch"] = round(lat["torch_pipeline"] / lat["artifact_nms_runtime"],
                                            2)
    result["latency_ms_1_thread"] = lat
    result["cpu_flags"] = subprocess.run(
        "grep -o -w 'avx2\\|avx512f\\|avx512_vnni' /proc/cpuinfo | sort -u", shell=True,
        capture_output=True, text=True).stdout.split()
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result["torch"] = torch.__version__
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps({k: result[k] for k in ("latency_ms_1_thread", "graph_vs_runtime_nms")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
