"""Fixtures of the spec-audit and doctor tests: our own small Fashion-MNIST model (trained
by tools/train_small_fashion.py on a train-split subset, so the test split is unseen), the
wrong specs a user could plausibly write for it, and real test frames."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeinfer.data.frames import FrameSet, load_frames
from edgeinfer.spec import PreprocessSpec

HERE = Path(__file__).parent / "small_fashion"
FACTORY = f"{HERE / 'net.py'}:build"
WEIGHTS = HERE / "weights.pt"
LABELS = HERE / "labels.txt"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads spin against the
    other jobs (the audit measured 8.7 s with 2 threads vs 1.5 s with 1 under load 11)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_spec() -> PreprocessSpec:
    return PreprocessSpec.from_dict(json.loads((HERE / "spec.json").read_text()))


@pytest.fixture(scope="session")
def wrong_specs(train_spec) -> dict[str, PreprocessSpec]:
    """The two classic mistakes: 0.5/0.5 instead of the training mean/std, and the mean/std
    written on the 0-255 scale while the pixels are divided by 255."""
    m, s = train_spec.mean[0], train_spec.std[0]
    return {"mean_std_mismatch": replace(train_spec, mean=(0.5,), std=(0.5,)),
            "mean_std_pixel_scale": replace(train_spec, mean=(m * 255,), std=(s * 255,))}


@pytest.fixture(scope="session")
def test_frames(train_spec) -> FrameSet:
    return load_frames("builtin:fashion-test", train_spec, limit=256)


@pytest.fixture(scope="session")
def small_source(train_spec):
    from edgeinfer.converter.sources.load import resolve_source

    return resolve_source(FACTORY, train_spec, WEIGHTS)


def unlabelled(fs: FrameSet) -> FrameSet:
    return FrameSet(fs.name, fs.frames, None, fs.ids, fs.class_names)
