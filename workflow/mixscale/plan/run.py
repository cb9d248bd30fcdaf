"""A planned training run: its identity and mixture."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mixscale.errors import InputError


@dataclass(frozen=True)
class Run:
    id: str
    stage: str  # "ddo" | "verify"
    scale: str  # DDO scale name, or the target label
    seed: int
    total_tokens: float
    tokens: dict[str, float] = field(default_factory=dict)  # explicit mixture (ddo)
    method: str | None = None  # verification: where the weights come from
    perturbed: str | None = None  # ddo: the perturbed domain ("" for the base run)
    factor: float = 1.0
    source: str | None = None  # annealing: the candidate source (or "control")
    skip: dict[str, float] = field(default_factory=dict)  # annealing: tokens the base used
    doremi: dict[str, Any] = field(default_factory=dict)  # DoReMi proxy: reference, eta, ...
    round: int = 1  # ddo: the round of iterated DDO (later rounds re-centred on the last)

    def to_json(self) -> dict[str, Any]:
        spec = asdict(self)
        # only annealing and DoReMi runs carry them: other specs (and their jobs) unchanged
        for key in ("source", "skip", "doremi"):
            if not spec[key]:
                del spec[key]
        if spec["round"] == 1:
            del spec["round"]
        return spec


def target_label(tokens: float) -> str:
    """A token count as a folder-safe label (6 significant digits)."""
    return f"{tokens:.6g}"


def distinct_labels(values: list[float], field: str) -> None:
    """Two token counts that share a label would share one job and one output file."""
    seen: dict[str, float] = {}
    for value in values:
        label = target_label(float(value))
        if label in seen:
            raise InputError(
                "config",
                field,
                f"{seen[label]:.10g} and {float(value):.10g} both read {label}",
                "make them differ in their first 6 significant digits",
            )
        seen[label] = float(value)
