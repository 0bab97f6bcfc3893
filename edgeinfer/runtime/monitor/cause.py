"""The likely cause of a shift, in the doctor's vocabulary, or an honest "unknown".

Inputs are what the monitor measured: each frame signal's effect size against the parity
data, and the predicted-class mix. The words say which way a signal moved ("2.1 sigma
darker"). When the profile carries robustness entries (the converter measured accuracy on
corrupted parity frames, and how each corruption moved the signals), the observed shift is
matched to the corruption whose fingerprint it resembles most, and that corruption's cost is
quoted: this is evidence from the model's own robustness curve, not a guess. A shift that
moved nothing measurable is called unknown; a fall with only the class mix moved is a
label shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.runtime.monitor.drift import CLASS_MIX_BAR, EFFECT_BAR

#: signal -> (word when it went up, word when it went down)
WORDS: dict[str, tuple[str, str]] = {
    "brightness": ("brighter", "darker"),
    "contrast": ("higher in contrast", "lower in contrast"),
    "saturation": ("more saturated", "less saturated (greyer)"),
    "warmth": ("warmer (red cast)", "cooler (blue cast)"),
    "sharpness": ("sharper or grainier", "blurrier"),
    "noise": ("noisier", "smoother (blurred or denoised)"),
    "pixels": ("larger", "smaller (lower resolution)"),
    "aspect": ("wider", "narrower"),
}
#: robustness corruption -> what alone costs the points ("darkness alone costs 15 points")
ALONE: dict[str, str] = {
    "gaussian_noise": "noise", "blur": "blur", "brightness_contrast": "darkness",
    "rotation": "rotation", "jpeg": "JPEG compression", "scale_crop": "zoom and offset",
}


def moved(effects: dict[str, float], bar: float = EFFECT_BAR) -> list[tuple[str, float]]:
    """Frame signals past the bar, largest first."""
    out = [(s, e) for s, e in effects.items() if s in WORDS and abs(e) >= bar]
    return sorted(out, key=lambda t: -abs(t[1]))


#: how far (accuracy) a robustness entry may be from the estimate and still explain it
COST_SLACK = 0.15
#: a second corruption this close (ratio of total distances) makes the match ambiguous
AMBIGUOUS = 1.25


def nearest_by_kind(effects: dict[str, float], robustness: dict[str, list[dict[str, Any]]],
                    estimate: float | None = None
                    ) -> list[tuple[str, dict[str, Any], float]]:
    """Each corruption's robustness entry nearest the observation over the frame signals,
    nearest kind first, as (kind, entry, distance). With an estimate, only entries
    whose accuracy lies within ``COST_SLACK`` of it qualify: a fingerprint that fits the
    signals but costs 3 points cannot explain a 28-point fall (a JPEG shift was quoted as
    "rotation alone costs 3 points" before this rule)."""
    best: dict[str, tuple[str, dict[str, Any], float]] = {}
    for kind, entries in robustness.items():
        for e in entries:
            common = [s for s in e["shift"] if s in effects and s in WORDS]
            if not common or (estimate is not None
                              and abs(estimate - e["accuracy"]) > COST_SLACK):
                continue
            d = float(np.sqrt(sum((effects[s] - e["shift"][s]) ** 2 for s in common)))
            if kind not in best or d < best[kind][2]:
                best[kind] = (kind, e, d)
    return sorted(best.values(), key=lambda t: t[2])


def _norm(entry: dict[str, Any]) -> float:
    return float(np.sqrt(sum(v * v for s, v in entry["shift"].items() if s in WORDS)))


def explain(effects: dict[str, float], class_mix_z: float, window_freq: np.ndarray,
            profile: Any, labels: tuple[str, ...] = (), estimate: float | None = None,
            versus: str = "the parity data") -> str:
    """One line: what moved (against ``versus``) and, where the profile has the curve,
    what that costs."""
    parts = []
    sig = moved(effects)
    for s, e in sig[:2]:
        up, down = WORDS[s]
        parts.append(f"frames {abs(e):.1f} sigma {up if e > 0 else down} than {versus}")
    if sig and profile.robustness:
        ranked = nearest_by_kind(effects, profile.robustness, estimate)
        observed = float(np.sqrt(sum(e * e for _, e in sig)))
        ref = profile.reference_accuracy
        if ranked and ref is not None and ranked[0][2] < max(1.0, 0.5 * observed) \
                and _norm(ranked[0][1]) >= EFFECT_BAR:
            kind, entry, dist = ranked[0]
            cost = (ref - entry["accuracy"]) * 100
            rival = ranked[1] if len(ranked) > 1 and ranked[1][2] <= AMBIGUOUS * dist else None
            if rival is None:
                parts.append(f"{ALONE.get(kind, kind)} alone costs {cost:.0f} points in the "
                             f"robustness curve (severity {entry['severity']})")
            else:
                # two corruptions fit about as well: say both, choose neither (a zoom was
                # quoted as "rotation" before this rule, docs/monitor/README.md)
                parts.append(f"like {ALONE.get(kind, kind)} or {ALONE.get(rival[0], rival[0])}"
                             f" in the robustness curves (they cannot tell these apart here), "
                             f"which cost {cost:.0f} and "
                             f"{(ref - rival[1]['accuracy']) * 100:.0f} points")
    if class_mix_z >= CLASS_MIX_BAR and len(profile.class_freq):
        ref = np.asarray(profile.class_freq)
        i = int(np.argmax(np.abs(window_freq - ref)))
        name = labels[i] if i < len(labels) else str(i)
        parts.append(f"class mix changed: {name!r} predicted for {window_freq[i]:.0%} of "
                     f"frames vs {ref[i]:.0%} in the reference")
    if not parts:
        return ("cause unknown: no frame signal moved beyond "
                f"{EFFECT_BAR} sigma and the class mix held")
    return "; ".join(parts)
