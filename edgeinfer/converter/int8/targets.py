"""int8 targets: which quantisation settings suit which CPU, and which machine this is.

Why per target and not per conversion machine: onnxruntime's U8S8 kernels on x86 CPUs
without VNNI (AVX2, AVX-512 before Cascade Lake) multiply with VPMADDUBSW, whose 16-bit
intermediate sums saturate with full 8-bit weights, so 7-bit weights (``reduce_range``) are
needed there; on VNNI CPUs (VPDPBUSD, 32-bit sums) and on ARM (SDOT/UDOT or widening
multiplies) nothing saturates and 7-bit weights only cost precision (onnxruntime's docs,
and docs/int8/ for the measurements here). A workstation with VNNI converting for a
Raspberry Pi must therefore pick the Pi's settings, and ``verify`` on the device can warn
when an artifact was made for another kind of CPU.

Numpy-free and framework-free: the converter and the lean ``verify`` both read it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeinfer.errors import ConfigError

TARGETS = ("x86-avx2", "x86-vnni", "arm64")
KEY_QUANTIZATION = "edgeinfer.quantization"


@dataclass(frozen=True)
class TargetSettings:
    """onnxruntime static-quantisation settings for one kind of CPU."""

    target: str
    reduce_range: bool
    activation_type: str  # uint8 | int8
    weight_type: str
    per_channel: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SETTINGS = {
    "x86-avx2": TargetSettings(
        "x86-avx2", True, "uint8", "int8", True,
        "7-bit weights: VPMADDUBSW's 16-bit sums saturate with 8-bit weights without VNNI"),
    "x86-vnni": TargetSettings(
        "x86-vnni", False, "uint8", "int8", True,
        "full 8-bit weights: VNNI (VPDPBUSD) accumulates in 32 bits, nothing saturates"),
    "arm64": TargetSettings(
        "arm64", False, "uint8", "int8", True,
        "full 8-bit weights: ARM's dot-product/widening kernels do not saturate"),
}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The flag words of /proc/cpuinfo (x86 ``flags``, ARM ``Features``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    out: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            out |= set(value.split())
    return out


def machine_target(arch: str | None = None, flags: set[str] | None = None) -> str:
    """``arm64``, ``x86-vnni`` or ``x86-avx2`` for this machine (or the given arch/flags)."""
    arch = (arch or platform.machine()).lower()
    if arch in ("aarch64", "arm64"):
        return "arm64"
    flags = cpu_flags() if flags is None else flags
    return "x86-vnni" if flags & {"avx512_vnni", "avx_vnni"} else "x86-avx2"


def resolve_target(target: str | None) -> str | None:
    """``auto`` -> this machine's target; None stays None (the historical default)."""
    if target is None:
        return None
    if target == "auto":
        return machine_target()
    if target not in TARGETS:
        raise ConfigError(f"int8 target {target!r} is not one of {', '.join(TARGETS)} or auto")
    return target


def target_warning(props: dict[str, str], provenance: dict[str, Any],
                   here: str | None = None) -> str | None:
    """A warning when an int8 ONNX artifact runs on a CPU where its settings lose accuracy."""
    import json

    raw = props.get(KEY_QUANTIZATION)
    if not raw:
        return None
    try:
        q = json.loads(raw)
    except ValueError:
        return None
    here = here or machine_target()
    made_for = q.get("target") or provenance.get("target") or "unspecified"
    u8s8 = str(q.get("scheme", "U8S8")).upper() == "U8S8"
    if here == "x86-avx2" and u8s8 and not q.get("reduce_range", True):
        return (f"this int8 artifact has full 8-bit weights (made for {made_for}) and runs on an "
                "x86 CPU without VNNI, where onnxruntime's U8S8 kernels can saturate and lose "
                "accuracy (fashion: 99.3% -> 96.9% agreement): convert with --target x86-avx2")
    if here in ("x86-vnni", "arm64") and q.get("reduce_range"):
        return (f"this int8 artifact has 7-bit weights (made for {made_for}), needed only on x86 "
                f"CPUs without VNNI; on this {here} machine they cost precision: convert with "
                f"--target {here}")
    return None


def kept_float_line(provenance: dict[str, Any]) -> str | None:
    """One line for ``check``/``verify``/``info``: the layers an accuracy-controlled int8
    artifact keeps float, and why (``provenance["int8_control"]``, written by convert)."""
    ctl = provenance.get("int8_control")
    if not isinstance(ctl, dict):
        return None
    kept = list(ctl.get("kept_float") or [])
    want = []
    if ctl.get("min_agreement") is not None:
        want.append(f">= {ctl['min_agreement']:.2%} top-1 agreement with fp32 (95% lower bound)")
    if ctl.get("max_drop") is not None:
        want.append(f"an accuracy drop <= {ctl['max_drop']:.2%}")
    steps = ctl.get("steps") or [{}]
    first, last = steps[0], steps[-1]
    got = (f"all-int8 {first.get('agreement', 0):.2%} -> {last.get('agreement', 0):.2%} on "
           f"{ctl.get('n_heldout')} held-out frames")
    if not want and ctl.get("max_latency_ratio") is not None:
        want.append(f"the most accurate int8 within {ctl['max_latency_ratio']:.2f}x fp32's "
                    "latency (no target asked)")
    if not kept:
        return f"all {ctl.get('candidates')} layers int8: {' and '.join(want)} ({got})"
    names = ", ".join(kept[:6]) + (f" and {len(kept) - 6} more" if len(kept) > 6 else "")
    return (f"{len(kept)} of {ctl.get('candidates')} layers kept float ({names}): the most "
            f"harmful when quantised, kept float for {' and '.join(want)} ({got})")


def default_target_note(here: str | None = None) -> str:
    """What converting without ``--target`` costs, for the progress line and the metadata.

    Why the default stays x86-avx2 (decided in docs/int8/README.md): an artifact with 8-bit
    weights silently loses accuracy on an x86 CPU without VNNI (saturation: fashion 99.3% ->
    96.9%), while 7-bit weights only cost precision elsewhere; the converting machine is
    often not the device, so the safe setting is the default and its price is said aloud.
    """
    here = here or machine_target()
    tail = (f"this machine is {here}: if it is the device, pass --target auto"
            if here != "x86-avx2" else "this machine needs them too (no VNNI)")
    return ("no --target: x86-avx2 settings (7-bit weights), correct on every CPU but they cost "
            "accuracy on VNNI x86 and ARM (EfficientNet-Lite0 photos: 95.7% vs 97.8% "
            f"agreement with fp32, docs/int8/); {tail}, else the device's (--target arm64)")


def float_layers(provenance: dict[str, Any], quant: dict[str, Any] | None) -> str:
    """``3 of 50 conv/matmul layers float`` (issue 26: a file called int8 says how much of
    it is not): from the quantisation settings (ONNX) or the control record (TFLite)."""
    ctl = provenance.get("int8_control") if isinstance(provenance.get("int8_control"),
                                                       dict) else {}
    kept = (quant or {}).get("kept_float", ctl.get("kept_float_nodes"))
    total = (quant or {}).get("quantisable_layers", ctl.get("candidates"))
    k = len(kept) if isinstance(kept, list) else 0
    if isinstance(total, int) and total > 0:
        return f"{k} of {total} conv/matmul layers float"
    return f"{k} conv/matmul layers kept float" if k else "every conv/matmul layer int8"


def rounding_note(provenance: dict[str, Any], quant: dict[str, Any] | None = None) -> str | None:
    """``weights AdaRounded: 50 layers, 200 steps each, 32 calibration frames, 95 s`` for an
    artifact whose int8 weights were reconstructed (adaround_onnx.py), else None."""
    r = provenance.get("int8_rounding") or (quant or {}).get("rounding")
    if isinstance(r, dict) and r.get("reason"):  # the default fell back (conversion.NO_TORCH)
        return f"weights not AdaRounded: {r['reason']}"
    if not isinstance(r, dict) or r.get("method") != "adaround":
        return None
    kept = r.get("kept_nearest") or []
    return (f"weights AdaRounded: {r.get('layers')} layers, {r.get('iterations')} steps each, "
            f"{r.get('frames')} calibration frames, {r.get('seconds')} s"
            + (f" ({len(kept)} kept nearest: no gain on held-out frames)" if kept else ""))


def int8_summary(provenance: dict[str, Any]) -> list[str]:
    """convert's closing lines for an int8 artifact: the target it was judged by, the frames
    it was certified on, the layers kept float, and the loop's figure on the frames it chose
    on next to the certified one (issue 26)."""
    out = []
    if note := rounding_note(provenance):
        out.append(f"int8 {note}")
    tgt = provenance.get("int8_target")
    if isinstance(tgt, dict) and tgt.get("describe"):
        out.append(f"int8 target: {tgt['describe']}")
    split = provenance.get("certification_split")
    if isinstance(split, dict):
        out.append(f"int8 certified on {split.get('certified_on')} of "
                   f"{split.get('parity_frames')} parity frames not calibrated on "
                   f"(calibrated on {split.get('calibrated_on')}: {split.get('shared')} frames "
                   "were in both sets, split alternately)")
    ctl = provenance.get("int8_control")
    if not isinstance(ctl, dict):
        return out
    kept = list(ctl.get("kept_float") or [])
    names = ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else "")
    out.append(f"int8 control: {len(kept)} of {ctl.get('candidates')} layers kept float"
               + (f": {names}" if names else ""))
    tvf = ctl.get("tune_vs_final")
    if isinstance(tvf, dict):
        t, f = tvf.get("tune") or {}, tvf.get("final") or {}
        out.append(f"int8 control: agreement with fp32 {t.get('agreement', 0):.2%} on the "
                   f"{t.get('frames')} frames it chose on, {f.get('agreement', 0):.2%} "
                   f"[95% CI {f.get('ci95', [0, 0])[0]:.2%}, {f.get('ci95', [0, 0])[1]:.2%}] "
                   f"on the {f.get('frames')} certified: {tvf.get('note')}")
    return out
