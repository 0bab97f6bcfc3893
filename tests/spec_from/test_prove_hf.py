"""Derive, then prove (issue 25): a spec derived from a Hugging Face processor is compared
with the processor's own output on real photos and refused, naming the step and the
figure, when it differs; processors of other tasks are refused by class; a config whose
class transformers cannot build is accepted only on the evidence list, else refused by name.

"Before" in these tests is the reading the code did before the proof, still the first half
of derive (hf.derive): each refused case here was accepted by it, measured far outside the
bounds - the test fails on the old code, which returned that spec.
"""

from __future__ import annotations

import pytest

from edgeinfer import SpecError
from edgeinfer.converter.spec_from import derive, evidence
from edgeinfer.converter.spec_from import hf as _hf
from edgeinfer.converter.spec_from import proof as P
from edgeinfer.converter.spec_from.pipelines import hf_runner
from edgeinfer.parity.tolerances import tolerance

T = pytest.importorskip("transformers")
TOL = tolerance("spec_from", "proof")


def _figure_before(cfg: dict, proc) -> tuple[float, float]:
    """The figure of the spec the code before the proof derived (and used silently)."""
    old = _hf.derive(cfg, check_task=False)  # the old reading: no proof, no task check
    got, ref = P.grey_levels(old.spec, hf_runner(proc)[0], list(P.bundled_frames()))
    return P.figure(old.spec, got, ref)


@pytest.mark.parametrize("name", ["ViTImageProcessorPil", "ConvNextImageProcessorPil",
                                  "EfficientNetImageProcessorPil", "DeiTImageProcessorPil"])
def test_a_good_processor_is_proven_with_its_figure(name: str) -> None:
    d = derive(getattr(T, name)())
    p = d.proof
    assert p["proven"] and p["class"] == name and p["library"].startswith("transformers")
    assert p["frames"] == len(P.bundled_frames()) >= 20 and p["frames_from"] == "bundled photos"
    assert p["max_grey_levels"] <= TOL.max_abs and p["mean_grey_levels"] <= TOL.max_mean
    assert d.to_dict()["proof"] == p  # what convert stores in the provenance


def test_levit_own_resize_rule_is_refused_naming_the_step_and_figure() -> None:
    proc = T.LevitImageProcessorPil()
    mx, mean = _figure_before(_hf.config_of(proc), proc)
    assert mean > 10 and mx > 100  # accepted before: 25 mean / 255 max on the photos
    with pytest.raises(SpecError) as e:
        derive(proc)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert "LevitImageProcessorPil: resize, its own rule" in msg and "256/224" in msg
    assert f"{mean:.2f} grey levels on average" in msg and f"{mx:.1f} at the worst" in msg


def test_poolformer_crop_pct_is_named() -> None:
    with pytest.raises(SpecError, match=r"PoolFormerImageProcessorPil: crop_pct=0\.9"):
        derive(T.PoolFormerImageProcessorPil())


def test_a_legacy_integer_size_is_refused_where_it_was_read_as_shortest_edge() -> None:
    cfg = T.DeiTImageProcessorPil().to_dict() | {"size": 256}  # an old preprocessor_config
    proc = T.DeiTImageProcessorPil.from_dict(cfg)  # transformers: a 256x256 square
    old = _hf.derive(cfg, check_task=False).spec
    assert (old.resize, old.resize_shorter) == ("shorter_crop", 256)  # the old reading
    mx, mean = _figure_before(cfg, proc)
    assert mean > 10  # 33 mean on the photos
    with pytest.raises(SpecError, match=r"DeiTImageProcessorPil: size=256 \(a legacy "
                       r"integer; transformers reads it as \{'height': 256, 'width': 256\}\)"
                       rf".* {mean:.2f} grey levels on average"):
        derive(cfg)


@pytest.mark.parametrize("name, task", [
    ("SuperPointImageProcessorPil", "keypoint"),
    ("DetrImageProcessorPil", "object detection"),
    ("DPTImageProcessorPil", "depth estimation"),
])
def test_processors_of_other_tasks_are_refused_by_class(name: str, task: str) -> None:
    proc = getattr(T, name)()
    with pytest.raises(SpecError, match=rf"{name.removesuffix('Pil')}: a processor for "
                       rf"{task}.*classifier") as e:
        derive(proc)
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(SpecError, match=task):  # and from its config file alone
        derive(_hf.config_of(proc))


def test_a_keypoint_processor_was_derived_silently_before() -> None:
    """SuperPoint (keypoints, grey 480x640 input): the old reading accepted it, 77 grey levels
    off on average; now refused by its task before anything is derived."""
    proc = T.SuperPointImageProcessorPil()
    _, mean = _figure_before(_hf.config_of(proc), proc)
    assert mean > 10
    with pytest.raises(SpecError, match="keypoint detection"):
        derive(proc)


def test_the_mean_bound_refuses_a_uniform_one_level_shift_naming_normalisation() -> None:
    """A spec one grey level off everywhere (its mean moved by 1/255) is within the worst-
    pixel bound (1.0 <= 1.5) but not the mean one (1.0 > 0.35): refused, and the step named
    is the normalisation, since a per-channel affine map explains the difference."""
    from dataclasses import replace

    good = derive(T.ViTImageProcessorPil())
    shifted = tuple(m + 1 / 255 for m in good.spec.mean)
    with pytest.raises(SpecError, match=r"ViTImageProcessorPil: rescale/normalize .* 1\.00 "
                       r"grey levels on average and 1\.0 at the worst pixel"):
        P.prove(replace(good, spec=replace(good.spec, mean=shifted)))


def test_an_ocr_processor_is_refused() -> None:
    """Nougat (OCR): transformers has no image classifier using it."""
    with pytest.raises(SpecError, match="NougatImageProcessor: a processor for nougat "
                       "models, none of them an image classifier"):
        derive(T.NougatImageProcessorPil())


def test_a_config_file_is_proven_against_the_class_it_names(tmp_path) -> None:
    T.ConvNextImageProcessorPil(size={"shortest_edge": 224}).save_pretrained(tmp_path)
    d = derive(tmp_path / "preprocessor_config.json")
    assert d.proof["class"] == "ConvNextImageProcessorPil" and d.proof["proven"]


def test_an_unknown_class_with_nothing_to_run_is_refused_by_name() -> None:
    cfg = T.ViTImageProcessorPil().to_dict() | {"image_processor_type":
                                                "HypotheticalNetImageProcessor"}
    # the old code read its numbers and accepted it
    assert _hf.derive(cfg, check_task=False).spec.size == (224, 224)
    with pytest.raises(SpecError, match="HypotheticalNetImageProcessor: transformers "
                       r"\S+ has no class HypotheticalNetImageProcessor, so the spec cannot "
                       "be proven, and the class is not among the"):
        derive(cfg)


def test_the_evidence_list_holds_measured_classifier_figures() -> None:
    assert len(evidence.PROVEN) >= 10 and "ViTImageProcessor" in evidence.PROVEN
    for name, ev in evidence.PROVEN.items():
        assert ev["max"] <= TOL.max_abs and ev["mean"] <= TOL.max_mean, name
        assert name not in evidence.OTHER_TASKS
    assert "LevitImageProcessor" not in evidence.PROVEN


def test_the_users_frames_are_used_when_given(photos) -> None:
    frames = list(photos.values())[:3]
    d = derive(T.ViTImageProcessorPil(), frames=frames)
    assert (d.proof["frames"], d.proof["frames_from"]) == (3, "parity frames")


@pytest.mark.slow  # converts a model (scripts/test --full)
def test_convert_reproves_on_the_parity_frames_and_stores_the_figure(tmp_path) -> None:
    from edgeinfer.converter.api import convert

    from .test_convert_spec_from import TinyNet

    proc = T.ConvNextImageProcessorPil(size={"shortest_edge": 64})
    r = convert(TinyNet(), tmp_path / "m.onnx", spec_from=proc, parity_data="builtin:photos")
    p = r.metadata.provenance["spec_derived"]["proof"]
    assert p["proven"] and p["frames_from"] == "parity frames" and p["frames"] >= 6
    assert p["class"] == "ConvNextImageProcessorPil" and p["max_grey_levels"] <= TOL.max_abs


NO_TRANSFORMERS = """
import json, sys
sys.modules["transformers"] = None  # the library is absent: nothing can run the processor
from edgeinfer import SpecError
from edgeinfer.converter.spec_from import derive
out = {}
for name, cfg in json.loads(sys.argv[1]).items():
    try:
        out[name] = derive(cfg).proof
    except SpecError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


@pytest.mark.slow  # a subprocess importing edgeinfer (~3 s on two shared cores)
def test_without_transformers_only_the_evidence_list_is_accepted() -> None:
    """A config file with no library to run it: a class on the evidence list is accepted
    with its measured figure, others are refused by name, other tasks by class, and a
    legacy integer size (square or shortest edge, by class) is refused."""
    import json
    import subprocess
    import sys

    cfgs = {"vit": T.ViTImageProcessorPil().to_dict(),
            "levit": _hf.config_of(T.LevitImageProcessorPil()),
            "detr": T.DetrImageProcessorPil().to_dict(),
            "deit-legacy": T.DeiTImageProcessorPil().to_dict() | {"size": 256}}
    cfgs = json.loads(json.dumps(cfgs, default=lambda v: getattr(v, "value", str(v))))
    out = json.loads(subprocess.run([sys.executable, "-c", NO_TRANSFORMERS, json.dumps(cfgs)],
                                    capture_output=True, text=True, check=True).stdout)
    assert out["vit"]["accepted_on"] == "evidence" and not out["vit"]["proven"]
    assert out["vit"]["evidence"] == evidence.PROVEN["ViTImageProcessor"]
    assert "LevitImageProcessor: transformers does not import" in out["levit"]
    assert "not among the" in out["levit"]
    assert "DetrImageProcessor: a processor for object detection" in out["detr"]
    assert "size=256" in out["deit-legacy"] and "legacy integer" in out["deit-legacy"]


def test_the_task_comes_from_transformers_model_mappings() -> None:
    """Read live from transformers (the static OTHER_TASKS list only backs it up when
    transformers is absent): a class a newer transformers adds is still classified."""
    from edgeinfer.converter.spec_from.pipelines import hf_task

    assert hf_task("ViTImageProcessorPil") is None and hf_task("LevitImageProcessor") is None
    assert hf_task("DetrImageProcessorPil") == "object detection"
    assert hf_task("SuperPointImageProcessorPil") == "keypoint detection"
    assert hf_task("NoSuchImageProcessor") is None  # unknown: the evidence list decides
