"""Iterated DDO (AutoScale, Appendix B): round r+1 perturbs around round r's optimum at the
same scale, through a Snakemake checkpoint; it stops early when a round moves nothing."""

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, job_counts, run_snakemake
from mixscale.config.typed import Config
from mixscale.core.rounds import combine_rounds, converged, next_centre, round_move
from mixscale.core.runtable import load_run_table
from mixscale.core.world import load_world
from mixscale.errors import InputError
from mixscale.plan.budget import budget_table
from mixscale.plan.check import check_config
from mixscale.plan.mixture import later_rounds_note, round_spec
from mixscale.plan.specs import run_specs

SCALES = {"30M": 3.0e7, "300M": 3.0e8}


def config_dict(rounds=2, tolerance=0.01, **ddo) -> dict:
    """The simulated RedPajama world (7 domains, per-run noise), one seed, trust region on (the
    default): round 1 can move each weight by at most x3 from uniform."""
    return {
        "experiment": "sim",
        "backend": "simulate",
        "world": "redpajama",
        "eval_points": 2,
        "objective": {"kind": "mean"},  # the world's truth is its mean loss
        "fit": {"bootstrap": 0},
        "ddo": {
            "seeds": 1,
            "rounds": rounds,
            "round_tolerance": tolerance,
            "scales": [{"name": n, "tokens": t} for n, t in SCALES.items()],
            **ddo,
        },
        "autoscale": {"targets": [1.0e10]},
    }


def checked(data: dict) -> Config:
    return check_config(copy.deepcopy(data), "test")


def weights_json(weights: dict, centre: dict) -> dict:
    """The fields of a round's WEIGHTS.json the rounds read."""
    return {
        "weights": weights,
        "fit": {"domains": {d: {"base_weight": w} for d, w in centre.items()}},
    }


def test_a_later_round_is_centred_on_the_optimum_before_it():
    config = checked(config_dict(rounds=3))
    specs = run_specs(config)
    later = [s for s in specs.values() if s.get("round", 1) > 1]
    assert len(later) == 2 * 2 * 15  # 2 later rounds x 2 scales x (base + 7 up + 7 down)
    assert all(s["tokens"] == {} for s in later)  # unknown until the round before ends
    domains = load_world("redpajama").domains
    optimum = dict(zip(domains, [0.5, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0], strict=True))
    previous = weights_json(optimum, dict.fromkeys(domains, 1 / 7))
    base = round_spec(config, specs["ddo-300M-r2-base-s0"], previous)
    shares = {d: t / 3.0e8 for d, t in base["tokens"].items()}
    floor = (1 / 7) / 3  # a zero weight is floored at the smallest share round 1 observed
    expected = {d: max(w, floor) for d, w in optimum.items()}
    total = sum(expected.values())
    assert shares == pytest.approx({d: w / total for d, w in expected.items()}, rel=1e-12)
    up = round_spec(config, specs["ddo-300M-r2-c4-up-s0"], previous)
    assert up["tokens"]["c4"] == pytest.approx(3 * base["tokens"]["c4"], rel=1e-12)
    assert up["tokens"]["book"] == pytest.approx(base["tokens"]["book"], rel=1e-12)
    # the plan priced the round at its first centre: the same total whatever the centre
    planned = sum(specs[i]["total_tokens"] for i in specs if i.startswith("ddo-300M-r2-"))
    actual = sum(
        round_spec(config, specs[i], previous)["total_tokens"]
        for i in specs
        if i.startswith("ddo-300M-r2-")
    )
    assert actual == pytest.approx(planned, rel=1e-12)


def test_the_budget_counts_every_round_and_the_dry_run_says_what_follows():
    data = config_dict(rounds=3)
    data["model"] = {"params": 1.0e9, "proxy_params": 1.0e8}
    config = checked(data)
    stages = budget_table(config)["stages"]
    for name in SCALES:
        rows = [stages[f"ddo {name}"], stages[f"ddo {name} round 2"], stages[f"ddo {name} round 3"]]
        assert [r["runs"] for r in rows] == [15, 15, 15]
        assert rows[1]["tokens"] == pytest.approx(rows[0]["tokens"])
    note = later_rounds_note(config, run_specs(config))
    assert "up to 2 more round(s) of 15 runs per scale" in note
    assert later_rounds_note(checked(config_dict(rounds=1)), {}) is None


def test_rounds_stop_when_a_round_moves_no_weight_beyond_the_tolerance():
    centre = {"a": 0.5, "b": 0.5}
    moved = weights_json({"a": 0.6, "b": 0.4}, centre)
    still = weights_json({"a": 0.505, "b": 0.495}, {"a": 0.6, "b": 0.4})
    assert round_move(moved) == pytest.approx(0.1)
    assert not converged(moved, 0.01) and converged(still, 0.1)
    final = combine_rounds([moved, still], planned=4, tolerance=0.1)
    assert final["stopped_early"] and final["weights"] == still["weights"]
    assert [r["round"] for r in final["rounds"]] == [1, 2]
    assert final["rounds"][1]["centre"] == {"a": 0.6, "b": 0.4}
    assert "stopped after round 2 of 4" in final["rounds_note"]
    with pytest.raises(InputError, match=r"moved 0\.1 > tolerance 0\.01"):
        combine_rounds([moved], planned=2, tolerance=0.01)  # it should have gone on
    assert next_centre(moved, 3.0) == pytest.approx({"a": 0.6, "b": 0.4})


def test_rounds_refuse_a_scale_given_as_a_run_table():
    data = config_dict(rounds=2)
    data["ddo"]["scales"][0]["runs"] = str(ROOT / "examples" / "runs_10M.tsv")
    with pytest.raises(InputError, match=r"ddo.rounds.*run table"):
        checked(data)


# --- through Snakemake ----------------------------------------------------------------------


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, "-c2", *args)


def l1_to_truth(weights: dict[str, float], total: float) -> float:
    world = load_world("redpajama")
    truth = world.optimum(total)
    truth = truth / truth.sum()
    return float(np.abs(np.array([weights[d] for d in world.domains]) - truth).sum())


def test_two_rounds_move_closer_to_the_true_optimum_and_resume_between_rounds(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(config_dict(rounds=2)))
    out = tmp_path / "results/sim"

    fresh = snakemake(tmp_path, "-n", "--configfile", str(path))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    counts = job_counts(fresh.stdout)
    assert counts["train"] == 2 * 15  # round 1 only: round 2 is planned when round 1 ends
    assert counts["ddo_round"] == 2
    assert "up to 1 more round(s) of 15 runs per scale follow" in fresh.stderr

    # interrupted between the rounds: only round 1 ran
    round1 = [f"results/sim/ddo/{s}/round1/weights.json" for s in SCALES]
    first = snakemake(tmp_path, *round1, "--configfile", str(path))
    assert first.returncode == 0, first.stderr[-2000:]
    assert not list(out.glob("runs/ddo-*-r2-*"))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/ddo-*/metrics.json")}
    assert len(stamps) == 2 * 15

    # a dry run now plans round 2 and nothing of round 1
    planned = snakemake(tmp_path, "-n", "--configfile", str(path))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert job_counts(planned.stdout)["train"] == 2 * 15
    assert "ddo-30M-base-s0" not in planned.stdout and "ddo-30M-r2-base-s0" in planned.stdout

    rest = snakemake(tmp_path, "--configfile", str(path))
    assert rest.returncode == 0, rest.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # round 1 not recomputed
    assert len(list(out.glob("runs/ddo-*-r2-*/metrics.json"))) == 2 * 15

    for name, total in SCALES.items():
        final = json.loads((out / f"ddo/{name}/weights.json").read_text())
        first_round, second_round = final["rounds"]
        assert final["weights"] == second_round["weights"]
        assert second_round["centre"] == pytest.approx(
            next_centre(json.loads((out / f"ddo/{name}/round1/weights.json").read_text()), 3.0)
        )
        # round 2's table really was perturbed around that centre
        table = load_run_table(out / f"tables/{name}/round2.tsv")
        base = table.tokens[next(i for i, r in enumerate(table.run_ids) if "base" in r)]
        centre = np.array([second_round["centre"][d] for d in table.train_domains])
        assert base / base.sum() == pytest.approx(centre, rel=1e-9)
        # measured: round 1 (fits around uniform, each weight within x3 of it) lands 0.13
        # (30M) and 0.22 (300M) from the truth in L1; round 2 within 0.06
        one, two = l1_to_truth(first_round["weights"], total), l1_to_truth(final["weights"], total)
        assert two < 0.6 * one, (name, one, two)
    summary = (out / "report/summary.md").read_text()
    assert "Iterated DDO (2 rounds of 2" in summary and "| round 2 |" in summary

    # a looser tolerance after the fact: round 1 already moved less, so no round 2 is needed
    loose = config_dict(rounds=2, tolerance=1.0)
    path.write_text(yaml.safe_dump(loose))
    stopped = snakemake(tmp_path, "--configfile", str(path))
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    final = json.loads((out / "ddo/300M/weights.json").read_text())
    assert final["stopped_early"] and len(final["rounds"]) == 1
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
