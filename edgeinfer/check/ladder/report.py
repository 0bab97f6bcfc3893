"""The ladder report: JSON, Markdown and PNG plots, plus a tiny progress bar for stderr.

matplotlib (the ``report`` extra) is imported only when plots are written; without it the
JSON and Markdown are still written and the Markdown says the plots were skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.check.ladder.run import REPORTED, LadderResult, RungResult
from edgeinfer.check.report_files import write_bundle
from edgeinfer.parity.stages import markdown_table as stage_table

MAX_MATRIX_CLASSES = 20  # flip/confusion plots show at most this many classes


# ---------------------------------------------------------------- JSON
# ---------------------------------------------------------------- Markdown
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _acc(s: RungResult) -> str:
    if not s.accuracy:
        return "-"
    a = s.accuracy
    lo, hi = a["ci95"]
    delta = round(-a.get("drop_vs_source", 0.0) * 100, 2) + 0.0  # no "-0.00"
    drop = f" (Δ {delta:+.2f} pt)" if "drop_vs_source" in a else ""
    return f"{a['accuracy']:.2%} [{lo:.2%}, {hi:.2%}]{drop}"


def markdown_table(result: LadderResult) -> str:
    head = ["step", "compared with", "max \\|Δp\\|", "p99 \\|Δp\\|", "max rel", "top-1 agree",
            "top-5 agree", "flips", "accuracy [95% CI]", "batch 1/8/32 \\|Δp\\|",
            "rerun \\|Δp\\|", "size", "latency (ms)", "verdict"]
    rows = []
    for s in result.steps:
        size = f"{s.size_bytes / 1e6:.2f} MB" if s.size_bytes else "-"
        ms = f"{s.latency_ms:.2f}" if s.latency_ms is not None else "-"
        cons = [f"{s.batch['max_abs']:.1e}", f"{s.rerun['max_abs']:.1e}"]
        comps = [c for c in (s.vs_parent, s.vs_source) if c is not None]
        if s.vs_parent is not None and s.vs_source is not None and \
                s.vs_parent.reference == s.vs_source.reference:
            comps = comps[:1]
        if not comps:
            rows.append([s.name, "-", "-", "-", "-", "-", "-", "-", _acc(s), *cons, size, ms,
                         f"**{s.verdict}**"])
        for k, c in enumerate(comps):
            first = k == 0
            vs = c.reference + (REPORTED if s.judged is not None else "")
            rows.append([s.name if first else "", vs, c.abs_text(".1e"),
                         f"{c.p99_abs:.1e}", f"{c.max_rel:.1e}", _pct(c.top1_agreement),
                         _pct(c.top5_agreement), str(c.flips), _acc(s) if first else "",
                         *(cons if first else ["", ""]), size if first else "",
                         ms if first else "", f"**{s.verdict}**" if first else ""])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(result: LadderResult, images: dict[str, str] | None = None,
             plots_note: str | None = None) -> str:
    images = images or {}
    out = [f"# Parity ladder: {result.source}", "",
           f"Data: **{result.data}**, {result.n} frames. "
           f"Verdict: **{result.verdict()}**", "", markdown_table(result), "",
           "Δp: difference of softmax probabilities, per class and frame; rel: |Δp| / "
           "max(p, 1e-3); top-5 agree: the reference's top-1 class is in the target's top 5; "
           "flips: frames whose top-1 class differs; batch: the same frames at batch 1, 8 and "
           "32; rerun: the same frames run twice. Tolerances come from "
           "`edgeinfer.parity.tolerances`.", ""]
    if plots_note:
        out += [f"_{plots_note}_", ""]
    if "errors" in images:
        out += [f"![|Δp| vs source]({images['errors']})", ""]
    for s in result.steps:
        details = _step_details(s, images)
        if details:
            out += [f"## {s.name}", "", *details, ""]
    return "\n".join(out).rstrip() + "\n"


def _step_details(s: RungResult, images: dict[str, str]) -> list[str]:
    d: list[str] = []
    if s.path and s.name != "source":
        d.append(f"Artifact: `{Path(s.path).name}`; parent step: {s.parent}.")
    if s.stages:  # parity/stages.py: the same stage names as convert's gate and verify
        d += ["", *stage_table(s.stages), ""]
    for f in s.failures:
        d.append(f"- **FAIL**: {f}")
    for f in s.inherited:
        d.append(f"- inherited: {f}")
    if s.flips:
        d += ["", "Flipped predictions vs the source (most frequent first):", "",
              "| source says | artifact says | frames | examples |", "|---|---|---|---|"]
        d += [f"| {r['from']} | {r['to']} | {r['count']} | {', '.join(r['examples'])} |"
              for r in s.flips[:10]]
    if f"flips:{s.name}" in images:
        d += ["", f"![flip matrix {s.name}]({images[f'flips:{s.name}']})"]
    if f"confusion:{s.name}" in images:
        d += ["", f"![confusion {s.name}]({images[f'confusion:{s.name}']})"]
    if s.diagnosis is not None:
        diag = s.diagnosis
        d += ["", f"Per-layer diagnosis on {diag.frames} frames: **{diag.message}**.", "",
              "| # | layer | op | relative error |", "|---|---|---|---|"]
        for e in diag.layers[:12]:
            mark = " ⟵" if diag.first_jump is not None and e.index == diag.first_jump.index \
                else ""
            d.append(f"| {e.index} | {e.layer} | {e.op_type} | {e.rel_error:.2%}{mark} |")
        if len(diag.layers) > 12:
            d.append(f"| ... | {len(diag.layers) - 12} more layers (in the JSON) | | |")
        if f"layers:{s.name}" in images:
            d += ["", f"![per-layer error {s.name}]({images[f'layers:{s.name}']})"]
    return d


# ---------------------------------------------------------------- plots
def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _classes_to_show(m: np.ndarray) -> np.ndarray:
    """Classes involved off the diagonal (the flipped ones), else the largest, at most 20."""
    if len(m) <= MAX_MATRIX_CLASSES:
        return np.arange(len(m))
    off = m - np.diag(np.diag(m))
    weight = off.sum(0) + off.sum(1)
    involved = np.flatnonzero(weight)
    if len(involved) == 0:
        return np.arange(MAX_MATRIX_CLASSES)
    return np.sort(involved[np.argsort(-weight[involved])][:MAX_MATRIX_CLASSES])


def _matrix_png(plt: Any, m: np.ndarray, labels: tuple[str, ...], title: str, ylabel: str,
                xlabel: str, path: Path) -> None:
    idx = _classes_to_show(m)
    sub = m[np.ix_(idx, idx)]
    names = [labels[i] if i < len(labels) else str(i) for i in idx]
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * len(idx), 1.0 + 0.42 * len(idx)), dpi=80)
    ax.imshow(np.log1p(sub), cmap="Blues")
    for (r, c), v in np.ndenumerate(sub):
        if v:
            ax.text(c, r, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > sub.max() / 2 else "black")
    ax.set_xticks(range(len(idx)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(idx)), names, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _errors_png(plt: Any, result: LadderResult, path: Path) -> bool:
    steps = [s for s in result.steps if s.abs_errors is not None and s.abs_errors.size]
    if not steps:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=80)
    bins = np.logspace(-10, 0, 61)
    for s in steps:
        e = np.clip(s.abs_errors, 1e-10, 1.0)
        ax.hist(e, bins=bins, histtype="step", linewidth=1.4, label=s.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|Δp| vs source (per class and frame; < 1e-10 shown at 1e-10)")
    ax.set_ylabel("count")
    ax.set_title(f"{result.source} on {result.data} ({result.n} frames)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _layers_png(plt: Any, s: RungResult, path: Path) -> None:
    diag = s.diagnosis
    errs = [e.rel_error for e in diag.layers]
    fig, ax = plt.subplots(figsize=(7.0, 3.2), dpi=80)
    ax.plot(range(len(errs)), errs, marker=".", linewidth=1)
    if diag.first_jump is not None:
        j = diag.first_jump
        ax.axvline(j.index, color="red", linestyle="--", linewidth=1)
        ax.annotate(j.layer, (j.index, j.rel_error), fontsize=8, color="red",
                    xytext=(5, 5), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("quantised activation (topological order)")
    ax.set_ylabel("relative error int8 vs fp32")
    ax.set_title(f"{s.name}: per-layer error on {diag.frames} frames", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(result: LadderResult, directory: Path) -> dict[str, str]:
    """PNG plots into ``directory``; returns key -> file name. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    images: dict[str, str] = {}
    if _errors_png(plt, result, directory / "errors.png"):
        images["errors"] = "errors.png"
    for s in result.steps:
        if s.flip_matrix is not None and s.vs_source is not None and s.vs_source.flips:
            name = f"flips_{_slug(s.name)}.png"
            _matrix_png(plt, s.flip_matrix, result.labels,
                        f"{s.name}: top-1 vs source ({s.vs_source.flips} flips)",
                        "source top-1", f"{s.name} top-1", directory / name)
            images[f"flips:{s.name}"] = name
        if s.confusion is not None and s.name == "source":
            name = f"confusion_{_slug(s.name)}.png"
            acc = s.accuracy["accuracy"] if s.accuracy else float("nan")
            _matrix_png(plt, s.confusion, result.labels,
                        f"{s.name}: confusion on labelled data (accuracy {acc:.2%})",
                        "true label", "prediction", directory / name)
            images[f"confusion:{s.name}"] = name
        if s.diagnosis is not None and s.diagnosis.layers:
            name = f"layers_{_slug(s.name)}.png"
            _layers_png(plt, s, directory / name)
            images[f"layers:{s.name}"] = name
    return images


def write_report(result: LadderResult, directory: str | Path, plots: bool = True) -> list[Path]:
    """``report.json``, ``report.md`` and the PNGs into ``directory``; returns the files."""
    return write_bundle(result, directory, "report", to_dict=LadderResult.to_dict,
                        markdown=markdown,
                        write_plots=write_plots, plots=plots)
