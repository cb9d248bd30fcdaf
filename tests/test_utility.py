import math

import numpy as np
import pytest

from mixscale.core.utility import (
    AnnealTable,
    Curve,
    SourceCost,
    allocate,
    analyse,
    fit_curve,
    load_anneal_table,
)
from mixscale.errors import InputError
from mixscale.fileio import write_tsv

BUDGETS = [1e6, 3e6, 1e7, 3e7, 1e8, 3e8]
TRUE = {  # fast saturates early with a small ceiling; slow keeps climbing to a high one
    "fast": Curve("ok", G=0.10, D0=2e5, alpha=1.0),
    "slow": Curve("ok", G=0.60, D0=3e8, alpha=0.7),
    "flat": Curve("ok", G=0.02, D0=1e7, alpha=1.0),
}


def synthetic_table(seeds: int = 3, noise: float = 0.0005) -> AnnealTable:
    rng = np.random.default_rng(0)
    rows = []
    for b in BUDGETS:
        for s in range(seeds):
            control = 2.5 - 0.01 * math.log10(b) + rng.normal(0, noise)
            rows.append(("control", b, control, str(s)))
            for name, curve in TRUE.items():
                # seed-paired noise: a run shares its seed's data order with the control
                rows.append(
                    (name, b, control - float(curve.gain(b)) + rng.normal(0, noise), str(s))
                )
    return AnnealTable("synthetic", sorted(TRUE), rows)


def costs(acq=None):
    acq = acq or {"fast": 1.0, "slow": 1.0, "flat": 0.1}
    return {s: SourceCost(acquisition=a, training=0.5, share=0.3) for s, a in acq.items()}


def test_curve_fit_recovers_a_noise_free_curve():
    b = np.array(BUDGETS)
    curve = fit_curve(b, TRUE["slow"].gain(b))
    assert curve.usable
    assert np.allclose(curve.gain(b), TRUE["slow"].gain(b), rtol=1e-4)


def test_rank_flip_is_found_between_micro_annealing_and_larger_budgets():
    out = analyse(synthetic_table(), costs(), budget=None, n_boot=30)
    first = out["rankings"][0]
    last_observed = [r for r in out["rankings"] if r["kind"] == "observed"][-1]
    assert first["rank_by_gain"].index("fast") < first["rank_by_gain"].index("slow")
    assert last_observed["rank_by_gain"].index("slow") < last_observed["rank_by_gain"].index("fast")
    flips = [f for f in out["rank_flips"] if ["fast", "slow"] in f["by_gain"]]
    assert flips, out["rank_flips"]
    assert last_observed["flips_vs_smallest_gain"]["kendall_tau"] < 1.0
    slow = out["sources"]["slow"]["curve"]
    lo, hi = slow["intervals_90"]["G"]
    assert lo < slow["G"] < hi


def brute_force(curves, cost, budget, grid=400):
    names = list(curves)
    best, best_gain = None, -np.inf
    per = {s: cost[s].per_token() for s in names}
    for f0 in np.linspace(0, 1, grid + 1):
        for f1 in np.linspace(0, 1 - f0, max(int(grid * (1 - f0)), 1) + 1):
            shares = [f0, f1, 1 - f0 - f1][: len(names)]
            tokens = {s: budget * sh / per[s] for s, sh in zip(names, shares, strict=True)}
            gain = sum(float(curves[s].gain(tokens[s])) for s in names)
            if gain > best_gain:
                best, best_gain = tokens, gain
    return best, best_gain


def test_allocation_matches_brute_force_search():
    c = costs()
    for budget in (2e6, 5e7, 1e9):
        ours = allocate(TRUE, c, budget)
        _, best_gain = brute_force(TRUE, c, budget)
        assert ours["gain"] >= best_gain - 1e-9
        assert ours["gain"] == pytest.approx(best_gain, rel=1e-3)
        spent = sum(c[s].per_token() * t for s, t in ours["tokens"].items())
        assert spent == pytest.approx(budget, rel=1e-9)


def test_fixed_costs_can_exclude_a_source():
    c = costs()
    c["flat"] = SourceCost(acquisition=0.1, training=0.5, share=0.3, fixed=1e9)
    out = allocate(TRUE, c, 5e8)
    assert "flat" not in out["tokens"]
    assert out["status"] == "ok"


def test_no_gain_source_is_excluded_with_a_status():
    table = synthetic_table()
    rows = [r for r in table.rows if r[0] != "flat"]
    rows += [("bad", b, 3.0, "0") for b in BUDGETS]  # worse than control everywhere
    out = analyse(
        AnnealTable("t", ["bad", "fast", "slow"], rows),
        {**costs(), "bad": SourceCost(1.0, 0.5)},
        budget=1e8,
        n_boot=10,
    )
    assert out["sources"]["bad"]["curve"]["status"] == "no_gain"
    assert "bad" not in out["allocation"]["tokens"]


def test_anneal_table_errors(tmp_path):
    path = tmp_path / "a.tsv"
    write_tsv(path, ["source", "budget_tokens", "metric"], [["web", 1e6, 2.0]])
    with pytest.raises(InputError, match="no 'control' rows"):
        load_anneal_table(str(path))
    write_tsv(
        path, ["source", "budget_tokens", "metric"], [["control", 1e6, 2.0], ["web", 2e6, 1.9]]
    )
    with pytest.raises(InputError, match="no control run at this budget"):
        load_anneal_table(str(path))
    write_tsv(path, ["source", "budget", "metric"], [["control", 1e6, 2.0]])
    with pytest.raises(InputError, match="budget_tokens"):
        load_anneal_table(str(path))


def _true_crossing(a: Curve, b: Curve) -> float:
    from scipy.optimize import brentq

    return math.exp(brentq(lambda x: a.gain(math.exp(x)) - b.gain(math.exp(x)), 13.0, 20.0))


def test_crossing_of_two_fitted_curves_is_found_with_an_interval():
    """fast leads at small budgets, slow overtakes it: the crossing is placed near the true
    one, and the bootstrap refits cross there too, with an interval around it."""
    out = analyse(synthetic_table(), costs(), budget=None, n_boot=60, plan_budget=3e8)
    truth = _true_crossing(TRUE["fast"], TRUE["slow"])
    pair = next(c for c in out["crossings"] if sorted(c["pair"]) == ["fast", "slow"])
    assert pair["leads_first"] == "fast" and pair["leads_after"] == "slow"
    assert pair["budget_tokens"] == pytest.approx(truth, rel=0.25)
    assert pair["bootstrap_share_crossing"] > 0.9
    low, high = pair["interval_90"]
    assert low <= pair["budget_tokens"] <= high
    flat = next(c for c in out["crossings"] if sorted(c["pair"]) == ["fast", "flat"])
    assert flat["budget_tokens"] is None and flat["leads_first"] == "fast"


def test_micro_annealing_recommendation_is_set_against_the_fitted_one():
    """At the smallest budget fast looks best; at the planned budget the curves pick slow, and
    spending the money on the micro pick buys less fitted gain than the fitted allocation."""
    out = analyse(synthetic_table(), costs(), budget=1e8, n_boot=20, plan_budget=3e8)
    rec = out["recommendations"]
    assert rec["micro"]["best_by_gain"] == "fast"
    assert rec["fitted_at_plan"]["rank_by_gain"][0] == "slow"
    assert rec["agree_by_gain"] is False
    assert set(rec["micro_allocation"]["tokens"]) == {rec["micro"]["best_by_gain_per_cost"]}
    assert rec["fitted_allocation"]["gain"] >= rec["micro_allocation"]["gain"] - 1e-12
    per_budget = out["sources"]["slow"]["observed"]
    low, high = per_budget["3e+08"]["gain_interval_90"]
    assert low < per_budget["3e+08"]["gain_mean"] < high
