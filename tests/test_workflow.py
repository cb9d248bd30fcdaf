"""The Snakemake workflow as users run it: dry-run job counts, end to end, rerun, schema, lint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, job_counts, run_cli, run_snakemake, suite_config

BIN = str(Path(sys.executable).parent)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, "-c1", *args)


def write_config(workdir: Path, scales: int = 2, targets=(1.0e9,), **extra) -> Path:
    names = ["runs_10M.tsv", "runs_30M.tsv"]
    config = {
        "experiment": "t",
        "ddo": {
            "scales": [
                {
                    "name": f"s{i}",
                    "tokens": float(10**7 * 3**i),
                    "runs": str(ROOT / "examples" / names[i % 2]),
                }
                for i in range(scales)
            ]
        },
        "autoscale": {"targets": list(targets)},
        **extra,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("targets", "expected"), [((1e9,), 5), ((1e9, 5e9, 1e10), 7)])
def test_dry_run_lists_every_job(tmp_path, targets, expected):
    res = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path, targets=targets)))
    assert res.returncode == 0, res.stderr
    total = [line for line in res.stdout.splitlines() if line.startswith("total")]
    assert total and int(total[0].split()[1]) == expected


def test_end_to_end_then_nothing_to_do(tmp_path):
    config = write_config(tmp_path)
    res = snakemake(tmp_path, "--configfile", str(config))
    assert res.returncode == 0, res.stderr
    pred = json.loads((tmp_path / "results/t/autoscale/1e+09.json").read_text())
    assert pred["method"] == "continuous"
    assert sum(pred["weights"].values()) == pytest.approx(1.0)
    ddo = json.loads((tmp_path / "results/t/ddo/s0/weights.json").read_text())
    assert ddo["weight_intervals_90"]  # the example has two seeds per mixture
    again = snakemake(tmp_path, "--configfile", str(config))
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"experiment": "../escape"}, "experiment"),
        ({"fit": {"form": "cubic"}}, "form"),
        ({"autoscale": {"targets": []}}, "targets"),
        ({"typo_key": 1}, "typo_key"),
    ],
)
def test_schema_rejects_bad_configs_naming_the_field(tmp_path, change, field):
    config = write_config(tmp_path, **{})
    data = yaml.safe_load(config.read_text())
    data.update(change)
    config.write_text(yaml.safe_dump(data))
    res = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert res.returncode != 0
    assert field in res.stdout + res.stderr


def test_lint_and_format_clean():
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    lint = subprocess.run(
        [f"{BIN}/snakemake", "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [f"{BIN}/snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stderr


def simulated_config(workdir: Path, world="separable", seeds=2, design="algorithm1") -> Path:
    config = {
        "experiment": "sim",
        "backend": "simulate",
        "world": world,
        "eval_points": 10,
        "fit": {"bootstrap": 20},
        # the world's truth is its mean loss, and the end-to-end test recovers its optimum
        # exactly, wherever it lies: the objective and the solver as the world needs them
        "objective": {"kind": "mean"},
        "ddo": {
            "trust_region": False,
            "design": design,
            "seeds": seeds,
            "scales": [{"name": "30M", "tokens": 3.0e7}, {"name": "100M", "tokens": 1.0e8}],
        },
        "autoscale": {"targets": [1.0e9, 1.0e10]},
        "verify": {
            "methods": ["autoscale", "ddo_largest", "uniform", "reference"],
            "reference": {"web": 0.4, "wiki": 0.1, "code": 0.2, "books": 0.2, "science": 0.1},
        },
    }
    path = workdir / "sim.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("seeds", "design"), [(1, "algorithm1"), (3, "fixed_total")])
def test_dry_run_has_s_times_1_plus_2m_times_seeds_ddo_runs(tmp_path, seeds, design):
    res = snakemake(
        tmp_path, "-n", "--configfile", str(simulated_config(tmp_path, seeds=seeds, design=design))
    )
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    scales, m, targets, methods = 2, 5, 2, 4
    assert counts["train"] == scales * (1 + 2 * m) * seeds + targets * methods
    assert counts["ddo"] == scales
    assert counts["compare"] == targets


def test_simulated_dag_end_to_end_recovers_the_true_optimum(tmp_path):
    config = simulated_config(tmp_path)
    res = snakemake(tmp_path, "--configfile", str(config), "-c2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "mixscale budget" not in res.stdout + res.stderr  # a real run prints no plan
    out = tmp_path / "results/sim"
    summary = (out / "report/summary.md").read_text()
    assert "## Verification at 1e+10 tokens" in summary
    assert (out / "report/weights_vs_scale.png").stat().st_size > 10_000
    compare = json.loads((out / "verify/1e+10.json").read_text())
    autoscale = compare["methods"]["autoscale"]
    # noiseless separable world: DDO + AutoScale are exact, so nothing beats them
    assert autoscale["world_score"]["excess_loss"] < 1e-9
    assert autoscale["world_score"]["captured_gain"] == pytest.approx(1.0, abs=1e-6)
    assert compare["methods"]["uniform"]["steps_saved_pct"] == pytest.approx(0.0)
    assert autoscale["steps_saved_pct"] > compare["methods"]["reference"]["steps_saved_pct"]
    html = tmp_path / "report.html"
    rep = snakemake(tmp_path, "--configfile", str(config), "--report", str(html))
    assert rep.returncode == 0, rep.stderr[-2000:]
    page = html.read_text(encoding="utf-8", errors="replace")
    assert "loss_curves.png" in page and "weights_vs_scale.png" in page and "fits.png" in page
    assert (out / "ddo/100M/fits.png").stat().st_size > 10_000
    again = snakemake(tmp_path, "--configfile", str(config))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_sampled_mixture_methods_plan_train_and_verify(tmp_path):
    """RegMix and DML in verify.methods: their proxy runs in the dry run and the budget, their
    tables and weights built by the workflow, their mixtures verified next to AutoScale's."""
    path = simulated_config(tmp_path, seeds=1)
    config = yaml.safe_load(path.read_text())
    config["verify"]["methods"] = ["autoscale", "regmix", "dml", "uniform"]
    config["methods"] = {"regmix": {"runs": 24, "prior": "uniform"}, "dml": {"runs": 12}}
    config["model"] = {"params": 1.0e8, "proxy_params": 1.0e7}  # for the budget
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--configfile", str(path))
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts["train"] == 2 * (1 + 2 * 5) + 24 + 12 + 2 * 4
    assert counts["method_table"] == 2 and counts["method_weights"] == 2 * 2
    budget = run_cli("budget", "--configfile", str(path))
    assert "proxy regmix" in budget.stdout and "proxy dml" in budget.stdout, budget.stderr
    assert "proxy compute of regmix" in budget.stdout
    res = snakemake(tmp_path, "--configfile", str(path), "-c2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/sim"
    for name in ("regmix", "dml"):
        weights = json.loads((out / f"methods/{name}/1e+10.json").read_text())
        assert weights["method"] == name and weights["total_tokens"] == 1e10
        assert sum(weights["weights"].values()) == pytest.approx(1.0)
        assert len((out / f"methods/{name}/runs.tsv").read_text().splitlines()) == 1 + (
            24 if name == "regmix" else 12
        )
    compare = json.loads((out / "verify/1e+10.json").read_text())
    scores = {m: compare["methods"][m]["world_score"]["captured_gain"] for m in compare["methods"]}
    assert set(scores) == {"autoscale", "regmix", "dml", "uniform"}
    assert scores["autoscale"] == pytest.approx(1.0, abs=1e-6)  # exact in this world
    assert all(np.isfinite(v) and v <= 1 + 1e-9 for v in scores.values()), scores
    summary = (out / "report/summary.md").read_text()
    assert "| regmix |" in summary and "| dml |" in summary
    assert "proxy compute (x target run)" in summary
    # RegMix's 24 runs at the smallest scale (3e7 tokens) against one 1e10-token run
    assert "| regmix |" in summary.split("## Verification at 1e+10")[1]
    row = next(
        x
        for x in summary.split("## Verification at 1e+10")[1].splitlines()
        if x.startswith("| regmix |")
    )
    assert float(row.strip("|").split("|")[-1]) == pytest.approx(24 * 3e7 / 1e10, rel=1e-3)
    assert (out / "report/quality_vs_compute.png").stat().st_size > 10_000
    again = snakemake(tmp_path, "--configfile", str(path), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


WORKFLOW_CONFIGS = [
    ROOT / "config/config.yaml",
    *(
        path
        for path in sorted((ROOT / "config/examples").glob("*.yaml"))
        if "experiment" in yaml.safe_load(path.read_text())  # the rest configure `mixscale study`
    ),
]


@pytest.mark.parametrize("config", WORKFLOW_CONFIGS, ids=lambda path: path.stem)
def test_every_shipped_config_plans_its_whole_dag(tmp_path, config):
    """Every input function of every rule is called in a forced dry run of a shipped config."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the tables config's relative paths
    res = snakemake(tmp_path, "-n", "-F", "--configfile", str(config))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "This was a dry-run" in res.stdout


def test_cluster_config_dry_runs_through_the_slurm_profile(tmp_path):
    res = snakemake(
        tmp_path,
        "-n",
        "--profile",
        str(ROOT / "profiles/slurm"),
        "--configfile",
        str(ROOT / "config/examples/gpt2-large-redpajama.yaml"),
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    counts = job_counts(res.stdout)
    assert counts["train"] == 3 * (1 + 2 * 7) + 3 * 4
    # the paper's 8 task entries on 12 verification models and the untrained one
    assert counts["downstream"] == 8 * (3 * 4 + 1) and counts["untrained_model"] == 1
    assert "downstream_tasks" not in counts  # no embedded tasks in this config


def torch_config(workdir: Path) -> Path:
    return suite_config("torch-tiny", workdir)


def test_torch_dag_trains_real_models_end_to_end(tmp_path):
    """corpus -> tokenizer -> stores -> 18 real training runs -> fits -> AutoScale -> verify."""
    config = torch_config(tmp_path)
    dry = snakemake(tmp_path, "-n", "--configfile", str(config))
    counts = job_counts(dry.stdout)
    assert counts["corpus"] == 3 and counts["tokens"] == 3 and counts["tokenizer"] == 1
    assert counts["train"] == 2 * (1 + 2 * 3) + 3
    res = snakemake(tmp_path, "--configfile", str(config), "-c2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/torch-tiny"
    base = json.loads((out / "runs/ddo-45k-base-s0/metrics.json").read_text())
    up = json.loads((out / "runs/ddo-45k-books-up-s0/metrics.json").read_text())
    assert base["backend"] == "torch" and base["steps"] > 0
    assert up["tokens"]["books"] == pytest.approx(3 * base["tokens"]["books"], rel=0.01)
    assert up["tokens"]["code"] == base["tokens"]["code"]
    assert (out / "runs/ddo-45k-base-s0/model/model.safetensors").is_file()
    natural = json.loads((out / "verify/135000.json").read_text())["methods"]["natural"]
    assert natural["weights"]["legal"] == pytest.approx(0.5, abs=0.01)  # {1, 1, 2} normalised
    summary = (out / "report/summary.md").read_text()
    assert "## Verification at 1.35e+05 tokens" in summary
    assert "## Downstream tasks (lm-eval) at 1.35e+05 tokens" in summary
    for model in [*(f"verify-135000-{m}-s0" for m in ("autoscale", "uniform")), "untrained"]:
        scores = json.loads((out / f"downstream/{model}/embedded-0shot.json").read_text())
        assert len(scores["tasks"]) == 6 and scores["device"] == "cpu"
        assert all(t["samples"] == 20 for t in scores["tasks"].values())
        assert (
            out / f"{'runs' if model != 'untrained' else 'downstream'}/{model}/hf-cache"
        ).is_dir()
    assert (out / "report/downstream.png").stat().st_size > 10_000
    html = tmp_path / "report.html"
    made = snakemake(tmp_path, "--configfile", str(config), "--report", str(html))
    assert made.returncode == 0, made.stderr[-2000:]
    assert html.stat().st_size > 100_000
    again = snakemake(tmp_path, "--configfile", str(config))
    assert "Nothing to be done" in again.stdout + again.stderr
    keep_going_past_a_bad_task(tmp_path, config, out)


def test_doremi_reference_and_proxy_runs_through_snakemake(tmp_path):
    """DoReMi in verify.methods: a reference run, then a proxy run that trains against its saved
    model (a dependency Snakemake sees), then the weights file its verification run reads."""
    config = yaml.safe_load(torch_config(tmp_path).read_text())
    config["verify"]["methods"] = ["autoscale", "doremi"]
    config["methods"] = {"doremi": {"eta": 5.0}}
    config["downstream"] = {"tasks": []}
    path = tmp_path / "doremi.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--configfile", str(path))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout)["train"] == 2 * (1 + 2 * 3) + 2 + 2
    weights = "results/torch-tiny/methods/doremi/135000.json"
    res = snakemake(tmp_path, weights, "-c2", "--configfile", str(path))
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/torch-tiny"
    proxy = json.loads((out / "runs/doremi-proxy-s0/metrics.json").read_text())
    reference = json.loads((out / "runs/doremi-reference-s0/metrics.json").read_text())
    assert "doremi" not in reference and proxy["doremi"]["steps"] == proxy["steps"]
    assert proxy["tokens"] == reference["tokens"]  # the proxy samples the reference mixture
    learned = json.loads((tmp_path / weights).read_text())
    assert learned["method"] == "doremi" and learned["total_tokens"] == 135000
    assert learned["weights"] == pytest.approx(proxy["doremi"]["weights"])
    assert not list(out.glob("runs/ddo-*"))  # only what the weights need was trained
    verify = snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(path),
        f"{out}/runs/verify-135000-doremi-s0/metrics.json",
    )
    assert "doremi_weights" not in job_counts(verify.stdout)  # built: the run can start


def keep_going_past_a_bad_task(workdir: Path, config: Path, out: Path) -> None:
    """An unknown task fails its own job with one line; the other jobs still run."""
    bad = yaml.safe_load(config.read_text())
    bad["downstream"]["tasks"] = ["embedded", "no_such_task"]
    bad_config = workdir / "bad-task.yaml"
    bad_config.write_text(yaml.safe_dump(bad))
    good = out / "downstream/untrained/embedded-0shot.json"
    good.unlink()
    targets = [
        str(good.relative_to(workdir)),
        "results/torch-tiny/downstream/untrained/no_such_task-0shot.json",
    ]
    res = snakemake(workdir, "--configfile", str(bad_config), "--keep-going", "-c2", *targets)
    assert res.returncode != 0
    assert good.is_file()  # the other job went on
    log = (out / "logs/downstream/untrained/no_such_task-0shot.log").read_text()
    assert "'no_such_task' is not an lm-eval task" in log and "Traceback" not in log


def test_tiny_anneal_runs_through_snakemake(tmp_path):
    """A stage-1 base, controls and source runs that start from it, then utility and report."""
    config = yaml.safe_load((ROOT / "tests/configs/anneal-tiny.yaml").read_text())
    config["data"]["downloads"] = str(ROOT / "resources" / "downloads")
    # a derived source: a small curated set of books' training text, repeated at large budgets
    config["data"]["sources"]["curated"] = {"derive": "books", "kind": "curated", "bytes": 3000}
    config["anneal"]["sources"]["curated"] = {"acquisition_cost": 2.0e-6}
    config["anneal"]["plan_budget"] = 20480
    path = tmp_path / "anneal.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--configfile", str(path))
    counts = job_counts(dry.stdout)
    assert counts["train"] == 1 + 3 * (1 + 4)  # base + per budget: control + 4 sources
    assert counts["utility"] == 1 and "ddo" not in counts
    assert counts["derived_corpus"] == 1 and counts["tokens"] == 4
    res = snakemake(tmp_path, "--configfile", str(path), "-c2")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/anneal-tiny"
    base = json.loads((out / "runs/anneal-base/metrics.json").read_text())
    run = json.loads((out / "runs/anneal-5120-books-s0/metrics.json").read_text())
    assert run["settings"]["schedule"] == "linear" and run["settings"]["min_lr_ratio"] == 0.0
    assert run["model"] == {"checkpoint": "results/anneal-tiny/runs/anneal-base/model"}
    assert run["tokens"]["books"] == pytest.approx(2560, rel=0.02)
    # it starts from the base model: its first evaluation (after 5 of 20 steps) is close to
    # the base's final loss, far below an untrained model's ln(512) = 6.24
    assert run["curve"][0]["step"] == 5
    assert run["curve"][0]["objective"] < base["objective"] + 0.3 < 6.0
    rows = (out / "anneal/runs.tsv").read_text().splitlines()
    assert len(rows) == 1 + 15
    curated = json.loads((out / "runs/anneal-10240-curated-s0/metrics.json").read_text())
    assert curated["epochs"]["curated"] > 1  # the small set is repeated at the largest budget
    assert set(curated["final_losses"]) == {"books", "code", "legal"}  # derived: not evaluated
    store = json.loads((out / "data/stores/curated/meta.json").read_text())
    assert store["val_tokens"] == 0 and store["train_documents"] >= 1
    utility = json.loads((out / "anneal/utility.json").read_text())
    assert set(utility["sources"]) == {"books", "code", "legal", "curated"}
    assert "allocation" in utility and utility["plan_budget"] == 20480
    report = (out / "report/anneal.md").read_text()
    assert "## Rankings per budget" in report and "## Where the fitted curves cross" in report
    assert "micro-annealing run against the fitted curves at 2.048e+04" in report
    html = tmp_path / "report.html"
    made = snakemake(tmp_path, "--configfile", str(path), "--report", str(html))
    assert made.returncode == 0, made.stderr[-2000:]
    again = snakemake(tmp_path, "--configfile", str(path))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_anneal_with_a_task_target_scores_every_annealing_run(tmp_path):
    """anneal.target.task: each annealing run gets an lm-eval job; the table reads them."""
    config = yaml.safe_load((ROOT / "tests/configs/anneal-tiny.yaml").read_text())
    config["anneal"]["target"] = {"task": {"name": "mixscale_order_books", "metric": "acc"}}
    path = tmp_path / "anneal-task.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "-p", "--configfile", str(path))
    assert dry.returncode == 0, dry.stderr[-2000:]
    counts = job_counts(dry.stdout)
    assert counts["downstream"] == 12 and counts["downstream_tasks"] == 1
    assert "untrained_model" not in counts  # no verification runs, no floor needed
    assert "--task-metric acc" in dry.stdout and "--direction higher" in dry.stdout


def test_dry_run_ends_with_the_budget_and_a_real_run_does_not(tmp_path):
    data = yaml.safe_load((ROOT / "config/examples/simulated-demo.yaml").read_text())
    data["model"] = {"params": 1.0e8}  # priced like a 100M-parameter model
    simulated = tmp_path / "simulated.yaml"
    simulated.write_text(yaml.safe_dump(data))
    dry = snakemake(tmp_path, "-n", "--configfile", str(simulated))
    assert dry.returncode == 0, dry.stderr
    table_end = dry.stdout.index("This was a dry-run")
    budget = dry.stdout.index("mixscale budget of this plan")
    assert budget > table_end  # below Snakemake's own job table
    assert "GPU-hours" in dry.stdout[budget:] and "\nddo " in dry.stdout[budget:]
    config = str(write_config(tmp_path))  # run tables: nothing trains, no budget to print
    assert "mixscale budget" not in snakemake(tmp_path, "-n", "--configfile", config).stdout
    one_run = "results/simulated-demo/runs/ddo-30M-base-s0/metrics.json"
    real = snakemake(tmp_path, one_run, "--configfile", str(simulated))  # targets first
    assert real.returncode == 0, real.stderr
    assert (tmp_path / one_run).is_file()
    assert "mixscale budget" not in real.stdout + real.stderr
    broken = write_config(tmp_path, scales=1)  # one scale: refused before any job
    failed = snakemake(tmp_path, "-n", "--configfile", str(broken))
    assert failed.returncode != 0
    assert "mixscale budget" not in failed.stdout + failed.stderr
