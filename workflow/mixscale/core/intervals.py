"""Intervals over seeds for verification: is one method's objective different from another's?

Verification trains each method with the same seeds (the same data order and initialisation per
seed), so methods are compared *paired by seed*: the per-seed difference removes the noise the
two runs share. The interval of the mean difference is the wider of two:

- the percentile bootstrap over seeds (resampling the seeds with replacement), and
- Student's t interval.

With 3-5 seeds the bootstrap alone is too narrow (3 seeds have only 10 distinct resampled means,
and it ignores that the spread itself is estimated); t assumes normal differences. Taking the
wider keeps "distinguishable from zero" from being claimed on the strength of either assumption
alone. One seed gives no interval at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.9
RESAMPLES = 4000


def mean_interval(
    values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """The mean of ``values`` with its interval (None with fewer than two values)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    out: dict[str, Any] = {"n": n, "mean": float(x.mean()) if n else None, "level": level}
    if n < 2:
        out.update(interval=None, bootstrap=None, t=None)
        return out
    alpha = (1 - level) / 2
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    boot = [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]
    half = float(stats.t.ppf(1 - alpha, n - 1) * x.std(ddof=1) / np.sqrt(n))
    t = [float(x.mean()) - half, float(x.mean()) + half]
    out.update(bootstrap=boot, t=t, interval=[min(boot[0], t[0]), max(boot[1], t[1])])
    return out


def paired_difference(
    a: dict[str, float], b: dict[str, float], level: float = LEVEL, seed: int = 0
) -> dict[str, Any]:
    """Mean of a[s] - b[s] over the seeds both have, with its interval, and whether the
    interval excludes zero (None when it cannot be told: fewer than two shared seeds)."""
    shared = sorted(set(a) & set(b), key=str)
    result = mean_interval([a[s] - b[s] for s in shared], level, seed=seed)
    result["seeds"] = shared
    interval = result["interval"]
    result["distinguishable"] = (
        None if interval is None else bool(interval[0] > 0 or interval[1] < 0)
    )
    return result


def verdict(difference: dict[str, Any]) -> str:
    """A word for a paired difference of a lower-is-better objective."""
    if difference["distinguishable"] is None:
        return "one seed: no interval"
    if not difference["distinguishable"]:
        return "not distinguishable"
    return "lower" if difference["mean"] < 0 else "higher"
