"""``doctor --culprits`` / ``--batch-sizes``: the simulation grid narrowed to what the user
suspects, the reference always kept, and bad names refused in one line (exit 2)."""

from __future__ import annotations

import pytest

from edgeinfer.check.doctor.run import culprit_outcomes
from edgeinfer.cli import main
from edgeinfer.diagnose.culprits import GROUPS, select_culprits
from edgeinfer.errors import ConfigError

from .conftest import FACTORY, LABELS, WEIGHTS


def _ran(outcomes) -> list[tuple[str, int]]:
    return [(o.variant.culprit, o.variant.batch) for o in outcomes]


def test_culprits_and_batch_sizes_narrow_the_grid(small_source, train_spec, test_frames):
    frames = test_frames.frames[:24]
    out, notes = culprit_outcomes(small_source, train_spec, frames, culprits=["scaling"])
    assert {c for c, _ in _ran(out)} == {"none", *GROUPS["scaling"]}
    assert out[0].variant.culprit == "none" and out[0].probs is not None
    assert any("narrowed grid" in n and "missing_scaling" in n for n in notes)
    out, notes = culprit_outcomes(small_source, train_spec, frames,
                                  culprits=["train_mode", "batchnorm-batch-stats"],
                                  batches=[8, 2, 8])
    assert _ran(out) == [("none", 1), ("train_mode", 2), ("train_mode", 8),
                         ("batchnorm_batch_stats", 2), ("batchnorm_batch_stats", 8)]
    assert any("batch 2, 8 only" in n for n in notes)
    full, notes = culprit_outcomes(small_source, train_spec, frames)
    assert not any("narrowed" in n for n in notes)
    assert {b for c, b in _ran(full) if c == "train_mode"} == {1, 2, 4, 8, 16, 32}
    # the narrowed run's variants are the full run's, prediction for prediction
    same = {(o.variant.culprit, o.variant.detail): o.probs for o in full}
    for o in out[1:]:
        assert (o.probs.argmax(-1) == same[(o.variant.culprit, o.variant.detail)]
                .argmax(-1)).all()


def test_unknown_culprit_and_bad_batch_sizes_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown culprit 'gamma'.*resize"):
        select_culprits(["resize", "gamma"])
    assert select_culprits(["colour"]) == {"none", "channel_order"}
    with pytest.raises(ConfigError, match="no culprit named"):
        select_culprits(["", " "])
    base = ["doctor", FACTORY, "--weights", str(WEIGHTS), "--labels", str(LABELS),
            "--data", "builtin:fashion-test", "--limit", "8"]
    for extra, msg in ((["--culprits", "resize,gamma"], "unknown culprit 'gamma'"),
                       (["--batch-sizes", "0,8"], "--batch-sizes '0,8'"),
                       (["--batch-sizes", "eight"], "positive integers")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
