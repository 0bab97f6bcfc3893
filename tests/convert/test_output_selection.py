"""Model outputs as users have them: Hugging Face ``.logits``, named/plain tuples with
auxiliary heads, dicts. The converter picks the logits, records it, and refuses ambiguity
in one line. Before this, such models failed inside the exporter or the parity runner."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeinfer import ConversionError, PreprocessSpec
from edgeinfer.converter.api import convert
from edgeinfer.converter.sources.from_torch import pick_output, select_output
from edgeinfer.parity.tolerances import tolerance

SPEC = PreprocessSpec(size=(32, 32), resize="shorter_crop", interpolation="linear",
                      antialias=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
Outputs = namedtuple("Outputs", ["logits", "aux_logits"])


class TwoHeads(nn.Module):
    """A small CNN with an auxiliary head (GoogLeNet/Inception style), BN calibrated."""

    def __init__(self, out: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.out = out
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head, self.aux = nn.Linear(8, 5), nn.Linear(8, 5)
        bn = self.body[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked += 1

    def forward(self, x: torch.Tensor):
        f = self.body(x)
        logits, aux = self.head(f), self.aux(f)
        if self.out == "named":
            return Outputs(logits, aux)
        if self.out == "dict":
            return {"aux_logits": aux, "scores": logits}
        if self.out == "features":
            return logits, x  # the logits and a 4-D feature map
        return logits, aux  # plain tuple of two [N, 5]: ambiguous


@pytest.mark.parametrize("out, desc", [("dict", "dict.scores"), ("features", "tuple[0]")])
def test_select_output_picks_the_main_head(out: str, desc: str) -> None:
    model = TwoHeads(out).eval()
    wrapped, what = select_output(model, SPEC)
    assert what.startswith(desc)
    x = torch.from_numpy(SPEC.reference(np.full((40, 48, 3), 90, np.uint8)))
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(x), model.head(model.body(x)))


def test_logits_are_picked_and_recorded(tmp_path: Path) -> None:
    """Through convert: a named tuple with an aux head (GoogLeNet/Inception style)."""
    desc = "Outputs.logits"
    model = TwoHeads("named")
    r = convert(model, tmp_path / "m.onnx", spec=SPEC, parity_data="builtin:photos")
    assert r.metadata.provenance["output"].startswith(desc)
    assert r.parity.max_abs <= tolerance("onnx", "fp32").max_abs
    # the artifact's probabilities are the softmax of the main head, not the aux head
    frame = np.zeros((1, 40, 48, 3), np.uint8) + 90
    import onnxruntime as ort

    probs = ort.InferenceSession(str(r.path)).run(None, {"frame": frame})[0]
    with torch.inference_mode():
        x = torch.from_numpy(SPEC.reference(frame[0]))
        f = model.body(x)
        want = torch.softmax(model.head(f), -1).numpy()
        aux = torch.softmax(model.aux(f), -1).numpy()
    assert np.abs(probs - want).max() <= 1e-5 < np.abs(probs - aux).max()


def test_hugging_face_model_output_logits(tmp_path: Path) -> None:
    T = pytest.importorskip("transformers")
    cfg = T.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                           num_labels=4, image_size=32)
    torch.manual_seed(0)
    model = T.ConvNextForImageClassification(cfg)
    r = convert(model, tmp_path / "hf.onnx", spec=SPEC, parity_data="builtin:photos")
    assert r.metadata.provenance["output"].startswith("ImageClassifierOutputWithNoAttention"
                                                      ".logits")
    assert r.parity.top1_agreement == 1.0


def test_ambiguous_tuple_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="ambiguous") as e:
        convert(TwoHeads("plain"), tmp_path / "x.onnx", spec=SPEC)
    assert "\n" not in str(e.value) and "[1, 5]" in str(e.value)
    assert not (tmp_path / "x.onnx").exists()


def test_a_tensor_output_is_left_alone() -> None:
    assert pick_output(torch.zeros(1, 3)) is None
    with pytest.raises(ConversionError, match="not a tensor"):
        pick_output("scores")


def test_lazy_layers_are_initialised_by_the_probe(tmp_path: Path) -> None:
    """A LazyLinear model used to fail with a traceback (its weights were fingerprinted
    before any forward); the output probe's forward initialises it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(3))
    r = convert(model, tmp_path / "lazy.onnx", spec=SPEC, parity_data="builtin:photos")
    assert r.metadata.provenance["output"] == "tensor"
    assert r.parity.max_abs <= tolerance("onnx", "fp32").max_abs
