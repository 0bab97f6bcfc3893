"""Train the small digits CNN used by the spec-audit/doctor tests (tests/doctor/digits/).

    python tools/train_digits.py          # ~10-30 s on 2 cores

Frames are the 8x8 scikit-learn digits scaled to uint8 (value * 255 / 16); the split is
80/20 with seed 0 (``digits_split``). The spec uses the training split's own mean/std, as a
user normalising with their data set's statistics would.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "doctor" / "digits"


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train frames, train labels, test frames, test labels); frames uint8 [N, 8, 8]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    frames = np.clip(np.round(d.images * 255.0 / 16.0), 0, 255).astype(np.uint8)
    idx = np.random.default_rng(0).permutation(len(frames))
    cut = int(0.8 * len(frames))
    tr, te = idx[:cut], idx[cut:]
    return frames[tr], d.target[tr], frames[te], d.target[te]


def main() -> int:
    sys.path.insert(0, str(OUT))
    from net import build  # noqa: PLC0415 - the definition lives next to the weights

    torch.manual_seed(0)
    xtr, ytr, xte, yte = digits_split()
    mean, std = float((xtr / 255.0).mean()), float((xtr / 255.0).std())
    spec = {"size": [8, 8], "frame_color": "GRAY", "model_color": "GRAY", "resize": "stretch",
            "interpolation": "linear", "scale": 1 / 255.0, "mean": [round(mean, 4)],
            "std": [round(std, 4)], "layout": "NCHW"}

    def prep(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x / 255.0 - spec["mean"][0]) / spec["std"][0])
                                .astype(np.float32)[:, None])

    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = prep(xtr), torch.from_numpy(ytr)
    t0 = time.time()
    for _epoch in range(30):
        model.train()
        perm = torch.randperm(len(xt))
        for s in range(0, len(xt), 64):
            b = perm[s:s + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(prep(xte)).argmax(-1).numpy() == yte).mean())
    torch.save(model.state_dict(), OUT / "weights.pt")
    (OUT / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    (OUT / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)))
    (OUT / "training.json").write_text(json.dumps({
        "data": "sklearn load_digits, 8x8 as uint8 (x*255/16), 80/20 split seed 0",
        "train": len(xtr), "test": len(xte), "epochs": 30, "test_accuracy": acc,
        "seconds": round(time.time() - t0, 1), "torch_version": torch.__version__}, indent=2)
        + "\n")
    print(f"test accuracy {acc:.4f} in {time.time() - t0:.1f}s; wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
