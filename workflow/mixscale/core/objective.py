"""The scalar objective of a run, computed from its per-domain validation losses.

The workflow and the CLI default to the AutoScale paper's objective (Eq. 1): the mean over the
evaluation domains of their perplexity exp(loss) (``objective.kind`` in the schema). Options: the
mean loss, a weighted mean, a subset of domains. This class's own default is the mean loss, so
code calling the math core directly says when it wants perplexities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixscale.errors import InputError

KINDS = ("mean", "perplexity")
MAX_PERPLEXITY_LOSS = 700.0  # exp(709.8) overflows a float64


@dataclass(frozen=True)
class Objective:
    kind: str = "mean"  # "mean" of losses or "perplexity" (mean of exp(loss))
    weights: dict[str, float] = field(default_factory=dict)  # eval domain -> weight; {} = equal
    domains: list[str] = field(default_factory=list)  # subset of eval domains; [] = all

    def describe(self) -> str:
        what = "mean perplexity" if self.kind == "perplexity" else "mean loss"
        if self.weights:
            what = "weighted " + what
        scope = ",".join(self.domains) if self.domains else "all evaluation domains"
        return f"{what} over {scope}"

    def evaluate(self, eval_domains: list[str], losses: np.ndarray, source: str = "objective"):
        """Objective per row of ``losses`` (runs x eval_domains)."""
        weights = self.domain_weights(eval_domains, source)
        if self.kind == "perplexity" and np.any(losses[:, weights > 0] > MAX_PERPLEXITY_LOSS):
            raise InputError(
                source,
                "loss.*",
                f"a loss above {MAX_PERPLEXITY_LOSS:g} nats: its perplexity overflows",
                "check the run (diverged?) or use the objective 'mean' (mean loss)",
            )
        values = np.exp(losses) if self.kind == "perplexity" else losses
        return values @ weights

    def domain_weights(self, eval_domains: list[str], source: str = "objective") -> np.ndarray:
        """Each evaluation domain's weight in the objective (summing to 1; 0 if not chosen)."""
        if self.kind not in KINDS:
            raise InputError(source, "kind", f"unknown objective '{self.kind}'", f"use {KINDS}")
        chosen = self.domains or (list(self.weights) if self.weights else list(eval_domains))
        for d in list(chosen) + list(self.weights):
            if d not in eval_domains:
                raise InputError(
                    source,
                    f"domain '{d}'",
                    "not an evaluation domain of the run table",
                    f"choose among {', '.join(eval_domains)}",
                )
        cols = [eval_domains.index(d) for d in chosen]
        w = np.array([self.weights.get(d, 0.0 if self.weights else 1.0) for d in chosen])
        if np.any(w < 0) or w.sum() <= 0:
            raise InputError(source, "weights", "must be >= 0 with a positive sum", "fix them")
        full = np.zeros(len(eval_domains))
        np.add.at(full, cols, w / w.sum())
        return full


def parse_objective(kind: str, weights: str | None, domains: str | None) -> Objective:
    """Build an Objective from CLI strings: weights 'a=0.5,b=0.5', domains 'a,b'."""
    parsed: dict[str, float] = {}
    if weights:
        for item in weights.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise InputError("--eval-weights", item, "expected domain=weight", "e.g. a=0.5")
            try:
                parsed[name.strip()] = float(value)
            except ValueError as exc:
                raise InputError(
                    "--eval-weights",
                    name,
                    f"'{value}' is not a number",
                    "e.g. --eval-weights web=2",
                ) from exc
    subset = [d.strip() for d in domains.split(",") if d.strip()] if domains else []
    if kind not in KINDS:
        raise InputError("--objective", kind, "unknown objective", f"use one of {KINDS}")
    return Objective(kind=kind, weights=parsed, domains=subset)
