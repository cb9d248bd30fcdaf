"""Verification intervals over seeds: paired differences, their coverage, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixscale.core.intervals import mean_interval, paired_difference, verdict
from mixscale.core.objective import Objective
from mixscale.evaluate.verify import compare


def test_one_value_has_no_interval():
    result = mean_interval([4.2])
    assert result["mean"] == pytest.approx(4.2)
    assert result["interval"] is None
    assert verdict(paired_difference({"0": 1.0}, {"0": 2.0})) == "one seed: no interval"


def test_pairing_removes_the_noise_two_runs_share():
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.3, size=4)  # seed noise far larger than the difference
    a = {str(s): 5.0 + shared[s] - 0.05 for s in range(4)}
    b = {str(s): 5.0 + shared[s] for s in range(4)}
    d = paired_difference(a, b)
    assert d["mean"] == pytest.approx(-0.05)
    assert d["distinguishable"] is True and verdict(d) == "lower"
    # Unpaired, the same numbers cannot be told apart: each method's own interval is wide.
    ia, ib = mean_interval(list(a.values())), mean_interval(list(b.values()))
    assert ia["interval"][1] > ib["interval"][0] and ib["interval"][1] > ia["interval"][0]


def test_only_shared_seeds_are_paired():
    d = paired_difference({"0": 1.0, "1": 2.0, "2": 3.0}, {"1": 1.0, "2": 2.0, "3": 9.0})
    assert d["seeds"] == ["1", "2"] and d["n"] == 2 and d["mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [3, 5])
def test_the_interval_covers_the_true_mean_at_least_at_its_level(n):
    """Over many draws of n normal differences, the 90% interval holds the true mean in at
    least ~90% of them (the bootstrap alone holds it far less often at n = 3)."""
    rng = np.random.default_rng(7)
    trials, covered, boot_covered = 600, 0, 0
    for trial in range(trials):
        x = rng.normal(0.1, 1.0, size=n)
        result = mean_interval(x, resamples=500, seed=trial)
        covered += result["interval"][0] <= 0.1 <= result["interval"][1]
        boot_covered += result["bootstrap"][0] <= 0.1 <= result["bootstrap"][1]
    assert covered / trials >= 0.87
    assert boot_covered < covered  # why the wider interval is used
    if n == 3:
        assert boot_covered / trials < 0.8


def _metrics(tmp_path, method, seed, final, curve_scale=1.0):
    """A verification run's metrics.json: losses on two domains, a loss curve ending at final."""
    fractions = [0.25, 0.5, 0.75, 1.0]
    curve = [
        {"fraction": f, "losses": {"a": final + curve_scale * (1 - f), "b": final + 0.1}}
        for f in fractions
    ]
    data = {
        "run": f"verify-1M-{method}-s{seed}",
        "method": method,
        "seed": seed,
        "weights": {"a": 0.5, "b": 0.5},
        "final_losses": curve[-1]["losses"],
        "curve": curve,
    }
    path = tmp_path / f"{method}-{seed}.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_compare_gives_paired_intervals_and_steps_saved_per_seed(tmp_path):
    seed_noise = [0.0, 0.2, -0.15]
    paths = []
    for s, noise in enumerate(seed_noise):
        paths.append(_metrics(tmp_path, "uniform", s, 4.0 + noise))
        paths.append(_metrics(tmp_path, "good", s, 3.9 + noise))  # 0.1 lower every seed
        paths.append(_metrics(tmp_path, "same", s, 4.0 + noise + [0.02, -0.03, 0.04][s]))
    result = compare(paths, 1e6, None, Objective("mean"))
    good, same = result["methods"]["good"], result["methods"]["same"]
    assert good["vs_uniform"]["mean"] == pytest.approx(-0.1)  # both domains 0.1 lower
    assert good["vs_uniform"]["distinguishable"] is True
    assert same["vs_uniform"]["distinguishable"] is False
    assert good["vs_best_other"]["other"] == "uniform"  # same is 0.01 worse than uniform on average
    assert same["vs_best_other"]["other"] == "good"
    # The good run reaches its seed's uniform final level before its end, every seed.
    assert all(v > 0 for v in good["steps_saved_by_seed"].values())
    low, high = good["steps_saved_interval"]["interval"]
    assert 0 < low <= good["steps_saved_interval"]["mean"] <= high < 100
    assert result["methods"]["uniform"]["objective_interval"]["n"] == 3


def test_report_calls_a_difference_only_when_its_interval_excludes_zero(tmp_path):
    from mixscale.report.summary import _paired_lines

    paths = []
    for s, noise in enumerate([0.0, 0.2, -0.15]):
        paths.append(_metrics(tmp_path, "uniform", s, 4.0 + noise))
        paths.append(_metrics(tmp_path, "good", s, 3.9 + noise))
        paths.append(_metrics(tmp_path, "same", s, 4.0 + noise + [0.02, -0.03, 0.04][s]))
    lines = "\n".join(_paired_lines(compare(paths, 1e6, None, Objective("mean"))))
    assert "| good | uniform | 3 |" in lines and "| lower |" in lines
    assert "| same | uniform | 3 |" in lines and "not distinguishable" in lines
    one_seed = [_metrics(tmp_path, m, 0, 4.0) for m in ("uniform", "good")]
    lines = "\n".join(_paired_lines(compare(one_seed, 1e6, None, Objective("mean"))))
    assert "one seed: no interval" in lines and "verify.seeds >= 3" in lines


def test_the_report_names_the_precision_and_warns_when_runs_mixed_them(tmp_path):
    from mixscale.report.summary import _precision_lines

    paths = []
    for method, precision in (("uniform", "fp32"), ("good", "bf16")):
        path = _metrics(tmp_path, method, 0, 4.0)
        data = json.loads(Path(path).read_text())
        data["hardware"] = {"precision": precision, "device": "cpu"}
        Path(path).write_text(json.dumps(data))
        paths.append(path)
    mixed = compare(paths, 1e6, None, Objective("mean"))
    assert mixed["precision"] == ["bf16", "fp32"]
    assert "different precisions (bf16, fp32)" in _precision_lines(mixed["precision"])[0]
    same = compare(paths[:1], 1e6, None, Objective("mean"))
    assert _precision_lines(same["precision"])[0].startswith("Trained in fp32")
    assert compare([_metrics(tmp_path, "x", 0, 4.0)], 1e6, None)["precision"] == []
