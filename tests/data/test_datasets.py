"""Real data loaders and the bundled Fashion-MNIST reference model.

The reference model is what parity and folding tests convert, so its committed weights
must load strictly into the committed architecture and still classify real test images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.data.datasets import (
    FASHION_LABELS,
    document_photo,
    load_fashion_mnist,
    sample_photos,
)
from edgeinfer.errors import EdgeInferError
from edgeinfer.spec import PreprocessSpec

FASHION_DIR = Path(__file__).resolve().parents[2] / "models" / "fashion"


@pytest.fixture(scope="module")
def fashion_test():
    # No skip: scripts/setup installs the data, so a missing file is a failure.
    return load_fashion_mnist("test")


def test_fashion_test_split_shapes_and_balance(fashion_test):
    x, y = fashion_test
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert y.min() == 0 and y.max() == len(FASHION_LABELS) - 1
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10
    # Real images, not zeros: the dataset's known pixel mean is ~0.286 * 255.
    assert 60 < x.mean() < 85
    assert x.flags.writeable


def test_missing_files_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEINFER_FASHION_DIR", str(tmp_path))
    with pytest.raises(EdgeInferError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test")


def test_unknown_split_is_refused():
    with pytest.raises(EdgeInferError, match="split"):
        load_fashion_mnist("validation")


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    import gzip

    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + payload)


def test_tiny_idx_files_load(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x803, (3, 28, 28), bytes(3 * 784))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x801, (3,), bytes([0, 9, 4]))
    x, y = load_fashion_mnist("test", root=tmp_path)
    assert x.shape == (3, 28, 28) and y.tolist() == [0, 9, 4] and y.dtype == np.int64


def test_truncated_file_is_refused(tmp_path):
    # The header promises 3 images but only 2 are there: must not reshape into garbage.
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x803, (3, 28, 28), bytes(2 * 784))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x801, (3,), bytes(3))
    with pytest.raises(EdgeInferError, match="header says"):
        load_fashion_mnist("test", root=tmp_path)


def test_swapped_files_are_refused(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x801, (3,), bytes(3))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x803, (3, 28, 28), bytes(3 * 784))
    with pytest.raises(EdgeInferError, match="magic"):
        load_fashion_mnist("test", root=tmp_path)


def test_labels_file_matches_dataset_labels():
    lines = (FASHION_DIR / "labels.txt").read_text().splitlines()
    assert tuple(lines) == FASHION_LABELS
    assert len(FASHION_LABELS) == 10


def test_sample_photos_are_bgr_uint8_frames():
    photos = sample_photos()
    assert set(photos) == {"astronaut", "coffee", "chelsea", "rocket", "china", "flower"}
    for name, img in photos.items():
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
        assert img.flags.c_contiguous, name
        assert min(img.shape[:2]) >= 256, name
    # BGR, not RGB: the rocket photo's sky is blue, so channel 0 dominates its top rows.
    sky = photos["rocket"][:40].reshape(-1, 3).mean(axis=0)
    assert sky[0] > sky[2], sky


def test_document_photo_is_a_gray_page_as_bgr():
    page = document_photo()
    assert page.ndim == 3 and page.shape[2] == 3 and page.dtype == np.uint8
    assert page.shape[1] > page.shape[0]  # landscape text lines
    assert np.array_equal(page[..., 0], page[..., 1])
    assert np.array_equal(page[..., 1], page[..., 2])


def test_fashion_spec_loads():
    spec = PreprocessSpec.from_json((FASHION_DIR / "spec.json").read_text())
    assert spec.size == (28, 28)
    assert (spec.frame_color, spec.model_color, spec.layout) == ("BGR", "GRAY", "NCHW")
    assert spec.model_input_shape() == (1, 1, 28, 28)


# ---------------------------------------------------------------------- reference model
def _load_fashion_model():
    import torch
    mod_spec = importlib.util.spec_from_file_location("_fashion_net", FASHION_DIR / "net.py")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    model = module.build()
    state = torch.load(FASHION_DIR / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_fashion_model_has_batchnorm_and_dropout():
    import torch
    model = _load_fashion_model()
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.BatchNorm2d in kinds
    assert torch.nn.BatchNorm1d in kinds
    assert torch.nn.Dropout in kinds
    n_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert n_bytes < 2_000_000
    # Trained BN statistics, not the (0, 1) defaults the converter would refuse to fold.
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.allclose(m.running_var, torch.ones_like(m.running_var)) for m in bns)


@pytest.mark.slow  # ~5 s on an idle 2-core machine, 15+ s when it is shared
def test_fashion_model_accuracy_on_test_set(fashion_test):
    import torch
    x, y = fashion_test
    spec = PreprocessSpec.from_json((FASHION_DIR / "spec.json").read_text())
    a, b = spec.affine()
    inputs = torch.from_numpy(x[:, None].astype(np.float32) * a[0] + b[0])
    model = _load_fashion_model()
    with torch.no_grad():
        pred = torch.cat([model(inputs[i:i + 2000]).argmax(1) for i in range(0, len(x), 2000)])
    acc = (pred.numpy() == y).mean()
    assert acc >= 0.90, acc
