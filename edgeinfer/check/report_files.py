"""Writing a report bundle (JSON, Markdown, PNG plots) into a directory: shared by the
parity-ladder and benchmark reports, which differ only in what they render."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

NO_MATPLOTLIB = "plots skipped: matplotlib is not installed (pip install 'edgeinfer[report]')"


def write_bundle(result: Any, directory: str | Path, stem: str, *,
                 write_json: Callable[[Any, Path], Path],
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
    files = [write_json(result, d / f"{stem}.json")]
    md = d / f"{stem}.md"
    md.write_text(markdown(result, images, note))
    files.append(md)
    files += [d / v for v in images.values()]
    return files
