"""BN-fit statistics and the shift/TTA measurement on real frames."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from edgeinfer.check.doctor.robustness import run_robustness
from edgeinfer.diagnose.bn_fit import BNProbe, _Moments, layer_fit
from edgeinfer.diagnose.corruptions import CORRUPTIONS, corrupt
from edgeinfer.diagnose.culprits import Variant, prepare


def test_moments_combine_batches_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 4)) * np.arange(1, 5)
    mo = _Moments()
    for chunk in np.array_split(x, 7):
        mo.add_moments(chunk.mean(0), chunk.var(0), len(chunk))
    mean, var = mo.mean_var()
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(0), rtol=1e-12)


def test_layer_fit_values():
    lf = layer_fit("bn", np.array([1.0, 0.0]), np.array([4.0, 1.0]), np.zeros(2),
                   np.ones(2), 0.0)
    assert lf.mean_abs_z == pytest.approx(0.5)
    assert lf.log_var_ratio == pytest.approx(np.log(4.0) / 2)
    bad = layer_fit("bn", np.array([np.nan]), np.array([1.0]), np.zeros(1), np.ones(1), 0.0)
    assert bad.mean_abs_z >= 1e6  # a NaN activation is a misfit, never a pass


def test_probe_needs_bn_with_running_stats():
    assert not BNProbe(nn.Sequential(nn.Conv2d(1, 2, 3))).available
    assert not BNProbe(nn.BatchNorm2d(2, track_running_stats=False)).available
    assert not BNProbe(None).available

    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    probe = BNProbe(helper.make_model(g))
    assert isinstance(probe.model, onnx.ModelProto) and not probe.available
    assert "BatchNormalization" in probe.reason


def test_bn_fit_ranks_scaling_errors(small_source, train_spec, test_frames):
    """Label-free: the training preprocessing fits the BN statistics far better than
    /255 twice or none at all (measured fit, no labels involved)."""
    from dataclasses import replace

    probe = BNProbe(small_source.module)
    runner = small_source.make_runner(False)

    def fit(spec):
        x = np.concatenate(prepare(Variant("none", "", spec), test_frames.frames[:128]))
        return probe.evaluate([x], runner.model)[1].score

    good = fit(train_spec)
    assert good < 0.5
    assert fit(replace(train_spec, scale=1.0)) > 10 * good
    assert fit(replace(train_spec, scale=1 / 255 ** 2)) > 5 * good


def test_robustness_curves(small_source, test_frames):
    frames, labels = test_frames.frames[:64], test_frames.labels[:64]
    rob = run_robustness(small_source, frames, labels, corruptions=["gaussian_noise", "jpeg"],
                         severities=5, policies=("none", "hflip"))
    noise = rob["curves"]["gaussian_noise"]["scores"]["none"]
    assert len(noise) == 6 and noise[0] == rob["clean"]["none"]
    assert noise[-1] < noise[0]  # std 0.18*255 noise hurts
    assert rob["views"] == {"none": 1, "hflip": 2}
    assert set(rob["mean_gain_vs_none"]) == {"gaussian_noise", "jpeg"}
    # unlabelled: agreement with the clean prediction, 100% on the clean frames
    free = run_robustness(small_source, frames[:16], None, corruptions=["rotation"],
                          severities=1, policies=("none",))
    assert free["clean"]["none"] == 1.0 and "agreement" in free["metric"]


def test_corruptions_are_deterministic_and_change_frames(test_frames):
    f = test_frames.frames[:2]
    for name, (_what, values) in CORRUPTIONS.items():
        a, b = corrupt(f, name, values[2]), corrupt(f, name, values[2])
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), name
        assert any(not np.array_equal(x, y) for x, y in zip(a, f, strict=True)), name
        assert a[0].shape == f[0].shape and a[0].dtype == np.uint8

