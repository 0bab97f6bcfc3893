"""Train the bundled detector (models/fashion_detector) from scratch on CPU (issue 28).

    nice -n 10 .venv/bin/python tools/train_detector.py      # ~9 min on 2 shared cores

Frames: real photos as backgrounds (the 1000 ImageNet sample photos from a local mirror
of EliSchwartz/imagenet-sample-images when present - 900 to train, 100 held out - else
the six bundled photos), Fashion-MNIST *train* items pasted at known boxes in 5 classes
(edgeinfer/converter/detect_frames.py), every frame its own size and aspect (h / w from
1/2 to 2). Each frame is letterboxed to 160 x 160 by ``spec.json``'s own reference
preprocessing, so the network learns on exactly what the deployed graph produces, and
the boxes move into the input by the same ``Fit`` the runtime inverts.

Loss: FCOS-style assignment (a cell is positive for the smallest box that contains its
centre within 1.5 strides of the box's centre), GIoU on the decoded boxes, quality focal
loss on the class scores (target: the IoU of the cell's own box, so a score says how good
the box is and NMS keeps the best one). Evaluation: mAP@0.5 and F1 at the deployed
score threshold on held-out frames (held-out photos, Fashion-MNIST *test* items), and on
the bundled-photo parity frames the converter gates with.

Writes ``weights.pt`` (state_dict) and ``training.json`` next to ``spec.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.converter.detect_frames import (  # noqa: E402
    LABELS,
    Frame,
    make_frame,
    parity_frames,
)
from edgeinfer.data.datasets import load_fashion_mnist, sample_photos  # noqa: E402
from edgeinfer.detect_spec import DetectionSpec  # noqa: E402
from edgeinfer.runtime.detect.geometry import fit  # noqa: E402
from edgeinfer.runtime.detect.nms import iou  # noqa: E402
from edgeinfer.spec import PreprocessSpec  # noqa: E402

MODEL_DIR = ROOT / "models" / "fashion_detector"
IMAGENET = Path("/work/.mirror/EliSchwartz+imagenet-sample-images/repo")


def load_net_module(model_dir: Path = MODEL_DIR):
    spec = importlib.util.spec_from_file_location("edgeinfer_models_fashion_detector_net",
                                                  model_dir / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imagenet_photos(repo: Path, long_side: int = 320) -> list[np.ndarray]:
    """The mirror's JPEGs (bare git repository: read with ``git cat-file``), name order,
    shrunk to ``long_side`` (backgrounds are resized again per frame anyway)."""
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", "HEAD"],
                           check=True, capture_output=True, text=True).stdout.split()
    out = []
    for name in sorted(n for n in names if n.lower().endswith((".jpeg", ".jpg"))):
        data = subprocess.run(["git", "-C", str(repo), "cat-file", "-p", f"HEAD:{name}"],
                              check=True, capture_output=True).stdout
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            continue
        s = long_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                             interpolation=cv2.INTER_AREA)
        out.append(img)
    return out


def random_frame(photos, items, labels, rng) -> Frame:
    ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    return make_frame(photos[int(rng.integers(0, len(photos)))], items, labels, rng,
                      ratio=ratio, long_side=int(rng.integers(160, 481)))


def to_input(frames: list[Frame], spec: PreprocessSpec) -> tuple[torch.Tensor, list]:
    """(normalised inputs [N, 3, S, S], per frame (boxes in input pixels, classes))."""
    xs, targets = [], []
    for f in frames:
        xs.append(spec.reference(f.image))
        place = fit(f.image.shape[:2], spec.size, "letterbox")
        targets.append((torch.from_numpy(place.to_input(f.boxes)).float(),
                        torch.from_numpy(f.classes)))
    return torch.from_numpy(np.concatenate(xs)), targets


def assign(centres: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
    """Per cell the index of its box (-1: background): the centre inside the box and within
    1.5 strides of the box's centre; the smallest such box wins."""
    if not len(boxes):
        return torch.full((len(centres),), -1, dtype=torch.long)
    c = centres[:, None, :2]
    inside = ((c >= boxes[None, :, :2]) & (c < boxes[None, :, 2:])).all(-1)
    mid = (boxes[:, :2] + boxes[:, 2:]) / 2
    near = ((c - mid[None]).abs() <= 1.5 * stride).all(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    cost = torch.where(inside & near, area[None].expand(len(centres), -1),
                       torch.full_like(inside, float("inf"), dtype=torch.float32))
    best, idx = cost.min(1)
    return torch.where(torch.isfinite(best), idx, torch.full_like(idx, -1))


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU, GIoU) of paired boxes [N, 4]."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    io = inter / union.clamp(min=1e-6)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return io, io - (hull - union) / hull.clamp(min=1e-6)


def loss_fn(model, x: torch.Tensor, targets: list) -> tuple[torch.Tensor, float, float]:
    logits, dist = model.raw(x)
    boxes = model.decode(dist)
    cls_t = torch.zeros_like(logits)
    pred, gt, where = [], [], []
    for i, (tb, tc) in enumerate(targets):
        idx = assign(model.centres, tb, 8)
        pos = torch.nonzero(idx >= 0).flatten()
        if len(pos):
            pred.append(boxes[i, pos])
            gt.append(tb[idx[pos]])
            where.append((i, pos, tc[idx[pos]]))
    n_pos = max(1, sum(len(w[1]) for w in where))
    box_loss = torch.zeros(())
    if pred:
        io, g = giou(torch.cat(pred), torch.cat(gt))
        box_loss = (1 - g).sum() / n_pos
        q = io.detach().clamp(min=0.01)
        k = 0
        for i, pos, cls in where:
            cls_t[i, pos, cls] = q[k:k + len(pos)]
            k += len(pos)
    p = torch.sigmoid(logits)
    qfl = F.binary_cross_entropy_with_logits(logits, cls_t, reduction="none") * \
        (p - cls_t).abs().pow(2)
    cls_loss = qfl.sum() / n_pos
    return cls_loss + 2.0 * box_loss, float(cls_loss.detach()), float(box_loss.detach())


def average_precision(dets: list, truths: list, num_classes: int) -> float:
    """mAP@0.5 (all-point interpolated, VOC 2010+) over the classes present."""
    aps = []
    for c in range(num_classes):
        n_true = sum(int((t[1] == c).sum()) for t in truths)
        if not n_true:
            continue
        rows = []
        for i, (b, s, k) in enumerate(dets):
            rows += [(float(s[j]), i, b[j]) for j in np.flatnonzero(k == c)]
        rows.sort(key=lambda r: -r[0])
        used = [np.zeros(int((t[1] == c).sum()), bool) for t in truths]
        tp = []
        for _, i, b in rows:
            tb = truths[i][0][truths[i][1] == c]
            ok = False
            if len(tb):
                o = iou(b, tb)
                j = int(np.argmax(o))
                if o[j] >= 0.5 and not used[i][j]:
                    used[i][j] = ok = True
            tp.append(ok)
        tp_c = np.cumsum(tp)
        rec = tp_c / n_true if len(tp) else np.zeros(0)
        prec = tp_c / np.arange(1, len(tp) + 1) if len(tp) else np.zeros(0)
        mrec = np.concatenate([[0], rec, [1]])
        mpre = np.concatenate([[0], prec, [0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        aps.append(float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])))
    return float(np.mean(aps)) if aps else 0.0


@torch.no_grad()
def evaluate(model, net, frames: list[Frame], spec: PreprocessSpec, det: DetectionSpec
             ) -> dict:
    """mAP@0.5 (scores down to 0.01) and precision/recall/F1 at the deployed threshold."""
    model.eval()
    dets, kept, truths = [], [], []
    for s in range(0, len(frames), 64):
        chunk = frames[s:s + 64]
        x, _ = to_input(chunk, spec)
        boxes, scores = model(x)
        for f, b, sc in zip(chunk, boxes, scores, strict=True):
            # the 200 best (cell, class) pairs only: an untrained net has 2000 candidates,
            # and the greedy NMS is a Python loop (COCO keeps 100 detections per image)
            kth = torch.topk(sc.flatten(), 200).values[-1]
            sc = torch.where(sc >= kth, sc, torch.zeros_like(sc))
            place = fit(f.image.shape[:2], spec.size, "letterbox")
            for thr, out in ((0.01, dets), (det.nms.score_threshold, kept)):
                ob, os_, oc = net.postprocess(b, sc, score_threshold=thr,
                                              iou_threshold=det.nms.iou_threshold,
                                              top_k=det.nms.top_k)
                out.append((place.to_frame(ob.numpy()), os_.numpy(), oc.numpy()))
            truths.append((f.boxes, f.classes))
    tp = n_det = n_true = 0
    for (b, _, k), (tb, tc) in zip(kept, truths, strict=True):
        n_det += len(b)
        n_true += len(tb)
        used = np.zeros(len(tb), bool)
        for j in range(len(b)):
            cand = np.flatnonzero(~used & (tc == k[j]))
            if len(cand):
                o = iou(b[j], tb[cand])
                if o.max() >= 0.5:
                    used[cand[int(np.argmax(o))]] = True
                    tp += 1
    p, r = tp / max(1, n_det), tp / max(1, n_true)
    model.train()
    return {"frames": len(frames), "objects": n_true,
            "map50": round(average_precision(dets, truths, net.NUM_CLASSES), 4),
            "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / max(1e-9, p + r), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="1: on shared cores a second thread mostly waits for the first")
    p.add_argument("--val-frames", type=int, default=500)
    p.add_argument("--backgrounds", type=Path, default=IMAGENET,
                   help="bare git mirror of imagenet-sample-images (else the bundled photos)")
    p.add_argument("--out-dir", type=Path, default=MODEL_DIR)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    spec = PreprocessSpec.from_json((MODEL_DIR / "spec.json").read_text())
    det = DetectionSpec.from_dict(json.loads((MODEL_DIR / "detection.json").read_text()))
    net = load_net_module()
    t_load = time.perf_counter()
    if args.backgrounds.exists():
        cache = Path(tempfile.gettempdir()) / "edgeinfer_detector_backgrounds.pkl"
        if cache.is_file():  # 1000 git cat-file + JPEG decodes: 15-80 s on shared cores
            photos = pickle.loads(cache.read_bytes())
        else:
            photos = imagenet_photos(args.backgrounds)
            cache.write_bytes(pickle.dumps(photos))
        train_photos, val_photos = photos[:-100], photos[-100:]
        bg = f"{len(train_photos)} ImageNet sample photos (+{len(val_photos)} held out)"
    else:
        photos = list(sample_photos().values())
        train_photos, val_photos = photos, photos
        bg = "the 6 bundled photos (no held-out backgrounds)"
    items, item_labels = load_fashion_mnist("train")
    test_items, test_labels = load_fashion_mnist("test")
    val_rng = np.random.default_rng(12345)
    val = [random_frame(val_photos, test_items, test_labels, val_rng)
           for _ in range(args.val_frames)]
    parity = parity_frames()
    print(f"backgrounds: {bg}; loaded in {time.perf_counter() - t_load:.1f} s", flush=True)

    model = net.build()
    n_params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.15)
    model.train()
    history = []
    t0 = time.perf_counter()
    run = [0.0, 0.0, 0.0]
    for step in range(1, args.steps + 1):
        frames = [random_frame(train_photos, items, item_labels, rng)
                  for _ in range(args.batch_size)]
        x, targets = to_input(frames, spec)
        loss, lc, lb = loss_fn(model, x, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        now = (float(loss.detach()), lc, lb)
        run = [0.98 * r + 0.02 * v for r, v in zip(run, now, strict=True)]
        if step % 50 == 0 or step == args.steps:
            row = {"step": step, "loss": round(run[0], 4), "cls": round(run[1], 4),
                   "box": round(run[2], 4), "seconds": round(time.perf_counter() - t0, 1)}
            if step % 300 == 0 or step == args.steps:
                row["val"] = evaluate(model, net, val[:200], spec, det)
            history.append(row)
            print(json.dumps(row), flush=True)
    train_s = time.perf_counter() - t0
    model.eval()
    final = {"held_out": evaluate(model, net, val, spec, det),
             "parity_frames": evaluate(model, net, parity, spec, det)}
    print(json.dumps(final), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out_dir / "weights.pt")
    cpu = subprocess.run("grep -o -w 'avx2\\|avx512f\\|avx512_vnni' /proc/cpuinfo | sort -u",
                         shell=True, capture_output=True, text=True).stdout.split()
    (args.out_dir / "training.json").write_text(json.dumps({
        "model": "FashionDet (models/fashion_detector/net.py)", "parameters": n_params,
        "backgrounds": bg, "objects": "Fashion-MNIST train items (held out: test items), "
        "5 classes: " + ", ".join(LABELS),
        "frames_seen": args.steps * args.batch_size, "steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "train_seconds": round(train_s, 1), "cpu_seconds": round(time.process_time(), 1),
        "threads": args.threads,
        "cpu_flags": cpu, "load_after": Path("/proc/loadavg").read_text().split()[:3],
        "platform": platform.platform(), "torch": torch.__version__,
        "command": "python tools/train_detector.py " + shlex.join(argv or sys.argv[1:]),
        "final": final, "history": history}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
