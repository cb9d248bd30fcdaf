"""Annealing experiments: the plan (base, controls, sources; fresh text after the base), the
per-run overrides, the tables utility reads, and the report on a known rank flip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import with_defaults
from mixscale.errors import InputError
from mixscale.evaluate.anneal import anneal_table, costs_table
from mixscale.plan.anneal import anneal_runs
from mixscale.plan.specs import run_specs
from mixscale.report.anneal import write_anneal_report

DOMAINS = ["books", "code", "legal"]


def config(**anneal):
    base = {
        "base": {"tokens": 30000},
        "target": {"domains": ["books"]},
        "sources": {"books": {"acquisition_cost": 1e-6}, "code": {"acquisition_cost": 1e-7}},
        "share": 0.25,
        "budgets": [1000, 2000, 4000],
        "seeds": 2,
        "schedule": {"lr": 1e-3},
    }
    base.update(anneal)
    return with_defaults(
        {
            "experiment": "a",
            "backend": "torch",
            "data": {"sources": dict.fromkeys(DOMAINS, "builtin")},
            "model": {"type": "gpt2"},
            "anneal": base,
        }
    )


def test_plan_has_base_controls_and_one_run_per_source_budget_seed():
    runs = anneal_runs(config(), DOMAINS)
    assert runs[0].id == "anneal-base" and runs[0].stage == "anneal-base"
    # general mix: uniform over the non-target domains
    assert runs[0].tokens == {"code": 15000, "legal": 15000}
    anneals = runs[1:]
    assert len(anneals) == 3 * 2 * (1 + 2)
    by_id = {r.id: r for r in anneals}
    control = by_id["anneal-2000-control-s1"]
    assert control.tokens == {"code": 1000, "legal": 1000}  # replay only
    books = by_id["anneal-2000-books-s0"]
    assert books.tokens == {"code": 750, "legal": 750, "books": 500}  # 25% from the source
    assert sum(books.tokens.values()) == books.total_tokens == 2000
    assert books.skip == {"code": 15000, "legal": 15000}  # fresh text after the base run's
    code = by_id["anneal-4000-code-s0"]
    assert code.tokens["code"] == pytest.approx(4000 * 0.75 / 2 + 1000)


def test_specs_start_from_the_base_model_with_linear_decay_to_zero():
    spec = run_specs(config())["anneal-1000-books-s0"]
    assert spec["model"] == {"checkpoint": "results/a/runs/anneal-base/model"}
    assert spec["train"] == {"schedule": "linear", "min_lr_ratio": 0.0, "warmup": 0.0, "lr": 1e-3}
    assert "train" not in run_specs(config())["anneal-base"]


def test_a_given_checkpoint_replaces_the_base_run():
    cfg = config(base={"checkpoint": "/models/base-7b"})
    specs = run_specs(cfg)
    assert "anneal-base" not in specs
    spec = specs["anneal-1000-control-s0"]
    assert spec["model"] == {"checkpoint": "/models/base-7b"} and "skip" not in spec
    # replay defaults to uniform over the non-target domains
    assert spec["tokens"] == {"code": 500, "legal": 500}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budgets": [1000, 2000]}, "anneal.budgets"),
        ({"budgets": [1000, 4000, 2000]}, "anneal.budgets"),
        ({"sources": {"poetry": {"acquisition_cost": 1}}}, "anneal.sources.poetry"),
        ({"sources": {"control": {"acquisition_cost": 1}}}, "anneal.sources.control"),
        ({"target": {"domains": ["poetry"]}}, "anneal.target.domains"),
        ({"share": 1.5}, "anneal.share"),
        ({"base": {}}, "anneal.base"),
        ({"replay": {"poetry": 1}}, "anneal.replay.poetry"),
    ],
)
def test_bad_anneal_configs_name_the_field(change, field):
    with pytest.raises(InputError) as err:
        anneal_runs(config(**change), DOMAINS)
    assert f"config: {field}" in err.value.one_line()


def test_table_reads_the_mean_target_loss(tmp_path):
    paths = []
    for i, (source, loss) in enumerate([("control", 5.0), ("books", 4.5)]):
        path = tmp_path / f"{i}.json"
        metrics = {
            "run": f"r{i}",
            "source": source,
            "total_tokens": 992.0 + 32 * i,  # rounded to whole sequences, differently per run
            "requested_tokens": {"books": 300.0, "legal": 700.0},
            "seed": 0,
            "final_losses": {"books": loss, "legal": loss + 1},
        }
        path.write_text(json.dumps(metrics))
        paths.append(str(path))
    out = tmp_path / "runs.tsv"
    assert anneal_table(paths, ["books", "legal"], str(out)) == 2
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert {r[0]: float(r[2]) for r in rows} == {"books": 5.0, "control": 5.5}
    assert {r[1] for r in rows} == {"1000"}  # the planned budget pairs a run with its control
    bad = json.loads(Path(paths[1]).read_text())
    del bad["final_losses"]["legal"]
    Path(paths[1]).write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"final_losses\.legal"):
        anneal_table(paths, ["books", "legal"], str(out))


def crossing_table(path: Path) -> None:
    """Two sources whose gain curves cross: 'quick' saturates early, 'slow' keeps growing."""
    curves = {
        "quick": lambda d: 0.10 * (1 - (1 + d / 1e3) ** -2.0),
        "slow": lambda d: 0.40 * (1 - (1 + d / 1e5) ** -1.0),
    }
    rng = np.random.default_rng(0)
    lines = ["source\tbudget_tokens\tmetric\tseed"]
    for budget in (1e3, 3e3, 1e4, 3e4, 1e5):
        for seed in range(2):
            control = 3.0 + rng.normal(0, 1e-4)
            lines.append(f"control\t{budget:g}\t{control}\t{seed}")
            for name, gain in curves.items():
                lines.append(f"{name}\t{budget:g}\t{control - gain(budget)}\t{seed}")
    path.write_text("\n".join(lines) + "\n")


def test_report_marks_the_known_flip_and_allocates(tmp_path, cli):
    crossing_table(tmp_path / "runs.tsv")
    costs_table(
        {"quick": {"acquisition_cost": 1.0}, "slow": {"acquisition_cost": 1.0}},
        0.5,
        0.0,
        str(tmp_path / "costs.tsv"),
    )
    res = cli(
        "utility",
        "--runs",
        str(tmp_path / "runs.tsv"),
        "--costs",
        str(tmp_path / "costs.tsv"),
        "--budget",
        "5e4",
        "--bootstrap",
        "20",
        "--out",
        str(tmp_path / "utility.json"),
    )
    assert res.returncode == 0, res.stderr
    utility = json.loads((tmp_path / "utility.json").read_text())
    first = utility["rankings"][0]
    last = utility["rankings"][-1]
    assert first["rank_by_gain"] == ["quick", "slow"] and last["rank_by_gain"] == ["slow", "quick"]
    out = tmp_path / "report" / "anneal.md"
    write_anneal_report(str(tmp_path / "utility.json"), str(tmp_path / "runs.tsv"), str(out))
    text = out.read_text()
    assert "| 1000 | observed | quick > slow |" in text
    assert "**slow** > **quick**" in text  # the flipped pair is marked
    assert "Rank flips against the micro-annealing budget:" in text and "quick / slow" in text
    assert "## Allocation of a budget of 5e+04 $" in text
    for png in ("anneal_gain_vs_tokens.png", "anneal_gain_vs_cost.png"):
        assert (out.parent / png).stat().st_size > 10_000


def test_table_from_downstream_results_uses_the_task_metric(tmp_path):
    """A task target: the annealing metric is the run's score (higher is better)."""
    paths = []
    for source, scores in [("control", [0.5, 0.7]), ("books", [0.8, 0.9])]:
        path = tmp_path / f"anneal-1000-{source}-s0" / "task-0shot.json"  # as the workflow writes
        path.parent.mkdir()
        result = {
            "label": source,
            "target": "1000",
            "run_seed": 0,
            "shots": 0,
            "metric": "acc",
            "tasks": {f"t{k}": {"acc": v, "acc_norm": 0.1} for k, v in enumerate(scores)},
        }
        path.write_text(json.dumps(result))
        paths.append(str(path))
    out = tmp_path / "runs.tsv"
    anneal_table(paths, [], str(out), metric="acc")
    rows = [r.split("\t") for r in out.read_text().splitlines()[1:]]
    assert {r[0]: float(r[2]) for r in rows} == {
        "control": pytest.approx(0.6),
        "books": pytest.approx(0.85),
    }
    assert {r[4] for r in rows} == {"anneal-1000-control-s0", "anneal-1000-books-s0"}
    with pytest.raises(InputError, match="pct_stereotype"):
        anneal_table(paths, [], str(out), metric="pct_stereotype")


def test_a_task_target_needs_no_target_domain():
    cfg = config(target={"task": {"name": "mixscale_order_books"}})
    runs = anneal_runs(cfg, DOMAINS)
    assert runs[0].tokens == dict.fromkeys(DOMAINS, 10000)  # base mix: all domains
    with pytest.raises(InputError, match=r"anneal\.target"):
        anneal_runs(config(target={}), DOMAINS)
