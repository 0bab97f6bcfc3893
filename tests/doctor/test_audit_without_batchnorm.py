"""The spec audit on a model WITHOUT BatchNorm: the labelled-accuracy rule is its only
evidence (issue 17: disabling that rule passed the suite, because every refusal tested
also had BatchNorm evidence).

The model is our own trained small Fashion-MNIST net with each BatchNorm fused into its
Conv by torch itself (``fuse_conv_bn_eval``): the same predictions, no BatchNorm left for
the audit's BN-statistics probe.
"""

from __future__ import annotations

import pytest

from edgeinfer.diagnose.audit import audit_spec

from .conftest import FACTORY, WEIGHTS, unlabelled


@pytest.fixture(scope="module")
def no_bn_model():
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from edgeinfer.converter.sources.from_torch import load_factory, load_weights

    net = load_factory(FACTORY)()
    load_weights(net, WEIGHTS)
    layers, out = list(net.eval()), []
    while layers:
        m = layers.pop(0)
        if isinstance(m, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
            m = fuse_conv_bn_eval(m, layers.pop(0))
        out.append(m)
    fused = nn.Sequential(*out).eval()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    return fused


def test_labelled_refusal_without_batchnorm_evidence(no_bn_model, wrong_specs, test_frames):
    """mean/std on the 0-255 scale: a clear accuracy gain on 256 labelled frames. (The 0.5/0.5
    mistake is not refused on accuracy alone here: 80.9% vs the corrected spec's gain is
    below the rule's significance on 256 frames, and so it passes, as the rule intends.)"""
    from edgeinfer.converter.sources.load import resolve_source

    culprit = "mean_std_pixel_scale"
    spec = wrong_specs[culprit]
    src = resolve_source(no_bn_model, spec)
    res = audit_spec(src, spec, test_frames)
    assert res.given.bn_fit is None  # no BatchNorm: the accuracy rule decides alone
    assert (res.verdict, res.culprit) == ("refuse", culprit), res.message
    free = audit_spec(src, spec, unlabelled(test_frames))
    assert free.verdict == "unverified", free.message  # no labels, no BN: nothing to judge by
