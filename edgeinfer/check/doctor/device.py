"""The device's own predictions (``--device-predictions``): which frame each CSV row names,
in which order the device processed them, and which rows name no frame of ``--data``.

Why the order: a device that runs BatchNorm on batch statistics gives each frame a
prediction that depends on the other frames of its call, so the doctor simulates those
calls in the order the rows were written (the order the device most likely processed them).
Why the unknown rows are kept: a CSV that names other images than the data (another folder,
a renamed export) must not shrink silently to the few rows that happen to match.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.data.files import read_regular
from edgeinfer.data.frames import FrameSet
from edgeinfer.errors import ConfigError

SHOW_UNKNOWN = 5  # unknown image names quoted in the verdict's note


@dataclass
class DeviceRows:
    """``pred``: the device's top-1 per frame (-1 where no row names the frame);
    ``order``: frame indices in the CSV's row order, then the frames without a row;
    ``unknown``: the image names of rows that name no frame, in CSV order."""

    pred: np.ndarray
    order: np.ndarray
    unknown: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int((self.pred >= 0).sum())

    def note(self) -> str | None:
        """One line on the rows that name no frame of the data (None when all matched)."""
        if not self.unknown:
            return None
        first = ", ".join(repr(u) for u in self.unknown[:SHOW_UNKNOWN])
        more = f" and {len(self.unknown) - SHOW_UNKNOWN} more" if len(self.unknown) > \
            SHOW_UNKNOWN else ""
        return (f"{len(self.unknown)} of {len(self.unknown) + self.n} device rows name no "
                f"image of the data and were left out: {first}{more}")


def read_device_predictions(path: str | Path, frames: FrameSet,
                            class_names: Sequence[str] | None) -> DeviceRows:
    """Rows are ``image,prediction``: the image relative to the data folder (or any path that
    ends with it; a unique file name also matches), the prediction a class index or a label.
    A CSV none of whose rows names a frame is refused (ConfigError)."""
    data = read_regular(Path(path), "device predictions CSV", ConfigError)
    try:
        rows = list(csv.DictReader(data.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read the device predictions CSV {path}: {e}") from None
    if not rows or not {"image", "prediction"} <= set(rows[0] or {}):
        raise ConfigError(f"device predictions CSV {path} needs a header image,prediction")
    ids = frames.ids or [str(i) for i in range(len(frames.frames))]
    by_id = {i.replace("\\", "/"): k for k, i in enumerate(ids)}
    base: dict[str, list[int]] = {}
    for k, i in enumerate(ids):
        base.setdefault(i.rsplit("/", 1)[-1], []).append(k)
    names = {c: j for j, c in enumerate(class_names or ())}
    out = np.full(len(ids), -1, np.int64)
    order: list[int] = []
    unknown: list[str] = []
    for r in rows:
        img = (r.get("image") or "").strip().replace("\\", "/").removeprefix("./")
        k = by_id.get(img)
        if k is None:
            k = next((by_id[i] for i in by_id if img.endswith("/" + i)), None)
        if k is None and len(base.get(img.rsplit("/", 1)[-1], [])) == 1:
            k = base[img.rsplit("/", 1)[-1]][0]
        if k is None:
            unknown.append(img)
            continue
        if out[k] < 0:
            order.append(k)
        out[k] = _class_index(r.get("prediction") or "", names, path)
    if not order:
        shown = ", ".join(repr(u) for u in unknown[:SHOW_UNKNOWN])
        raise ConfigError(f"no row of {path} names an image of the data: {len(unknown)} rows "
                          f"(e.g. {shown}) vs {len(ids)} frames (e.g. {ids[0]!r})")
    rest = [k for k in range(len(ids)) if out[k] < 0]
    return DeviceRows(out, np.asarray(order + rest, np.int64), unknown)


def _class_index(text: str, names: dict[str, int], path: Any) -> int:
    t = text.strip()
    if t in names:
        return names[t]
    if t.isdigit() and (not names or int(t) < len(names)):
        return int(t)
    raise ConfigError(f"{path}: prediction {t!r} is neither a class index nor one of the "
                      f"model's labels")
