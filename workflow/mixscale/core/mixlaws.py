"""Data Mixing Laws (Ye et al. 2024, arXiv 2403.16952): per evaluation domain i,

    L_i(r) = c_i + k_i exp(sum_j t_ij r_j)

fitted on proxy runs of one scale over sampled mixtures r (weights on the simplex), then the
objective (the same as DDO's: a weighted mean of losses or perplexities) minimised on the simplex.

Since sum_j r_j = 1, k_i and a common shift of the t_ij are one parameter: the fit uses
L_i(r) = exp(a_i) + exp(r . u_i) (m + 1 parameters) and reports k_i = exp(mean u_i),
t_ij = u_ij - mean u_i. The fit minimises the Huber loss on raw losses with L-BFGS, as the
authors' code does (their 5-domain notebook: delta 0.05); instead of their thousands of random
starts it starts from a grid of c below the smallest loss, where for each c the law is linear in
log(L - c) and least squares gives the rest exactly, and polishes the best few. The objective is
convex in r (a positive sum of exponentials of affine functions, or exponentials of those), so
its minimum on the simplex is found reliably.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from mixscale.core.ddo import Constraints, check_constraint_names, token_bounds
from mixscale.core.objective import Objective
from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

HUBER_DELTA = 0.05
C_GRID = 40  # starting values of c in [0, min loss)
POLISHED = 5  # the best starts polished by L-BFGS
SAME_SCALE = 1.05  # runs' totals within 5% of each other count as one scale


@dataclass(frozen=True)
class ExponentialLaw:
    """L(r) = exp(log_c) + exp(r . u) for one evaluation domain."""

    domain: str
    log_c: float
    u: np.ndarray  # (train domains,)
    huber: float  # the fit's Huber loss (sum over runs)
    rmse: float

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return np.exp(self.log_c) + np.exp(weights @ self.u)

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        """dL/dr at one mixture."""
        return np.exp(weights @ self.u) * self.u

    def to_json(self, train_domains: list[str]) -> dict[str, Any]:
        shift = float(np.mean(self.u))
        return {
            "c": float(np.exp(self.log_c)),
            "k": float(np.exp(shift)),
            "t": {d: float(v - shift) for d, v in zip(train_domains, self.u, strict=True)},
            "huber": self.huber,
            "rmse": self.rmse,
        }


@dataclass(frozen=True)
class MixingLawFit:
    train_domains: list[str]
    eval_domains: list[str]
    laws: list[ExponentialLaw]
    objective: Objective
    total_tokens: float  # the proxy runs' scale
    runs: int
    mixtures: int
    held: dict[str, float] = field(default_factory=dict)  # domains the runs never varied
    warnings: list[str] = field(default_factory=list)

    def losses(self, weights: np.ndarray) -> np.ndarray:
        """Predicted losses (rows of weights x evaluation domains)."""
        return np.stack([law.predict(weights) for law in self.laws], axis=-1)

    def predict(self, weights: np.ndarray) -> np.ndarray:
        """Predicted objective per row of weights (mixtures x train domains)."""
        return self.objective.evaluate(self.eval_domains, np.atleast_2d(self.losses(weights)))

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        """d objective / d weights at one mixture."""
        a = self.objective.domain_weights(self.eval_domains)
        total = np.zeros(len(self.train_domains))
        for share, law in zip(a, self.laws, strict=True):
            if share == 0:
                continue
            scale = np.exp(law.predict(weights)) if self.objective.kind == "perplexity" else 1.0
            total += share * scale * law.gradient(weights)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "dml",
            "law": "L_i(r) = c_i + k_i exp(sum_j t_ij r_j)",
            "objective": self.objective.describe(),
            "total_tokens": self.total_tokens,
            "runs": self.runs,
            "mixtures": self.mixtures,
            "held_domains": dict(self.held),
            "domains": {law.domain: law.to_json(self.train_domains) for law in self.laws},
        }


def run_weights(table: RunTable) -> tuple[np.ndarray, float]:
    """Each run's mixture (weights) and the proxy scale; refuses runs of different totals (these
    methods fit mixtures at one scale; DDO fits across scales)."""
    totals = table.tokens.sum(axis=1)
    if totals.max() > SAME_SCALE * totals.min():
        low, high = int(np.argmin(totals)), int(np.argmax(totals))
        raise InputError(
            table.source,
            "tokens",
            f"runs at different totals ({table.run_ids[low]}: {totals[low]:.4g}, "
            f"{table.run_ids[high]}: {totals[high]:.4g})",
            "give runs of one scale (mixtures sampled at one total), or use ddo",
        )
    return table.tokens / totals[:, None], float(np.median(totals))


def distinct_mixtures(weights: np.ndarray) -> int:
    return len(np.unique(np.round(weights, 12), axis=0))


# A domain whose weight moves less than this over all runs was never varied: integer token
# counts of one share move it by ~1e-8 at the smallest proxy scales.
UNVARIED = 1e-6


@dataclass(frozen=True)
class SampledDesign:
    """What a table of sampled mixtures lets a method learn."""

    distinct: int  # distinct mixtures
    held: dict[str, float]  # domains never varied: their weight in every run
    warnings: list[str]


def check_sampled_design(
    weights: np.ndarray, domains: list[str], source: str, method: str, parameters: int
) -> SampledDesign:
    """Refuse a design the method cannot learn from: one mixture in every run, or fewer
    distinct mixtures than its ``parameters``. A domain never varied stays learnable for the
    rest, but the runs say nothing about it: it is held at its weight, with a warning (a fit
    would otherwise give it whatever weight its unidentified coefficient happens to favour)."""
    distinct = distinct_mixtures(weights)
    runs = len(weights)
    if distinct == 1:
        raise InputError(
            source,
            "tokens",
            f"all {runs} runs train one mixture: {method} has nothing to compare",
            "give runs of different sampled mixtures (mixscale mixtures samples them)",
        )
    if distinct < parameters:
        raise InputError(
            source,
            "runs",
            f"{distinct} distinct mixtures for {len(domains)} domains: {method} has "
            f"{parameters} parameters to learn",
            f"give at least {parameters} mixtures",
        )
    spread = weights.max(axis=0) - weights.min(axis=0)
    held = {
        d: float(np.median(weights[:, j])) for j, d in enumerate(domains) if spread[j] <= UNVARIED
    }
    warnings = [
        f"domain '{d}' has weight {w:.4g} in every run: the runs say nothing about it, so "
        f"{method} holds it at {w:.4g} (vary it in the runs to optimise it)"
        for d, w in held.items()
    ]
    return SampledDesign(distinct, held, warnings)


def dml_parameters(domains: int) -> int:
    """A mixing law's parameters per evaluation domain: c, k and one t per domain, less the
    one the simplex takes (``u`` is defined up to a shift)."""
    return domains + 1


def held_bounds(bounds: np.ndarray, held: dict[str, float], domains: list[str]) -> np.ndarray:
    """``bounds`` (domains x 2, weights) with each held domain pinned at its weight, which
    must lie within its bounds."""
    bounds = bounds.copy()
    for d, w in held.items():
        j = domains.index(d)
        lo, hi = bounds[j]
        if not lo - 1e-12 <= w <= hi + 1e-12:
            raise InputError(
                "--min-weight/--max-weight",
                d,
                f"the runs hold {d} at {w:.4g}, outside its bounds [{lo:.4g}, {hi:.4g}]",
                f"vary {d} in the runs, or let its bounds include {w:.4g}",
            )
        bounds[j] = (w, w)
    return bounds


def fit_mixing_laws(
    table: RunTable, objective: Objective, delta: float = HUBER_DELTA
) -> MixingLawFit:
    weights, total = run_weights(table)
    m = len(table.train_domains)
    design = check_sampled_design(
        weights, table.train_domains, table.source, "a mixing law", dml_parameters(m)
    )
    if delta <= 0:
        raise InputError("--huber-delta", f"{delta:g}", "must be > 0", "e.g. 0.05")
    objective.domain_weights(table.eval_domains, table.source)  # names checked before fitting
    laws = [
        fit_exponential_law(domain, weights, table.losses[:, i], delta)
        for i, domain in enumerate(table.eval_domains)
    ]
    return MixingLawFit(
        train_domains=list(table.train_domains),
        eval_domains=list(table.eval_domains),
        laws=laws,
        objective=objective,
        total_tokens=total,
        runs=table.n_runs,
        mixtures=design.distinct,
        held=design.held,
        warnings=design.warnings,
    )


def fit_exponential_law(
    domain: str, weights: np.ndarray, losses: np.ndarray, delta: float
) -> ExponentialLaw:
    starts = sorted(_linearised_starts(weights, losses, delta), key=lambda s: s[0])
    best: tuple[float, np.ndarray] | None = None
    for _, theta in starts[:POLISHED]:
        result = minimize(
            _huber_and_gradient,
            theta,
            args=(weights, losses, delta),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.fun < best[0]):
            best = (float(result.fun), result.x)
    if best is None:
        raise InputError(domain, "fit", "the mixing law did not converge", "check the runs' losses")
    theta = best[1]
    predicted = np.exp(theta[0]) + np.exp(weights @ theta[1:])
    rmse = float(np.sqrt(np.mean((predicted - losses) ** 2)))
    return ExponentialLaw(domain, float(theta[0]), theta[1:].copy(), best[0], rmse)


def _linearised_starts(
    weights: np.ndarray, losses: np.ndarray, delta: float
) -> list[tuple[float, np.ndarray]]:
    """For each c on a grid below the smallest loss, log(L - c) = r . u is linear: least squares
    gives u. Each start is scored by the Huber loss of its prediction."""
    floor = float(losses.min())
    starts = []
    for fraction in np.linspace(0.0, 0.999, C_GRID):
        c = max(fraction * floor, 1e-12)
        gap = losses - c
        if np.any(gap <= 0):
            continue
        u, *_ = np.linalg.lstsq(weights, np.log(gap), rcond=None)
        theta = np.concatenate([[np.log(c)], u])
        starts.append((_huber_and_gradient(theta, weights, losses, delta)[0], theta))
    return starts


def _huber_and_gradient(
    theta: np.ndarray, weights: np.ndarray, losses: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    log_c, u = theta[0], theta[1:]
    shape = np.exp(np.clip(weights @ u, -700.0, 700.0))
    residual = np.exp(min(log_c, 700.0)) + shape - losses
    small = np.abs(residual) <= delta
    quadratic = 0.5 * np.where(small, residual, 0.0) ** 2  # squared only where used: no overflow
    value = np.where(small, quadratic, delta * (np.abs(residual) - 0.5 * delta)).sum()
    slope = np.where(small, residual, delta * np.sign(residual))
    grad = np.concatenate([[slope.sum() * np.exp(min(log_c, 700.0))], weights.T @ (slope * shape)])
    return float(value), grad


def optimal_weights(
    fit: MixingLawFit,
    total_tokens: float,
    constraints: Constraints | None = None,
    starts: tuple[np.ndarray, ...] = (),
) -> np.ndarray:
    """The fitted objective's minimum on the simplex, within the bounds at the target total
    (weight bounds, and token caps such as epochs of the available data). The law is in
    proportions: the same weights are predicted best at any total."""
    constraints = constraints or Constraints()
    domains = fit.train_domains
    check_constraint_names(constraints, domains)
    bounds = held_bounds(weight_bounds(constraints, domains, total_tokens), fit.held, domains)
    lower, upper = bounds[:, 0], bounds[:, 1]
    if lower.sum() > 1 + 1e-12 or upper.sum() < 1 - 1e-12:
        raise InputError(
            "--min-weight/--max-weight", "bounds", "no mixture satisfies them", "loosen them"
        )
    candidates = [np.full(len(domains), 1.0 / len(domains)), *starts]
    best: tuple[float, np.ndarray] | None = None
    for start in candidates:
        x0 = project_to_box_simplex(np.asarray(start, dtype=float), lower, upper)
        result = minimize(
            lambda w: float(fit.predict(w)[0]),
            x0,
            jac=fit.gradient,
            method="SLSQP",
            bounds=list(map(tuple, bounds)),
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": np.ones_like}],
            options={"maxiter": 1000, "ftol": 1e-14},
        )
        w = project_to_box_simplex(result.x, lower, upper)
        value = float(fit.predict(w)[0])
        if best is None or value < best[0]:
            best = (value, w)
    return best[1]  # type: ignore[index]


def dml_optimum(
    table: RunTable,
    objective: Objective,
    total_tokens: float | None = None,
    constraints: Constraints | None = None,
    delta: float = HUBER_DELTA,
) -> tuple[MixingLawFit, np.ndarray]:
    """Data Mixing Laws end to end on a run table of one scale: the fitted laws and the
    optimal weights (searched from uniform and from the best observed run). What ``mixscale
    dml`` and the methods study both run."""
    fit = fit_mixing_laws(table, objective, delta)
    observed = objective.evaluate(table.eval_domains, table.losses, table.source)
    best = table.tokens[int(observed.argmin())]
    total = fit.total_tokens if total_tokens is None else total_tokens
    return fit, optimal_weights(fit, total, constraints, starts=(best / best.sum(),))


def weight_bounds(constraints: Constraints, domains: list[str], total: float) -> np.ndarray:
    """(domains x 2) bounds on the weights at a total."""
    return np.array([np.array(token_bounds(constraints, d, total)) / total for d in domains])


def project_to_box_simplex(w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The closest point to w with lower <= w <= upper and sum 1 (bisection on the shift)."""
    lo, hi = float((lower - w).min()) - 1.0, float((upper - w).max()) + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.clip(w + mid, lower, upper).sum() > 1.0:
            hi = mid
        else:
            lo = mid
    return np.clip(w + 0.5 * (lo + hi), lower, upper)


def weights_result(
    method: str,
    domains: list[str],
    weights: np.ndarray,
    total_tokens: float,
    predicted: float,
    objective: Objective,
) -> dict[str, Any]:
    """WEIGHTS.json, the shape ``ddo`` writes: weights, tokens at the target total, the
    predicted objective."""
    weights = weights / weights.sum()
    return {
        "method": method,
        "total_tokens": float(total_tokens),
        "weights": {d: float(w) for d, w in zip(domains, weights, strict=True)},
        "tokens": {d: float(w * total_tokens) for d, w in zip(domains, weights, strict=True)},
        "predicted_objective": float(predicted),
        "fit_objective": objective.describe(),
    }
