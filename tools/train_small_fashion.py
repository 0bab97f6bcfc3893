"""Train the small Fashion-MNIST CNN used by the spec-audit/doctor tests
(tests/doctor/small_fashion/): 12,000 images of the TRAIN split, 4 epochs, seed 0.

    python tools/train_small_fashion.py

The spec uses the subset's own mean/std (as a user normalising with their data set's
statistics would); the tests then hand the converter deliberately wrong specs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgeinfer.data.datasets import load_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "doctor" / "small_fashion"
N_TRAIN, EPOCHS = 12000, 4


def main() -> int:
    sys.path.insert(0, str(OUT))
    from net import build  # noqa: PLC0415 - the definition lives next to the weights

    torch.manual_seed(0)
    torch.set_num_threads(2)
    xtr, ytr = load_fashion_mnist("train")
    idx = np.random.default_rng(0).permutation(len(xtr))[:N_TRAIN]
    xtr, ytr = xtr[idx], ytr[idx]
    xte, yte = load_fashion_mnist("test")
    mean, std = round(float((xtr / 255.0).mean()), 4), round(float((xtr / 255.0).std()), 4)
    spec = {"size": [28, 28], "frame_color": "BGR", "model_color": "GRAY",
            "resize": "stretch", "interpolation": "linear", "scale": 1 / 255.0,
            "mean": [mean], "std": [std], "layout": "NCHW"}

    def prep(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x / 255.0 - mean) / std).astype(np.float32)[:, None])

    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = prep(xtr), torch.from_numpy(ytr.astype(np.int64))
    t0 = time.time()
    for _epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt))
        for s in range(0, len(xt), 128):
            b = perm[s:s + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(prep(xte)).argmax(-1).numpy() == yte).mean())
    torch.save(model.state_dict(), OUT / "weights.pt")
    (OUT / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    (OUT / "training.json").write_text(json.dumps({
        "data": f"Fashion-MNIST train split, {N_TRAIN} images (permutation seed 0)",
        "epochs": EPOCHS, "test_accuracy_10k": acc, "seconds": round(time.time() - t0, 1),
        "torch_version": torch.__version__}, indent=2) + "\n")
    print(f"test accuracy {acc:.4f} in {time.time() - t0:.1f}s; wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
