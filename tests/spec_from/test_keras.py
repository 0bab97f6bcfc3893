"""spec_from on Keras models: the size from the input, the leading Rescaling/Normalization
through the one lifting path (converter/sources/keras_lift.py), and convert(spec="auto")
lifting them exactly once (the committed, really trained Fashion-MNIST Keras model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeinfer import spec_from
from edgeinfer.converter.api import convert
from tests.keras.conftest import KERAS_FILE, small_model

# keras is imported inside the tests (tensorflow-cpu is installed by scripts/setup): importing
# it at collection broke an unrelated server test (stderr lost under pytest's capture).


def test_trained_keras_model_spec(tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(KERAS_FILE, compile=False)
    spec = spec_from(model)
    assert (spec.size, spec.model_color, spec.layout) == ((28, 28), "GRAY", "NHWC")
    a, b = spec.affine()
    np.testing.assert_allclose(a, [1 / 255], rtol=1e-6)  # its Rescaling(1/255), lifted
    np.testing.assert_allclose(b, [0.0], atol=1e-7)


def test_convert_spec_auto_lifts_the_rescaling_once(tmp_path: Path) -> None:
    # small_model is untrained: at chance on the labelled fashion frames, which the audit
    # refuses (issue 25.3); this test is about the lifting, so the spec is accepted
    r = convert(small_model("rescale"), tmp_path / "k.onnx", spec="auto",
                parity_data="builtin:fashion-test", parity_limit=64, accept_spec=True)
    assert r.metadata.provenance["spec_audit"]["culprit"] == "chance"
    a, _ = r.metadata.spec.affine()
    np.testing.assert_allclose(a, [1 / 255], rtol=1e-6)  # not 1/255**2
    assert r.metadata.provenance["spec_derived"]["source"] == "keras"
    assert r.parity.top1_agreement == 1.0
