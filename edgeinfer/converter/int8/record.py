"""The int8 accuracy control's record: one :class:`Trial` per quantisation the loop measured,
and the :class:`ControlResult` stored as ``provenance["int8_control"]``.

Kept apart from the loop (:mod:`edgeinfer.converter.int8.control`) and its refusals
(:mod:`edgeinfer.converter.int8.refusal`) so that both import it and neither imports the
other: imports flow one way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RANK_FRAMES = 32  # worst held-out frames the ranking is measured on


@dataclass
class Trial:
    """One trial of the loop: a quantisation with some layers float, and what it measured."""

    kept_float: list[str]
    added: str | None
    agreement: float
    ci95: tuple[float, float]
    flips: int
    accuracy: float | None
    size_bytes: int
    latency_ms: float | None
    meets: bool
    seconds: float = 0.0  # build + held-out run (+ latency); the first build calibrates
    taken: bool = True  # False: this step did not raise agreement, so it was not taken


@dataclass
class ControlResult:
    """The loop's record; stored as ``provenance["int8_control"]`` in the artifact."""

    min_agreement: float | None
    max_drop: float | None
    heldout: str
    n_heldout: int
    candidates: int
    max_float: int
    fp32_latency_ms: float | None
    fp32_size_bytes: int
    fp32_accuracy: float | None
    ranking: list[tuple[str, float]] = field(default_factory=list)
    steps: list[Trial] = field(default_factory=list)
    wall_s: float = 0.0
    rank_s: float = 0.0  # the ranking: one build per candidate, run on the worst frames
    labels: dict[str, str] = field(default_factory=dict)
    target: str | None = None  # the int8 target, for the refusal's hints
    fmt: str = "onnx"
    max_latency_ratio: float | None = None  # --max-latency-ratio: x fp32's 1-thread p50
    latency_cap: int | None = None  # the most ranked layers float within that budget

    def name(self, layer: str | None) -> str:
        return self.labels.get(layer or "", layer or "")

    @property
    def final(self) -> Trial:
        return self.steps[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["labels"]
        d["ranking"] = [{"layer": self.name(n), "node": n, "error_reduction": s}
                        for n, s in self.ranking[:20]]
        d["kept_float"] = [self.name(n) for n in self.final.kept_float] if self.steps else []
        d["kept_float_nodes"] = self.final.kept_float if self.steps else []
        d["why"] = ("kept float, most harmful first: reverting each alone lowered the int8 "
                    f"error most on the {RANK_FRAMES} worst held-out frames")
        return d

    def lines(self) -> list[str]:
        """One line per step, for the terminal."""
        return self.lines_of(self.steps)

    def lines_of(self, steps: list[Trial]) -> list[str]:
        out = []
        for s in steps:
            lo, hi = s.ci95
            lat = (f", {s.latency_ms:.2f} ms ({s.latency_ms / self.fp32_latency_ms:.2f}x fp32)"
                   if s.latency_ms and self.fp32_latency_ms else "")
            acc = f", accuracy {s.accuracy:.2%}" if s.accuracy is not None else ""
            what = f"+ {self.name(s.added)}" if s.added else ("all int8" if not s.kept_float
                                                          else f"{len(s.kept_float)} float")
            out.append(f"int8 control: {len(s.kept_float)} float ({what}): agreement "
                       f"{s.agreement:.2%} [95% CI {lo:.2%}, {hi:.2%}]{acc}, "
                       f"{s.size_bytes / 1e6:.2f} MB{lat}" + (" -> target met" if s.meets
                                                               else ""))
        return out
