"""DDO from a fit: the optimal mixture at a token scale (or for a cost budget).

Domains whose fit is unusable (status other than ok) are held at their base-run weight, the
documented fallback: the data give no evidence to move them.

Trust region (on by default): a fitted curve says nothing far outside the tokens its runs
observed, and the solver would happily drive a domain to 0 from a fit whose smallest point is
base/3. So each fitted domain's weight stays within the range its perturbations observed,
[w_base / k, k w_base] for Algorithm 1 (mirrored to the other side when the design perturbs one
side only), as a share of the total so it applies at any scale. The authors pin such a domain at
the smallest perturbation they observed; an explicit --min-weight / --max-weight for a domain
replaces its trust-region bound on that side. Bounds that bind are reported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixscale.core.fit import FitResult
from mixscale.core.forms import canonical
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
    trust_region: bool = True  # keep fitted domains within the range their runs observed

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


def trust_region_weights(fit: FitResult, domain: str) -> tuple[float, float] | None:
    """(low, high) share of the total the domain's runs observed, mirrored in log around the
    base when they lie on one side only; None for a domain without a usable fit."""
    d = fit.domains[domain]
    points = d.diagnostics.get("points") or []
    if not d.usable or not points or d.base_tokens <= 0:
        return None
    factors = [p["tokens"] / d.base_tokens for p in points]
    low, high = min(factors), max(factors)
    low, high = min(low, 1.0 / high), max(high, 1.0 / low)
    return d.base_weight * low, d.base_weight * high


def _bounded(
    fit: FitResult, constraints: Constraints, domain: str, total: float | None
) -> tuple[float, float, str, str]:
    """Token bounds of a domain and what set each side (none, constraint, trust_region)."""
    lo, hi = token_bounds(constraints, domain, total)
    lo_by = "min-weight" if lo > 0 else "none"
    hi_by = "max-weight/max-tokens" if hi < (total if total is not None else np.inf) else "none"
    region = trust_region_weights(fit, domain) if constraints.trust_region else None
    if region is None or total is None:  # budget mode: no fixed total to take shares of
        return lo, hi, lo_by, hi_by
    user_min = domain in constraints.min_weight or "*" in constraints.min_weight
    user_max = domain in constraints.max_weight or "*" in constraints.max_weight
    if not user_min and region[0] * total > lo:
        lo, lo_by = region[0] * total, "trust_region"
    if not user_max and region[1] * total < hi:
        hi, hi_by = region[1] * total, "trust_region"
    return lo, hi, lo_by, hi_by


def optimize(
    fit: FitResult,
    total_tokens: float | None = None,
    constraints: Constraints | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """WEIGHTS.json content: the optimum at ``total_tokens`` (or for ``budget`` in cost units),
    with the optimum under every exact root of the fits when three points gave two."""
    constraints = constraints or Constraints()
    out = _optimize(fit, total_tokens, constraints, budget)
    alternatives = _root_alternatives(fit)
    if alternatives and total_tokens is not None:
        out["optimum_by_root"] = by_root = {}
        for root, other in alternatives.items():
            try:
                by_root[root] = _optimize(other, total_tokens, constraints, None)["weights"]
            except InputError as exc:
                by_root[root] = {"error": exc.one_line()}
        spreads = [
            abs(w[d] - v[d])
            for w in by_root.values()
            for v in by_root.values()
            if "error" not in w and "error" not in v
            for d in w
        ]
        out["root_spread"] = max(spreads, default=0.0)  # largest weight change between roots
    return out


def _root_alternatives(fit: FitResult) -> dict[str, FitResult]:
    """The fit with every ambiguous domain at its smallest-b and at its largest-b exact curve."""
    ambiguous = [d for d in fit.domains.values() if len(d.diagnostics.get("exact_fits", [])) > 1]
    if not ambiguous:
        return {}
    out = {}
    for root, pick in (("smallest_b", min), ("largest_b", max)):
        other = copy.deepcopy(fit)
        for d in ambiguous:
            params = dict(pick(d.diagnostics["exact_fits"], key=lambda p: p["b"]))
            _move_intercept(other, d.domain, params)
            other.domains[d.domain].params = params
        out[root] = other
    return out


def _move_intercept(fit: FitResult, domain: str, params: dict[str, float]) -> None:
    """Each exact curve passes through the base point: the model's value at the base is the
    same under either root, so only the curve's own constant c moves, which the separable
    intercept absorbs (for Algorithm 1 the intercept is the base mean minus the curves)."""
    d = fit.domains[domain]
    old = d.canonical(fit.unit).value(d.base_tokens)
    new = canonical(d.form, params, d.unit_or(fit.unit)).value(d.base_tokens)  # type: ignore[arg-type]
    fit.intercept += float(old - new)


def _check_sides(sides: dict[str, tuple[float, float, str, str]]) -> None:
    """A domain whose upper bound lies below its lower bound (--max-weight d=0 where the trust
    region keeps d at w/k or more), named with what set each side."""
    names = {"min-weight": "--min-weight", "max-weight/max-tokens": "--max-weight/--max-tokens"}
    names["trust_region"] = "the trust region: the range its runs observed"
    for domain, (lo, hi, lo_by, hi_by) in sides.items():
        if lo > hi:
            raise InputError(
                "solve",
                domain,
                f"upper bound {hi:.3g} tokens ({names.get(hi_by, hi_by)}) below its lower "
                f"bound {lo:.3g} ({names.get(lo_by, lo_by)})",
                "raise --max-weight/--max-tokens, lower --min-weight, or --no-trust-region",
            )


def _optimize(
    fit: FitResult,
    total_tokens: float | None,
    constraints: Constraints,
    budget: float | None,
) -> dict[str, Any]:
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
    sides = {d: _bounded(fit, constraints, d, total_tokens) for d in domains}
    _check_sides(sides)
    bounds = {d: sides[d][:2] for d in domains}
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
    elif abs(resource) > 1e-9 * float(total_tokens if total_tokens is not None else budget):
        # relative to the scale: the held weights sum to 1 only up to rounding
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
        "predicted_objective": fit.objective_scale * (fit.intercept + model_value),
        "fit_objective": fit.objective,
        "trust_region": constraints.trust_region and total_tokens is not None,
        "bounds": {d: _bound_entry(sides[d], total) for d in usable},
        "at_bound": _at_bounds({d: sides[d] for d in usable}, ordered),
    }
    warning = _scale_warning(fit, total_tokens)
    if warning:
        out["warnings"] = [warning]
    if budget is not None or constraints.cost:
        out["cost"] = float(
            sum(constraints.lookup(constraints.cost, d, 1.0) * v for d, v in ordered.items())
        )
    return out


def _bound_entry(side: tuple[float, float, str, str], total: float) -> dict[str, Any]:
    lo, hi, lo_by, hi_by = side
    return {"low": lo / total, "high": min(hi / total, 1.0), "low_by": lo_by, "high_by": hi_by}


def _at_bounds(
    sides: dict[str, tuple[float, float, str, str]], tokens: dict[str, float]
) -> dict[str, str]:
    """Domains whose optimum sits on a bound, and which one (e.g. 'low: trust_region')."""
    out = {}
    for d, (lo, hi, lo_by, hi_by) in sides.items():
        tol = 1e-9 * max(tokens[d], 1.0)
        if lo_by != "none" and tokens[d] <= lo + tol:
            out[d] = f"low: {lo_by}"
        elif hi_by != "none" and tokens[d] >= hi - tol:
            out[d] = f"high: {hi_by}"
    return out


def _scale_warning(fit: FitResult, total_tokens: float | None) -> str | None:
    """Solving away from the sweep's scale extrapolates every curve (the paper form's shift N0
    stays where the sweep put it): worth a word, not a refusal."""
    if total_tokens is None or fit.base_total_tokens <= 0:
        return None
    ratio = total_tokens / fit.base_total_tokens
    # trained runs round their tokens to whole optimizer steps (100k -> 99,840 at 1,024 tokens
    # a step): a few per cent is the same scale, not an extrapolation
    if math.isclose(ratio, 1.0, rel_tol=0.05):
        return None
    return (
        f"solved at {total_tokens:.4g} tokens, {ratio:.3g}x the sweep's "
        f"{fit.base_total_tokens:.4g}: the fitted curves are used beyond the tokens their runs "
        "observed"
    )


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
