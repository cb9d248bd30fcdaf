"""The design advisor: how many seeds, which perturbation factor and which scales a DDO sweep
needs for its weights to be within a stated error, at a stated confidence, and what each costs.

From a pilot (a run table with replicate seeds, e.g. the first DDO scale of a sweep):

1. **Noise.** The seed standard deviation of the objective, pooled over replicated mixtures.
   When seeds are shared across mixtures (seed s of every mixture), a seed's effect common to
   all its mixtures cancels from the differences the fit reads, so the noise that matters is
   the residual after removing mixture and seed effects; both are reported. The advisor plans
   for the upper end of the noise's confidence interval (chi-square), not its point estimate.
2. **The user's fitted world.** The pilot's per-domain fits f_j(n) = A (S + n)^-b become a
   simulated world with one skill per domain, fed by its own domain's tokens and, through
   Eq. 2's offset S, by a share S / N_pilot of every token (so the offset grows with scale,
   as the other domains' contribution does). A domain without a usable fit is given the
   strongest curve the pilot could have missed: the median exponent of the usable ones (0.3 if
   none), its up-weighting effect one noise standard error.
3. **Simulation.** Each candidate design (seeds, factor, scales) is run many times in that
   world with the planned noise: DDO at each scale, AutoScale to the target. The error is the
   seed-noise error: the L1 distance (sum |w - w'|, 0 to 2) of the weights from what the same
   design gives without noise, i.e. with infinitely many seeds. A design meets the promise
   when an upper confidence bound on the error's ``confidence`` quantile (an order statistic,
   binomial) is within ``error``. Each design also reports how often every scale's trust
   verdict is "usable" (the report's signal line).
4. **Cost.** Proxy tokens of each design (every run of every scale), and GPU-hours through the
   budget model when a config is given. The advice is the cheapest design meeting the promise.

What the promise does not cover: the error that more seeds cannot remove (the fit form where
the world is not a sum of per-domain power laws, the extrapolation of AutoScale's rule; the
method study, docs/study.md, measures those). tests/test_advise.py checks the advice on held-out
trials in latent-skill worlds the fitted world only approximates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixscale.core.fit import FitResult, fit_runs, scale_verdict
from mixscale.core.objective import Objective
from mixscale.core.runtable import RunTable
from mixscale.core.study import ddo_optimum, predictions, sweep_table
from mixscale.core.world import World
from mixscale.errors import InputError

SEED_STEPS = (1, 2, 3, 4, 6, 8, 12, 16)
FACTORS = (2.0, 3.0, 5.0)
# the exponent assumed when no domain of the pilot has a usable fit: the middle of the skill
# exponents of the simulated RedPajama world (0.15-0.46), where DDO's curves live
DEFAULT_EXPONENT = 0.3
BOUND_LEVEL = 0.9  # confidence of the upper bound on the error quantile a design promises


@dataclass(frozen=True)
class Noise:
    """The objective's per-run seed noise: ``sd`` with its interval ``low``-``high``."""

    sd: float
    low: float
    high: float
    dof: int
    kind: str  # "replicates", "paired seeds" or "given"
    within_sd: float | None = None  # pooled within-mixture sd (includes shared seed effects)
    shared_seed_sd: float | None = None  # sd of the seed effect common to all mixtures

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Design:
    seeds: int
    factor: float
    scales: tuple[float, ...]

    def runs(self, domains: int) -> int:
        return self.seeds * (1 + 2 * domains) * len(self.scales)

    def tokens(self, base: np.ndarray) -> float:
        """Proxy tokens of every run: Algorithm 1 changes one domain's tokens per run."""
        per_total = 1 + sum(self.factor * p + (1 - p) + p / self.factor + (1 - p) for p in base)
        return float(self.seeds * per_total * sum(self.scales))

    def label(self) -> str:
        scales = "/".join(f"{s:.3g}" for s in self.scales)
        return f"{self.seeds} seeds, x{self.factor:g}, scales {scales}"


def _chi2_interval(sd: float, dof: int, confidence: float) -> tuple[float, float]:
    from scipy.stats import chi2

    tail = (1 - confidence) / 2
    return (
        sd * math.sqrt(dof / chi2.ppf(1 - tail, dof)),
        sd * math.sqrt(dof / chi2.ppf(tail, dof)),
    )


def estimate_noise(
    table: RunTable, objective: Objective | None = None, confidence: float = 0.9
) -> Noise:
    """The seed noise of a pilot's objective, from its replicated mixtures."""
    y = (objective or Objective()).evaluate(table.eval_domains, table.losses, table.source)
    groups = [g for g in table.mixture_groups() if len(g) > 1]
    if not groups:
        raise InputError(
            table.source,
            "seed",
            "no mixture was run with two or more seeds: the noise cannot be measured",
            "run the base mixture (better: every mixture) with 2+ seeds, or give --noise SD",
        )
    ss = sum(float(((y[g] - y[g].mean()) ** 2).sum()) for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    within = math.sqrt(ss / dof)
    paired = _paired_residual(y, groups, table.seeds)
    if paired is None:
        low, high = _chi2_interval(within, dof, confidence)
        return Noise(within, low, high, dof, "replicates", within_sd=within)
    sd, pdof = paired
    low, high = _chi2_interval(sd, pdof, confidence)
    shared = math.sqrt(max(within**2 - sd**2, 0.0))
    return Noise(sd, low, high, pdof, "paired seeds", within_sd=within, shared_seed_sd=shared)


def _paired_residual(
    y: np.ndarray, groups: list[list[int]], seeds: list[str]
) -> tuple[float, int] | None:
    """Residual sd after mixture and seed effects (two-way least squares), when seeds repeat
    across at least two replicated mixtures; None otherwise."""
    rows = [r for g in groups for r in g]
    labels = sorted({seeds[r] for r in rows})
    shared = [s for s in labels if sum(any(seeds[r] == s for r in g) for g in groups) >= 2]
    if len(shared) < 2:
        return None
    X = np.zeros((len(rows), len(groups) + len(labels) - 1))
    for i, r in enumerate(rows):
        X[i, next(k for k, g in enumerate(groups) if r in g)] = 1.0
        k = labels.index(seeds[r])
        if k:
            X[i, len(groups) + k - 1] = 1.0
    coef, _, rank, _ = np.linalg.lstsq(X, y[rows], rcond=None)
    dof = len(rows) - int(rank)
    if dof < 1:
        return None
    resid = y[rows] - X @ coef
    return math.sqrt(float(resid @ resid) / dof), dof


def fitted_world(fit: FitResult, noise_sd: float, seeds: int, factor: float) -> World:
    """The pilot's fit as a world with one skill per domain; see the module docstring."""
    domains = list(fit.domains)
    usable = [d for d in domains if fit.domains[d].usable]
    scale = fit.objective_scale
    curves = {d: fit.domains[d].canonical(fit.unit) for d in usable}
    median_b = float(np.median([c.b for c in curves.values()])) if curves else DEFAULT_EXPONENT
    beta, gamma, share = [], [], []
    for d in domains:
        if d in curves:
            c = curves[d]
            beta.append(scale * c.A)
            gamma.append(c.b)
            share.append(c.S / fit.base_total_tokens)
            continue
        # the strongest curve the pilot could have missed: its x factor drop = one noise SE
        n0 = max(fit.domains[d].base_tokens, 1.0)
        se = noise_sd * math.sqrt(2 / seeds)
        beta.append(se / (n0**-median_b * (1 - factor**-median_b)))
        gamma.append(median_b)
        share.append(0.0)
    m = len(domains)
    # Eq. 2's offset S is the equivalent data the other domains give this domain's skill: a
    # share of the total that grows with it (K_j = n_j + S_j / N_pilot x N), not a constant
    return World(
        name="fitted",
        domains=domains,
        skills=[f"f_{d}" for d in domains],
        beta=np.array(beta),
        gamma=np.array(gamma),
        A=np.eye(m) + np.outer(share, np.ones(m)),
        E=np.ones((1, m)),
        eval_domains=["objective"],
        irreducible=float(scale * fit.intercept),
        sigma=float(noise_sd),
        sigma_domain=0.0,
    )


def design_weights(
    world: World,
    design: Design,
    target: float | None,
    base: np.ndarray,
    trial: int,
    trust_region: bool = True,
) -> tuple[dict[str, np.ndarray | None], bool]:
    """One trial of a design: DDO's tokens at each scale, AutoScale's and transfer's weights
    at the target; and whether the trust verdict was "usable" at every scale."""
    out: dict[str, np.ndarray | None] = {}
    usable = True
    for s in design.scales:
        table = sweep_table(world, s, design.factor, design.seeds, trial, base)
        out[f"ddo {s:.3g}"], fit = ddo_optimum(table, s, trust_region)
        usable = usable and scale_verdict(fit.to_json()) == "usable"
    if target is not None:
        pred = predictions([out[f"ddo {s:.3g}"] for s in design.scales], world.domains, target)
        out["autoscale"], out["transfer"] = pred["autoscale"], pred["transfer"]
    return out, usable


def design_errors(
    world: World,
    design: Design,
    target: float | None,
    base: np.ndarray,
    trials: int,
    trust_region: bool = True,
    first_trial: int = 0,
) -> dict[str, np.ndarray]:
    """Seed-noise errors over trials: the L1 distance of each weight vector from what the same
    design gives without noise (infinitely many seeds; a method that fails scores 2), and
    ``usable``: whether every scale's trust verdict was "usable"."""
    quiet = dataclasses.replace(world, sigma=0.0, sigma_domain=0.0)
    one_seed = dataclasses.replace(design, seeds=1)
    reference, _ = design_weights(quiet, one_seed, target, base, 0, trust_region)
    out: dict[str, list[float]] = {k: [] for k in [*reference, "usable"]}
    for t in range(first_trial, first_trial + trials):
        weights, usable = design_weights(world, design, target, base, t, trust_region)
        for k, w in weights.items():
            ref = reference[k]
            out[k].append(2.0 if w is None or ref is None else l1(w, ref))
        out["usable"].append(float(usable))
    return {k: np.array(v) for k, v in out.items()}


def l1(tokens_or_weights: np.ndarray, best: np.ndarray) -> float:
    """Sum of |w - w*| of two mixtures given as tokens or weights (0: equal, 2: disjoint)."""
    w = np.asarray(tokens_or_weights, float)
    return float(np.abs(w / w.sum() - best / best.sum()).sum())


def quantile_bound(errors: np.ndarray, confidence: float, level: float = BOUND_LEVEL) -> float:
    """An upper ``level`` confidence bound on the errors' ``confidence`` quantile: the
    smallest order statistic X_(k) with P(X_(k) >= q) >= level (binomial); inf when the
    trials are too few for any."""
    from scipy.stats import binom

    x = np.sort(errors)
    n = len(x)
    for k in range(1, n + 1):  # P(X_(k) >= q) = P(Binomial(n, confidence) <= k - 1)
        if binom.cdf(k - 1, n, confidence) >= level:
            return float(x[k - 1])
    return math.inf


def promised_error(errors: dict[str, np.ndarray], target: float | None) -> np.ndarray:
    """The error the promise is about: AutoScale's at the target, else the largest scale's
    DDO weights."""
    if target is not None:
        return errors["autoscale"]
    return errors[[k for k in errors if k.startswith("ddo ")][-1]]


def candidate_scale_sets(scales: tuple[float, ...]) -> list[tuple[float, ...]]:
    """The given scales, and the same largest scale with the smaller one 3x and 10x below."""
    largest = scales[-1]
    out = [tuple(scales)]
    for ratio in (3.0, 10.0):
        option = (largest / ratio, largest)
        if all(not np.allclose(option, o) for o in out if len(o) == 2):
            out.append(option)
    return out


def advise(
    pilot: RunTable,
    scales: tuple[float, ...],
    target: float | None,
    error: float,
    confidence: float,
    objective: Objective | None = None,
    noise: float | None = None,
    trials: int = 40,
    factors: tuple[float, ...] = FACTORS,
    max_seeds: int = 8,
    scale_sets: list[tuple[float, ...]] | None = None,
    cost_per_token: float | None = None,
    trust_region: bool = True,
) -> dict[str, Any]:
    """Every candidate design's promised error and cost, and the cheapest that meets it."""
    _check(scales, target, error, confidence, trials)
    objective = objective or Objective()
    measured = estimate_noise(pilot, objective) if noise is None else None
    planned = measured.high if measured else float(noise)
    fit = fit_runs(pilot, objective)
    base = np.array([fit.domains[d].base_weight for d in pilot.train_domains])
    pilot_seeds = max(len(g) for g in pilot.mixture_groups())
    pilot_factor = _pilot_factor(fit)
    world = fitted_world(fit, planned, pilot_seeds, pilot_factor)
    sets = scale_sets or candidate_scale_sets(scales)
    seeds_steps = [s for s in SEED_STEPS if s <= max_seeds]
    rows = []
    for scale_set in sets:
        for factor in factors:
            rows += _seed_search(
                world, scale_set, factor, seeds_steps, target, base, trials, error,
                confidence, trust_region,
            )  # fmt: skip
    for row in rows:
        row["proxy_tokens"] = Design(row["seeds"], row["factor"], tuple(row["scales"])).tokens(base)
        row["runs"] = Design(row["seeds"], row["factor"], tuple(row["scales"])).runs(len(base))
        if cost_per_token is not None:
            row["gpu_hours"] = row["proxy_tokens"] * cost_per_token
    meeting = [r for r in rows if r["meets"]]
    best = min(meeting, key=lambda r: r["proxy_tokens"]) if meeting else None
    return {
        "promise": {
            "error": error,
            "confidence": confidence,
            "of": "AutoScale's weights at the target" if target else "DDO at the largest scale",
            "metric": "seed-noise error: L1 distance of the weights from what the same design "
            "gives without noise, i.e. with infinitely many seeds (0 to 2)",
        },
        "noise": measured.as_dict() if measured else {"sd": planned, "kind": "given"},
        "planned_noise_sd": planned,
        "fitted_world": {
            "domains": world.domains,
            "exponents": world.gamma.tolist(),
            "assumed": [d for d in pilot.train_domains if not fit.domains[d].usable],
            "base_weights": base.tolist(),
            "pilot_total_tokens": fit.base_total_tokens,
        },
        "target": target,
        "trials": trials,
        "designs": rows,
        "recommended": best,
        "verdict": _verdict(best, error, confidence),
    }


def _seed_search(
    world, scale_set, factor, seeds_steps, target, base, trials, error, confidence, tr
) -> list[dict[str, Any]]:
    """Designs of one factor and scale set: the fewest and most seeds, then bisection to the
    fewest that meet the promise (the error falls with seeds): a few simulations, not all."""
    results: dict[int, dict[str, Any]] = {}

    def run(i: int) -> bool:
        design = Design(seeds_steps[i], factor, tuple(scale_set))
        errors = design_errors(world, design, target, base, trials, tr)
        bound = quantile_bound(promised_error(errors, target), confidence)
        results[i] = {
            "seeds": design.seeds,
            "factor": factor,
            "scales": list(design.scales),
            "error_bound": bound,
            "median_error": {k: float(np.median(v)) for k, v in errors.items() if k != "usable"},
            "usable_rate": float(errors["usable"].mean()),
            "meets": bound <= error,
        }
        return bound <= error

    last = len(seeds_steps) - 1
    if not run(0) and run(last):
        lo, hi = 0, last  # lo fails, hi meets: bisect to the fewest seeds that meet
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if run(mid) else (mid, hi)
    return [results[i] for i in sorted(results)]


def _pilot_factor(fit: FitResult) -> float:
    highs = [d.diagnostics.get("factor_high") for d in fit.domains.values()]
    highs = [h for h in highs if h]
    return float(np.median(highs)) if highs else 3.0


def _verdict(best: dict[str, Any] | None, error: float, confidence: float) -> str:
    if best is None:
        return (
            f"no candidate design reaches an error of {error:g} at {confidence:.0%}: "
            "allow more seeds (--max-seeds), a looser error, or larger proxy scales"
        )
    return (
        f"{best['seeds']} seed(s), factor {best['factor']:g}, scales "
        + "/".join(f"{s:.3g}" for s in best["scales"])
        + f": error <= {best['error_bound']:.3g} in {confidence:.0%} of trials"
    )


def _check(scales, target, error, confidence, trials) -> None:
    if len(scales) < 1 or any(s <= 0 for s in scales) or list(scales) != sorted(scales):
        raise InputError("advise", "--scales", f"{scales}", "increasing positive token totals")
    if target is not None and len(scales) < 2:
        raise InputError("advise", "--scales", "one scale", "AutoScale needs two or more scales")
    if target is not None and target <= 0:
        raise InputError("advise", "--target", f"{target:g}", "a positive token total")
    if not 0 < error < 2:
        raise InputError("advise", "--error", f"{error:g}", "an L1 weight error between 0 and 2")
    if not 0.5 <= confidence < 1:
        raise InputError("advise", "--confidence", f"{confidence:g}", "from 0.5 to below 1")
    fewest = math.ceil(math.log(1 - BOUND_LEVEL) / math.log(confidence))
    if not fewest <= trials <= 5000:
        # fewer trials than this cannot bound the quantile: even the largest error might lie
        # below it with probability above 1 - BOUND_LEVEL
        raise InputError(
            "advise", "--trials", f"{trials}", f"{fewest} to 5000 at confidence {confidence:g}"
        )


def format_advice(result: dict[str, Any]) -> str:
    """The advice as a table for the terminal (also what ``mixscale budget --pilot`` prints)."""
    noise = result["noise"]
    promise = result["promise"]
    lines = [
        f"noise: seed sd of the objective {noise['sd']:.4g} ({noise['kind']}"
        + (
            f", 90% interval {noise['low']:.4g}-{noise['high']:.4g}, {noise['dof']} dof"
            if noise["kind"] != "given"
            else ""
        )
        + f"); planned for {result['planned_noise_sd']:.4g}",
    ]
    if noise.get("shared_seed_sd"):
        lines.append(
            f"  a seed's effect shared by all its mixtures: sd {noise['shared_seed_sd']:.4g} "
            f"(cancels from paired differences; within-mixture sd {noise['within_sd']:.4g})"
        )
    assumed = result["fitted_world"]["assumed"]
    if assumed:
        lines.append(f"  no usable fit for {', '.join(assumed)}: assumed effects of one noise SE")
    lines.append(
        f"promise: seed-noise error of {promise['of']} <= {promise['error']:g} (L1) in "
        f"{promise['confidence']:.0%} of trials ({result['trials']} simulated per design)"
    )
    has_hours = any("gpu_hours" in d for d in result["designs"])
    head = f"{'seeds':>5} {'factor':>6} {'scales':<22}{'runs':>6}{'tokens':>10}"
    head += f"{'GPU-h':>9}" if has_hours else ""
    lines.append(head + f"{'error bound':>12}{'usable':>8}  meets")
    for d in result["designs"]:
        scales = "/".join(f"{s:.3g}" for s in d["scales"])
        row = f"{d['seeds']:>5} {d['factor']:>6g} {scales:<22}"
        row += f"{d['runs']:>6}{d['proxy_tokens']:>10.3g}"
        row += f"{d['gpu_hours']:>9.3g}" if has_hours else ""
        bound = d["error_bound"]
        row += f"{bound:>12.3g}" if math.isfinite(bound) else f"{'-':>12}"
        row += f"{d['usable_rate']:>8.0%}  {'yes' if d['meets'] else 'no'}"
        lines.append(row)
    lines.append(f"advice: {result['verdict']}")
    return "\n".join(lines)
