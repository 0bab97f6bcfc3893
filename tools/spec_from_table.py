"""The spec_from table (issue 25): every transformers image processor that builds with its
defaults, and timm's eval transform for the pretrained_cfg values in
tools/spec_from_timm_cfgs.json, each derived and proven on the bundled real photos (24
frames of mixed aspect ratio: spec_from/proof.py bundled_frames) - proven (max / mean grey
levels) or refused (why) - and what the code before the proof did with it ("before": the
spec it derived, measured the same way). Writes docs/spec_from_table.{json,md} and the
evidence list edgeinfer/converter/spec_from/evidence.py.

    python tools/spec_from_table.py                      # the table (~2 min on 2 cores)
    python tools/spec_from_table.py --detection          # the object-detection rows only
    python tools/spec_from_table.py --extract-timm REPO  # re-read timm's pretrained_cfgs

timm does not import here: its rows are proven against spec_from/oracle.py, a Pillow oracle
written from timm's transforms_imagenet_eval source, not timm itself. ``--extract-timm``
reads ``default_cfgs`` from a git checkout of huggingface/pytorch-image-models (the
``_cfg`` helpers and ``generate_default_cfgs`` dict of each timm/models/*.py, evaluated
with timm/data/constants.py), one tag per architecture plus every distinct crop mode.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.converter.spec_from import derive  # noqa: E402
from edgeinfer.converter.spec_from import hf as _hf  # noqa: E402
from edgeinfer.converter.spec_from import proof as P  # noqa: E402
from edgeinfer.converter.spec_from import timm as _timm  # noqa: E402
from edgeinfer.converter.spec_from.pipelines import (  # noqa: E402
    base_name,
    hf_models,
    hf_runner,
    hf_task,
)
from edgeinfer.errors import SpecError  # noqa: E402
from edgeinfer.parity.tolerances import tolerance  # noqa: E402

TIMM_DATA = ROOT / "tools" / "spec_from_timm_cfgs.json"
DOCS = ROOT / "docs"
EVIDENCE = ROOT / "edgeinfer" / "converter" / "spec_from" / "evidence.py"


def _before(old: Any, run: Any) -> dict[str, Any]:
    """What the code before the proof gave: its spec's figure against the library."""
    try:
        d = old()
    except SpecError as e:
        return {"verdict": "refused", "why": str(e)}
    except Exception as e:  # noqa: BLE001 - a traceback before, recorded as such
        return {"verdict": "traceback", "why": f"{type(e).__name__}: {e}"}
    try:
        got, ref = P.grey_levels(d.spec, run, list(P.bundled_frames()))
    except P.ShapeMismatch as e:
        return {"verdict": "accepted", "why": f"wrong shape: {e}"}
    except Exception as e:  # noqa: BLE001
        return {"verdict": "accepted", "why": f"library failed: {type(e).__name__}"}
    mx, mean = P.figure(d.spec, got, ref)
    return {"verdict": "accepted", "max": round(mx, 3), "mean": round(mean, 3)}


def hf_rows() -> list[dict[str, Any]]:
    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    names = sorted({v["pil"] for v in IMAGE_PROCESSOR_MAPPING_NAMES.values()
                    if isinstance(v, dict) and v.get("pil")})
    rows = []
    tv_only = sorted({v["torchvision"] for v in IMAGE_PROCESSOR_MAPPING_NAMES.values()
                      if isinstance(v, dict) and not v.get("pil") and v.get("torchvision")})
    for name in tv_only:  # their config files: refused by name (nothing runs them here)
        task = hf_task(name) or "image classification"
        cfg = {"image_processor_type": name, "do_resize": True, "image_mean": [0.5] * 3,
               "size": {"height": 224, "width": 224}}
        try:
            derive(cfg)
            why = "accepted?"
        except SpecError as e:
            why = str(e).removeprefix("cannot derive a spec: ")
        rows.append({"class": name, "models": hf_models(name), "task": task,
                     "verdict": "torchvision backend only", "why": why})
    for name in names:
        row: dict[str, Any] = {"class": name, "models": hf_models(name),
                               "task": hf_task(name) or "image classification"}
        try:
            proc = getattr(transformers, name)()
        except Exception as e:  # noqa: BLE001
            row |= {"verdict": "does not build with defaults", "why": f"{type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}"[:160]}
            rows.append(row)
            continue
        t = time.perf_counter()
        try:
            d = derive(proc)
            row |= {"verdict": "proven", "max": d.proof["max_grey_levels"],
                    "mean": d.proof["mean_grey_levels"], "frames": d.proof["frames"],
                    "spec": d.spec.to_dict()}
        except SpecError as e:
            row |= {"verdict": "refused", "why": str(e).removeprefix("cannot derive a spec: ")}
        row["seconds"] = round(time.perf_counter() - t, 2)
        run = hf_runner(proc)[0]
        row["before"] = _before(lambda p=proc: _hf.derive(_hf.config_of(p), check_task=False),
                                run)
        rows.append(row)
        print(f"{name}: {row['verdict']} {row.get('max', '')} {row.get('mean', '')} "
              f"{row.get('why', '')[:100]}", flush=True)
    return rows


# Detection configurations beside each class's defaults: fixed sizes a user sets (a stretch,
# expressible), the RT-DETR hub file (PekingU/rtdetr_r18vd; D-FINE's checkpoints name the
# same class and sizes) and a DETR fine-tune's shortest/longest edge of 800 (refused).
DETECTION_CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("RTDetrImageProcessorPil",
     "the values of PekingU/rtdetr_r18vd's preprocessor_config.json (D-FINE's too)",
     {"do_normalize": False, "do_pad": False, "size": {"height": 640, "width": 640},
      "resample": 2}),
    ("DetrImageProcessorPil", "size 800x800", {"size": {"height": 800, "width": 800}}),
    ("DetrImageProcessorPil", "a fine-tune's shortest_edge 800, longest_edge 800",
     {"size": {"shortest_edge": 800, "longest_edge": 800}}),
    ("DetrImageProcessorPil", "size 800x800, pad_size 1024x1024",
     {"size": {"height": 800, "width": 800}, "pad_size": {"height": 1024, "width": 1024}}),
    ("ConditionalDetrImageProcessorPil", "size 800x1066",
     {"size": {"height": 800, "width": 1066}}),
    ("DeformableDetrImageProcessorPil", "size 640x640", {"size": {"height": 640, "width": 640}}),
    ("YolosImageProcessorPil", "size 512x864", {"size": {"height": 512, "width": 864}}),
]


def detection_rows() -> list[dict[str, Any]]:
    """Every object-detection processor at its defaults, then DETECTION_CONFIGS: derived
    and proven (pixels and boxes, spec_from/detect_proof.py) or refused by name; "before":
    what spec_from did with it before issue 28 (refused by class)."""
    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    from edgeinfer.converter.spec_from import derive_detection

    names = sorted({v.get("pil") or v.get("torchvision") for v in
                    IMAGE_PROCESSOR_MAPPING_NAMES.values() if isinstance(v, dict)} - {None})
    names = [n for n in names if hf_task(n) == "object detection"]
    cases = [(n, "defaults", {}) for n in names] + DETECTION_CONFIGS
    rows = []
    for name, label, kw in cases:
        row: dict[str, Any] = {"class": name, "config": label, "models": hf_models(name)}
        t = time.perf_counter()
        try:
            cls = getattr(transformers, name)
            obj: Any = cls(**kw) if name.endswith("Pil") else {
                "image_processor_type": name, "do_resize": True, "image_mean": [0.5] * 3,
                "size": {"height": 640, "width": 640}} | kw
        except Exception as e:  # noqa: BLE001
            obj = {"image_processor_type": name} | kw
            row["built"] = f"{type(e).__name__}"
        try:
            d = derive_detection(obj)
            b = d.proof["boxes"]
            row |= {"verdict": "proven", "max": d.proof["max_grey_levels"],
                    "mean": d.proof["mean_grey_levels"], "frames": d.proof["frames"],
                    "box_px": b["max_box_px"], "score": b["max_score"],
                    "detections": b["detections"], "spec": d.spec.to_dict(),
                    "detection": d.detection.to_dict() if d.detection else None}
        except SpecError as e:
            row |= {"verdict": "refused", "why": str(e).removeprefix("cannot derive a spec: ")
                    .removeprefix("cannot derive a detector spec: ")}
        row["seconds"] = round(time.perf_counter() - t, 2)
        try:
            derive(obj)
            row["before"] = {"verdict": "accepted"}
        except SpecError as e:
            row["before"] = {"verdict": "refused", "why": str(e)}
        rows.append(row)
        print(f"{name} [{label}]: {row['verdict']} {row.get('box_px', '')} "
              f"{row.get('why', '')[:100]}", flush=True)
    return rows


def timm_rows() -> list[dict[str, Any]]:
    from edgeinfer.converter.spec_from import oracle

    data = json.loads(TIMM_DATA.read_text())
    rows = []
    for tag, cfg in data["cfgs"].items():
        row: dict[str, Any] = {"tag": tag, "file": cfg["file"]} | {
            k: cfg.get(k) for k in ("input_size", "crop_pct", "crop_mode", "interpolation")}
        try:
            d = derive({k: v for k, v in cfg.items() if k != "file"})
            row |= {"verdict": "proven", "max": d.proof["max_grey_levels"],
                    "mean": d.proof["mean_grey_levels"], "frames": d.proof["frames"]}
        except SpecError as e:
            row |= {"verdict": "refused", "why": str(e).removeprefix("cannot derive a spec: ")}
        try:
            run = oracle.timm_eval(cfg)
            # before: a cfg without interpolation was read as bilinear (timm resolves
            # bicubic, timm/data/config.py)
            row["before"] = _before(lambda c=cfg: _timm.derive(
                c if c.get("interpolation") else c | {"interpolation": "bilinear"}), run)
        except ValueError as e:
            row["before"] = {"verdict": "no oracle", "why": str(e)}
        rows.append(row)
        print(f"{tag}: {row['verdict']} {row.get('max', '')} {row.get('mean', '')} "
              f"{row.get('why', '')[:100]}", flush=True)
    return rows


def write_evidence(hf: list[dict[str, Any]], version: str) -> None:
    proven = {base_name(r["class"]): {"frames": r["frames"], "max": r["max"],
                                      "mean": r["mean"], "transformers": version}
              for r in hf if r["verdict"] == "proven"}
    tasks = {base_name(r["class"]): r["task"] for r in hf
             if r["task"] != "image classification"}
    text = EVIDENCE.read_text()
    head = text[:text.index("# base class name -> {")]
    body = "# base class name -> {\"frames\", \"max\", \"mean\", \"transformers\"}\n"
    body += "PROVEN: dict[str, dict[str, float | int | str]] = {\n"
    body += "".join(_entry(k, v) for k, v in sorted(proven.items()))
    body += "}\n\n# base class name -> task\nOTHER_TASKS: dict[str, str] = {\n"
    body += "".join(_entry(k, v) for k, v in sorted(tasks.items()))
    body += "}\n"
    EVIDENCE.write_text(head + body)


def _entry(k: str, v: Any) -> str:
    line = f"    {k!r}: {v!r},\n"
    return line if len(line) <= 100 else f"    {k!r}:\n        {v!r},\n"


def _fig(r: dict[str, Any]) -> str:
    return f"{r['max']:.2f} / {r['mean']:.3f}" if "max" in r else ""


def _before_cell(b: dict[str, Any] | None) -> str:
    if not b:
        return ""
    if "max" in b:
        return f"accepted, {b['max']:.1f} / {b['mean']:.2f}"
    return f"{b['verdict']}: {' '.join(str(b.get('why', '')).split())[:70]}"


def detection_lines(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """The table's object-detection section (issue 28, point 2)."""
    tb = tolerance("detect_boxes", "fp32")
    n = {v: sum(r["verdict"] == v for r in rows) for v in ("proven", "refused")}
    acc = [r for r in rows if r["verdict"] == "proven"]
    lines = ["## Hugging Face object detection (issue 28)", "",
             f"Measured {meta.get('detection_date', meta['date'])}, load "
             f"{meta.get('detection_load', meta['load'])}. {len(rows)} rows: {n['proven']} "
             f"proven, {n['refused']} refused. A detection processor is read into the pixel "
             "spec and the detector's fit, box decoder and suppression "
             "(`spec_from.derive_detection`), then proven on 18 real frames (the six bundled "
             "photos cropped portrait 3:4, landscape 4:3 and square): the pixels against "
             "its `pixel_values` (bounds above), the boxes against its "
             "`post_process_object_detection` on seeded model outputs (300 queries x 80 "
             f"classes per frame), within {tb.max_abs} px at the worst box corner and 1e-4 in "
             "score (registry `('detect_boxes', 'fp32')`, `('detect_scores', 'fp32')`). "
             "Worst accepted: "
             f"{max((r['max'] for r in acc), default=0):.2f} grey levels, "
             f"{max((r['box_px'] for r in acc), default=0):.2g} px, score "
             f"{max((r['score'] for r in acc), default=0):.2g}. Before: every one was refused "
             "by class (a processor for object detection).", "",
             "| class | config | verdict | pixels max / mean | boxes px / score (detections)"
             " | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        boxes = f"{r['box_px']:.2g} / {r['score']:.2g} ({r['detections']})" \
            if "box_px" in r else ""
        why = " ".join((r.get("why") or "").replace("|", "/").split())[:240]
        lines.append(f"| {r['class']} | {r['config']} | {r['verdict']} | {_fig(r)} | "
                     f"{boxes} | {why} |")
    return lines + [""]


def write_docs(hf: list[dict[str, Any]], timm: list[dict[str, Any]], meta: dict[str, Any],
               det: list[dict[str, Any]] | None = None) -> None:
    (DOCS / "spec_from_table.json").write_text(json.dumps(
        {"meta": meta, "hf": hf, "timm": timm, "detection": det or []}, indent=1,
        default=str) + "\n")
    tol = tolerance("spec_from", "proof")
    lines = ["# spec_from: every transformers image processor and 30+ timm eval transforms, "
             "derived then proven", "",
             "Generated by `tools/spec_from_table.py` (issue 25); figures are 0..255 grey "
             "levels, max / mean over all values of "
             f"{meta['frames']} bundled real frames (six photos, a portrait and a wide crop "
             "and a quarter-size copy of each). A row is accepted only within "
             f"{tol.max_abs} at the worst pixel and {tol.max_mean} on average (registry "
             "entry `('spec_from', 'proof')`). \"Before\" is what the code before the proof "
             "did with the same pipeline: the spec it derived silently, measured the same way.",
             "", f"Measured {meta['date']}: transformers {meta['transformers']}, Pillow "
             f"{meta['pillow']}, CPU flags {meta['cpu_flags']}, load {meta['load']}.", ""]
    if det:
        lines += detection_lines(det, meta)
    for label, rows, key in (("Hugging Face", hf, "class"), ("timm", timm, "tag")):
        n = {v: sum(r["verdict"] == v for r in rows) for v in ("proven", "refused")}
        acc = [r for r in rows if r["verdict"] == "proven"]
        worst = max((r["max"] for r in acc), default=0.0)
        worst_mean = max((r["mean"] for r in acc), default=0.0)
        before = [r["before"] for r in rows if (r.get("before") or {}).get("verdict")
                  == "accepted"]
        silent = sum(1 for b in before if ("max" in b and (
            b["max"] > tol.max_abs or b["mean"] > tol.max_mean)) or str(
            b.get("why", "")).startswith("wrong shape"))
        unmeasured = sum(1 for b in before if str(b.get("why", "")).startswith("library"))
        over = sum(1 for r in acc if r["max"] > tol.max_abs or r["mean"] > tol.max_mean)
        lines += [f"## {label}", "",
                  f"{len(rows)} rows: {n['proven']} proven, {n['refused']} refused"
                  + (f", {sum(r['verdict'] == 'torchvision backend only' for r in rows)} "
                     "with a torchvision backend only (it does not import here: their config "
                     "files are refused by name), "
                     f"{sum(r['verdict'].startswith('does not') for r in rows)} do not build "
                     "with their defaults" if label == "Hugging Face" else "")
                  + f". Worst accepted figure: {worst:.2f} max, {worst_mean:.3f} mean. "
                  f"Accepted above the bounds (silently wrong): {over}. Silently wrong "
                  f"before the proof (accepted, outside the bounds or the wrong shape): "
                  f"{silent}" + (f"; accepted before where the library itself fails on a "
                                 f"photo (now refused): {unmeasured}" if unmeasured else "")
                  + ".", ""]
        if label == "timm":
            lines += ["timm does not import here: these rows are proven against "
                      "`edgeinfer/converter/spec_from/oracle.py`, a Pillow oracle written from "
                      "timm's `transforms_imagenet_eval` source (huggingface/pytorch-image-"
                      f"models {meta['timm_commit']}), not against timm itself.", ""]
        head = "| class | task | verdict | max / mean | why | before |" if key == "class" \
            else "| tag | size, crop_pct, mode, interpolation | verdict | max / mean | why | " \
                 "before |"
        lines += [head, "|---|---|---|---|---|---|"]
        for r in rows:
            second = r["task"] if key == "class" else (
                f"{r['input_size'][1:]}, {r['crop_pct']}, {r['crop_mode'] or 'center'}, "
                f"{r['interpolation']}")
            why = " ".join((r.get("why") or "").replace("|", "/").split())[:150]
            lines.append(f"| {r[key]} | {second} | {r['verdict']} | {_fig(r)} | {why} | "
                         f"{_before_cell(r.get('before')).replace('|', '/')} |")
        lines.append("")
    (DOCS / "spec_from_table.md").write_text("\n".join(lines))


def extract_timm(repo: str) -> None:
    """pretrained_cfg values from a git checkout of pytorch-image-models (HEAD)."""
    def show(p: str) -> str:
        return subprocess.run(["git", "-C", repo, "show", f"HEAD:{p}"], capture_output=True,
                              text=True, check=True).stdout

    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    consts: dict[str, Any] = {}
    exec(show("timm/data/constants.py"), consts)  # noqa: S102 - plain literal constants
    files = [f for f in subprocess.run(["git", "-C", repo, "ls-tree", "--name-only", "HEAD",
                                        "timm/models/"], capture_output=True, text=True,
                                       check=True).stdout.split() if f.endswith(".py")]
    keep = ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")
    picked: dict[str, Any] = {}
    modes: set[Any] = set()
    for f in files:
        ns = dict(consts) | {"Dict": dict, "Any": object, "Optional": object,
                             "generate_default_cfgs": lambda d: d}
        try:
            tree = ast.parse(show(f))
        except SyntaxError:
            continue
        first = True
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and re.match(r"_\w*cfg\w*$", node.name):
                try:
                    exec(compile(ast.Module([node], []), f, "exec"), ns)  # noqa: S102
                except Exception:  # noqa: BLE001, S112
                    continue
            targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign) and "default_cfgs" in targets:
                try:
                    cfgs = eval(compile(ast.Expression(node.value), f, "eval"), ns)  # noqa: S307
                except Exception:  # noqa: BLE001, S112
                    continue
                ns["default_cfgs"] = cfgs
                for tag, c in cfgs.items():
                    if not (isinstance(c, dict) and "input_size" in c and c.get("hf_hub_id")):
                        continue
                    mode = (c.get("crop_mode"), tuple(c["input_size"])[1] != tuple(
                        c["input_size"])[2])
                    if first or mode not in modes:
                        picked[tag] = {"file": f} | {k: list(c[k]) if isinstance(
                            c[k], tuple) else c[k] for k in keep if k in c}
                        modes.add(mode)
                        first = False
    TIMM_DATA.write_text(json.dumps({"source": "huggingface/pytorch-image-models",
                                     "commit": commit, "cfgs": picked}, indent=1) + "\n")
    print(f"{len(picked)} pretrained_cfgs from {len({v['file'] for v in picked.values()})} "
          f"files at {commit}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extract-timm", metavar="REPO")
    ap.add_argument("--detection", action="store_true",
                    help="recompute the object-detection rows only (the rest from the JSON)")
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite the docs and evidence.py from docs/spec_from_table.json")
    a = ap.parse_args()
    if a.extract_timm:
        extract_timm(a.extract_timm)
        return
    if a.from_json:
        d = json.loads((DOCS / "spec_from_table.json").read_text())
        write_evidence(d["hf"], d["meta"]["transformers"])
        write_docs(d["hf"], d["timm"], d["meta"], d.get("detection"))
        return
    if a.detection:
        d = json.loads((DOCS / "spec_from_table.json").read_text())
        d["meta"] |= {"detection_date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "detection_load": os.getloadavg()[0]}
        write_docs(d["hf"], d["timm"], d["meta"], detection_rows())
        return
    import PIL
    import transformers

    cpu = Path("/proc/cpuinfo").read_text()
    flags = sorted({f for f in ("avx2", "avx512f", "avx512_vnni") if f" {f} " in cpu})
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "transformers": transformers.__version__, "pillow": PIL.__version__,
            "cpu_flags": " ".join(flags), "load": os.getloadavg()[0],
            "frames": len(P.bundled_frames()),
            "timm_commit": json.loads(TIMM_DATA.read_text())["commit"]}
    hf = hf_rows()
    timm = timm_rows()
    write_evidence(hf, transformers.__version__)
    write_docs(hf, timm, meta, detection_rows())


if __name__ == "__main__":
    main()
