"""Does the label-free feature signal (the first layers' activation moments, the BN-fit
evidence on the device) see shifts that confidence alone does not? (issue 27, part 1)

For each signal, a healthy bar: the largest score over 200 random windows of 300 healthy
evaluation frames. A shift is seen when the score of a 300-frame window of shifted frames is
above that bar. Scores: confidence = |effect size| of the mean top-1 probability; features =
mean |effect size| of the moments (the monitor's ``drift["features"]``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WINDOW = 300


def _scores(c: dict, prof, idx: np.ndarray) -> dict[str, float]:
    top = c["probs"][idx].max(axis=1)
    conf = abs((top.mean() - prof.mean_maxprob) / prof.maxprob_std)
    f = c["features"][idx].mean(axis=0)
    feat = float(np.mean(np.abs((f - np.asarray(prof.features["mean"]))
                                / np.asarray(prof.features["std"]))))
    return {"confidence": float(conf), "features": feat}


def feature_vs_confidence(get: Callable[[str, str, int], dict], prof, kinds: list,
                          clean_acc: float) -> dict | None:
    """None when the artifact or the profile has no feature moments."""
    if not getattr(prof, "features", None):
        return None
    rng = np.random.default_rng(7)
    c0 = get("clean", "clean", 0)
    healthy = [_scores(c0, prof, rng.choice(len(c0["y"]), WINDOW, replace=False))
               for _ in range(200)]
    bar = {s: max(h[s] for h in healthy) for s in ("confidence", "features")}
    rows = []
    for group, kind, sev in kinds:
        if kind == "clean":
            continue
        c = get(group, kind, sev)
        idx = rng.choice(len(c["y"]), min(WINDOW, len(c["y"])), replace=False)
        sc = _scores(c, prof, idx)
        cost = clean_acc - float(np.mean(c["probs"].argmax(1) == c["y"]))
        rows.append({"set": group, "kind": kind, "severity": sev,
                     "cost_points": round(cost * 100, 1)} | {
            s: round(v, 3) for s, v in sc.items()} | {
            f"{s}_seen": bool(sc[s] > bar[s]) for s in bar})
    big = [r for r in rows if r["cost_points"] >= 10]
    small = [r for r in rows if r["cost_points"] < 10]
    summary = {s: {"seen_of_costly": sum(r[f"{s}_seen"] for r in big),
                   "costly": len(big),
                   "seen_of_cheap": sum(r[f"{s}_seen"] for r in small),
                   "cheap": len(small),
                   "spearman_with_cost": _spearman([r[s] for r in rows],
                                                   [r["cost_points"] for r in rows])}
               for s in bar}
    return {"bar": bar, "rows": rows, "summary": summary, "window": WINDOW,
            "healthy_frames": int(len(c0["y"]))}


def _spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
