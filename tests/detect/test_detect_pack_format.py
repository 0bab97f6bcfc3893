"""A detector's parity pack (issue 28.3): the frames and the detections per frame survive
the file exactly; a damaged detection member, a classifier pack's members mixed in, or a
detector pack read as a classifier's are refused in one line. Real frames (the gate's
bundled photos with Fashion-MNIST test items) and their true boxes stand in for detections:
the format does not judge them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.converter.detect_frames import LABELS, parity_frames
from edgeinfer.data.packfile import make_pack, read_pack, write_pack
from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.parity.tolerances import DETECT_KINDS, pack_entries
from edgeinfer.spec import PreprocessSpec

SPEC = PreprocessSpec(size=(160, 160), frame_color="BGR", model_color="RGB",
                      resize="letterbox", scale=1 / 255)


@pytest.fixture(scope="module")
def frames():
    return parity_frames(per_aspect=2)


def _pack(frames, tmp_path: Path) -> Path:
    dets = [(f.boxes, np.linspace(0.9, 0.5, len(f.boxes)), f.classes) for f in frames]
    dets[0] = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))  # a frame with none
    pack = make_pack(SPEC, LABELS, [f.image for f in frames], None,
                     source={"framework": "torch"}, ids=[f"{f.aspect}-{i}" for i, f in
                                                         enumerate(frames)],
                     tolerances=pack_entries(DETECT_KINDS),
                     detection={"fit": "letterbox"}, detections=dets)
    return write_pack(pack, tmp_path / "det.pack")


def test_detections_round_trip_exactly(frames, tmp_path) -> None:
    back = read_pack(_pack(frames, tmp_path))
    assert back.task == "detect" and back.detection == {"fit": "letterbox"}
    assert back.reference.shape == (len(frames), 0)
    assert set(back.tolerances) == {"detect_boxes/fp32", "detect_scores/fp32"}
    assert len(back.detections) == len(frames) and len(back.detections[0][0]) == 0
    for f, got, (b, s, c) in zip(frames[1:], back.frames[1:], back.detections[1:],
                                 strict=True):
        assert np.array_equal(got, f.image)
        assert np.array_equal(b, f.boxes) and np.array_equal(c, f.classes)
        assert b.dtype == np.float64 and len(s) == len(b)


def _rewrite(src: Path, dst: Path, change) -> Path:
    """The pack with its manifest changed by ``change`` (members untouched)."""
    with zipfile.ZipFile(src) as z:
        items = {n: z.read(n) for n in z.namelist()}
    m = json.loads(items["manifest.json"])
    change(m)
    items["manifest.json"] = json.dumps(m).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in items.items():
            z.writestr(n, b)
    return dst


@pytest.mark.parametrize("change, match", [
    (lambda m: m.pop("task"), "lacks reference.npy"),  # read as a classifier's
    (lambda m: m.__setitem__("task", "segment"), "field task must be one of"),
    (lambda m: m["members"]["det_offsets.npy"].__setitem__("shape", [3]),
     "det_offsets"),
    (lambda m: m["members"].pop("det_scores.npy"), "lacks det_scores.npy"),
])
def test_a_damaged_detector_pack_is_one_line(frames, tmp_path, change, match) -> None:
    bad = _rewrite(_pack(frames, tmp_path), tmp_path / "bad.pack", change)
    with pytest.raises(ModelError, match=match) as e:
        read_pack(bad)
    assert "\n" not in str(e.value)


def test_detections_must_match_the_frames(frames) -> None:
    with pytest.raises(ValueError, match="detections has 1 entries"):
        make_pack(SPEC, LABELS, [f.image for f in frames], None,
                  detections=[(frames[0].boxes, np.ones(len(frames[0].boxes)),
                               frames[0].classes)])


def test_a_classifier_verify_refuses_a_detector_pack(frames, tmp_path, fashion_artifact
                                                      ) -> None:
    from edgeinfer.check.verify.run import verify

    with pytest.raises(ConfigError, match="holds a detector's detections"):
        verify(fashion_artifact, _pack(frames, tmp_path), latency_runs=1)
