"""Split the public ImageNet sample photos into a TUNE and a FINAL labelled folder.

    python tools/imagenet_sample_split.py MIRROR_GIT_DIR OUT_DIR [--tune 600] [--seed 19]

The photos: ``EliSchwartz/imagenet-sample-images`` (one JPEG per ImageNet class, the wnid and
name in the file name), brought with the workplace's ``fetch`` tool for measurements only:
never shipped, never used in tests. Files sorted by name are in class-index order (the
wnids' order), so each goes to ``OUT/{tune,final}/<label>/`` with the bundled
EfficientNet-Lite0 label of its index. One seeded shuffle decides the split; the tune set
chooses settings (the int8 loop's ranking and stopping), the final set only measures.
"""

from __future__ import annotations

import argparse
import random
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("git_dir")
    ap.add_argument("out")
    ap.add_argument("--tune", type=int, default=600)
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()
    git = ["git", "-C", a.git_dir]
    names = sorted(n for n in subprocess.run(git + ["ls-tree", "--name-only", "HEAD"],
                                             check=True, capture_output=True,
                                             text=True).stdout.split()
                   if n.endswith(".JPEG"))
    labels = (ROOT / "models/efficientnet_lite0/labels.txt").read_text().splitlines()
    if len(names) != len(labels):
        raise SystemExit(f"{len(names)} photos for {len(labels)} classes")
    order = list(range(len(names)))
    random.Random(a.seed).shuffle(order)
    for rank, i in enumerate(order):
        part = "tune" if rank < a.tune else "final"
        d = Path(a.out) / part / labels[i]
        d.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(git + ["show", f"HEAD:{names[i]}"], check=True,
                              capture_output=True).stdout
        (d / names[i]).write_bytes(blob)
    print(f"{a.tune} tune / {len(names) - a.tune} final photos in {a.out}")


if __name__ == "__main__":
    main()
