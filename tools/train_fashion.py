"""Train the bundled Fashion-MNIST reference model (models/fashion) from scratch on CPU.

    .venv/bin/python tools/train_fashion.py            # ~10 epochs, a few minutes on 2 cores

Trains on the full 60k training set and reports accuracy on the 10k test set after every
epoch. Inputs are normalised with ``spec.json``'s own affine map (``y = x * a + b``), so the
network learns on exactly the numbers the deployed preprocessing graph produces; a
hand-written ``/255 - mean`` here could silently drift from the spec.

Writes ``weights.pt`` (a plain state_dict, loadable with ``torch.load(weights_only=True)``)
and ``training.json`` (what was run, how long it took and what it reached) next to the spec.
Everything is seeded; bit-exact reruns are not guaranteed (oneDNN kernels may reorder sums),
but accuracy reproduces to within a few tenths of a percent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.data.datasets import load_fashion_mnist  # noqa: E402
from edgeinfer.spec import PreprocessSpec  # noqa: E402

MODEL_DIR = ROOT / "models" / "fashion"


def load_net_module(model_dir: Path = MODEL_DIR):
    """Import models/fashion/net.py by path: models/ is a data directory, not a package."""
    spec = importlib.util.spec_from_file_location("edgeinfer_models_fashion_net",
                                                  model_dir / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalise(x_u8: torch.Tensor, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """uint8 (N,1,H,W) -> float32 via the spec's affine map, y = x * a + b."""
    return x_u8.float() * float(a[0]) + float(b[0])


def augment(x_u8: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to ``shift`` pixels (zero padding).

    Done on the uint8 images before normalisation, so the padding is the true background
    value 0 rather than a normalised constant. Shifts are grouped by offset: 25 slicing ops
    over the whole set instead of 60k Python-level crops.
    """
    n, _, h, w = x_u8.shape
    padded = F.pad(x_u8, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    out = torch.empty_like(x_u8)
    for oy in range(2 * shift + 1):
        for ox in range(2 * shift + 1):
            idx = torch.nonzero((dy == oy) & (dx == ox)).flatten()
            if idx.numel():
                out[idx] = padded[idx, :, oy:oy + h, ox:ox + w]
    flip = torch.nonzero(torch.rand(n, generator=gen) < 0.5).flatten()
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000
             ) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (OneCycle)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=MODEL_DIR,
                   help="where weights.pt and training.json go (default: models/fashion)")
    args = p.parse_args(argv)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    spec = PreprocessSpec.from_json((MODEL_DIR / "spec.json").read_text())
    a, b = spec.affine()
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    x_train = torch.from_numpy(x_train).unsqueeze(1)  # uint8 (N,1,28,28)
    y_train = torch.from_numpy(y_train)
    x_test_f = normalise(torch.from_numpy(x_test).unsqueeze(1), a, b)
    y_test = torch.from_numpy(y_test)

    model = load_net_module().build()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch)
    print(f"FashionNet: {n_params} parameters; {len(x_train)} train / {len(x_test_f)} test "
          f"images; {args.epochs} epochs of {steps_per_epoch} steps; "
          f"{torch.get_num_threads()} threads", flush=True)

    history = []
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        xa = normalise(augment(x_train, gen), a, b)
        order = torch.randperm(len(xa), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb, yb = xa[idx], y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        train_loss = loss_sum / len(xa)
        train_acc = correct / len(xa)
        test_acc = evaluate(model, x_test_f, y_test)
        secs = time.perf_counter() - t0
        history.append({"epoch": epoch, "loss": round(train_loss, 5),
                        "train_acc": round(train_acc, 5), "test_acc": round(test_acc, 5),
                        "seconds": round(secs, 1)})
        print(f"epoch {epoch:2d}/{args.epochs}  loss {train_loss:.4f}  "
              f"train acc {train_acc:.4f}  test acc {test_acc:.4f}  {secs:.1f}s", flush=True)
    total = time.perf_counter() - t_start

    model.eval()
    final_acc = evaluate(model, x_test_f, y_test)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    weights = args.out_dir / "weights.pt"
    # Plain tensors only, so torch.load(weights_only=True) accepts it.
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, weights)
    try:
        cmd_path = Path(sys.argv[0]).resolve().relative_to(ROOT)
    except ValueError:
        cmd_path = Path(sys.argv[0])
    info = {
        "model": "FashionNet (models/fashion/net.py)",
        "dataset": "Fashion-MNIST, 60000 train (all) / 10000 test",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"AdamW(weight_decay={args.weight_decay}) + OneCycleLR(max_lr={args.lr})",
        "augmentation": "random horizontal flip, random shift up to 2 px (zero padding)",
        "seconds": round(total, 1),
        "test_accuracy": round(final_acc, 5),
        "parameters": n_params,
        "weights_bytes": weights.stat().st_size,
        "seed": args.seed,
        "threads": args.threads,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "command": shlex.join(["python", str(cmd_path), *(sys.argv[1:] if argv is None
                                                            else argv)]),
        "history": history,
    }
    (args.out_dir / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"test accuracy {final_acc:.4f} after {args.epochs} epochs in {total:.0f}s; "
          f"wrote {weights} ({weights.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
