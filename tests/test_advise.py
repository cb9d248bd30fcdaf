"""The design advisor (mixscale.core.advise): its noise estimate recovers a known noise level,
and its recommendations hold on held-out trials in worlds it only sees through a pilot."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from mixscale.core.advise import Design, advise, design_errors, estimate_noise, quantile_bound
from mixscale.core.study import random_world, sweep_table
from mixscale.core.world import load_world
from mixscale.errors import InputError

SIGMA, SIGMA_DOMAIN = 0.004, 0.002


def _noisy(world):
    return dataclasses.replace(world, sigma=SIGMA, sigma_domain=SIGMA_DOMAIN)


def _true_sd(world) -> float:
    """The mean loss's seed sd: shared noise plus the mean of independent per-domain noise."""
    return float(np.hypot(SIGMA, SIGMA_DOMAIN / np.sqrt(len(world.eval_domains))))


def test_noise_estimate_recovers_a_known_noise_level():
    world = _noisy(load_world("redpajama"))
    truth = _true_sd(world)
    estimates = [estimate_noise(sweep_table(world, 3e7, 3.0, 3, trial=t)) for t in range(200)]
    assert np.median([e.sd for e in estimates]) == pytest.approx(truth, rel=0.05)
    covered = np.mean([e.low <= truth <= e.high for e in estimates])
    assert 0.82 <= covered <= 0.97  # a 90% interval, over 200 pilots
    assert all(e.kind == "paired seeds" and e.dof == 15 * 2 - 2 for e in estimates)


def test_a_seed_effect_shared_by_all_mixtures_is_separated_from_the_noise():
    """Seed s of every mixture shares an effect (same initialisation): it cancels from the
    differences the fit reads, so the advisor's noise is the residual, not the raw spread."""
    world = _noisy(load_world("redpajama"))
    truth = _true_sd(world)
    shared = 0.01
    rng = np.random.default_rng(0)
    raw, residual, seed_sd = [], [], []
    for t in range(100):
        table = sweep_table(world, 3e7, 3.0, 4, trial=t)
        effect = rng.normal(0, shared, 4)
        losses = table.losses + effect[np.array(table.seeds, int)][:, None]
        noise = estimate_noise(dataclasses.replace(table, losses=losses))
        raw.append(noise.within_sd)
        residual.append(noise.sd)
        seed_sd.append(noise.shared_seed_sd)
    assert np.median(residual) == pytest.approx(truth, rel=0.07)
    assert np.median(raw) > 2 * truth  # the spread within a mixture includes the seed effect
    assert 0.5 * shared < np.median(seed_sd) < 1.5 * shared


def test_a_pilot_without_replicates_is_refused_in_one_line():
    table = sweep_table(_noisy(load_world("redpajama")), 3e7, 3.0, 1, trial=0)
    with pytest.raises(InputError) as err:
        estimate_noise(table)
    assert "--noise" in err.value.one_line() and "\n" not in err.value.one_line()


def test_quantile_bound_is_an_upper_bound_on_the_quantile():
    rng = np.random.default_rng(1)
    q80 = -np.log(0.2)  # the 80% quantile of an exponential(1)
    bounds = [quantile_bound(rng.exponential(size=60), 0.8, level=0.9) for _ in range(400)]
    assert 0.85 <= np.mean([b >= q80 for b in bounds]) <= 0.97
    assert quantile_bound(np.zeros(3), 0.9) == np.inf  # too few trials for any bound


def _held_out_rate(world, design: Design, error: float, target: float) -> tuple[float, int]:
    m = len(world.domains)
    errors = design_errors(world, design, target, np.full(m, 1 / m), 40, first_trial=5000)
    return float(np.mean(errors["autoscale"] <= error)), 40


@pytest.mark.slow
def test_the_recommendation_meets_its_promise_on_held_out_trials():
    """The advisor sees only a 3-seed pilot at 30M tokens of a latent-skill world with leakage
    (its fitted world is one skill per domain); its advice is then run on 40 trials of the true
    world with fresh noise: the promised error is met at the promised rate (within the
    binomial error of 40 trials), and the one-seed design, which it did not recommend, is not."""
    world = _noisy(load_world("redpajama"))
    pilot = sweep_table(world, 3e7, 3.0, 3, trial=999)
    scales, target, error, confidence = (3e7, 3e8), 1e10, 0.3, 0.8
    result = advise(
        pilot, scales, target, error, confidence, trials=30, factors=(3.0,), scale_sets=[scales]
    )
    best = result["recommended"]
    assert best is not None and best["seeds"] > 1, result["verdict"]
    rate, n = _held_out_rate(world, Design(best["seeds"], 3.0, scales), error, target)
    slack = 2 * np.sqrt(confidence * (1 - confidence) / n)
    assert rate >= confidence - slack, (best, rate)
    one_seed_rate, _ = _held_out_rate(world, Design(1, 3.0, scales), error, target)
    assert one_seed_rate < confidence
    assert best["proxy_tokens"] == pytest.approx(
        Design(best["seeds"], 3.0, scales).tokens(np.full(7, 1 / 7))
    )


@pytest.mark.slow
def test_when_the_advisor_finds_no_design_the_true_world_agrees():
    """In a random world where noise at 300M swamps the effects, the advisor (from the pilot
    alone) promises nothing up to 8 seeds; 8 seeds in the true world indeed miss the target."""
    world = _noisy(random_world(1))
    pilot = sweep_table(world, 3e7, 3.0, 3, trial=999)
    scales, target, error, confidence = (3e7, 3e8), 1e10, 0.15, 0.8
    result = advise(
        pilot, scales, target, error, confidence, trials=30, factors=(3.0,), scale_sets=[scales]
    )
    assert result["recommended"] is None and "no candidate design" in result["verdict"]
    rate, _ = _held_out_rate(world, Design(8, 3.0, scales), error, target)
    assert rate < confidence


def test_advise_command_prints_the_table_and_writes_json(tmp_path):
    world = _noisy(load_world("redpajama"))
    runs = tmp_path / "pilot.tsv"
    sweep_table(world, 3e7, 3.0, 3, trial=7).save(runs)
    out = tmp_path / "advice.json"
    args = [sys.executable, "-m", "mixscale", "advise", "--pilot", str(runs)]
    opts = ["--scales", "3e7,3e8", "--target", "1e10", "--objective", "mean", "--factors", "3"]
    opts += ["--max-seeds", "2", "--trials", "12", "--error", "1.5", "--out", str(out)]
    done = subprocess.run(args + opts, capture_output=True, text=True, check=True)
    assert "advice: 1 seed(s), factor 3" in done.stdout  # error 1.5 of 2: one seed is enough
    data = json.loads(out.read_text())
    assert data["recommended"]["seeds"] == 1 and data["noise"]["kind"] == "paired seeds"
    assert data["noise"]["low"] < _true_sd(world) < data["noise"]["high"]
    bad = subprocess.run([*args, *opts[:-2], "--error", "3"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--error" in bad.stderr
    few = subprocess.run([*args, *opts[:-6], "--trials", "5"], capture_output=True, text=True)
    assert few.returncode == 2 and "11 to 5000 at confidence 0.8" in few.stderr


def test_budget_prints_the_advice_for_a_config(tmp_path):
    """``mixscale budget --pilot``: the config's scales, target, objective and cost model."""
    world = _noisy(load_world("redpajama"))  # the domains of the GPT-2 Large example
    runs = tmp_path / "pilot.tsv"
    sweep_table(world, 1.2e8, 3.0, 3, trial=7).save(runs)
    cmd = [sys.executable, "-m", "mixscale", "budget", "--configfile"]
    cmd += ["config/examples/gpt2-large-redpajama.yaml", "--pilot", str(runs)]
    cmd += ["--factors", "3", "--max-seeds", "1", "--trials", "11", "--error", "1.9"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    budget, advice = done.stdout.split("promise:")
    assert "GPU-hours" in budget and "GPU-h" in advice  # priced by the budget model
    assert "1.2e+08/3e+08/6e+08" in advice  # the config's own three scales, and alternatives
    assert "AutoScale's weights at the target" in advice and "advice: 1 seed(s)" in advice
    other = tmp_path / "other.tsv"
    sweep_table(_noisy(random_world(3)), 1.2e8, 3.0, 2, trial=0).save(other)
    bad = subprocess.run([*cmd[:6], "--pilot", str(other)], capture_output=True, text=True)
    assert bad.returncode == 2 and "not the config's" in bad.stderr
