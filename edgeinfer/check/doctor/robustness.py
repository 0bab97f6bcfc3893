"""Shift and TTA: how accuracy (labelled) or agreement with the clean prediction
(unlabelled) falls under real corruptions, for each test-time-augmentation policy.

Corruptions come from albumentations (maintained; the transforms are not rewritten here),
each at five severities with fixed parameters and a fixed seed, so a report is
reproducible: gaussian noise, gaussian blur (sigma relative to the frame's shorter side),
darker + lower contrast, rotation (black corners), JPEG re-encoding, and zoom with an
off-centre offset (scale/crop). Every policy of :mod:`edgeinfer.runtime.tta` sees the same
corrupted frames: its views (made by the runtime's own code) go through the framework
model with the spec's reference preprocessing and the probabilities are averaged, as the
Predictor does. The answer to "does TTA help my model?" is then the gain per corruption,
next to what the views cost (measured framework time per frame, and the view count that
an artifact multiplies its latency by).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.diagnose.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from edgeinfer.probs import as_probabilities
from edgeinfer.progress import Progress
from edgeinfer.runtime.timing import timed
from edgeinfer.runtime.tta import POLICIES, average_views, get_policy


def predict(runner: Any, frames: Sequence[np.ndarray], policy: str) -> np.ndarray:
    """[N, K] probabilities under a TTA policy, views made by the runtime's own code."""
    pol = get_policy(policy)
    views = [v for f in frames for v in pol.views(f if f.ndim == 3 else f[:, :, None])]
    probs = as_probabilities(np.asarray(runner.run(views), np.float64)).astype(np.float32)
    return average_views(probs, pol.num_views)


def run_robustness(source: Any, frames: Sequence[np.ndarray], labels: np.ndarray | None, *,
                   corruptions: Sequence[str] | None = None, severities: int = SEVERITIES,
                   policies: Sequence[str] = POLICIES,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Accuracy/agreement per corruption x severity x policy, TTA gains and costs."""
    say = progress or (lambda _m: None)
    runner = source.make_runner(False)
    names = list(corruptions or CORRUPTIONS)
    clean: dict[str, np.ndarray] = {}
    cost: dict[str, float] = {}
    for p in policies:
        clean[p], ms = timed(lambda p=p: predict(runner, frames, p))
        cost[p] = ms / len(frames)
    ref = clean["none"].argmax(-1) if "none" in clean else clean[policies[0]].argmax(-1)

    def score(probs: np.ndarray) -> float:
        pred = probs.argmax(-1)
        return float((pred == labels).mean() if labels is not None else (pred == ref).mean())

    curves: dict[str, Any] = {}
    for name in names:
        what, values = CORRUPTIONS[name]
        rows = {p: [score(clean[p])] for p in policies}
        for v in values[:severities]:
            bad = corrupt(frames, name, v)
            for p in policies:
                rows[p].append(score(predict(runner, bad, p)))
        say(f"  {name:20s} " + "  ".join(f"{p} {np.mean(r[1:]):.1%}" for p, r in rows.items()))
        curves[name] = {"parameter": what, "values": [_plain(v) for v in values[:severities]],
                        "scores": rows}
    base = policies[0]
    gains = {name: {p: float(np.mean(c["scores"][p][1:]) - np.mean(c["scores"][base][1:]))
                    for p in policies if p != base} for name, c in curves.items()}
    return {"n": len(frames), "labelled": labels is not None,
            "metric": "accuracy" if labels is not None else "agreement with the clean "
                      "prediction (no TTA)",
            "policies": list(policies),
            "views": {p: get_policy(p).num_views for p in policies},
            "ms_per_frame": {p: round(cost[p], 3) for p in policies},
            "clean": {p: score(clean[p]) for p in policies},
            "curves": curves, "mean_gain_vs_" + base: gains}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def markdown(rob: dict[str, Any], images: dict[str, str]) -> str:
    pols = rob["policies"]
    base = pols[0]
    gains = rob[f"mean_gain_vs_{base}"]
    out = ["## Shift and TTA", "",
           f"{rob['n']} frames; metric: {rob['metric']}. Severity 0 is the clean frame; "
           f"gain = mean over severities 1-{len(next(iter(rob['curves'].values()))['values'])}"
           f" of the policy's score minus `{base}`'s.", "",
           "| policy | views | clean | framework ms/frame | cost vs none |",
           "|---|---|---|---|---|"]
    for p in pols:
        out.append(f"| {p} | {rob['views'][p]} | {rob['clean'][p]:.1%} | "
                   f"{rob['ms_per_frame'][p]:.2f} | "
                   f"{rob['ms_per_frame'][p] / max(rob['ms_per_frame'][base], 1e-9):.1f}x |")
    out += ["", "| corruption | parameter | " + " | ".join(f"{p} (severity 0..5)" for p in pols)
            + " | " + " | ".join(f"gain {p}" for p in pols[1:]) + " |",
            "|---|---|" + "---|" * (2 * len(pols) - 1)]
    for name, c in rob["curves"].items():
        cells = [" ".join(f"{s:.0%}" for s in c["scores"][p]) for p in pols]
        g = [f"{gains[name][p]:+.1%}" for p in pols[1:]]
        out.append(f"| {name} | {c['parameter']}: {', '.join(map(str, c['values']))} | "
                   + " | ".join(cells) + " | " + " | ".join(g) + " |")
    if "robustness" in images:
        out += ["", f"![robustness]({images['robustness']})"]
    return "\n".join(out)


def write_plots(rob: dict[str, Any], d: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    curves = rob["curves"]
    cols = 3
    rows = (len(curves) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, c) in zip(axes.flat, curves.items(), strict=False):
        for p in rob["policies"]:
            ax.plot(range(len(c["scores"][p])), c["scores"][p], marker="o", label=p)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("severity")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(rob["metric"][:20])
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(d / "robustness.png", dpi=80)
    plt.close(fig)
    return {"robustness": "robustness.png"}
