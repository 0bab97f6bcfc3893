"""A transformers RT-DETR converted with ``--spec-from`` its processor (issue 28, point 2.4):
the detector directory (tools/hf_detector.py: RTDetrForObjectDetection from a small config,
seeded random weights - parity compares the artifact with the framework, not with the
truth) has no spec.json; the pixel spec and the fit come from the processor, proven, and
land in the provenance; the artifact's boxes match transformers' own pipeline
(processor -> model -> post_process_object_detection) in frame pixels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgeinfer.errors import ParityError
from edgeinfer.parity.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("hf_detector", ROOT / "tools" /
                                                  "hf_detector.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rtdetr_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("rtdetr")
    _tool().write(out)
    return out


@pytest.mark.slow  # imports transformers, builds RT-DETR (~20 s on two shared cores)
def test_load_detector_reads_the_spec_and_fit_from_the_processor(rtdetr_dir: Path) -> None:
    from edgeinfer.converter.detect_convert import load_detector
    from edgeinfer.errors import ConversionError

    assert not (rtdetr_dir / "spec.json").exists()
    with pytest.raises(ConversionError, match="lacks spec.json"):  # without --spec-from
        load_detector(str(rtdetr_dir))
    src = load_detector(str(rtdetr_dir), spec_from=rtdetr_dir / "preprocessor_config.json")
    assert src.spec.size == (320, 320) and src.spec.resize == "stretch"
    assert src.detection.fit == "stretch"
    assert src.detection.decoder["box_format"] == "xyxy"  # the wrapped module's, kept
    d = src.provenance["spec_derived"]
    assert d["proof"]["proven"] and d["proof"]["boxes"]["max_box_px"] <= 0.5


@pytest.mark.slow  # converts RT-DETR: export, audit, gate (minutes on two shared cores)
@pytest.mark.xfail(raises=ParityError, strict=True, reason=(
    "the gate's model stage compares the core's outputs query by query; RT-DETR orders its "
    "queries by a top-k over encoder scores, and near-equal scores swap places between torch "
    "and onnxruntime (2 of 100 queries, 156 px, on 1 of 48 frames) while the detections agree "
    "(F1 1.0, 0.00018 px): the stage needs a set comparison for query-selection detectors"))
def test_rtdetr_converts_with_spec_from_and_matches_post_process(rtdetr_dir: Path) -> None:
    from edgeinfer.converter.api import convert

    art = rtdetr_dir / "rtdetr.onnx"
    res = convert(str(rtdetr_dir), str(art), spec_from=str(rtdetr_dir /
                                                           "preprocessor_config.json"),
                  accept_spec=True)
    meta = res.metadata
    assert meta.task == "detect" and meta.detection.fit == "stretch"
    assert meta.provenance["spec_derived"]["proof"]["boxes"]["proven"]
    c = _tool().check(rtdetr_dir, art)
    assert c["frames"] == 18 and c["matched"] > 50
    assert c["f1"] == 1.0
    assert c["max_box_px"] <= tolerance("detect_boxes", "fp32").max_abs
    assert c["max_score"] <= tolerance("detect_scores", "fp32").max_abs
