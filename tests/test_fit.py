import math

import numpy as np
import pytest

from conftest import alg1_mixtures, fixed_total_mixtures, make_table, power_world
from mixscale.core.design import detect_design
from mixscale.core.fit import FitResult, bootstrap_fits, fit_runs
from mixscale.core.forms import drop_ratio_power
from mixscale.errors import InputError

A = np.array([30.0, 50.0, 20.0, 40.0])
B = np.array([0.30, 0.40, 0.25, 0.35])
BASE = np.array([1e6, 1.2e6, 0.8e6, 1.1e6])


def test_closed_form_recovers_power_law_exactly():
    table = make_table(alg1_mixtures(BASE), power_world(A, B, c=2.5))
    fit = fit_runs(table)
    assert fit.design == "algorithm1"
    assert fit.base_runs == ["base_s0"]
    for j, d in enumerate(table.train_domains):
        df = fit.domains[d]
        assert df.status == "ok" and df.form == "power" and df.method == "closed"
        assert df.params["b"] == pytest.approx(B[j], rel=1e-9)
        assert df.params["a"] == pytest.approx(A[j], rel=1e-8)
        # the closed form itself: r = 3^b
        assert df.diagnostics["r"] == pytest.approx(3 ** B[j], rel=1e-9)
    assert fit.intercept == pytest.approx(2.5, abs=1e-9)


def test_closed_form_matches_joint_least_squares():
    table = make_table(alg1_mixtures(BASE), power_world(A, B))
    closed = fit_runs(table)
    joint = fit_runs(table, loss="huber")  # forces the NLS path on the same data
    for d in table.train_domains:
        assert joint.domains[d].method == "nls"
        assert joint.domains[d].params["b"] == pytest.approx(
            closed.domains[d].params["b"], rel=1e-6
        )


def test_drop_ratio_of_power_law_is_three_to_the_b():
    for b in (0.05, 0.3, 1.0, 2.5):
        assert drop_ratio_power(1 / 3, 3, b) == pytest.approx(3**b, rel=1e-12)
    assert drop_ratio_power(1 / 3, 3, 0.0) == pytest.approx(1.0)


def test_fixed_total_design_is_detected_and_fitted_jointly():
    world = power_world(A, B, c=1.0)
    table = make_table(fixed_total_mixtures(BASE), world)
    fit = fit_runs(table)
    assert fit.design == "fixed_total"
    assert any("jointly" in n for n in fit.notes)
    for j, d in enumerate(table.train_domains):
        assert fit.domains[d].status == "ok"
        assert fit.domains[d].method == "joint_nls"
        assert fit.domains[d].params["b"] == pytest.approx(B[j], rel=1e-5)
    # the joint model reproduces every run
    assert np.allclose(
        fit.predict(table.tokens, table.train_domains), table.losses[:, 0], atol=1e-9
    )


def test_shuffled_rows_and_replicates_find_the_same_base():
    table = make_table(alg1_mixtures(BASE), power_world(A, B), seeds=3)
    order = np.random.default_rng(1).permutation(table.n_runs)
    shuffled = type(table)(
        source="s",
        train_domains=table.train_domains,
        eval_domains=table.eval_domains,
        tokens=table.tokens[order],
        losses=table.losses[order],
        run_ids=[table.run_ids[i] for i in order],
        seeds=[table.seeds[i] for i in order],
    )
    fit = fit_runs(shuffled)
    assert sorted(fit.base_runs) == ["base_s0", "base_s1", "base_s2"]


def test_explicit_base_overrides_detection():
    table = make_table(alg1_mixtures(BASE), power_world(A, B))
    design = detect_design(table, base_run="d0_up_s0")
    assert design.base_group == 1
    with pytest.raises(InputError, match="no run with that id"):
        detect_design(table, base_run="nope")


def paper_world(n0: np.ndarray, b: np.ndarray, unit: float, c: float = 3.0):
    return lambda n: float(c + np.sum((n0 + n / unit) ** -b))


def test_near_linear_regime_uses_the_shifted_form_and_recovers_it():
    # Large N0 relative to the domain's own tokens: 1/3 < r < 1, no pure power law fits.
    n0 = np.array([2.0, 1.0, 3.0, 0.5])
    b = np.array([0.5, 0.3, 0.8, 0.2])
    unit = BASE.sum()
    table = make_table(alg1_mixtures(BASE), paper_world(n0, b, unit))
    fit = fit_runs(table)
    for j, d in enumerate(table.train_domains):
        df = fit.domains[d]
        assert 1 / 3 < df.diagnostics["r"] < 1
        assert df.status == "ok" and df.form == "paper", df.reason
        # Three points can admit two exact Eq. 2 curves; the truth must be one of those shown.
        exact = [df.params, *df.diagnostics.get("alternative_exact_fits", [])]
        assert any(
            p["N0"] == pytest.approx(n0[j], rel=1e-6) and p["b"] == pytest.approx(b[j], rel=1e-6)
            for p in exact
        ), exact
        assert df.params["b"] == min(p["b"] for p in exact)
        assert df.diagnostics["max_abs_residual"] < 1e-9
    # A pure power law cannot describe it: the power form refuses with a named status.
    strict = fit_runs(table, form="closed")
    assert {d.status for d in strict.domains.values()} == {"accelerating"}


def test_unit_changes_what_the_paper_form_can_express():
    # Eq. 2 is not scale-free: with u = 1 token the same data cannot be matched.
    n0 = np.array([2.0, 1.0, 3.0, 0.5])
    b = np.array([0.5, 0.3, 0.8, 0.2])
    table = make_table(alg1_mixtures(BASE), paper_world(n0, b, BASE.sum()))
    good = fit_runs(table, form="paper")
    bad = fit_runs(table, form="paper", unit=1.0)
    worst_good = max(d.diagnostics["max_abs_residual"] for d in good.domains.values())
    worst_bad = max(d.diagnostics["max_abs_residual"] for d in bad.domains.values())
    assert worst_good < 1e-9 < 1e-3 < worst_bad


@pytest.mark.parametrize(
    ("responses", "status"),
    [
        ((0.02, 0.10), "accelerating"),  # r = 0.2 <= 1/3: returns grow with data
        ((-0.01, -0.02), "no_gain"),  # objective does not fall with more data
        ((0.05, -0.03), "non_monotone"),
    ],
)
def test_unusable_domains_get_named_status_and_fallback(responses, status):
    d1, d2 = responses
    base = np.array([1e6, 1e6, 1e6])
    others = power_world(np.array([30.0, 30.0]), np.array([0.3, 0.3]))

    def world(n):  # domain 0's response is given directly at its three token counts
        own = d1 if n[0] < base[0] else (-d2 if n[0] > base[0] else 0.0)
        return others(n[1:]) + own

    table = make_table(alg1_mixtures(base), world)
    fit = fit_runs(table)
    df = fit.domains["d0"]
    assert df.status == status
    assert df.fallback == "hold_base_weight"
    assert df.diagnostics["drop_low"] == pytest.approx(d1)
    assert fit.domains["d1"].status == "ok"
    assert math.isfinite(fit.intercept)


def test_insufficient_data_without_any_perturbation():
    runs = alg1_mixtures(BASE)
    runs = [r for r in runs if r[0] not in ("d2_down", "d2_up")]
    fit = fit_runs(make_table(runs, power_world(A, B)))
    assert fit.domains["d2"].status == "insufficient_data"
    assert fit.domains["d0"].status == "ok"


def test_one_side_only_fits_the_two_parameter_form():
    runs = [r for r in alg1_mixtures(BASE) if r[0] != "d2_down"]
    fit = fit_runs(make_table(runs, power_world(A, B)))
    d2 = fit.domains["d2"]
    assert d2.status == "ok" and d2.form == "algorithm1" and d2.method == "closed"
    assert d2.diagnostics["one_sided"] == "more"


def test_huber_resists_an_outlier_seed():
    rng = np.random.default_rng(3)
    world = power_world(A, B)
    table = make_table(alg1_mixtures(BASE), world, seeds=4, noise=0.002, rng=rng)
    losses = table.losses.copy()
    losses[table.run_ids.index("d1_up_s2"), 0] += 0.5  # one diverged seed
    broken = type(table)(**{**table.__dict__, "losses": losses})
    plain = fit_runs(broken)
    robust = fit_runs(broken, loss="huber")
    err_plain = abs(plain.domains["d1"].params["b"] - B[1]) if plain.domains["d1"].usable else 1.0
    err_robust = abs(robust.domains["d1"].params["b"] - B[1])
    assert err_robust < 0.5 * err_plain


def test_bootstrap_over_seeds_brackets_the_truth():
    rng = np.random.default_rng(7)
    table = make_table(alg1_mixtures(BASE), power_world(A, B), seeds=5, noise=0.001, rng=rng)
    boots = bootstrap_fits(table, 60, seed=1)
    assert len(boots) == 60
    bs = np.array([f.domains["d1"].params["b"] for f in boots if f.domains["d1"].usable])
    assert np.quantile(bs, 0.02) < B[1] < np.quantile(bs, 0.98)
    single = make_table(alg1_mixtures(BASE), power_world(A, B))
    assert bootstrap_fits(single, 10) == []


def test_noise_diagnostics_report_effect_over_seed_noise():
    rng = np.random.default_rng(5)
    table = make_table(alg1_mixtures(BASE), power_world(A, B), seeds=3, noise=0.01, rng=rng)
    fit = fit_runs(table)
    diag = fit.domains["d0"].diagnostics
    assert 0.003 < diag["seed_sd"] < 0.03
    assert diag["effect_high_over_se"] > 3


def test_fit_json_round_trip_keeps_the_model():
    table = make_table(alg1_mixtures(BASE), power_world(A, B))
    fit = fit_runs(table)
    again = FitResult.from_json(fit.to_json())
    tokens = table.tokens * 1.7
    assert np.allclose(
        again.predict(tokens, table.train_domains), fit.predict(tokens, table.train_domains)
    )


def test_no_base_found_is_a_clear_error():
    rng = np.random.default_rng(0)
    mixtures = [(f"r{i}", rng.uniform(1e5, 1e6, size=3)) for i in range(5)]
    with pytest.raises(InputError, match="no base run found"):
        fit_runs(make_table(mixtures, power_world(A[:3], B[:3])))


def test_designs_are_found_when_tokens_are_rounded_to_whole_sequences():
    """Trained runs see whole sequences of 128 tokens, so ratios are only approximately exact."""
    base = np.full(6, 1e5 / 6)
    for mixtures, kind in (
        (fixed_total_mixtures(base), "fixed_total"),
        (alg1_mixtures(base), "algorithm1"),
    ):
        rounded = [(name, np.round(n / 128) * 128) for name, n in mixtures]
        table = make_table(rounded, lambda n: float(np.sum(n**-0.3)))
        design = detect_design(table)
        assert design.kind == kind and len(design.perturbations) == 12


def _fixed_total_table(world_name: str):
    import dataclasses

    from mixscale.core.study import random_world, sweep_table
    from mixscale.core.world import load_world

    world = load_world(world_name) if world_name != "random:1" else random_world(1)
    noisy = dataclasses.replace(world, sigma=0.004, sigma_domain=0.002)
    return sweep_table(noisy, 3e8, 3.0, 2, trial=0, design="fixed_total")


def test_warm_bootstrap_gives_the_cold_bootstraps_intervals():
    """Replicates warm-started from the point fit (the default of `mixscale ddo`) give the same
    weight intervals as refitting each from cold starts with the form search, where the joint
    fit converges (the separable world), several times faster."""
    from mixscale.core.ddo import weight_intervals

    table = _fixed_total_table("separable")
    point = fit_runs(table)
    assert point.design == "fixed_total"
    cold = weight_intervals(bootstrap_fits(table, 40, seed=3), 3e8)
    warm = weight_intervals(bootstrap_fits(table, 40, seed=3, warm=point), 3e8)
    for domain, interval in cold.items():
        assert warm[domain]["low"] == pytest.approx(interval["low"], abs=1e-3), domain
        assert warm[domain]["high"] == pytest.approx(interval["high"], abs=1e-3), domain


def test_joint_fit_closed_form_jacobian_matches_finite_differences():
    """The joint fit's Jacobian in closed form agrees with finite differences at the fit, for
    each form (power, Eq. 2, Algorithm 1's)."""
    from scipy.optimize._numdiff import approx_derivative

    from mixscale.core.fit import _JointModel

    table = _fixed_total_table("separable")
    columns = [table.tokens[:, j] for j in range(3)]
    model = _JointModel(["power", "paper", "algorithm1"], columns, [3e8, 3e8, 3e8])
    theta = np.array([2.0, math.log(50.0), 0.3, math.log(0.4), 0.7, 0.5])
    numeric = approx_derivative(model.predict, theta, method="3-point")
    assert np.allclose(model.jacobian(theta), numeric, rtol=1e-6, atol=1e-9)


def test_warm_bootstrap_of_algorithm1_fits_gives_the_same_intervals():
    """Algorithm 1's fits by least squares (the robust loss, or replicates whose exact curves
    fail): warm-started from the full table's fit they give the cold starts' intervals."""
    import dataclasses

    from mixscale.core.ddo import Constraints, weight_intervals
    from mixscale.core.study import sweep_table
    from mixscale.core.world import load_world

    world = dataclasses.replace(load_world("redpajama"), sigma=0.004, sigma_domain=0.002)
    table = sweep_table(world, 3e7, 3.0, 3, trial=2)
    point = fit_runs(table, loss="huber")
    cold_fits = bootstrap_fits(table, 12, seed=4, loss="huber")
    warm_fits = bootstrap_fits(table, 12, seed=4, warm=point, loss="huber")
    assert any(d.method == "nls" for f in warm_fits for d in f.domains.values())
    box = Constraints(trust_region=True)
    cold, warm = weight_intervals(cold_fits, 3e7, box), weight_intervals(warm_fits, 3e7, box)
    for domain, interval in cold.items():
        assert warm[domain]["low"] == pytest.approx(interval["low"], abs=1e-3), domain
        assert warm[domain]["high"] == pytest.approx(interval["high"], abs=1e-3), domain


def test_vectorised_eq2_grid_agrees_with_the_scalar_root_search():
    """The grid that locates Eq. 2's exact curves, computed for all exponents at once, has the
    scalar search's values (NaN where it finds no N0), so it finds the same sign changes."""
    from mixscale.core import fit

    rng = np.random.default_rng(1)
    grid = np.linspace(math.log(fit.B_BOUNDS[0]), math.log(fit.B_BOUNDS[1]), 400)
    for _ in range(40):
        t, n0, b = 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-4, 2), 10 ** rng.uniform(-2, 0.6)
        r, d2 = fit._paper_ratio(n0, b, t, 1 / 3, 3.0)
        r, d2 = r * math.exp(rng.normal(0, 0.3)), d2 * math.exp(rng.normal(0, 0.3))

        def scalar(log_b, r=r, d2=d2, t=t):
            root = fit._paper_n0_for_ratio(r, math.exp(log_b), t, 1 / 3, 3.0)
            if root is None:
                return math.nan
            drop = fit._paper_ratio(root, math.exp(log_b), t, 1 / 3, 3.0)[1]
            return math.log(drop) - math.log(d2)

        expected = np.array([scalar(x) for x in grid])
        got = fit._paper_mismatch_grid(np.exp(grid), r, d2, t, 1 / 3, 3.0)
        assert np.array_equal(np.isfinite(got), np.isfinite(expected))
        finite = np.isfinite(expected)
        assert np.allclose(got[finite], expected[finite], rtol=0, atol=1e-5)
        assert np.array_equal(np.sign(got[finite]), np.sign(expected[finite]))


def test_multi_start_stops_when_three_starts_agree_and_keeps_the_lower_minimum(monkeypatch):
    """Two basins: two starts in the worse one do not stop the search; once three starts reach
    the least cost, the rest are not run. (Three in a row in a worse basin would stop it: the
    cold starts are ordered so that neighbours differ in the exponent.)"""
    from mixscale.core import fit

    runs = []
    solve = fit.least_squares
    monkeypatch.setattr(
        fit, "least_squares", lambda f, x0, **kw: runs.append(x0) or solve(f, x0, **kw)
    )

    def residuals(x):  # minima at x = -1 (cost 0.5) and x = 2 (cost 0)
        return np.array([(x[0] + 1) * (x[0] - 2), 1.0 if x[0] < 0.5 else 0.0])

    starts = [np.array([v]) for v in (-1.5, -0.8, 2.5, -1.2, 1.8, 2.2, 3.0, 1.9)]
    best = fit._nls(residuals, starts, [-5.0], [5.0], "linear", 1.0)
    assert best[0] == pytest.approx(2.0, abs=1e-6)
    assert len(runs) == 6  # three in the worse basin, three that agree on the better one
