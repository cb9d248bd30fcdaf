"""The simulated world: its own optimum, and how right DDO + AutoScale are in it."""

import numpy as np
import pytest

from conftest import alg1_mixtures, run_cli
from mixscale.core.ddo import Constraints, optimize
from mixscale.core.fit import fit_runs
from mixscale.core.predict import Optimum, predict_continuous
from mixscale.core.world import (
    load_world,
    score,
    shipped_worlds,
    simulate_run_table,
    world_from_dict,
)
from mixscale.errors import InputError


def ddo_optimum(world, total, seeds=1, noisy=False):
    m = len(world.domains)
    table = simulate_run_table(world, alg1_mixtures(np.full(m, total / m)), seeds, noisy)
    # the exact optimum of the fitted laws: this world's optimum lies beyond the trust region
    weights = optimize(fit_runs(table), total, Constraints(trust_region=False))
    return Optimum("ddo", list(weights["tokens"]), np.array(list(weights["tokens"].values())))


def test_shipped_worlds_load():
    assert {"separable", "redpajama", "redundant"} <= set(shipped_worlds())
    for name in shipped_worlds():
        world = load_world(name)
        n = world.optimum(1e9)
        assert n.sum() == pytest.approx(1e9)
        assert world.loss(n) <= world.loss(np.full(len(n), 1e9 / len(n))) + 1e-12


def test_optimum_matches_brute_force_on_two_domains():
    world = world_from_dict(
        {
            "domains": ["a", "b"],
            "skills": [{"beta": 30, "gamma": 0.3}, {"beta": 10, "gamma": 0.5}],
            "A": [[0.8, 0.3], [0.2, 0.7]],
        }
    )
    total = 1e8
    grid = np.linspace(1e-4, 1 - 1e-4, 20001)
    losses = [world.loss(np.array([w, 1 - w]) * total) for w in grid]
    best = grid[int(np.argmin(losses))]
    assert world.optimum(total)[0] / total == pytest.approx(best, abs=1e-4)


@pytest.mark.parametrize("target_factor", [10, 100])
def test_separable_noiseless_ddo_plus_autoscale_is_exact(target_factor):
    world = load_world("separable")
    n1, n2 = 3e7, 1e8
    optima = [ddo_optimum(world, n) for n in (n1, n2)]
    # DDO itself is exact at its own scale in this world
    for opt, n in zip(optima, (n1, n2), strict=True):
        assert np.max(np.abs(opt.tokens / world.optimum(n) - 1)) < 1e-6
    target = target_factor * n2
    pred = predict_continuous(optima, target)
    got = np.array([pred["tokens"][d] for d in world.domains])
    assert np.max(np.abs(got / world.optimum(target) - 1)) < 1e-6


def autoscale_error(sigma, seeds, trials=6):
    base = load_world("separable")
    errors = []
    for trial in range(trials):
        world = type(base)(
            **{**base.__dict__, "sigma": 0.0, "sigma_domain": sigma, "name": f"noisy{trial}"}
        )
        try:
            optima = [ddo_optimum(_reseeded(world, trial), n, seeds, True) for n in (3e7, 1e8)]
            pred = predict_continuous(optima, 1e10)
            w = np.array([pred["weights"][d] for d in world.domains])
        except InputError:
            w = np.full(len(world.domains), 1 / len(world.domains))
        truth = world.optimum(1e10) / 1e10
        errors.append(np.abs(w - truth).sum())
    return float(np.mean(errors))


def _reseeded(world, trial):
    """A world whose seed noise differs per trial (noise is keyed by tokens and seed)."""
    original = world.eval_losses

    class Shifted(type(world)):
        def eval_losses(self, tokens, seed=None):
            return original(tokens, None if seed is None else seed + 1000 * trial)

    return Shifted(**world.__dict__)


def test_error_grows_with_noise_and_replicates_reduce_it():
    small, large = autoscale_error(0.0005, 1), autoscale_error(0.005, 1)
    replicated = autoscale_error(0.005, 6)
    assert autoscale_error(0.0, 1) < 1e-6
    assert small < large
    assert replicated < large


def test_score_and_cli(tmp_path):
    world = load_world("redpajama")
    uniform = dict.fromkeys(world.domains, 1 / 7)
    s = score(world, uniform, 3e9)
    assert s["captured_gain"] == pytest.approx(0.0, abs=1e-12)
    assert s["excess_loss"] > 0
    out = tmp_path / "w.json"
    res = run_cli("world", "optimum", "--world", "redpajama", "--tokens", "3e9", "--out", str(out))
    assert res.returncode == 0, res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains: [a, b]\nskills: [{beta: 1, gamma: 0.3}]\nA: [[1, 0]]\n")
    res = run_cli("world", "optimum", "--world", str(bad), "--tokens", "1e9", "--out", str(out))
    assert res.returncode == 2
    assert "A: a domain feeds no skill" in res.stderr


def test_world_trends_match_the_paper_for_redpajama():
    world = load_world("redpajama")
    small, large = world.optimum(3e7) / 3e7, world.optimum(1e10) / 1e10
    idx = {d: i for i, d in enumerate(world.domains)}
    for gains in ("common_crawl", "c4"):
        assert large[idx[gains]] > small[idx[gains]]
    for loses in ("wikipedia", "arxiv"):
        assert large[idx[loses]] < small[idx[loses]]
