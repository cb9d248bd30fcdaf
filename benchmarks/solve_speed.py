"""Time mixscale's KKT solver against scipy on the same random DDO instances, same process.

Usage: python benchmarks/solve_speed.py [--repeats 21]
Prints median wall time per solve, the speed ratio, and the relative objective gap
(ours - scipy) / scipy after rescaling scipy's answer onto the simplex (SLSQP leaves ~1e-10
slack in sum(w) = 1, which would otherwise let it look 1e-9 better); negative = ours lower.
scipy: SLSQP (dense) for m <= 100; for m = 10,000 SLSQP's dense O(m^2) memory and O(m^3)
steps do not finish in reasonable time, so trust-constr with a sparse equality constraint.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import scipy
from scipy.optimize import Bounds, LinearConstraint, minimize
from scipy.sparse import csr_matrix

from mixscale.core.solve import Problem, objective_value, solve


def instance(m: int, seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    return Problem(
        A=rng.uniform(1.0, 100.0, m),
        S=rng.uniform(0.0, 2e5, m),
        b=rng.uniform(0.1, 1.5, m),
        lower=np.zeros(m),
        upper=np.full(m, np.inf),
        cost=np.ones(m),
        resource=1e6 * m / 7,
    )


def scipy_solve(problem: Problem) -> np.ndarray:
    N, m = problem.resource, problem.size

    def f(w):
        return objective_value(problem, np.maximum(w, 1e-15) * N)

    def grad(w):
        n = np.maximum(w, 1e-15) * N
        return -problem.A * problem.b * np.power(problem.S + n, -problem.b - 1) * N

    x0 = np.full(m, 1 / m)
    if m <= 100:
        res = minimize(
            f,
            x0,
            jac=grad,
            method="SLSQP",
            bounds=[(0, 1)] * m,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
    else:

        def hess(w):
            n = np.maximum(w, 1e-15) * N
            d = problem.A * problem.b * (problem.b + 1) * np.power(problem.S + n, -problem.b - 2)
            from scipy.sparse import diags

            return diags(d * N * N)

        res = minimize(
            f,
            x0,
            jac=grad,
            hess=hess,
            method="trust-constr",
            bounds=Bounds(0, 1),
            constraints=[LinearConstraint(csr_matrix(np.ones((1, m))), 1, 1)],
            options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 3000},
        )
    return res.x * N


def timed(fn, problem: Problem, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(problem)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print(
        f"# solve speed: python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, {platform.machine()}"
    )
    print(
        f"{'m':>6} {'mixscale_ms':>12} {'scipy_ms':>10} {'speedup':>9} {'rel_gap':>10} "
        f"{'sum_w-1':>9}  scipy_method"
    )
    for m in (7, 100, 10_000):
        problem = instance(m, seed=m)
        ours_t, ours = timed(solve, problem, args.repeats)
        reps = args.repeats if m <= 100 else 1  # trust-constr takes minutes at m = 10,000
        ref_t, ref = timed(scipy_solve, problem, reps)
        ref = ref * problem.resource / ref.sum()  # scipy's constraint slack would flatter it
        gap = objective_value(problem, ours) - objective_value(problem, ref)
        method = "SLSQP" if m <= 100 else "trust-constr"
        print(
            f"{m:>6} {ours_t * 1e3:>12.3f} {ref_t * 1e3:>10.1f} {ref_t / ours_t:>8.0f}x "
            f"{gap / objective_value(problem, ref):>10.1e} "
            f"{ours.sum() / problem.resource - 1:>9.1e}  {method}"
        )


if __name__ == "__main__":
    main()
