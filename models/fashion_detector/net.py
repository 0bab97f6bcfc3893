"""FashionDet: the small single-stage detector bundled as edgeinfer's own reference detector.

Loaded by file path (``models/`` is a data directory, not a package), so this file needs
torch only (no torchvision). Input: ``(N, 3, 160, 160)`` float, a letterboxed frame
normalised by ``spec.json``. Output: ``(boxes [N, A, 4], scores [N, A, C])`` - the boxes
already decoded to ``x0, y0, x1, y1`` in input pixels (``detection.json``: decoder
``boxes``/``xyxy``), the scores sigmoid class probabilities, A = 20 x 20 cells of stride 8.

FCOS-style: each cell of the stride-8 map predicts its distances to the box's four sides
(``exp(t) * 8``, ``t`` clipped at 6 so a bad input cannot overflow) and one score per
class; a small top-down neck brings stride 16 and 32 context to the stride-8 map so a
single scale sees objects from ~14 to ~90 pixels. Conv(bias=False)+BN+ReLU blocks (BN
folding, int8-friendly ReLU), nearest 2x upsampling (ONNX Resize).

``postprocess`` is the framework side of detection: what a torch user runs after the
model (score filter, class-aware greedy NMS, top-k, inverse letterbox), written in torch
only, independent of the runtime's numpy NMS it is compared against.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 5
STRIDE = 8
INPUT = 160
MAX_LOG = 6.0


def cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FashionDet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, size: int = INPUT) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.c3 = nn.Sequential(cbr(3, 16, 2), cbr(16, 24, 2), cbr(24, 24), cbr(24, 48, 2),
                                cbr(48, 48))  # stride 8
        self.c4 = nn.Sequential(cbr(48, 64, 2), cbr(64, 64))  # stride 16
        self.c5 = nn.Sequential(cbr(64, 96, 2), cbr(96, 96))  # stride 32
        self.l3, self.l4, self.l5 = (nn.Conv2d(c, 48, 1) for c in (48, 64, 96))
        self.head = nn.Sequential(cbr(48, 48), cbr(48, 48))
        self.cls = nn.Conv2d(48, num_classes, 1)
        self.box = nn.Conv2d(48, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # prior 0.01: focal-style start
        n = size // STRIDE
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        centres = (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * STRIDE
        self.register_buffer("centres", torch.cat([centres, centres], 1), persistent=False)
        self.register_buffer("sign", torch.tensor([-1.0, -1.0, 1.0, 1.0]), persistent=False)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits [N, A, C], log distances [N, A, 4]) before decoding (training)."""
        c3 = self.c3(x)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p4 = self.l4(c4) + F.interpolate(self.l5(c5), scale_factor=2.0, mode="nearest")
        p3 = self.l3(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        h = self.head(F.relu(p3))
        n = x.shape[0]
        logits = self.cls(h).flatten(2).transpose(1, 2)
        dist = self.box(h).flatten(2).transpose(1, 2)
        return logits.reshape(n, -1, self.num_classes), dist.reshape(n, -1, 4)

    def decode(self, dist: torch.Tensor) -> torch.Tensor:
        """log distances (l, t, r, b) -> x0, y0, x1, y1 in input pixels."""
        return self.centres + self.sign * torch.exp(dist.clamp(max=MAX_LOG)) * STRIDE

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, dist = self.raw(x)
        return self.decode(dist), torch.sigmoid(logits)


def build() -> nn.Module:
    """A freshly initialised FashionDet (load ``weights.pt`` into it for the trained one)."""
    return FashionDet()


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


@torch.no_grad()
def postprocess(boxes: torch.Tensor, scores: torch.Tensor, *, score_threshold: float,
                iou_threshold: float, top_k: int | None) -> tuple[torch.Tensor, ...]:
    """One image: ``boxes [A, 4]``, ``scores [A, C]`` -> (boxes [K, 4], scores [K],
    classes [K]), best first: every (box, class) pair above the threshold, greedy NMS
    within a class (suppressed when IoU > threshold), at most ``top_k`` overall."""
    a, c = torch.nonzero(scores > score_threshold, as_tuple=True)
    s = scores[a, c]
    kept: list[torch.Tensor] = []
    for k in torch.unique(c):
        idx = torch.nonzero(c == k).flatten()
        idx = idx[torch.argsort(-s[idx], stable=True)]
        while idx.numel():
            i = idx[0]
            kept.append(i)
            rest = idx[1:]
            idx = rest[_iou(boxes[a[i]], boxes[a[rest]]) <= iou_threshold]
    order = torch.stack(kept) if kept else torch.zeros(0, dtype=torch.long)
    order = order[torch.argsort(-s[order], stable=True)][:top_k]
    return boxes[a[order]], s[order], c[order]
