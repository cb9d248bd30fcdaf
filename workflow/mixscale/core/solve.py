"""DDO step 2: minimise sum_j f_j(n_j) subject to sum_j c_j n_j = R and lo_j <= n_j <= hi_j.

Each f_j(n) = A_j (S_j + n)^-b_j is convex and decreasing, so the problem is convex and
separable. The KKT conditions say f_j'(n_j) = -mu * c_j for every domain strictly inside its
bounds, which gives n_j in closed form for a given multiplier mu:

    n_j(mu) = clip((A_j b_j / (mu c_j)) ** (1 / (b_j + 1)) - S_j, lo_j, hi_j)

sum_j c_j n_j(mu) falls monotonically in mu, so a 1-D root search on log(mu) finds the
optimum, then one Newton step polishes it to machine precision. With c_j = 1 and R = N this
is DDO on the simplex (weights n_j / N); with c_j = cost per token and R = a budget it buys
the best mixture for the money.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from mixscale.errors import InputError


@dataclass(frozen=True)
class Problem:
    A: np.ndarray
    S: np.ndarray
    b: np.ndarray
    lower: np.ndarray  # tokens
    upper: np.ndarray  # tokens, may be inf
    cost: np.ndarray  # per token, > 0
    resource: float  # sum(cost * n) must equal this

    @property
    def size(self) -> int:
        return len(self.A)


def _tokens_at(problem: Problem, log_mu: float) -> np.ndarray:
    # log(S + n) = (log(A b) - log mu - log c) / (b + 1): computed in logs to avoid overflow
    log_sn = (np.log(problem.A * problem.b) - log_mu - np.log(problem.cost)) / (problem.b + 1.0)
    n = np.exp(np.minimum(log_sn, 700.0)) - problem.S
    return np.clip(n, problem.lower, problem.upper)


def _spent(problem: Problem, log_mu: float) -> float:
    return float(problem.cost @ _tokens_at(problem, log_mu))


def check_feasible(problem: Problem, source: str = "solve") -> None:
    if np.any(problem.lower > problem.upper):
        j = int(np.flatnonzero(problem.lower > problem.upper)[0])
        raise InputError(source, f"domain {j}", "minimum above maximum", "loosen the bounds")
    low = float(problem.cost @ problem.lower)
    high = float(problem.cost @ problem.upper)
    scale = max(abs(problem.resource), 1.0)
    if low > problem.resource * (1 + 1e-12) + 1e-12 * scale:
        raise InputError(
            source,
            "min-weight/lower bounds",
            f"the minimums already need {low:.6g} > {problem.resource:.6g}",
            "lower the minimum weights",
        )
    if high < problem.resource * (1 - 1e-12) - 1e-12 * scale:
        raise InputError(
            source,
            "max-weight/max-tokens",
            f"the maximums allow only {high:.6g} < {problem.resource:.6g}",
            "raise the caps, allow more epochs, or lower the total",
        )


def solve(problem: Problem, source: str = "solve") -> np.ndarray:
    """Optimal tokens per domain. Exact up to floating point; O(m) per root-search step."""
    check_feasible(problem, source)
    if problem.size == 0:
        return np.zeros(0)
    target = problem.resource
    lo, hi = -50.0, 50.0
    while _spent(problem, lo) < target:  # small mu = large n; widen until the root is bracketed
        lo -= 50.0
        if lo < -5000:
            break
    while _spent(problem, hi) > target:
        hi += 50.0
        if hi > 5000:
            break
    log_mu = brentq(lambda x: _spent(problem, x) - target, lo, hi, xtol=1e-14, rtol=1e-15)
    n = _tokens_at(problem, log_mu)
    return _polish(problem, n)


def _polish(problem: Problem, n: np.ndarray) -> np.ndarray:
    """Put the last floating-point residual of the constraint on the interior domains."""
    for _ in range(2):
        gap = problem.resource - float(problem.cost @ n)
        free = (n > problem.lower) & (n < problem.upper)
        if not np.any(free) or gap == 0.0:
            break
        # Spread the gap in proportion to each free domain's sensitivity d n_j / d log(mu).
        sens = (problem.S[free] + n[free]) / (problem.b[free] + 1.0)
        step = gap / float(problem.cost[free] @ sens)
        n_new = n.copy()
        n_new[free] = np.clip(n[free] + step * sens, problem.lower[free], problem.upper[free])
        n = n_new
    return n


def objective_value(problem: Problem, n: np.ndarray) -> float:
    return float(np.sum(problem.A * np.power(problem.S + n, -problem.b)))
