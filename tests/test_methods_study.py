"""Every method against the true optimum over noise draws (``mixscale study`` with
``methods:``): the sweep's compute equals the workflow's, trials differ, noiseless runs
recover what they should, and bad study files stop in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT, run_cli
from mixscale.config.load import load_yaml_config
from mixscale.core.methods_study import (
    methods_study_from_dict,
    proxy_count,
    run_methods_study,
    sweep_tokens,
    trial_weights,
)
from mixscale.core.study import world_named
from mixscale.errors import InputError
from mixscale.plan.check import check_config
from mixscale.plan.mixture import ddo_runs

NATURAL = {"d0": 40, "d1": 20, "d2": 15, "d3": 10, "d4": 10, "d5": 5}


def small(**changes) -> dict:
    """A quick study: one random world, two scales, small sampled sweeps."""
    data = {
        "worlds": {"random:1": {"natural": NATURAL}},
        "trials": 3,
        "ddo": {"sigma": 0.004, "seeds": 2, "factor": 3.0, "scales": [3.0e7, 3.0e8]},
        "targets": [1.0e9, 1.0e10],
        "methods": ["autoscale", "ddo_largest", "regmix", "dml", "natural"],
        "regmix": {"runs": 16, "tokens": 3.0e8, "candidates": 5000, "top_k": 32},
        "dml": {"runs": 10, "tokens": 3.0e8},
        "compute_matched": [False],
    }
    return {**data, **changes}


def test_sweep_tokens_equal_the_workflows_ddo_sweep():
    """Compute-matched here means what methods.proxy_tokens: ddo means in a workflow."""
    path = ROOT / "config/examples/simulated-methods.yaml"
    config = check_config(load_yaml_config(path), str(path))
    planned = sum(run.total_tokens for run in ddo_runs(config, list(config.verify.natural)))
    spec = methods_study_from_dict(
        small(
            worlds={"redpajama": {}},
            ddo={"seeds": 3, "factor": 3.0, "scales": [3e7, 6e7, 1.2e8, 3e8]},
        ),
        "study",
    )
    assert sweep_tokens(world_named("redpajama"), spec.ddo) == pytest.approx(planned, rel=1e-9)
    assert proxy_count(spec.sampled["dml"], planned) == int(planned // 3e8)


def test_trials_draw_new_noise_and_new_mixtures():
    spec = methods_study_from_dict(small(), "study")
    world = world_named("random:1")
    first, second = (trial_weights(world, spec.worlds[0], spec, t, False) for t in (0, 1))
    for name in ("autoscale", "regmix", "dml"):
        assert not np.allclose(first[name][1e10], second[name][1e10]), name
    assert np.allclose(first["natural"][1e10], second["natural"][1e10])
    again = trial_weights(world, spec.worlds[0], spec, 0, False)
    assert all(np.array_equal(first[m][1e10], again[m][1e10]) for m in first)  # reproducible


def test_noiseless_sweep_autoscale_nearly_optimal_and_natural_fixed():
    data = small(ddo={"sigma": 0.0, "seeds": 1, "factor": 3.0, "scales": [3e7, 3e8]})
    result = run_methods_study(methods_study_from_dict(data, "study"))
    methods = result["rows"][0]["methods"]
    autoscale = methods["autoscale"]["targets"]["1e+10"]
    assert autoscale["mean"] > 0.9 and autoscale["interval"][1] - autoscale["interval"][0] < 1e-9
    natural = methods["natural"]["targets"]["1e+10"]
    assert natural["interval"][0] == natural["interval"][1]  # fixed weights: no noise
    assert methods["regmix"]["proxy_runs"] == 16
    assert methods["dml"]["proxy_compute"] == pytest.approx(10 * 3e8 / 1e10)
    # every method but AutoScale is paired with it, trial by trial
    assert "minus_autoscale" in methods["dml"]["targets"]["1e+10"]


def test_compute_matched_gives_sampled_methods_the_sweeps_tokens():
    result = run_methods_study(
        methods_study_from_dict(small(trials=2, compute_matched=[False, True]), "study")
    )
    own, matched = result["rows"]
    world = world_named("random:1")
    spec = methods_study_from_dict(small(), "study")
    budget = sweep_tokens(world, spec.ddo)
    assert own["methods"]["dml"]["proxy_runs"] == 10
    assert matched["methods"]["dml"]["proxy_runs"] == int(budget // 3e8)
    assert matched["methods"]["regmix"]["proxy_compute"] == pytest.approx(
        int(budget // 3e8) * 3e8 / 1e10
    )
    assert matched["methods"]["autoscale"] == own["methods"]["autoscale"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"methods": ["autoscale", "doremi"]}, "methods"),
        ({"dml": {"runs": 5, "tokens": 3e8}}, "dml.runs"),
        ({"regmix": {"runs": 16}}, "regmix"),
        ({"regmix": {"runs": 16, "tokens": 3e8, "temperature": 0}}, "regmix.temperature"),
        ({"worlds": {"random:1": {"natural": {"d0": 1}}}}, "worlds.random:1.natural"),
        ({"worlds": {"nowhere": {}}}, "worlds.nowhere"),
        ({"targets": []}, "targets"),
        ({"compute_matched": ["yes"]}, "compute_matched"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_study_files_name_the_field(changes, field):
    with pytest.raises(InputError) as err:
        methods_study_from_dict(small(**changes), "study.yaml")
    assert err.value.field == field
    assert "\n" not in err.value.one_line()


def test_cli_writes_json_tables_and_figure(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(json.dumps(small(trials=2)))
    out = tmp_path / "methods.json"
    result = run_cli(
        "study",
        *("--config", str(study), "--out", str(out)),
        *("--markdown", str(tmp_path / "m.md"), "--figure", str(tmp_path / "m.png")),
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert saved["kind"] == "methods" and saved["trials"] == 2
    table = (tmp_path / "m.md").read_text()
    assert "| RegMix | " in table and "minus AutoScale at 1e+10" in table
    assert (tmp_path / "m.png").stat().st_size > 10_000
