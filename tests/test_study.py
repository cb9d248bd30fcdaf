"""The method study: trials in simulated worlds, their decomposition, and bad study files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from mixscale.core.study import (
    Setting,
    random_world,
    run_study,
    run_trial,
    settings_of,
    study_from_dict,
    summarise,
)
from mixscale.core.world import load_world
from mixscale.errors import InputError


def _exact(world, setting):
    return {s: world.optimum(s) for s in (*setting.scales, setting.target)}


def test_noiseless_separable_world_every_method_is_exact_with_exact_optima():
    """In a separable power-law world AutoScale is exact (the paper's Theorem): from the true
    optima it captures all of the gain; transfer does not, so its shortfall is extrapolation."""
    world = load_world("separable")
    setting = Setting(sigma=0.0, seeds=1, trust_region=False)
    result = run_trial(world, setting, 0, _exact(world, setting))
    assert result["autoscale_exact"] == pytest.approx(1.0, abs=1e-6)
    assert result["transfer_exact"] < 0.99
    assert result["autoscale"] == pytest.approx(1.0, abs=1e-4)  # noiseless fits are exact here


def test_noise_costs_gain_and_trials_differ():
    world = load_world("redpajama")
    quiet, loud = Setting(sigma=0.0, seeds=1), Setting(sigma=0.02, seeds=1)
    exact = _exact(world, quiet)
    quiet_runs = [run_trial(world, quiet, t, exact) for t in range(4)]
    loud_runs = [run_trial(world, loud, t, exact) for t in range(4)]
    assert len({round(r["transfer"], 9) for r in loud_runs}) > 1  # noise differs per trial
    assert len({round(r["transfer"], 9) for r in quiet_runs}) == 1
    assert np.mean([r["autoscale"] for r in loud_runs]) < quiet_runs[0]["autoscale"]
    # the exact columns do not depend on noise: they measure extrapolation alone
    assert loud_runs[0]["autoscale_exact"] == quiet_runs[0]["autoscale_exact"]


def test_summary_pairs_autoscale_and_transfer_by_trial():
    trials = [{"autoscale": 0.9 + e, "transfer": 0.8 + e} for e in (0.0, 0.05, -0.04, 0.02)]
    out = summarise(trials)
    diff = out["autoscale_minus_transfer"]
    assert diff["mean"] == pytest.approx(0.1) and diff["distinguishable"] is True
    assert diff["wins"] == 1.0 and out["trials"] == 4


def test_one_factor_at_a_time_and_three_scales_add_least_squares():
    settings = settings_of(Setting(), {"seeds": [1, 3], "scales": [[1e7, 3e7, 3e8]]})
    assert [f for f, _ in settings] == ["baseline", "seeds", "seeds", "scales"]
    assert settings[1][1] == settings[0][1]  # seeds 1 is the baseline's: listed, run once
    world = random_world(2)
    three = settings[-1][1]
    result = run_trial(world, three, 0, _exact(world, three))
    assert "autoscale_ls" in result and "autoscale_ls_exact" in result
    two = run_trial(world, Setting(), 0, _exact(world, Setting()))
    assert "autoscale_ls" not in two


def test_random_worlds_are_reproducible_and_valid():
    a, b = random_world(5), random_world(5)
    assert np.array_equal(a.A, b.A) and not np.array_equal(a.A, random_world(6).A)
    assert np.allclose(a.A.sum(axis=0), 1.0)
    n = a.optimum(1e9)
    assert a.loss(n) <= a.loss(np.full(len(n), 1e9 / len(n))) + 1e-12


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"trials": 1}, "trials"),
        ({"worlds": ["nowhere"]}, "worlds"),
        ({"worlds": ["random:x"]}, "worlds"),
        ({"baseline": {"sigma": -1}}, "baseline.sigma"),
        ({"baseline": {"factor": 1}}, "baseline.factor"),
        ({"baseline": {"scales": [3e8, 3e7]}}, "baseline.scales"),
        ({"baseline": {"scales": "big"}}, "baseline.scales"),
        ({"vary": {"noise": [1]}}, "vary.noise"),
        ({"vary": {"seeds": [0]}}, "vary.seeds"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_study_files_name_the_field(data, field):
    with pytest.raises(InputError) as exc:
        study_from_dict(data, "study.yaml")
    assert exc.value.field == field


def test_study_cli_writes_json_tables_and_figure(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "worlds: [separable]\ntrials: 2\nbaseline: {sigma: 0.001, seeds: 1}\n"
        "vary: {factor: [2.0]}\n"
    )
    out = tmp_path / "study.json"
    res = run_cli(
        "study", "--config", str(spec), "--out", str(out),
        "--markdown", str(tmp_path / "study.md"), "--figure", str(tmp_path / "study.png"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert [r["factor"] for r in data["rows"]] == ["baseline", "factor"]
    assert "| baseline |" in (tmp_path / "study.md").read_text()
    assert (tmp_path / "study.png").stat().st_size > 1000
    bad = run_cli("study", "--config", str(spec), "--trials", "1", "--out", str(out))
    assert bad.returncode == 2 and "trials" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_run_study_rows_cover_every_world_and_setting():
    result = run_study(["separable", "random:1"], Setting(sigma=0.001, seeds=1), {"seeds": [2]}, 2)
    assert [(r["world"], r["factor"]) for r in result["rows"]] == [
        ("separable", "baseline"),
        ("separable", "seeds"),
        ("random:1", "baseline"),
        ("random:1", "seeds"),
    ]
