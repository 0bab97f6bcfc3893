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


#: accuracy points that weigh as much as one sigma of a frame signal in the matching
POINTS_PER_SIGMA = 10.0


def closest_corruption(effects: dict[str, float], robustness: dict[str, list[dict[str, Any]]],
                       estimate: float | None = None
                       ) -> tuple[str, dict[str, Any], float] | None:
    """The robustness entry whose fingerprint is nearest the observation: Euclidean over the
    frame signals both have, plus, when the accuracy is estimated, the gap between that
    estimate and the entry's accuracy (a zoom and a blur both soften a frame; what they cost
    tells them apart). Returns (kind, entry, distance over the frame signals alone)."""
    best = None
    for kind, entries in robustness.items():
        for e in entries:
            common = [s for s in e["shift"] if s in effects and s in WORDS]
            if not common:
                continue
            d2 = sum((effects[s] - e["shift"][s]) ** 2 for s in common)
            total = d2
            if estimate is not None:
                total += ((estimate - e["accuracy"]) * 100 / POINTS_PER_SIGMA) ** 2
            if best is None or total < best[3]:
                best = (kind, e, float(np.sqrt(d2)), total)
    return None if best is None else best[:3]


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
        near = closest_corruption(effects, profile.robustness, estimate)
        observed = float(np.sqrt(sum(e * e for _, e in sig)))
        if near is not None and near[2] < max(1.0, 0.5 * observed):
            kind, entry, _ = near
            ref = profile.reference_accuracy
            cost = (ref - entry["accuracy"]) * 100 if ref is not None else None
            what = ALONE.get(kind, kind)
            if cost is not None:
                parts.append(f"{what} alone costs {cost:.0f} points in the robustness curve "
                             f"(severity {entry['severity']})")
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
