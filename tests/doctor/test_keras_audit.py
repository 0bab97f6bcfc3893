"""Keras sources: the BN probe reads BatchNormalization inputs through a sub-model, the
audit simulates the framework model with the spec it expects (preprocessing layers lifted
into the artifact's spec stay inside the Keras model), and training mode leaves the
weights untouched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeinfer.converter.sources.load import resolve_source
from edgeinfer.converter.spec_resolve import resolve
from edgeinfer.data.frames import load_frames
from edgeinfer.diagnose.audit import audit_spec
from edgeinfer.diagnose.culprits import Variant
from edgeinfer.diagnose.simulate import Simulator
from edgeinfer.spec import framework_spec

KERAS = Path(__file__).resolve().parents[2] / "models" / "fashion_keras"


def test_keras_audit_and_training_mode():
    model = str(KERAS / "model.keras")
    spec = resolve(model, KERAS / "spec.json").spec
    src = resolve_source(model, spec)
    fs = load_frames("builtin:fashion-test", spec, limit=128)
    res = audit_spec(src, src.spec or spec, fs)
    assert res.verdict == "pass", res.message
    assert res.given.bn_fit is not None and res.given.accuracy > 0.8
    sim = Simulator(src, framework_spec(src.provenance, src.spec or spec))
    assert sim.probe.kind == "keras"
    before = [w.copy() for w in src.module.get_weights()]
    sp = framework_spec(src.provenance, spec)
    train = sim.run(Variant("train_mode", "", sp, mode="train_mode"), fs.frames[:32])
    assert train.probs is not None and train.probs.shape == (32, 10)
    # at a device batch of 8 (calls in a given order) BN's batch statistics come close to
    # the running ones: far more predictions agree with eval mode than at batch 1
    # (measured 92% vs 12% on 40 frames)
    order = np.random.default_rng(0).permutation(32)
    b8 = Simulator(src, sp, order=order).run(
        Variant("train_mode", "", sp, mode="train_mode", batch=8), fs.frames[:32])
    ref = sim.run(Variant("none", "", sp), fs.frames[:32]).probs.argmax(-1)
    assert b8.probs is not None, b8.error
    assert (b8.probs.argmax(-1) == ref).mean() > (train.probs.argmax(-1) == ref).mean() + 0.3
    assert all(np.array_equal(a, b) for a, b in zip(before, src.module.get_weights(),
                                                    strict=True))
    wrong = sim.run(Variant("missing_scaling", "", replace(sp, scale=sp.scale * 255)),
                    fs.frames)
    assert wrong.bn_fit.score > 5 * res.given.bn_fit
