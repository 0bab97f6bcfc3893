"""``verify``: the on-device half of the parity ladder, on the lean install.

A Raspberry Pi or a Jetson has numpy + onnxruntime (or LiteRT) + OpenCV, not the framework.
The workstation runs the framework once and writes a parity pack
(:mod:`edgeinfer.data.packfile`); here the artifact runs on the device's own kernels, on the
pack's frames, and is judged against the framework's probabilities with the registry's
tolerance for the artifact's own format and dtype (from its provenance). This module
imports only the runtime and ``edgeinfer.parity`` (a test checks ``sys.modules`` in a fresh
interpreter): never torch, tensorflow or onnx.

Verdicts: PASS; FAIL (a figure out of tolerance, named); NOT CERTIFIED when every figure is
within tolerance but the 95% Wilson interval of top-1 agreement reaches below the
registry's minimum (a statistical bound such as int8's 99%): too few frames to claim it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.artifact import ArtifactMetadata, sniff_format
from edgeinfer.converter.int8.targets import kept_float_line, machine_target, target_warning
from edgeinfer.data.files import load_model_bytes
from edgeinfer.data.packfile import ParityPack, read_pack
from edgeinfer.errors import ConfigError, ImageError, ModelError, one_line
from edgeinfer.parity.certify import (
    FAIL,
    NOT_CERTIFIED,
    PASS,
    certify,
    drop_bound,
    judged_tolerance,
)
from edgeinfer.parity.prefix import prefix_runner
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stages import MODEL, StageCheck, by_stage, failures, float_stages
from edgeinfer.parity.stats import Comparison, accuracy, compare, flip_pairs
from edgeinfer.parity.tolerances import TOLERANCES, tolerance
from edgeinfer.progress import Progress
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.timing import summarize, time_calls, warm_up

LATENCY_RUNS = 50
#: How a model stage measured against ``pack --artifact`` names its reference.
OWN_PIXELS = "on the artifact's own pixels (pack)"
CONSISTENCY_FRAMES = 8


@dataclass
class VerifyStep:
    """One judged comparison: the artifact on the pack's frames, or on device-decoded ones."""

    name: str
    comparison: Comparison
    verdict: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "notes": self.notes,
                **self.comparison.to_dict()}


@dataclass
class VerifyResult:
    artifact: str
    pack: str
    format: str
    dtype: str
    steps: list[VerifyStep]
    machine: dict[str, Any]
    accuracy: dict[str, Any] | None
    decode: dict[str, Any] | None
    consistency: dict[str, float]
    latency_ms: dict[str, float]
    peak_rss_mb: float
    warnings: list[str]
    flips: list[dict[str, Any]]
    probs: np.ndarray
    reference: np.ndarray
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. int8 layers kept float, and why
    stages: list[StageCheck] = field(default_factory=list)  # device_stages()

    @property
    def verdict(self) -> str:
        vs = [s.verdict for s in self.steps]
        return FAIL if FAIL in vs else NOT_CERTIFIED if NOT_CERTIFIED in vs else PASS

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == FAIL else 0

    def message(self) -> str:
        """One line: the verdict, and what failed or why it is not certified."""
        bad = [f"{s.name}: {'; '.join(s.notes)}" for s in self.steps if s.verdict != PASS]
        main = self.steps[0].comparison
        lo, hi = main.top1_ci95
        head = (f"{self.verdict}: {self.format}-{self.dtype} on {main.n} frames, max|dp| "
                f"{main.abs_text()}, top-1 agreement {main.top1_agreement:.2%} "
                f"[95% CI {lo:.1%}, {hi:.1%}]")
        return head + (" - " + "; ".join(bad) if bad else "")

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "pack": self.pack, "format": self.format,
                "dtype": self.dtype, "verdict": self.verdict, "message": self.message(),
                "steps": [s.to_dict() for s in self.steps], "machine": self.machine,
                "accuracy": self.accuracy, "decode": self.decode,
                "consistency": self.consistency, "latency_ms": self.latency_ms,
                "peak_rss_mb": self.peak_rss_mb, "warnings": self.warnings,
                "flips": self.flips, "seconds": self.seconds,
                "stages": [c.to_dict() for c in self.stages]}


def judge(name: str, cmp: Comparison, extra: list[str] | None = None) -> VerifyStep:
    """PASS / FAIL / NOT CERTIFIED for one comparison: the one rule, parity.certify."""
    cert = certify(cmp, extra_failures=extra)
    if cert.base == FAIL:
        return VerifyStep(name, cmp, FAIL, cmp.problems() + list(extra or []))
    return VerifyStep(name, cmp, cert.base, [cert.reason] if cert.reason else [])


def check_match(pack: ParityPack, spec: Any, labels: tuple[str, ...],
                provenance: dict[str, Any], pack_name: str) -> None:
    """Refuse (ConfigError, exit 2) a pack made for another model or another spec."""
    a, b = pack.spec.to_dict(), spec.to_dict()
    diff = [f"{k}: pack {a.get(k)!r} vs artifact {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]
    if diff:
        raise ConfigError(f"parity pack {pack_name} was made with a different preprocessing "
                          f"spec ({'; '.join(diff[:3])}): make a pack for this artifact")
    if pack.labels and labels and tuple(pack.labels) != tuple(labels):
        what = (f"{len(pack.labels)} classes vs {len(labels)}" if len(pack.labels) != len(labels)
                else "the class names differ")
        raise ConfigError(f"parity pack {pack_name} is from another model ({what}): make a "
                          "pack from this artifact's source")
    sa, sb = pack.source.get("weights_sha256"), provenance.get("weights_sha256")
    if sa and sb and sa != sb:
        raise ConfigError(f"parity pack {pack_name} is from another model (source weights "
                          f"sha256 {sa[:12]}... vs the artifact's {sb[:12]}...): make a pack "
                          "from this artifact's source")


def decode_frames(pack: ParityPack) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Decode the pack's encoded files with the runtime's own decoder (this device's OpenCV)."""
    from edgeinfer.runtime.image import load_image

    out, identical, worst, mean = [], 0, 0, []
    for i, (raw, f) in enumerate(zip(pack.encoded or [], pack.frames, strict=True)):
        try:
            d = load_image(raw, pack.spec)
        except ImageError as e:  # the pack's file, not a user's photo: say which
            name = pack.ids[i] if pack.ids else f"#{i}"
            raise ModelError(f"the pack's encoded file {name} cannot be decoded on this "
                             f"device ({one_line(e, 160)}): make the pack again, or pack "
                             "with --no-encoded to skip the decode check") from None
        if d.shape != f.shape:
            out.append(d)
            worst, mean = 255, mean + [255.0]
            continue
        diff = np.abs(d.astype(np.int16) - f.astype(np.int16))
        identical += int(not diff.any())
        worst = max(worst, int(diff.max()))
        mean.append(float(diff.mean()))
        out.append(d)
    return out, {"n": len(out), "identical": identical, "max_abs_pixel": worst,
                 "mean_abs_pixel": float(np.mean(mean)) if mean else 0.0}


def latency(backend: Any, frames: list[np.ndarray], runs: int) -> dict[str, float]:
    """Batch-1 latency of the artifact call (frame in, probabilities out), ms, by the one
    timing harness; the calls cycle over the first (up to 16) frames."""
    pick = itertools.cycle([f[None] for f in frames[:max(1, min(len(frames), 16))]])

    def call() -> Any:
        return backend.run(next(pick))

    warm_up(call, 3)
    t = summarize(time_calls(call, runs))
    return {"runs": runs, "p50": t["p50"], "p90": t["p90"], "p99": t["p99"], "min": t["min"]}


def consistency(runner: ArtifactRunner, frames: list[np.ndarray],
                probs: np.ndarray) -> dict[str, float]:
    """Batch-1 vs the batched run, and a rerun, on the first frames: max |dp| each."""
    k = min(CONSISTENCY_FRAMES, len(frames))
    one = np.concatenate([runner.run([f]) for f in frames[:k]]) if k else probs[:0]
    again = runner.run(frames[:k])
    return {"batch": float(np.abs(one - probs[:k]).max()) if k else 0.0,
            "rerun": float(np.abs(again - probs[:k]).max()) if k else 0.0}


def machine() -> dict[str, Any]:
    return {"machine": platform.machine(), "python": platform.python_version(),
            "system": platform.system(), "target": machine_target(),
            "cpu_flags": _cpu_flags(), "load_average": list(os.getloadavg())}


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm"}
    words = set(text.replace("\t", " ").split())
    return sorted(words & wanted)


def verify(artifact: str | os.PathLike, pack_path: str | os.PathLike, *,
           threads: int | None = None, latency_runs: int = LATENCY_RUNS,
           progress: Progress | None = None) -> VerifyResult:
    """Run ``artifact`` on the pack's frames on this machine and judge it (see module doc)."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    data, name = load_model_bytes(artifact)
    backend = open_backend(data, threads, source=name)
    meta = ArtifactMetadata.from_props(backend.metadata_props(), name)
    pack = read_pack(pack_path)
    pack_name = os.fsdecode(os.fspath(pack_path))
    if pack.task == "detect":  # check/verify/detect.py judges those
        raise ConfigError(f"parity pack {pack_name} holds a detector's detections, not "
                          f"probabilities: {name} is a classifier; make its pack with "
                          "`edgeinfer pack` from its own source")
    check_match(pack, meta.spec, meta.labels, meta.provenance, pack_name)
    fmt = sniff_format(data)
    dtype = meta.provenance.get("quantize") or "fp32"
    if (fmt, dtype) not in TOLERANCES:
        raise ConfigError(f"{name}: no tolerance for {fmt} {dtype} in the registry")
    tol = judged_tolerance(fmt, dtype, meta.provenance)  # an int8 target convert stored
    runner = ArtifactRunner(backend, name=f"{fmt}-{dtype}")
    say(f"running {fmt}-{dtype} on {pack.n} frames ({pack.data_name}) on {platform.machine()}")
    probs = runner.run(pack.frames)
    ref_name = str(pack.source.get("framework", "framework"))
    cmp = compare(pack.reference, probs, tol, reference=f"{ref_name} (pack)",
                  target=f"{fmt}-{dtype}")
    acc = None
    extra: list[str] = []
    if pack.truth is not None:
        acc = {"reference": accuracy(pack.reference, pack.truth),
               "artifact": accuracy(probs, pack.truth)}
        drop = acc["reference"]["accuracy"] - acc["artifact"]["accuracy"]
        acc["drop"] = drop
        bound = drop_bound(dtype, meta.provenance)
        if bound is not None and drop > bound:
            extra.append(f"accuracy drop {drop:.2%} > {bound:.1%}")
    stages, own = device_stages(data, fmt, dtype, pack, probs, tol, ref_name, threads)
    steps = [judge("artifact", own or cmp, extra)]
    if own is not None:
        steps[0].notes.append(f"judged by stage; end to end vs {ref_name} on the reference "
                              f"pixels (reported) max|dp| {cmp.max_abs:.2e}")
    if failures(stages):
        steps[0].notes += failures(stages)
        steps[0].verdict = FAIL
        if own is None and dtype != "int8" and any(c.stage == MODEL and not c.passed
                                                   for c in stages):
            other = pack.artifact and pack.artifact.get("name")
            steps[0].notes.append(
                (f"the pack's --artifact entry is for another file ({other}); "
                 if other else "") + "a network whose outputs move with pixel rounding fails "
                "end to end: `edgeinfer pack ... --artifact` with THIS file judges its model "
                "stage as convert did")
    cons = consistency(runner, pack.frames, probs)
    for key, value in cons.items():
        if value > tolerance("consistency", key).max_abs:
            steps[0].notes.append(f"{key} consistency {value:.1e} > "
                                  f"{tolerance('consistency', key).max_abs:.0e}")
            steps[0].verdict = FAIL
    decode = None
    if pack.encoded:
        say(f"decode check: {len(pack.encoded)} encoded files through this device's decoder")
        decoded, decode = decode_frames(pack)
        dcmp = compare(pack.reference if own is None else pack.artifact_reference,
                       runner.run(decoded), tol, reference=f"{ref_name} (pack)",
                       target=f"{fmt}-{dtype} (decoded here)")
        steps.append(judge("decode", dcmp))
    say(f"latency: {latency_runs} batch-1 calls")
    lat = latency(backend, pack.frames, latency_runs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warns = [w for w in [target_warning(backend.metadata_props(), meta.provenance)] if w]
    return VerifyResult(
        artifact=name, pack=pack_name, format=fmt, dtype=dtype, steps=steps, machine=machine(),
        accuracy=acc, decode=decode, consistency=cons, latency_ms=lat, peak_rss_mb=rss,
        warnings=warns, flips=flip_pairs(pack.reference, probs, pack.labels, pack.ids),
        probs=probs, reference=pack.reference, seconds=time.perf_counter() - t0,
        notes=[n for n in [kept_float_line(meta.provenance)] if n], stages=stages)


def device_stages(data: bytes, fmt: str, dtype: str, pack: ParityPack, probs: np.ndarray,
                  tol: Any, ref_name: str, threads: int | None
                  ) -> tuple[list[StageCheck], Comparison | None]:
    """The stages of convert's gate that this device can measure without the framework, and
    the model stage's comparison when it was judged on the artifact's own pixels (None when
    only end to end could be judged).

    preprocessing: this device's prefix output (ONNX, or TFLite read through LiteRT) vs this
    device's numpy/OpenCV reference, in grey levels: complete, the same check as convert's.
    An int8 ONNX file whose quantiser renamed the tensor has none: not measured.
    model: when the pack holds the framework fed THIS file's own pixels (``pack
    --artifact``, matched by sha256) and the artifact is float, the artifact vs those,
    judged, and the end-to-end figure (vs the framework on the reference pixels) reported,
    as convert does. Otherwise the artifact vs the pack's framework outputs on the reference
    pixels, which cannot separate the model from the rounding of the preprocessing: on a
    network so sensitive that convert judged it stage by stage, it fails here by the same
    amount, and the note says to pack with ``--artifact``.
    """
    prefix = prefix_runner(data, threads)
    pixels = prefix.run(pack.frames)[0] if prefix is not None else None
    sha = hashlib.sha256(data).hexdigest()
    mine = pack.artifact is not None and pack.artifact.get("sha256") == sha
    own = pack.artifact_reference if mine and dtype != "int8" else None
    out = float_stages(probs, tol, f"{fmt}-{dtype}", ref_name, spec=pack.spec,
                       frames=pack.frames, pixels=pixels, own=own, reference=pack.reference,
                       where=(" (this device)", " (pack)"), own_name=f"{ref_name} {OWN_PIXELS}")
    return out, by_stage(out)
