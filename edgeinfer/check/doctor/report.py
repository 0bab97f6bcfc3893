"""The doctor's outputs: the ranked table on stdout, JSON, Markdown and a PNG bar chart.

``robustness`` results (``--shift``) render into the same bundle when present.
matplotlib is imported only for the plots.
"""

from __future__ import annotations

from pathlib import Path

from edgeinfer.check.doctor.run import CulpritRow, DoctorResult
from edgeinfer.check.report_files import write_bundle


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _share(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _score(c: CulpritRow) -> str:
    """A distribution_shift row scored 0 means "not indicated", not a measured 0.0%."""
    return "not seen" if c.name == "distribution_shift" and not c.score else _pct(c.score)


def table(res: DoctorResult) -> str:
    """The ranked culprit table (plain text, what the CLI prints). In device mode the
    agreement of one run equals the score except for stochastic culprits (dropout), so that
    column is shown only when some row differs (two identical columns read as a bug)."""
    device = res.mode == "device"
    score = "agrees w/ device" if device else "changes"
    agree = "agree(1 run)" if device else "agree(ref)"
    show = not device or any(c.agreement is not None and c.agreement != c.score
                             for c in res.culprits)
    # the part of the device's disagreement with the reference a culprit explains: the
    # verdict names a culprit (or says "unexplained") on this number
    share = device and any(c.share is not None for c in res.culprits)
    lines = [f"{'rank':<5}{'culprit':<23}{score:>17}{'accuracy':>10}"
             + (f"{agree:>14}" if show else "") + (f"{'explains':>10}" if share else "")
             + f"{'BN fit':>9}  detail"]
    for i, c in enumerate(res.culprits, 1):
        lines.append(f"{i:<5}{c.name:<23}{_score(c):>17}{_pct(c.accuracy):>10}"
                     + (f"{_pct(c.agreement):>14}" if show else "")
                     + (f"{_share(c.share):>10}" if share else "")
                     + f"{_num(c.bn_fit):>9}  {c.detail}")
    return "\n".join(lines)


def summary(res: DoctorResult) -> str:
    head = [f"doctor: {res.source} on {res.n} frames ({res.data}), {res.mode} mode"]
    if res.reference_accuracy is not None:
        head.append(f"reference accuracy {res.reference_accuracy:.1%}"
                    + (f", device accuracy {res.device_accuracy:.1%} on {res.device_n} frames"
                       if res.device_accuracy is not None else ""))
    if res.frames_bn_fit is not None:
        head.append(f"frames' BN fit under the reference pipeline {res.frames_bn_fit:.3g}")
    return "\n".join(head + [table(res), f"verdict: {res.verdict}"] + [
        f"note: {n}" for n in res.notes])


def markdown(res: DoctorResult, images: dict[str, str], note: str | None) -> str:
    d = res.to_dict()
    out = [f"# edgeinfer doctor: {d['source']}", "",
           f"{d['n']} frames ({d['data']}), mode **{d['mode']}**"
           + (f"; reference accuracy {_pct(d['reference_accuracy'])}"
              if d["reference_accuracy"] is not None else "")
           + (f"; device accuracy {_pct(d['device_accuracy'])} on {d['device_n']} frames"
              if d["device_accuracy"] is not None else "")
           + (f"; frames' BN fit {_num(d['frames_bn_fit'])}" if d["frames_bn_fit"] is not None
              else ""), "", f"**Verdict:** {d['verdict']}", ""]
    if "culprits" in images:
        out += [f"![culprits]({images['culprits']})", ""]
    score = "agrees with device" if d["mode"] == "device" else "predictions changed"
    out += [f"| rank | culprit | {score} | accuracy | agreement | explains | BN fit | variant "
            "| fix |", "|---|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(d["culprits"], 1):
        out.append(f"| {i} | `{c['name']}` | {_pct(c['score'])} | {_pct(c['accuracy'])} | "
                   f"{_pct(c['agreement'])} | {_share(c['share'])} | {_num(c['bn_fit'])} | "
                   f"{c['detail']} | {c['fix']} |")
    if d["not_applicable"]:
        out += ["", "Not simulated separately:", ""]
        out += [f"- `{s['name']}` ({s['detail']}): {s['why']}" for s in d["not_applicable"]]
    if d.get("spec_audit"):
        a = d["spec_audit"]
        out += ["", f"**Spec audit:** {a['verdict']} - {a['message']}"]
    out += [f"- note: {n}" for n in d["notes"]]
    if res.robustness:
        from edgeinfer.check.doctor.robustness import markdown as rob_md

        out += ["", rob_md(res.robustness, images)]
    if note:
        out += ["", f"_{note}_"]
    return "\n".join(out) + "\n"


def write_plots(res: DoctorResult, d: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    doc = res.to_dict()
    rows = doc["culprits"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [f"{c['name']}" for c in rows][::-1]
    vals = [c["score"] for c in rows][::-1]
    colors = ["#c0392b" if c["name"] == doc["top"] and c["name"] != "none" else "#7f8c8d"
              for c in rows][::-1]
    ax.barh(names, vals, color=colors)
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 agreement with the device" if doc["mode"] == "device"
                  else "share of predictions the culprit would change")
    ax.set_title(f"doctor: {doc['source']} ({doc['n']} frames)", fontsize=10)
    fig.tight_layout()
    fig.savefig(d / "culprits.png", dpi=90)
    plt.close(fig)
    images = {"culprits": "culprits.png"}
    if res.robustness:
        from edgeinfer.check.doctor.robustness import write_plots as rob_plots

        images |= rob_plots(res.robustness, d)
    return images


def write_report(res: DoctorResult, directory: str | Path, plots: bool = True) -> list[Path]:
    """``doctor.json``, ``doctor.md`` and ``culprits.png`` (+ robustness curves)."""
    return write_bundle(res, directory, "doctor", to_dict=DoctorResult.to_dict,
                        markdown=markdown, write_plots=write_plots, plots=plots)
