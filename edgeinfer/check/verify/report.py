"""The ``verify`` report: JSON (everything), Markdown (for a person), PNG (error and latency).

Plots need matplotlib (the ``report`` extra), which a device usually lacks: the JSON and
Markdown are written regardless and the Markdown says why there are no plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeinfer.check.report_files import write_bundle
from edgeinfer.check.verify.run import VerifyResult
from edgeinfer.parity.stages import markdown_table as stage_table
from edgeinfer.parity.stages import stage_row


def table(result: VerifyResult) -> str:
    """The per-step table, as printed on the terminal and in the Markdown."""
    rows = ["| step | vs | n | max\\|dp\\| | p99\\|dp\\| | top-1 (95% CI) | top-5 | flips | "
            "tolerance | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.steps:
        c = s.comparison
        lo, hi = c.top1_ci95
        bound = c.bound_text().replace("|", "\\|")  # the judged statistic, Markdown-escaped
        rows.append(f"| {s.name} ({c.target}) | {c.reference} | {c.n} | {c.abs_text()} | "
                    f"{c.p99_abs:.1e} | {c.top1_agreement:.2%} [{lo:.1%}, {hi:.1%}] | "
                    f"{c.top5_agreement:.2%} | {c.flips} | "
                    f"{bound} | {s.verdict} |")
    return "\n".join(rows)


def aligned(rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as columns as wide as their widest cell, two spaces apart.

    Why not fixed widths: step targets such as ``tflite-fp32 (decoded here)`` are longer
    than any width guessed in advance, and a full cell ran into the next column
    ("tflite-fp32 (decoded here)torch (pack)").
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]


def text_table(result: VerifyResult) -> str:
    """The per-step table for a terminal, then the stages (their own columns)."""
    rows = [["step", "target", "vs", "n", "max|dp|", "p99|dp|", "top-1 (95% CI)", "top-5",
             "flips", "verdict"]]
    for s in result.steps:
        c = s.comparison
        lo, hi = c.top1_ci95
        rows.append([s.name, c.target, c.reference, str(c.n), c.abs_text(),
                     f"{c.p99_abs:.1e}", f"{c.top1_agreement:.2%} [{lo:.1%}, {hi:.1%}]",
                     f"{c.top5_agreement:.2%}", str(c.flips), s.verdict])
    out = aligned(rows, right=frozenset({3}))
    stages = [list(stage_row(c)) for c in result.stages]  # parity/stages.py's names
    if stages:
        out += aligned(stages)
    return "\n".join(out)


def markdown(result: VerifyResult, images: dict[str, str] | None = None,
             note: str | None = None) -> str:
    m, lat, images = result.machine, result.latency_ms, images or {}
    out = [f"# verify: {Path(result.artifact).name}", "",
           f"**{result.message()}**", "",
           f"- artifact: `{result.artifact}` ({result.format}, {result.dtype})",
           f"- pack: `{result.pack}`",
           f"- machine: {m['machine']} ({m['target']}), Python {m['python']}, CPU flags "
           f"{', '.join(m['cpu_flags']) or '-'}, load average "
           f"{', '.join(f'{v:.2f}' for v in m['load_average'])}", "",
           table(result), "", *stage_table(result.stages), ""]
    for s in result.steps:
        for n in s.notes:
            out.append(f"- {s.name}: {n}")
    if result.accuracy:
        a, r = result.accuracy["artifact"], result.accuracy["reference"]
        out += ["", f"Accuracy on the pack's labels: framework {r['accuracy']:.2%} "
                f"[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}], artifact {a['accuracy']:.2%} "
                f"[{a['ci95'][0]:.1%}, {a['ci95'][1]:.1%}] (n={a['n']})."]
    if result.decode:
        d = result.decode
        out += ["", f"Decode check: {d['identical']}/{d['n']} encoded files decode to exactly "
                f"the pack's frames here (max |pixel diff| {d['max_abs_pixel']}, mean "
                f"{d['mean_abs_pixel']:.3f})."]
    c = result.consistency
    out += ["", f"Batch-1 vs batched max|dp| {c['batch']:.1e}; rerun {c['rerun']:.1e}.", "",
            f"Latency (batch 1, {lat['runs']} calls, ms): p50 {lat['p50']:.2f}, p90 "
            f"{lat['p90']:.2f}, p99 {lat['p99']:.2f}; peak RSS {result.peak_rss_mb:.0f} MB; "
            f"verify took {result.seconds:.1f} s."]
    if result.notes:
        out += [""] + [f"int8: {n}" for n in result.notes]
    if result.warnings:
        out += [""] + [f"> warning: {w}" for w in result.warnings]
    if result.flips:
        out += ["", "Flipped top-1 (framework -> artifact): " + ", ".join(
            f"{f['from']} -> {f['to']} x{f['count']}" for f in result.flips[:10])]
    for title, name in images.items():
        out += ["", f"![{title}]({name})"]
    if note:
        out += ["", f"_{note}_"]
    return "\n".join(out) + "\n"


def write_plots(result: VerifyResult, directory: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err = np.abs(result.probs - result.reference).max(axis=1)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].semilogy(np.sort(err)[::-1] + 1e-12, ".", ms=3)
    main = result.steps[0].comparison
    tol = main.tolerance_max_abs
    ax[0].axhline(tol, color="r", lw=1, label=f"tolerance {tol:g} ({main.judged_name})")
    ax[0].set_xlabel("frame (sorted)")
    ax[0].set_ylabel("max |dprob| per frame")
    ax[0].legend(fontsize=8)
    ax[0].set_title(f"{result.format}-{result.dtype} vs framework")
    lat = result.latency_ms
    ax[1].bar(["p50", "p90", "p99"], [lat["p50"], lat["p90"], lat["p99"]], color="#4878a8")
    ax[1].set_ylabel("ms (batch 1)")
    ax[1].set_title(f"latency on {result.machine['machine']}")
    fig.tight_layout()
    name = "verify.png"
    fig.savefig(directory / name, dpi=90)
    plt.close(fig)
    return {"errors and latency": name}


def write_report(result: VerifyResult, directory: str | Path, plots: bool = True) -> list[Path]:
    return write_bundle(result, directory, "verify", to_dict=VerifyResult.to_dict,
                        markdown=markdown,
                        write_plots=write_plots, plots=plots)
