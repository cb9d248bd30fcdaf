import numpy as np
import pytest
from scipy.optimize import minimize

from mixscale.core.ddo import Constraints, optimize
from mixscale.core.fit import DomainFit, FitResult
from mixscale.core.solve import Problem, objective_value, solve
from mixscale.errors import InputError


def random_problem(m: int, rng: np.random.Generator, total: float = 1e6, shifted=True) -> Problem:
    return Problem(
        A=rng.uniform(1.0, 100.0, m),
        S=rng.uniform(0.0, 2e5, m) if shifted else np.zeros(m),
        b=rng.uniform(0.1, 1.5, m),
        lower=np.zeros(m),
        upper=np.full(m, np.inf),
        cost=np.ones(m),
        resource=total,
    )


def scipy_reference(problem: Problem) -> np.ndarray:
    """Generic solver on weights (scaled to O(1)) for comparison only."""
    N = problem.resource
    m = problem.size

    def f(w):
        return objective_value(problem, np.maximum(w, 1e-12) * N)

    def grad(w):
        n = np.maximum(w, 1e-12) * N
        return -problem.A * problem.b * np.power(problem.S + n, -problem.b - 1) * N

    upper = np.minimum(problem.upper / N, 1.0)
    res = minimize(
        f,
        np.full(m, 1 / m),
        jac=grad,
        method="SLSQP",
        bounds=list(zip(problem.lower / N, upper, strict=True)),
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x * N


@pytest.mark.parametrize("seed", range(8))
def test_matches_scipy_on_random_instances(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 12))
    problem = random_problem(m, rng)
    if seed % 2:  # with bounds
        problem = Problem(
            **{
                **problem.__dict__,
                "lower": np.full(m, 0.02 * problem.resource),
                "upper": np.full(m, 0.4 * problem.resource),
            }
        )
    ours = solve(problem)
    ref = scipy_reference(problem)
    assert abs(ours.sum() / problem.resource - 1) < 1e-12
    assert np.all(ours >= problem.lower - 1e-9) and np.all(ours <= problem.upper + 1e-9)
    # never worse than the generic solver, and the same point
    assert objective_value(problem, ours) <= objective_value(problem, ref) + 1e-12
    assert np.allclose(ours / problem.resource, ref / problem.resource, atol=2e-5)


def test_kkt_holds_exactly():
    rng = np.random.default_rng(11)
    problem = random_problem(50, rng)
    n = solve(problem)
    slopes = problem.A * problem.b * np.power(problem.S + n, -problem.b - 1)
    interior = n > 0
    assert np.ptp(slopes[interior]) / slopes[interior].mean() < 1e-9


def test_ten_thousand_domains():
    rng = np.random.default_rng(2)
    problem = random_problem(10_000, rng, total=1e9)
    n = solve(problem)
    assert abs(n.sum() / problem.resource - 1) < 1e-12
    assert np.all(n >= 0)


def test_cost_budget_mode_spends_the_budget_and_favours_cheap_tokens():
    m = 3
    problem = Problem(
        A=np.full(m, 10.0),
        S=np.zeros(m),
        b=np.full(m, 0.5),
        lower=np.zeros(m),
        upper=np.full(m, np.inf),
        cost=np.array([1.0, 2.0, 4.0]),
        resource=1e6,
    )
    n = solve(problem)
    assert problem.cost @ n == pytest.approx(1e6, rel=1e-12)
    assert n[0] > n[1] > n[2]


def test_infeasible_bounds_name_the_field():
    rng = np.random.default_rng(0)
    problem = random_problem(3, rng)
    with pytest.raises(InputError, match="min-weight"):
        solve(Problem(**{**problem.__dict__, "lower": np.full(3, 0.5 * problem.resource)}))
    with pytest.raises(InputError, match="max-weight/max-tokens"):
        solve(Problem(**{**problem.__dict__, "upper": np.full(3, 0.2 * problem.resource)}))


def two_domain_fit(held: bool = False) -> FitResult:
    domains = {
        "web": DomainFit(
            "web",
            "ok",
            "",
            form="power",
            params={"a": 40.0, "b": 0.3},
            base_tokens=5e5,
            base_weight=0.5,
        ),
        "wiki": DomainFit(
            "wiki",
            "ok",
            "",
            form="power",
            params={"a": 20.0, "b": 0.4},
            base_tokens=5e5,
            base_weight=0.5,
        ),
        "code": DomainFit(
            "code",
            "accelerating" if held else "ok",
            "",
            form=None if held else "power",
            params={} if held else {"a": 10.0, "b": 0.5},
            base_tokens=2.5e5,
            base_weight=0.2,
            fallback="hold_base_weight" if held else None,
        ),
    }
    return FitResult("mean loss", "algorithm1", ["base"], 1.25e6, 1.25e6, 2.0, domains)


def test_held_domains_keep_their_base_weight():
    out = optimize(two_domain_fit(held=True), 1e7)
    assert out["weights"]["code"] == pytest.approx(0.2, abs=1e-12)
    assert out["held_at_base_weight"] == ["code"]
    assert sum(out["weights"].values()) == pytest.approx(1.0, abs=1e-12)


def test_constraints_caps_and_epochs():
    fit = two_domain_fit()
    free = optimize(fit, 1e7)
    capped = optimize(fit, 1e7, Constraints(available={"web": 1e6}, max_epochs=2.0))
    assert free["tokens"]["web"] > 2e6
    assert capped["tokens"]["web"] == pytest.approx(2e6)
    floor = optimize(fit, 1e7, Constraints(min_weight={"*": 0.3}))
    assert min(floor["weights"].values()) >= 0.3 - 1e-12
    with pytest.raises(InputError, match="not a domain"):
        optimize(fit, 1e7, Constraints(max_tokens={"books": 1.0}))
