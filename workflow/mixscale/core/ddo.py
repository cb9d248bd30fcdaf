"""DDO from a fit: the optimal mixture at a token scale (or for a cost budget).

Domains whose fit is unusable (status other than ok) are held at their base-run weight, the
documented fallback: the data give no evidence to move them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixscale.core.fit import FitResult
from mixscale.core.solve import Problem, objective_value, solve
from mixscale.errors import InputError


@dataclass
class Constraints:
    min_weight: dict[str, float] = field(default_factory=dict)  # domain -> weight; "*" = all
    max_weight: dict[str, float] = field(default_factory=dict)
    max_tokens: dict[str, float] = field(default_factory=dict)  # absolute cap per domain
    available: dict[str, float] = field(default_factory=dict)  # tokens a domain holds
    max_epochs: float | None = None  # cap = max_epochs * available
    cost: dict[str, float] = field(default_factory=dict)  # per token; default 1

    def lookup(self, table: dict[str, float], domain: str, default: float) -> float:
        return table.get(domain, table.get("*", default))


def check_constraint_names(constraints: Constraints, domains: list[str]) -> None:
    for label, table in (
        ("--min-weight", constraints.min_weight),
        ("--max-weight", constraints.max_weight),
        ("--max-tokens", constraints.max_tokens),
        ("--available", constraints.available),
        ("--cost", constraints.cost),
    ):
        for name in table:
            if name != "*" and name not in domains:
                raise InputError(
                    label, name, "not a domain of the fit", f"choose among {', '.join(domains)}"
                )


def token_bounds(constraints: Constraints, domain: str, total: float | None) -> tuple[float, float]:
    lo_w = constraints.lookup(constraints.min_weight, domain, 0.0)
    hi_w = constraints.lookup(constraints.max_weight, domain, 1.0)
    cap = constraints.lookup(constraints.max_tokens, domain, np.inf)
    if constraints.max_epochs is not None and domain in constraints.available:
        cap = min(cap, constraints.max_epochs * constraints.available[domain])
    if total is None:  # budget mode: weights are relative to a total that is not fixed
        return 0.0, cap
    return lo_w * total, min(hi_w * total, cap)


def optimize(
    fit: FitResult,
    total_tokens: float | None = None,
    constraints: Constraints | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """WEIGHTS.json content: the optimum at ``total_tokens`` (or for ``budget`` in cost units)."""
    constraints = constraints or Constraints()
    domains = list(fit.domains)
    check_constraint_names(constraints, domains)
    if (total_tokens is None) == (budget is None):
        raise InputError("solve", "--tokens/--budget", "give exactly one", "e.g. --tokens 3e9")
    if total_tokens is not None and total_tokens <= 0:
        raise InputError(
            "solve", "--tokens", f"must be > 0, got {total_tokens}", "give a token count"
        )
    if budget is not None and budget <= 0:
        raise InputError(
            "solve", "--budget", f"must be > 0, got {budget}", "give a positive budget"
        )
    cost = np.array([constraints.lookup(constraints.cost, d, 1.0) for d in domains])
    if np.any(cost <= 0):
        raise InputError("--cost", "value", "costs per token must be > 0", "e.g. --cost web=1")
    usable = [d for d in domains if fit.domains[d].usable]
    held = [d for d in domains if not fit.domains[d].usable]
    bounds = {d: token_bounds(constraints, d, total_tokens) for d in domains}
    tokens: dict[str, float] = {}
    resource = float(total_tokens if total_tokens is not None else budget)  # type: ignore[arg-type]
    # In budget mode a held domain keeps its base weight of the base run's total: the only
    # scale the data speak for.
    scale_for_held = total_tokens if total_tokens is not None else fit.base_total_tokens
    for d in held:
        lo, hi = bounds[d]
        tokens[d] = float(np.clip(fit.domains[d].base_weight * scale_for_held, lo, hi))
        resource -= constraints.lookup(constraints.cost, d, 1.0) * tokens[d]
    if usable:
        canon = [fit.domains[d].canonical(fit.unit) for d in usable]
        problem = Problem(
            A=np.array([c.A for c in canon]),
            S=np.array([c.S for c in canon]),
            b=np.array([c.b for c in canon]),
            lower=np.array([bounds[d][0] for d in usable]),
            upper=np.array([bounds[d][1] for d in usable]),
            cost=np.array([constraints.lookup(constraints.cost, d, 1.0) for d in usable]),
            resource=resource,
        )
        n = solve(problem, source="solve")
        tokens.update({d: float(v) for d, v in zip(usable, n, strict=True)})
        model_value = objective_value(problem, n)
    elif abs(resource) > 1e-9 * max(1.0, abs(resource)):
        raise InputError(
            "FIT.json",
            "domains",
            "no domain has a usable fit, and the held weights do not fill the scale",
            "rerun the DDO sweep with more tokens or seeds (see each domain's status)",
        )
    else:
        model_value = 0.0
    total = sum(tokens.values())
    if not (math.isfinite(total) and total > 0):
        # A target many orders of magnitude below the sweep: the optimum is lost in the
        # floating-point resolution of the fitted shifts (seen at 10 tokens for a 1e17 sweep).
        raise InputError(
            "solve",
            "--tokens" if total_tokens is not None else "--budget",
            f"the fitted laws give no mixture at {resource:.3g} (the sweep ran at "
            f"{fit.base_total_tokens:.3g} tokens)",
            "solve at a scale within a few orders of magnitude of the sweep",
        )
    ordered = {d: tokens[d] for d in domains}
    out: dict[str, Any] = {
        "total_tokens": total,
        "weights": {d: v / total for d, v in ordered.items()},
        "tokens": ordered,
        "held_at_base_weight": held,
        "predicted_objective": fit.intercept + model_value,
        "fit_objective": fit.objective,
    }
    if budget is not None or constraints.cost:
        out["cost"] = float(
            sum(constraints.lookup(constraints.cost, d, 1.0) * v for d, v in ordered.items())
        )
    return out


def weight_intervals(
    boot_fits: list[FitResult],
    total_tokens: float,
    constraints: Constraints | None = None,
    level: float = 0.9,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of the optimal weights over bootstrap fits."""
    samples: dict[str, list[float]] = {}
    for fit in boot_fits:
        try:
            weights = optimize(fit, total_tokens, constraints)["weights"]
        except InputError:
            continue
        for d, w in weights.items():
            samples.setdefault(d, []).append(w)
    alpha = (1 - level) / 2
    return {
        d: {
            "low": float(np.quantile(v, alpha)),
            "high": float(np.quantile(v, 1 - alpha)),
            "samples": len(v),
        }
        for d, v in samples.items()
    }
