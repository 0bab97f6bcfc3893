"""Writing reports: the one JSON writer and the bundle (JSON, Markdown, PNG plots) that every
command's report (ladder, bench, doctor, verify) writes through; they differ only in what
they render."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NO_MATPLOTLIB = "plots skipped: matplotlib is not installed (pip install 'edgeinfer[report]')"


def json_default(o: Any) -> Any:
    """numpy scalars and arrays, and paths, as JSON; anything else is a bug, said by name."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """``data`` as indented JSON at ``path`` (parent folders created); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
    return p


def write_bundle(result: Any, directory: str | Path, stem: str, *,
                 to_dict: Callable[[Any], dict[str, Any]],
                 markdown: Callable[[Any, dict[str, str], str | None], str],
                 write_plots: Callable[[Any, Path], dict[str, str]],
                 plots: bool = True) -> list[Path]:
    """``<stem>.json``, ``<stem>.md`` and the PNGs into ``directory``; returns the files.

    Plots are optional (matplotlib is the ``report`` extra): without it the Markdown says so.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    note = None
    if plots:
        try:
            images = write_plots(result, d)
        except ImportError:
            note = NO_MATPLOTLIB
    files = [write_json(to_dict(result), d / f"{stem}.json")]
    md = d / f"{stem}.md"
    md.write_text(markdown(result, images, note))
    files.append(md)
    files += [d / v for v in images.values()]
    return files
