"""What the ladder measures of one runner (source or artifact) besides its probabilities:
chunked runs for the progress bar, batch-size consistency, rerun determinism, latency.

Split from :mod:`edgeinfer.check.ladder.run` (the judging) to keep each module small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.parity.tolerances import tolerance
from edgeinfer.progress import Progress
from edgeinfer.runtime.timing import median_ms

BATCH_SIZES = (1, 8, 32)
CHUNK = 500  # frames per runner call, so the progress bar moves


def run_frames(runner: Any, frames: Sequence[np.ndarray], progress: Progress | None = None,
               stage: str = "", chunk: int = CHUNK) -> np.ndarray:
    """``runner.run`` in chunks so a progress bar can follow."""
    out = []
    for s in range(0, len(frames), chunk):
        out.append(np.asarray(runner.run(frames[s:s + chunk]), np.float64))
        if progress:
            progress(stage, min(s + chunk, len(frames)), len(frames))
    return np.concatenate(out) if out else np.zeros((0, 0))


def batch_consistency(runner: Any, frames: Sequence[np.ndarray],
                      sizes: Sequence[int] = BATCH_SIZES) -> dict[str, Any]:
    """Run the same frames at each batch size; max |dp| of each against batch ``sizes[0]``."""
    outs = {b: np.concatenate([np.asarray(runner.run(frames[i:i + b]), np.float64)
                               for i in range(0, len(frames), b)]) for b in sizes}
    base = outs[sizes[0]]
    per = {str(b): float(np.abs(outs[b] - base).max()) for b in sizes[1:]}
    flips = sum(int((outs[b].argmax(-1) != base.argmax(-1)).sum()) for b in sizes[1:])
    tol = tolerance("consistency", "batch")
    worst = max(per.values(), default=0.0)
    return {"batch_sizes": list(sizes), "max_abs": worst, "per_size": per, "top1_changes": flips,
            "n": len(frames), "tolerance": tol.max_abs,
            "passed": bool(np.isfinite(worst) and worst <= tol.max_abs and flips == 0)}


def determinism(runner: Any, frames: Sequence[np.ndarray], first: np.ndarray) -> dict[str, Any]:
    """Run again; ``first`` is the earlier output for the same frames."""
    again = np.asarray(runner.run(frames), np.float64)
    d = float(np.abs(again - first).max()) if len(first) else 0.0
    tol = tolerance("consistency", "rerun")
    return {"max_abs": d, "n": len(frames), "tolerance": tol.max_abs,
            "passed": bool(np.isfinite(d) and d <= tol.max_abs)}


def latency_ms(runner: Any, frame: np.ndarray, repeats: int = 20) -> float:
    """Median wall time of one single-frame call (after 3 warm-up calls), by the one harness."""
    return median_ms(lambda: runner.run([frame]), repeats, warmup=3)
