"""The monitor's report: JSON (what scripts read), Markdown and a PNG timeline (what a person
reads): estimated accuracy with its interval over the frames, the reference line, alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.check.monitor.run import MonitorRun
from edgeinfer.check.report_files import write_bundle


def to_json(run: MonitorRun) -> dict[str, Any]:
    return run.report.to_dict() | {"source": run.source, "kind": run.kind,
                                   "reference": run.reference, "skipped": run.skipped}


def markdown(run: MonitorRun, images: dict[str, str], note: str | None) -> str:
    png = images.get("timeline")
    r = run.report
    lines = [f"# Field monitor: {run.source}", "", r.summary(), "",
             f"- source: {run.kind}, {r.frames} frames; reference: {run.reference}",
             f"- estimator: `{r.estimator}`; alarms: {r.alarms}"
             + (f" (first at frame {r.first_alarm_frame})" if r.first_alarm_frame else ""),
             "", "| signal | drift |", "|---|---|"]
    lines += [f"| {k} | {v:+.2f} |" for k, v in r.drift.items()]
    lines += ["", "Drift: frame signals and confidence in reference standard deviations "
              "(flagged at 0.5), the class mix as a z-score against sampling noise (flagged "
              "at 4)."]
    if run.skipped:
        lines += ["", f"Skipped ({len(run.skipped)}): " + "; ".join(run.skipped[:10])]
    if png:
        lines += ["", f"![timeline]({png})"]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_report(run: MonitorRun, directory: str | Path) -> list[Path]:
    """report.json, report.md and timeline.png (without matplotlib the Markdown says so)."""
    return write_bundle(run, directory, "report", to_dict=to_json, markdown=markdown,
                        write_plots=_plots)


def _plots(run: MonitorRun, d: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in run.report.timeline if p["estimated_accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    if pts:
        x = [p["frame"] for p in pts]
        ax.plot(x, [p["estimated_accuracy"] * 100 for p in pts], label="estimated accuracy")
        ax.fill_between(x, [p["low"] * 100 for p in pts], [p["high"] * 100 for p in pts],
                        alpha=0.25, label="95% interval")
        alarm = [p["frame"] for p in pts if p["alarm"]]
        if alarm:
            ax.scatter(alarm, [2] * len(alarm), marker="|", color="red", label="alarm")
    if run.report.reference_accuracy is not None:
        ax.axhline(run.report.reference_accuracy * 100, color="k", ls="--", lw=0.8,
                   label="reference")
    ax.set_ylim(0, 100)
    ax.set_xlabel("frame")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{run.source}: {run.report.summary()[:90]}", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(d / "timeline.png", dpi=90)
    plt.close(fig)
    return {"timeline": "timeline.png"}
