"""Fuzzing ``load_image`` with structure-aware mutations (a bounded budget in the suite).

What is mutated (tools/image_mutations.py): JPEG segments (frame sizes, repeated scans,
``FF 00``/fill/RST between segments, segments hidden behind ``FF 00``, second frame
headers, lengths, order), PNG chunks with recomputed CRCs (IHDR fields, duplicated or
deflate-bomb IDATs, stray chunks), TIFF directory entries (values, duplicated tags before or
after, types and counts, tiles), WebP RIFF chunks (VP8/VP8L sizes, a VP8X canvas, RIFF
size) and GIF blocks (screen and image sizes, LZW code size, extension floods), seeded
with real encodings and the issue-31 regression files. The suite runs a few hundred cases
in-process (Hypothesis) and a few seconds in a worker child that also checks for signals
and peak RSS; ``tools/fuzz_images.py --budget N`` is the long run.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOLS = Path(__file__).resolve().parents[2] / "tools"
MAX_PIXELS = 4_000_000


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz_images = _load("fuzz_images")
mutations = _load("image_mutations")
SEEDS = mutations.seeds()


def test_seeds_decode_and_regressions_are_refused() -> None:
    for name, data in SEEDS.items():
        outcome, detail = fuzz_images.check(data, MAX_PIXELS)
        want = "refused" if name.startswith("hostile-") else "decoded"
        assert outcome == want, (name, detail)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SEEDS)), seed=st.integers(0, 2**32 - 1))
def test_mutants_decode_or_are_refused_in_one_line(name: str, seed: int) -> None:
    """Every case: a right decode or an ImageError of one line; never another exception,
    never a probe/decoder size disagreement."""
    data = mutations.mutate(name, SEEDS[name], random.Random(seed))
    outcome, detail = fuzz_images.check(data, MAX_PIXELS)
    assert outcome in ("decoded", "refused"), (name, seed, detail)


@pytest.mark.parametrize("seed", [31])
def test_worker_run_has_no_signal_hang_or_memory_blowup(tmp_path, seed) -> None:
    """A few seconds of the on-demand harness: decoded in a child, so an abort is caught as
    a finding instead of killing pytest; peak RSS per case within three frames at the limit
    plus 64 MiB; no case silent for 20 s."""
    s = fuzz_images.fuzz(3.0, seed, MAX_PIXELS, tmp_path, max_cases=3000)
    assert s["cases"] >= len(SEEDS)
    assert s["findings"] == [], s["findings"]
    assert set(s["outcomes"]) <= {"decoded", "refused"}
