"""DDO and AutoScale as the paper and its authors run them (issue 16).

The paper's objective is the default; Eq. 2's two exact roots are both reported; the authors'
procedure (x = 1 at the base, the objective over its base value, the largest-b root, a floor
as a lower bound) is reproduced against an independent implementation of their steps; the
trust region binds where the fit would leave the observed range; Algorithm 1 without its
optional down run fits and solves; AutoScale interpolates exactly on a log-linear path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

from conftest import alg1_mixtures, make_table, power_world, run_cli, with_defaults
from mixscale.cli.main import build_parser
from mixscale.core.ddo import Constraints, optimize
from mixscale.core.fit import fit_runs
from mixscale.core.objective import Objective
from mixscale.core.predict import Optimum, predict_continuous
from mixscale.plan.mixture import ddo_runs

MEAN = Objective("mean")
BASE = np.array([5e5, 3e5, 2e5])  # the base run's tokens per domain: 1M in all
# An Eq. 2 world in the authors' unit (x = n / base tokens of the domain): each domain's three
# Algorithm 1 points admit two exact Eq. 2 curves, and the truth is the largest-b one.
TRUE_N0 = np.array([0.5, 2.0, 1.0])
TRUE_B = np.array([0.6, 1.5, 0.9])


def eq2_world(n: np.ndarray) -> float:
    return float(3.0 + np.sum((TRUE_N0 + n / BASE) ** -TRUE_B))


def test_the_papers_objective_is_the_default_in_the_cli_and_the_config():
    for extra in ([], ["--tokens", "1"]):
        command = "ddo" if extra else "fit"
        args = build_parser().parse_args([command, "--runs", "t.tsv", "--out", "o", *extra])
        assert args.objective == "perplexity", command
    config = with_defaults({"experiment": "x", "backend": "simulate", "world": "separable",
                            "ddo": {"scales": [{"name": "a", "tokens": 1e6},
                                               {"name": "b", "tokens": 3e6}]},
                            "autoscale": {"targets": [1e7]}})  # fmt: skip
    assert config.objective.kind == "perplexity"


def test_fit_without_objective_optimises_mean_perplexity(tmp_path):
    # Two evaluation domains with very different loss levels: the mean loss and the mean
    # perplexity weigh them differently, and the fit reports which one it used.
    table = make_table(alg1_mixtures(BASE), eq2_world)
    table.save(tmp_path / "runs.tsv")
    done = run_cli("fit", "--runs", str(tmp_path / "runs.tsv"), "--out", str(tmp_path / "f.json"))
    assert done.returncode == 0, done.stderr
    fit = json.loads((tmp_path / "f.json").read_text())
    assert fit["objective"] == "mean perplexity over all evaluation domains"
    # perplexity = exp(loss): the base run's objective is exp of its loss
    base = fit["domains"]["d0"]["diagnostics"]["points"][1]
    assert base["factor"] == 1.0
    assert base["objective_mean"] == pytest.approx(np.exp(eq2_world(BASE)), rel=1e-12)


@pytest.mark.parametrize("root", ["smallest_b", "largest_b"])
def test_both_exact_eq2_roots_are_reported_and_the_chosen_one_kept(root):
    table = make_table(alg1_mixtures(BASE), eq2_world)
    fit = fit_runs(table, MEAN, form="paper", unit="base_domain", root=root)
    for j, d in enumerate(table.train_domains):
        df = fit.domains[d]
        exact = df.diagnostics["exact_fits"]
        assert len(exact) == 2, exact
        bs = sorted(p["b"] for p in exact)
        assert bs[0] < bs[1]
        # the truth is one of the two, and the kept curve is the one --root names
        truth = [p for p in exact if p["b"] == pytest.approx(TRUE_B[j], rel=1e-8)]
        assert truth and truth[0]["N0"] == pytest.approx(TRUE_N0[j], rel=1e-8)
        assert df.params["b"] == (bs[0] if root == "smallest_b" else bs[1])
        assert df.diagnostics["max_abs_residual"] < 1e-10
    assert fit.root == root and fit.unit_kind == "base_domain"


def test_weights_report_the_optimum_under_every_root_and_their_spread():
    table = make_table(alg1_mixtures(BASE), eq2_world)
    fit = fit_runs(table, MEAN, form="paper", unit="base_domain", root="largest_b")
    out = optimize(fit, BASE.sum(), Constraints(trust_region=False))
    by_root = out["optimum_by_root"]
    assert set(by_root) == {"smallest_b", "largest_b"}
    assert by_root["largest_b"] == pytest.approx(out["weights"], abs=1e-9)
    spread = max(abs(by_root["smallest_b"][d] - by_root["largest_b"][d]) for d in out["weights"])
    assert out["root_spread"] == pytest.approx(spread)
    assert spread > 0.01  # the choice matters here, and the user sees by how much


# --- the authors' procedure, implemented independently of mixscale's fit and solver ----------


def authors_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Eq. 2, (x + a)^-b + c, through the three normalised points: every exact solution
    found by least squares from a grid of starts, the largest b kept."""
    solutions = []
    for a0 in (0.1, 0.5, 1.0, 2.0, 5.0):
        for b0 in (0.2, 0.5, 1.0, 2.0, 4.0):
            res = least_squares(
                lambda p: (x + p[0]) ** -p[1] + p[2] - y,
                x0=[a0, b0, y[-1] - (x[-1] + a0) ** -b0],
                bounds=([1e-6, 1e-4, -np.inf], [1e3, 5.0, np.inf]),
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
            )
            if np.max(np.abs(res.fun)) < 1e-10:
                solutions.append(res.x)
    assert solutions, "no exact Eq. 2 fit"
    a, b, c = max(solutions, key=lambda p: p[1])
    return {"N0": a, "b": b, "c": c}


def authors_optimum(fits: list[dict[str, float]], base_w: np.ndarray, floor: float) -> np.ndarray:
    """min over w on the simplex, w >= floor, of sum_j f_j(w_j / base_w_j) (same scale)."""

    def total(w):
        return sum((f["N0"] + w[j] / base_w[j]) ** -f["b"] for j, f in enumerate(fits))

    res = minimize(
        total,
        x0=np.full(len(fits), 1 / len(fits)),
        method="SLSQP",
        bounds=[(floor, 1.0)] * len(fits),
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert res.success, res.message
    return res.x


def test_the_authors_procedure_is_reproduced_exactly(tmp_path):
    # A perplexity-like objective far from 1, so normalising by the base value matters.
    table = make_table(alg1_mixtures(BASE), lambda n: 40.0 * eq2_world(n))
    table.save(tmp_path / "runs.tsv")
    floor = 0.12  # binds: the unconstrained optimum puts less than this on one domain
    done = run_cli(
        "ddo", "--runs", str(tmp_path / "runs.tsv"), "--tokens", str(BASE.sum()),
        "--objective", "mean", "--form", "paper", "--unit", "base_domain", "--normalise",
        "--root", "largest_b", "--min-weight", str(floor), "--no-trust-region",
        "--bootstrap", "0", "--out", str(tmp_path / "w.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    weights = json.loads((tmp_path / "w.json").read_text())

    y = table.losses[:, 0]
    y = y / y[0]  # the objective over its base-run value
    ids = table.run_ids
    expected_fits = []
    for j, d in enumerate(table.train_domains):
        rows = [ids.index(f"d{j}_down_s0"), 0, ids.index(f"d{j}_up_s0")]
        x = table.tokens[rows, j] / BASE[j]  # x = 1 at the base
        expected = authors_fit(x, y[rows])
        got = weights["fit"]["domains"][d]["params"]
        assert got == pytest.approx(expected, rel=1e-7, abs=1e-9), d
        expected_fits.append(expected)
    w = authors_optimum(expected_fits, BASE / BASE.sum(), floor)
    got = np.array([weights["weights"][d] for d in table.train_domains])
    assert np.max(np.abs(got - w)) < 1e-6
    assert min(got) == pytest.approx(floor, abs=1e-9)  # the floor binds, as intended
    assert weights["at_bound"] == {table.train_domains[int(np.argmin(got))]: "low: min-weight"}
    # the predicted objective is in the objective's own units, not normalised ones
    assert weights["predicted_objective"] > 10


# --- trust region --------------------------------------------------------------------------


def skewed_world():
    """A power-law world whose optimum at the base scale puts d2 far below base / 3."""
    a = np.array([30.0, 30.0, 0.02])
    b = np.array([0.3, 0.3, 0.3])
    return power_world(a, b)


def test_trust_region_binds_at_the_smallest_observed_perturbation():
    base = np.full(3, 1e6 / 3)
    table = make_table(alg1_mixtures(base), skewed_world())
    fit = fit_runs(table, MEAN)
    free = optimize(fit, base.sum(), Constraints(trust_region=False))
    assert free["weights"]["d2"] < 1 / 9 / 10  # the fit alone drives d2 to nearly nothing
    bounded = optimize(fit, base.sum(), Constraints())
    assert bounded["trust_region"] is True
    assert bounded["weights"]["d2"] == pytest.approx(1 / 9, rel=1e-9)  # base weight / 3
    assert bounded["at_bound"] == {"d2": "low: trust_region"}
    d0 = bounded["bounds"]["d0"]
    assert d0["low"] == pytest.approx(1 / 9) and d0["low_by"] == "trust_region"
    assert d0["high"] == pytest.approx(1.0)  # 3 x 1/3: the whole mixture
    # an explicit --min-weight replaces the trust region's bound on that side
    user = optimize(fit, base.sum(), Constraints(min_weight={"d2": 0.02}))
    assert user["weights"]["d2"] == pytest.approx(0.02, rel=1e-9)
    assert user["at_bound"] == {"d2": "low: min-weight"}


def test_trust_region_is_the_default_of_the_config_and_can_be_turned_off(tmp_path):
    base = np.full(3, 1e6 / 3)
    make_table(alg1_mixtures(base), skewed_world()).save(tmp_path / "runs.tsv")
    common = ["ddo", "--runs", str(tmp_path / "runs.tsv"), "--tokens", "1e6", "--bootstrap", "0"]
    on = run_cli(*common, "--out", str(tmp_path / "on.json"))
    off = run_cli(*common, "--no-trust-region", "--out", str(tmp_path / "off.json"))
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    w_on = json.loads((tmp_path / "on.json").read_text())["weights"]["d2"]
    w_off = json.loads((tmp_path / "off.json").read_text())["weights"]["d2"]
    assert w_on == pytest.approx(1 / 9) and w_off < w_on / 10


# --- Algorithm 1 without the optional down run -------------------------------------------


def up_only(mixtures):
    return [(name, n) for name, n in mixtures if not name.endswith("_down")]


def test_up_only_tables_fit_the_two_parameter_form_and_solve():
    # Algorithm 1's own form (n/u)^-b + c, u = the base run's total: two points identify it.
    b = np.array([0.4, 0.8, 0.25])
    unit = BASE.sum()
    world = lambda n: float(1.5 + np.sum((n / unit) ** -b))  # noqa: E731
    table = make_table(up_only(alg1_mixtures(BASE)), world)
    fit = fit_runs(table, MEAN)
    for j, d in enumerate(table.train_domains):
        df = fit.domains[d]
        assert df.status == "ok" and df.form == "algorithm1", df.reason
        assert df.diagnostics["one_sided"] == "more"
        assert df.params["b"] == pytest.approx(b[j], rel=1e-8)
    out = optimize(fit, unit)
    # the true world's optimum within the trust region the up runs allow: [w/3, 3w] (mirrored)
    base_w = BASE / unit
    truth = minimize(
        lambda w: world(w * unit),
        x0=base_w,
        method="SLSQP",
        bounds=[(w / 3, min(3 * w, 1.0)) for w in base_w],
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    got = np.array([out["weights"][d] for d in table.train_domains])
    assert np.max(np.abs(got - truth.x)) < 1e-6


def test_mixed_tables_fit_each_domain_by_what_its_runs_allow():
    table = make_table(
        [m for m in alg1_mixtures(BASE) if m[0] not in ("d1_down", "d2_down")],
        power_world(np.array([3.0, 2.0, 1.0]), np.array([0.3, 0.4, 0.5])),
    )
    fit = fit_runs(table, MEAN)
    assert fit.domains["d0"].form == "power" and "one_sided" not in fit.domains["d0"].diagnostics
    assert {fit.domains[d].form for d in ("d1", "d2")} == {"algorithm1"}
    out = optimize(fit, BASE.sum())
    assert sum(out["weights"].values()) == pytest.approx(1.0)


def test_the_plan_generates_the_up_only_design():
    config = with_defaults(
        {
            "experiment": "x",
            "backend": "simulate",
            "world": "separable",
            "ddo": {
                "design": "algorithm1_up",
                "seeds": 2,
                "scales": [{"name": "a", "tokens": 1e6}, {"name": "b", "tokens": 3e6}],
            },
            "autoscale": {"targets": [1e7]},
        }
    )
    domains = ["d0", "d1", "d2"]
    runs = ddo_runs(config, domains)
    assert len(runs) == 2 * 2 * (1 + len(domains))  # scales x seeds x (base + one per domain)
    assert {r.factor for r in runs} == {1.0, 3.0}
    assert not any("down" in r.id for r in runs)


# --- AutoScale between scales --------------------------------------------------------------


def test_interpolation_follows_the_exact_log_linear_path():
    # Optima on an exact path N_i(k) = N_i(1) * g_i ** (k - 1): any k between the scales is
    # a point of the path, and predict must return it.
    start = np.array([4e7, 3e7, 3e7])
    growth = np.array([3.6, 2.4, 3.0])
    path = lambda k: start * growth ** (k - 1)  # noqa: E731
    optima = [Optimum(str(k), ["a", "b", "c"], path(k)) for k in (1, 2, 3)]
    for k in (1.25, 1.5, 2.7):
        target = float(path(k).sum())
        out = predict_continuous(optima, target)
        assert out["regime"] == "interpolation"
        got = np.array([out["tokens"][d] for d in "abc"])
        assert np.max(np.abs(got / path(k) - 1)) < 1e-9
        assert out["k"] == pytest.approx(k, rel=1e-9)
    # each inner scale from its neighbours: exact on the path
    checks = predict_continuous(optima, float(path(4).sum()))["interpolation_checks"]
    assert len(checks) == 1 and checks[0]["max_abs_weight_error"] < 1e-9


# --- verification on the objective DDO optimised -------------------------------------------


def test_verification_compares_methods_on_the_configured_objective(tmp_path):
    # Two methods, two evaluation domains: B has the lower mean loss, A the lower mean
    # perplexity (its high-loss domain is better). Which one "wins" depends on the objective.
    finals = {"A": {"x": 2.0, "y": 6.0}, "B": {"x": 1.0, "y": 6.5}}
    paths = []
    for method, final in finals.items():
        early = {d: v + 1.0 for d, v in final.items()}
        curve = [
            {"fraction": 0.5, "losses": early},
            {"fraction": 1.0, "losses": final},
        ]
        data = {"run": method, "method": method, "weights": {"x": 0.5, "y": 0.5},
                "final_losses": final, "curve": curve}  # fmt: skip
        paths.append(tmp_path / f"{method}.json")
        paths[-1].write_text(json.dumps(data))
    out = {}
    for kind in ("mean", "perplexity"):
        done = run_cli("compare", "--metrics", *map(str, paths), "--target", "1e6",
                       "--objective", kind, "--out", str(tmp_path / f"{kind}.json"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        out[kind] = json.loads((tmp_path / f"{kind}.json").read_text())
    mean, ppl = out["mean"]["methods"], out["perplexity"]["methods"]
    assert mean["A"]["objective"] == pytest.approx(4.0) and mean["B"]["objective"] == 3.75
    assert ppl["A"]["objective"] == pytest.approx((np.exp(2.0) + np.exp(6.0)) / 2)
    assert ppl["A"]["objective"] < ppl["B"]["objective"]
    assert mean["A"]["objective"] > mean["B"]["objective"]
    assert out["perplexity"]["objective"] == "mean perplexity over all evaluation domains"
    assert ppl["B"]["curve"][0]["objective"] == pytest.approx((np.exp(2.0) + np.exp(7.5)) / 2)


def test_solving_away_from_the_sweeps_scale_warns_but_step_rounding_does_not():
    """Trained runs round their tokens to whole steps (100k -> 99,840): the same scale. Twice the
    sweep's tokens uses every curve beyond what its runs observed: a warning."""
    from mixscale.core.world import load_world, simulate_run_table

    world = load_world("separable")
    m = len(world.domains)
    fit = fit_runs(simulate_run_table(world, alg1_mixtures(np.full(m, 99_840 / m)), 1, False))
    assert not optimize(fit, 1e5, Constraints(trust_region=False)).get("warnings")
    far = optimize(fit, 2e5, Constraints(trust_region=False)).get("warnings")
    assert far and "2x the sweep's" in far[0]
