"""The int8 accuracy control's record: one :class:`Trial` per quantisation the classifier's
loop measured, the :class:`ControlResult` stored as ``provenance["int8_control"]``, and the
:class:`Record` it shares with the detector's ``F1Control``.

Kept apart from the loop (:mod:`.loop`, :mod:`.control`) and its refusals (:mod:`.refusal`)
so that each imports it and none imports the other: imports flow one way.
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


class Record:
    """What both loops' records share (this one and the detector's ``F1Control``): readable
    layer names, the final trial, and the provenance (ranking, layers kept float, a note)."""

    labels: dict[str, str]
    ranking: list[tuple[str, float]]
    steps: list[Any]
    TOP: int | None = None  # the ranking's entries kept in the provenance (None: all)
    NOTE: tuple[str, str] = ("", "")  # the provenance's last key and what it says

    def name(self, layer: str | None) -> str:
        return self.labels.get(layer or "", layer or "")

    @property
    def final(self) -> Any:
        return self.steps[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        del d["labels"]
        d["ranking"] = [{"layer": self.name(n), "node": n, "error_reduction": s}
                        for n, s in self.ranking[:self.TOP]]
        d["kept_float"] = [self.name(n) for n in self.final.kept_float] if self.steps else []
        d["kept_float_nodes"] = self.final.kept_float if self.steps else []
        return d | dict([self.NOTE])


@dataclass
class ControlResult(Record):
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
    TOP = 20
    NOTE = ("why", "kept float, most harmful first: reverting each alone lowered the int8 "
            f"error most on the {RANK_FRAMES} worst held-out frames")
