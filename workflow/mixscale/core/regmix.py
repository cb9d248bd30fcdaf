"""RegMix (Liu et al. 2024, arXiv 2407.01492): proxy runs over mixtures sampled around the
natural proportions, a regressor from mixture to objective, then many simulated mixtures scored
by the regressor and the best ``top_k`` averaged.

Choices taken from the authors' code (sail-sg/regmix): the proxy mixtures come from Dirichlet
draws with concentration prior**temperature x strength (temperature 0.5; 15 strengths on a log
grid from 0.1 to 5, one picked at random per draw), rejected if a weight exceeds its cap
(the authors: 15 epochs of the domain's share), weights under 2e-4 set to 0, rounded to
multiples of 2e-4, near-duplicates dropped; the regressor is LightGBM (gbdt, regression
objective, 1,000 iterations, learning rate 0.01, seed 42); the simulation draws 100,000
mixtures from Dirichlet(prior) and averages the 128 with the lowest prediction.

Where mixscale differs, and why: the target is the experiment's objective (the authors regress
one domain's loss, Pile-CC, which is one choice of the objective); LightGBM's minimum leaf size
is scaled down for small sweeps (its default of 20 runs per leaf would not split a 32-run sweep
at all; the authors had 512 runs); simulated mixtures that break the caps are dropped, so the
average obeys them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixscale.core.objective import Objective
from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

TEMPERATURE = 0.5
STRENGTHS = (0.1, 5.0, 15)  # log grid: lowest, highest, count
MINIMUM_WEIGHT = 2e-4
SAMPLE_MULTIPLIER = 100  # draws per requested mixture before the caps reject some
CANDIDATES = 100_000
TOP_K = 128
REGRESSORS = ("lightgbm", "linear")
LIGHTGBM = {
    "boosting_type": "gbdt",
    "objective": "regression",
    "n_estimators": 1000,
    "learning_rate": 1e-2,
    "num_leaves": 31,
    "verbosity": -1,
    "n_jobs": 1,  # one Snakemake job, one core; and the same trees on every run
    "deterministic": True,
    "force_row_wise": True,
}


def sample_mixtures(
    prior: np.ndarray,
    count: int,
    seed: int,
    caps: np.ndarray | None = None,
    temperature: float = TEMPERATURE,
) -> np.ndarray:
    """``count`` distinct proxy mixtures (count x domains), RegMix's generator."""
    if temperature <= 0:
        raise InputError("regmix", "temperature", f"{temperature:g} must be > 0", "e.g. 0.5")
    prior = np.asarray(prior, dtype=float) / np.sum(prior)
    caps = np.ones_like(prior) if caps is None else np.minimum(np.asarray(caps, float), 1.0)
    concentration = prior**temperature
    concentration /= concentration.sum()
    rng = np.random.default_rng(seed)
    strengths = np.logspace(np.log10(STRENGTHS[0]), np.log10(STRENGTHS[1]), STRENGTHS[2])
    draws = count * SAMPLE_MULTIPLIER
    picked = strengths[rng.integers(0, len(strengths), draws)]
    samples = rng.gamma(concentration[None, :] * picked[:, None])  # Dirichlet via gammas
    sums = samples.sum(axis=1, keepdims=True)
    samples = np.divide(samples, sums, out=np.zeros_like(samples), where=sums > 0)
    samples = samples[(sums[:, 0] > 0) & np.all(samples <= caps, axis=1)]
    samples = np.where(samples < MINIMUM_WEIGHT, 0.0, samples)
    samples = np.round(samples / MINIMUM_WEIGHT) * MINIMUM_WEIGHT
    samples = samples[samples.sum(axis=1) > 0]
    samples = samples / samples.sum(axis=1, keepdims=True)
    distinct = np.unique(np.round(samples, 6), axis=0)
    if len(distinct) < count:
        raise InputError(
            "regmix",
            "runs",
            f"only {len(distinct)} distinct mixtures within the caps for {count} runs",
            "ask for fewer runs, or loosen the caps (more data or epochs)",
        )
    chosen = distinct[np.sort(rng.choice(len(distinct), size=count, replace=False))]
    return chosen / chosen.sum(axis=1, keepdims=True)


def regmix_parameters(regressor: str, domains: int) -> int:
    """Distinct mixtures the regressor needs: a coefficient per domain (linear), or a few
    leaves' worth (LightGBM: fewer than 4 mixtures cannot rank anything)."""
    return domains if regressor == "linear" else 4


@dataclass
class RegMixFit:
    train_domains: list[str]
    regressor: str
    model: Any  # LightGBM regressor or least-squares coefficients
    objective: Objective
    runs: int
    spearman_in_sample: float
    held: dict[str, float] = field(default_factory=dict)  # domains the runs never varied
    warnings: list[str] = field(default_factory=list)

    def predict(self, weights: np.ndarray) -> np.ndarray:
        weights = np.atleast_2d(weights)
        if self.regressor == "linear":
            return weights @ self.model
        return np.asarray(self.model.predict(weights), dtype=float)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": "regmix",
            "regressor": self.regressor,
            "objective": self.objective.describe(),
            "runs": self.runs,
            "spearman_in_sample": self.spearman_in_sample,
            "held_domains": dict(self.held),
        }
        if self.regressor == "linear":
            pairs = zip(self.train_domains, self.model, strict=True)
            data["coefficients"] = {d: float(c) for d, c in pairs}
        return data


def fit_regmix(
    weights: np.ndarray,
    objective_values: np.ndarray,
    train_domains: list[str],
    objective: Objective,
    regressor: str = "lightgbm",
    seed: int = 42,
) -> RegMixFit:
    if regressor not in REGRESSORS:
        raise InputError("--regressor", regressor, "unknown regressor", f"use {REGRESSORS}")
    n = len(weights)
    if n < 4:
        raise InputError("regmix", "runs", f"{n} runs", "RegMix regresses on many runs: give 16+")
    if regressor == "linear":
        model, *_ = np.linalg.lstsq(weights, objective_values, rcond=None)
    else:
        import lightgbm

        # a leaf needs min_child_samples runs: LightGBM's 20 would not split a small sweep
        leaf = max(2, min(20, n // 8))
        model = lightgbm.LGBMRegressor(**LIGHTGBM, random_state=seed, min_child_samples=leaf)
        model.fit(weights, objective_values)
    fit = RegMixFit(list(train_domains), regressor, model, objective, n, float("nan"))
    fit.spearman_in_sample = spearman(fit.predict(weights), objective_values)
    return fit


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(x, kind="stable"), kind="stable") for x in (a, b)]
    if np.std(ranks[0]) == 0 or np.std(ranks[1]) == 0:
        return float("nan")
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


def simulate_optimum(
    fit: RegMixFit,
    prior: np.ndarray,
    seed: int,
    lower: np.ndarray,
    upper: np.ndarray,
    candidates: int = CANDIDATES,
    top_k: int = TOP_K,
) -> tuple[np.ndarray, float]:
    """The mean of the ``top_k`` best of ``candidates`` Dirichlet(prior) mixtures within the
    bounds, and its predicted objective. A domain the runs held at one weight (``fit.held``)
    is at that weight in every candidate; the others share the rest in their drawn ratios."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=float) / np.sum(prior)
    samples = rng.dirichlet(np.maximum(prior, 1e-6), candidates)
    if fit.held:
        held = np.array([d in fit.held for d in fit.train_domains])
        pinned = np.array([fit.held.get(d, 0.0) for d in fit.train_domains])
        free = samples[:, ~held]
        samples = np.tile(pinned, (len(samples), 1))
        samples[:, ~held] = free * (1.0 - pinned.sum()) / free.sum(axis=1, keepdims=True)
    samples = samples[np.all((samples >= lower - 1e-12) & (samples <= upper + 1e-12), axis=1)]
    if len(samples) < top_k:
        raise InputError(
            "regmix",
            "bounds",
            f"{len(samples)} of {candidates} simulated mixtures within the weight bounds",
            "loosen --min-weight/--max-weight or the caps (--max-tokens, --max-epochs)",
        )
    scores = fit.predict(samples)
    best = samples[np.argsort(scores, kind="stable")[:top_k]]
    weights = best.mean(axis=0)
    return weights, float(fit.predict(weights)[0])


def regmix_optimum(
    table: RunTable,
    objective: Objective,
    total_tokens: float | None = None,
    prior: np.ndarray | None = None,
    constraints: Any = None,  # mixscale.core.ddo.Constraints
    regressor: str = "lightgbm",
    seed: int = 42,
    candidates: int = CANDIDATES,
    top_k: int = TOP_K,
) -> tuple[RegMixFit, np.ndarray, float, np.ndarray]:
    """RegMix end to end on a run table of one scale: the regressor, the mean of the top-k
    simulated mixtures, its predicted objective, and the prior the candidates were drawn from
    (default: the runs' mean mixture). What ``mixscale regmix`` and the methods study run."""
    # here, not at the top: the workflow plans RegMix's proxy runs from this module without
    # the fit and solver (scipy), which every dry run would otherwise import
    from mixscale.core.ddo import Constraints, check_constraint_names
    from mixscale.core.mixlaws import check_sampled_design, held_bounds, run_weights, weight_bounds

    weights, scale = run_weights(table)
    if regressor not in REGRESSORS:
        raise InputError("--regressor", regressor, "unknown regressor", f"use {REGRESSORS}")
    parameters = regmix_parameters(regressor, len(table.train_domains))
    design = check_sampled_design(weights, table.train_domains, table.source, "RegMix", parameters)
    observed = objective.evaluate(table.eval_domains, table.losses, table.source)
    fit = fit_regmix(weights, observed, table.train_domains, objective, regressor, seed)
    fit.held, fit.warnings = design.held, design.warnings
    prior = weights.mean(axis=0) if prior is None else np.asarray(prior, dtype=float)
    constraints = constraints or Constraints()
    check_constraint_names(constraints, table.train_domains)
    total = scale if total_tokens is None else total_tokens
    bounds = weight_bounds(constraints, table.train_domains, total)
    held_bounds(bounds, fit.held, table.train_domains)  # a held weight must be within them
    if top_k < 1 or candidates < top_k:
        raise InputError("--top-k", str(top_k), "must be in [1, --candidates]", "e.g. 128")
    best, predicted = simulate_optimum(
        fit, prior, seed, bounds[:, 0], bounds[:, 1], candidates, top_k
    )
    return fit, best, predicted, prior
