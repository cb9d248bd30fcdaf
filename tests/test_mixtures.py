"""Data Mixing Laws and RegMix on run tables of one scale: known answers on synthetic worlds,
and the command line (`mixscale dml`, `mixscale regmix`, `mixscale mixtures`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from mixscale.core.mixlaws import fit_mixing_laws, optimal_weights, project_to_box_simplex
from mixscale.core.objective import Objective
from mixscale.core.regmix import fit_regmix, sample_mixtures, simulate_optimum, spearman
from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

TRAIN = ["a", "b", "d"]
EVAL = ["p", "q"]
TOTAL = 1e8
# L_i(r) = c_i + k_i exp(t_i . r): the law of Ye et al., two evaluation domains
C = np.array([2.0, 2.5])
K = np.array([0.8, 1.2])
T = np.array([[-2.0, 0.5, 1.0], [1.0, -3.0, 0.2]])


def law_losses(weights: np.ndarray) -> np.ndarray:
    return C + K * np.exp(weights @ T.T)


def table_of(weights: np.ndarray, losses: np.ndarray, total: float = TOTAL) -> RunTable:
    n = len(weights)
    return RunTable(
        "runs.tsv", TRAIN, EVAL, weights * total, losses, [f"r{i}" for i in range(n)], ["0"] * n
    )


def simplex_grid(step: float = 0.002) -> np.ndarray:
    ticks = np.arange(0, 1 + 1e-9, step)
    grid = [(x, y, 1 - x - y) for x in ticks for y in ticks if x + y <= 1 + 1e-9]
    return np.clip(np.array(grid), 0, 1)


def test_mixing_law_recovered_from_noiseless_runs_and_its_optimum_exact():
    weights = np.random.default_rng(0).dirichlet(np.ones(3), 12)
    fit = fit_mixing_laws(table_of(weights, law_losses(weights)), Objective())
    for i, law in enumerate(fit.to_json()["domains"].values()):
        assert law["c"] == pytest.approx(C[i], rel=1e-8)
        # k and a common shift of t are one parameter: compare with t centred
        shift = T[i].mean()
        assert law["k"] == pytest.approx(K[i] * np.exp(shift), rel=1e-8)
        assert list(law["t"].values()) == pytest.approx(T[i] - shift, abs=1e-8)
    held_out = np.random.default_rng(1).dirichlet(np.ones(3), 50)
    assert fit.losses(held_out) == pytest.approx(law_losses(held_out), rel=1e-9)
    # the optimum against an independent search: a 0.002 grid of the simplex
    best = optimal_weights(fit, TOTAL)
    grid = simplex_grid()
    on_grid = grid[law_losses(grid).mean(axis=1).argmin()]
    assert np.abs(best - on_grid).max() <= 0.002
    assert law_losses(best[None]).mean() <= law_losses(grid).mean(axis=1).min() + 1e-12


def test_mixing_law_optimum_obeys_bounds_and_perplexity_objective():
    weights = np.random.default_rng(0).dirichlet(np.ones(3), 12)
    table = table_of(weights, law_losses(weights))
    from mixscale.core.ddo import Constraints

    fit = fit_mixing_laws(table, Objective(kind="perplexity"))
    capped = optimal_weights(fit, TOTAL, Constraints(max_weight={"*": 0.5}, min_weight={"d": 0.1}))
    assert capped.sum() == pytest.approx(1.0) and capped.max() <= 0.5 + 1e-9
    assert capped[2] >= 0.1 - 1e-9
    grid = simplex_grid()
    grid = grid[(grid.max(axis=1) <= 0.5) & (grid[:, 2] >= 0.1)]
    perplexity = np.exp(law_losses(grid)).mean(axis=1)
    assert np.exp(law_losses(capped[None])).mean() <= perplexity.min() + 1e-9


def test_mixing_laws_refuse_too_few_mixtures_and_mixed_scales():
    weights = np.random.default_rng(0).dirichlet(np.ones(3), 3)
    with pytest.raises(InputError, match="3 distinct mixtures for 3 domains"):
        fit_mixing_laws(table_of(weights, law_losses(weights)), Objective())
    weights = np.random.default_rng(0).dirichlet(np.ones(3), 8)
    table = table_of(weights, law_losses(weights))
    table.tokens[0] *= 3  # one run at three times the scale
    with pytest.raises(InputError, match="runs at different totals"):
        fit_mixing_laws(table, Objective())


def test_generator_respects_caps_is_seeded_and_distinct():
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    caps = np.array([1.0, 1.0, 0.4, 0.2])
    mixtures = sample_mixtures(prior, 64, seed=3, caps=caps)
    assert mixtures.shape == (64, 4)
    assert np.allclose(mixtures.sum(axis=1), 1)
    assert np.all(mixtures <= caps + 1e-3)  # capped before rounding to multiples of 2e-4
    assert len(np.unique(mixtures.round(9), axis=0)) == 64
    assert np.array_equal(mixtures, sample_mixtures(prior, 64, seed=3, caps=caps))
    assert not np.array_equal(mixtures, sample_mixtures(prior, 64, seed=4, caps=caps))
    assert (mixtures == 0).any()  # the draws are sparse: weights under 2e-4 are dropped
    with pytest.raises(InputError, match="temperature"):
        sample_mixtures(prior, 8, seed=0, temperature=0)


def bowl(weights: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A known objective: lowest at centre."""
    return 2.0 + 3.0 * ((weights - centre) ** 2).sum(axis=-1)


def test_regmix_ranking_recovers_the_best_of_a_known_set():
    prior = np.full(4, 0.25)
    centre = np.array([0.45, 0.3, 0.15, 0.1])
    train = sample_mixtures(prior, 256, seed=0)
    fit = fit_regmix(train, bowl(train, centre), ["a", "b", "c", "d"], Objective())
    held_out = np.random.default_rng(5).dirichlet(np.ones(4), 40)
    truth, predicted = bowl(held_out, centre), fit.predict(held_out)
    assert spearman(predicted, truth) > 0.9
    assert np.argsort(truth)[0] in np.argsort(predicted)[:3]  # the best one ranked in the top 3
    weights, _ = simulate_optimum(fit, prior, 0, np.zeros(4), np.ones(4))
    assert np.abs(weights - centre).sum() < 0.25, weights  # near the bowl's bottom
    assert np.abs(weights - centre).sum() < np.abs(prior - centre).sum() / 2


def test_box_simplex_projection():
    w = project_to_box_simplex(np.array([0.9, 0.9, -0.2]), np.zeros(3), np.full(3, 0.6))
    assert w.sum() == pytest.approx(1.0) and w.max() <= 0.6 and w.min() >= 0


def write_table(path: Path, weights: np.ndarray, losses: np.ndarray, total: float = TOTAL):
    header = ["run", *(f"tokens.{d}" for d in TRAIN), *(f"loss.{e}" for e in EVAL)]
    lines = ["\t".join(header)]
    for i, (w, loss) in enumerate(zip(weights, losses, strict=True)):
        cells = [f"r{i}", *(str(round(x * total)) for x in w), *(repr(float(x)) for x in loss)]
        lines.append("\t".join(cells))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("method", ["dml", "regmix"])
def test_cli_writes_weights_and_scores(method, tmp_path):
    rng = np.random.default_rng(0)
    train = sample_mixtures(np.full(3, 1 / 3), 48, seed=1)
    write_table(tmp_path / "runs.tsv", train, law_losses(train))
    held = rng.dirichlet(np.ones(3), 10)
    write_table(tmp_path / "held.tsv", held, law_losses(held))
    res = run_cli(
        method, "--runs", str(tmp_path / "runs.tsv"), "--tokens", "3e9", "--max-weight", "0.8",
        "--score", str(tmp_path / "held.tsv"), "--scores-out", str(tmp_path / "scores.tsv"),
        "--out", str(tmp_path / "W.json"), "--objective", "mean",  # the law is on the mean loss
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "W.json").read_text())
    assert out["method"] == method and out["total_tokens"] == 3e9
    assert sum(out["weights"].values()) == pytest.approx(1.0)
    assert max(out["weights"].values()) <= 0.8 + 1e-9
    assert sum(out["tokens"].values()) == pytest.approx(3e9)
    truth_at = law_losses(np.array([[out["weights"][d] for d in TRAIN]])).mean()
    uniform = law_losses(np.full((1, 3), 1 / 3)).mean()
    assert truth_at < uniform  # better than uniform on the true law
    lines = (tmp_path / "scores.tsv").read_text().splitlines()
    assert lines[0] == "run\tpredicted_objective\tobjective" and len(lines) == 11
    predicted = np.array([float(x.split("\t")[1]) for x in lines[1:]])
    observed = np.array([float(x.split("\t")[2]) for x in lines[1:]])
    assert observed == pytest.approx(law_losses(held).mean(axis=1), rel=1e-9)
    if method == "dml":  # the law is the world: its predictions are exact
        assert predicted == pytest.approx(observed, rel=1e-6)
    else:
        assert spearman(predicted, observed) > 0.6


def test_cli_mixtures_then_bad_settings_in_one_line(tmp_path):
    res = run_cli(
        "mixtures", "--prior", "a=6,b=3,d=1", "--count", "16", "--tokens", "1e6",
        "--available", "a=1e9,b=1e9,d=2e4", "--max-epochs", "4", "--out", str(tmp_path / "m.tsv"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in (tmp_path / "m.tsv").read_text().splitlines()]
    assert rows[0] == ["run", "tokens.a", "tokens.b", "tokens.d"] and len(rows) == 17
    assert all(int(r[3]) <= 4 * 2e4 + 200 for r in rows[1:])  # 4 epochs of d's 20k tokens
    bad = {
        ("--temperature", "0"): "--temperature: 0 is outside (0, 100]",
        ("--count", "0"): "--count: 0 is outside [1, 4096]",
    }
    for (flag, value), message in bad.items():
        res = run_cli(
            "mixtures", "--prior", "a=1,b=1", "--count", "4", "--tokens", "1e6", flag, value,
            "--out", str(tmp_path / "x.tsv"),
        )  # fmt: skip
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    few = np.random.default_rng(0).dirichlet(np.ones(3), 3)
    write_table(tmp_path / "few.tsv", few, law_losses(few))
    res = run_cli("dml", "--runs", str(tmp_path / "few.tsv"), "--out", str(tmp_path / "W.json"))
    assert res.returncode == 2 and "give at least 4 mixtures" in res.stderr, res.stderr
    res = run_cli(
        "regmix", "--runs", str(tmp_path / "few.tsv"), "--prior", "a=1,b=1,d=1",
        "--out", str(tmp_path / "W.json"),
    )  # fmt: skip
    assert res.returncode == 2 and "runs" in res.stderr, res.stderr
    assert not (tmp_path / "W.json").exists()


def test_zero_tokens_allowed_here_not_for_ddo(tmp_path):
    weights = sample_mixtures(np.full(3, 1 / 3), 24, seed=2)
    assert (weights == 0).any()
    write_table(tmp_path / "runs.tsv", weights, law_losses(weights))
    ok = run_cli("dml", "--runs", str(tmp_path / "runs.tsv"), "--out", str(tmp_path / "W.json"))
    assert ok.returncode == 0, ok.stderr
    ddo = run_cli(
        "ddo", "--runs", str(tmp_path / "runs.tsv"), "--tokens", "1e8",
        "--out", str(tmp_path / "D.json"),
    )  # fmt: skip
    assert ddo.returncode == 2 and "tokens must be > 0" in ddo.stderr, ddo.stderr
