"""The CLI as users call it: JSON shapes, help, and one-line errors for every bad-input class."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, alg1_mixtures, make_table, power_world, run_cli
from mixscale.config.profile import install_profile
from mixscale.core.objective import Objective, parse_objective

A = np.array([30.0, 50.0, 20.0])
B = np.array([0.30, 0.40, 0.25])
BASE = np.array([1e6, 1e6, 1e6])


@pytest.fixture
def runs(tmp_path):
    table = make_table(alg1_mixtures(BASE), power_world(A, B), domains=["web", "wiki", "code"])
    path = tmp_path / "runs.tsv"
    table.save(path)
    return path


def test_fit_solve_predict_shapes(runs, tmp_path):
    fit, w1, w2, pred = (tmp_path / f for f in ("fit.json", "w1.json", "w2.json", "p.json"))
    assert run_cli("fit", "--runs", str(runs), "--out", str(fit)).returncode == 0
    data = json.loads(fit.read_text())
    for d in ("web", "wiki", "code"):
        entry = data["domains"][d]
        assert entry["form"] == "power" and entry["status"] == "ok"
        assert {"a", "b"} <= set(entry["params"]) and "diagnostics" in entry
    for out, n in ((w1, "1e6"), (w2, "1e7")):
        assert run_cli("solve", "--fit", str(fit), "--tokens", n, "--out", str(out)).returncode == 0
        weights = json.loads(out.read_text())
        assert {"total_tokens", "weights", "tokens"} <= set(weights)
        assert sum(weights["weights"].values()) == pytest.approx(1, abs=1e-12)
    res = run_cli(
        "predict", "--optimum", str(w1), "--optimum", str(w2), "--target", "1e9", "--out", str(pred)
    )
    assert res.returncode == 0, res.stderr
    p = json.loads(pred.read_text())
    assert p["method"] == "continuous" and p["target_tokens"] == 1e9
    assert sum(p["tokens"].values()) == pytest.approx(1e9)
    res = run_cli(
        "predict",
        "--optimum",
        str(w1),
        "--optimum",
        str(w2),
        "--target",
        "5e7",
        "--discrete",
        "--out",
        str(pred),
    )
    assert json.loads(pred.read_text())["method"] == "discrete"


def test_ddo_in_one_step(runs, tmp_path):
    out = tmp_path / "ddo.json"
    res = run_cli("ddo", "--runs", str(runs), "--tokens", "3e6", "--out", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert set(data["weights"]) == {"web", "wiki", "code"}
    assert "no replicate seeds" in data["weight_intervals_note"]


@pytest.mark.parametrize("command", ["fit", "solve", "ddo", "predict", "utility"])
def test_help(command):
    res = run_cli(command, "--help")
    assert res.returncode == 0 and "--out" in res.stdout


BAD_TABLES = {
    "missing tokens columns": ("run\tloss.a\nr1\t2.0\n", "no tokens.<domain> columns"),
    "missing loss columns": ("run\ttokens.a\nr1\t10\n", "no loss.<domain> columns"),
    "zero tokens": (
        "run\ttokens.a\tloss.a\nr1\t0\t2.0\n",
        "row 2, column tokens.a: tokens must be > 0",
    ),
    "negative tokens": ("run\ttokens.a\tloss.a\nr1\t-5\t2.0\n", "tokens must be > 0"),
    "nan loss": ("run\ttokens.a\tloss.a\nr1\t10\tnan\n", "row 2, column loss.a: value is nan"),
    "inf loss": ("run\ttokens.a\tloss.a\nr1\t10\tinf\n", "not finite"),
    "negative loss": ("run\ttokens.a\tloss.a\nr1\t10\t-1\n", "loss must be >= 0"),
    "share as tokens": ("run\ttokens.a\tloss.a\nr1\t0.3\t2\n", "0.3 tokens is outside [1, 1e+18]"),
    "tokens unit slip": ("run\ttokens.a\tloss.a\nr1\t3e21\t2\n", "3e21 tokens is outside"),
    "diverged loss": ("run\ttokens.a\tloss.a\nr1\t10\t1e30\n", "the run diverged?"),
    "duplicate run": ("run\ttokens.a\tloss.a\nr1\t10\t2\nr1\t30\t1.9\n", "duplicate run id 'r1'"),
    "not a number": ("run\ttokens.a\tloss.a\nr1\tten\t2\n", "'ten' is not a number"),
    "ragged row": ("run\ttokens.a\tloss.a\nr1\t10\n", "line 2: has 2 fields"),
    "empty file": ("", "empty table"),
    "header only": ("run\ttokens.a\tloss.a\n", "no runs"),
    "duplicate column": ("tokens.a\ttokens.a\tloss.a\n1\t2\t3\n", "duplicate column"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_run_tables_fail_in_one_line(case, tmp_path):
    text, expected = BAD_TABLES[case]
    path = tmp_path / "runs.tsv"
    path.write_text(text)
    out = tmp_path / "fit.json"
    out.write_text('{"kept": true}')  # an earlier result must survive a failed run
    res = run_cli("fit", "--runs", str(path), "--out", str(out))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert json.loads(out.read_text()) == {"kept": True}


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "runs.tsv"
    path.write_bytes(b"\xff\xfe\x00binary")
    res = run_cli("fit", "--runs", str(path), "--out", str(tmp_path / "f.json"))
    assert res.returncode == 2 and "not UTF-8" in res.stderr
    res = run_cli("fit", "--runs", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "f.json"))
    assert res.returncode == 2 and "file not found" in res.stderr


def test_bad_solve_and_predict_inputs(runs, tmp_path):
    fit = tmp_path / "fit.json"
    run_cli("fit", "--runs", str(runs), "--out", str(fit))
    cases = [
        (("solve", "--fit", str(fit), "--tokens", "1e6", "--min-weight", "0.5"), "min-weight"),
        (("solve", "--fit", str(fit), "--tokens", "1e6", "--max-tokens", "books=5"), "books"),
        (("solve", "--fit", str(fit), "--tokens", "-3"), "--tokens"),
        (("solve", "--fit", str(fit)), "give exactly one"),
        (("predict", "--optimum", str(fit), "--target", "1e9"), "at least two"),
    ]
    broken = tmp_path / "broken.json"
    broken.write_text('{"domains": {"a": {"status": "ok"')
    cases.append((("solve", "--fit", str(broken), "--tokens", "1e6"), "invalid JSON"))
    for args, expected in cases:
        res = run_cli(*args, "--out", str(tmp_path / "o.json"))
        assert res.returncode == 2, (args, res.stderr)
        assert expected in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_objective_options():
    losses = np.array([[1.0, 2.0, 3.0]])
    domains = ["a", "b", "c"]
    assert Objective().evaluate(domains, losses)[0] == pytest.approx(2.0)
    assert parse_objective("mean", "a=3,c=1", None).evaluate(domains, losses)[0] == pytest.approx(
        1.5
    )
    assert parse_objective("mean", None, "b,c").evaluate(domains, losses)[0] == pytest.approx(2.5)
    ppl = parse_objective("perplexity", None, None).evaluate(domains, losses)[0]
    assert ppl == pytest.approx(np.exp([1.0, 2.0, 3.0]).mean())


def test_objective_subset_changes_the_fit(runs, tmp_path):
    text = runs.read_text().splitlines()
    # add a second evaluation domain that does not respond to the data at all
    text = [text[0] + "\tloss.flat"] + [line + "\t1.0" for line in text[1:]]
    runs.write_text("\n".join(text) + "\n")
    out = tmp_path / "f.json"
    res = run_cli("fit", "--runs", str(runs), "--eval-domains", "flat", "--out", str(out))
    assert res.returncode == 0
    assert {d["status"] for d in json.loads(out.read_text())["domains"].values()} == {"no_gain"}
    res = run_cli("fit", "--runs", str(runs), "--eval-domains", "nope", "--out", str(out))
    assert res.returncode == 2 and "domain 'nope'" in res.stderr


def test_utility_cli(tmp_path):
    runs = tmp_path / "anneal.tsv"
    lines = ["source\tbudget_tokens\tmetric\tseed"]
    for b in (1e6, 1e7, 1e8, 1e9):
        lines.append(f"control\t{b}\t2.0\t0")
        lines.append(f"web\t{b}\t{2.0 - 0.1 * (1 - (1 + b / 1e7) ** -0.5)}\t0")
        lines.append(f"math\t{b}\t{2.0 - 0.3 * (1 - (1 + b / 1e9) ** -0.5)}\t0")
    runs.write_text("\n".join(lines) + "\n")
    costs = tmp_path / "costs.tsv"
    costs.write_text("source\tacquisition_cost_per_token\nweb\t0.1\nmath\t2.0\n")
    out = tmp_path / "u.json"
    res = run_cli(
        "utility",
        "--runs",
        str(runs),
        "--costs",
        str(costs),
        "--train-cost-per-token",
        "1",
        "--budget",
        "1e9",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert set(data["sources"]) == {"web", "math"}
    assert data["allocation"]["status"] == "ok"
    res = run_cli("utility", "--runs", str(runs), "--costs", str(costs), "--out", str(out))
    assert res.returncode == 2 and "training_cost_per_token" in res.stderr


def test_spreadsheet_exports_are_read_as_written(runs, tmp_path):
    """A UTF-8 byte-order mark and CRLF line ends (spreadsheet exports) change nothing: before,
    the BOM hid the first column's domain and the fit went on without it (exit 0)."""
    plain, exported = tmp_path / "plain.json", tmp_path / "exported.json"
    rows = [line.split("\t") for line in runs.read_text().splitlines()]
    assert rows[0][:3] == ["run", "seed", "tokens.web"]
    reordered = "\r\n".join("\t".join(r[2:] + r[:2]) for r in rows) + "\r\n"  # tokens.web first
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + reordered.encode())
    assert run_cli("fit", "--runs", str(runs), "--out", str(plain)).returncode == 0
    res = run_cli("fit", "--runs", str(bom), "--out", str(exported))
    assert res.returncode == 0, res.stderr
    expected, got = json.loads(plain.read_text()), json.loads(exported.read_text())
    assert set(got["domains"]) == {"web", "wiki", "code"}
    assert got["domains"] == expected["domains"]


def test_budget_without_costs_and_duplicate_cost_rows_are_refused(runs, tmp_path):
    fit = tmp_path / "fit.json"
    assert run_cli("fit", "--runs", str(runs), "--out", str(fit)).returncode == 0
    res = run_cli("solve", "--fit", str(fit), "--budget", "100", "--out", str(tmp_path / "w"))
    assert res.returncode == 2 and "--budget: --cost: missing" in res.stderr
    costs = tmp_path / "costs.tsv"
    costs.write_text("source\tacquisition_cost_per_token\nweb\t0.1\nweb\t2.0\n")
    anneal = tmp_path / "anneal.tsv"
    anneal.write_text("source\tbudget_tokens\tmetric\ncontrol\t10\t2\nweb\t10\t1.9\n")
    res = run_cli(
        "utility", "--runs", str(anneal), "--costs", str(costs), "--train-cost-per-token", "1",
        "--out", str(tmp_path / "u.json"),
    )  # fmt: skip
    assert res.returncode == 2 and "row 3, column source: web listed twice" in res.stderr


# --- the SLURM profile under a name ---------------------------------------------------------


def test_install_profile_makes_profile_by_name_work(tmp_path):
    """`snakemake --profile slurm` finds the installed profile (a dry run, no cluster needed)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    args = ["install-profile", "--account", "ml-team", "--partition", "cpu"]
    install = [sys.executable, "-m", "mixscale", *args, "--gpu-partition", "a100"]
    res = subprocess.run(install, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    profile = tmp_path / "xdg/snakemake/slurm/config.yaml"
    text = profile.read_text()
    assert "# The plugin's default status check" in text  # the template's comments are kept
    settings = yaml.safe_load(text)
    assert settings["executor"] == "slurm"
    assert settings["default-resources"]["slurm_account"] == "ml-team"
    assert settings["default-resources"]["slurm_partition"] == "cpu"
    assert settings["set-resources"]["train"]["slurm_partition"] == "a100"
    again = subprocess.run(install, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert (
        again.returncode == 2
        and "a profile of that name exists (fix: pass --force)" in again.stderr
    )
    bad = [sys.executable, "-m", "mixscale", "install-profile", "--partition", "a;b", "--force"]
    res = subprocess.run(bad, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert (
        res.returncode == 2 and "--partition: a;b: not an account or partition name" in res.stderr
    )
    dry = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--profile", "slurm",
         "--configfile", "config/examples/simulated-demo.yaml", "-d", str(tmp_path / "work")],
        cwd=ROOT, env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Using profile slurm" in dry.stdout + dry.stderr


def test_install_profile_without_an_account(tmp_path):
    path = install_profile(
        str(ROOT / "profiles/slurm"), "slurm", None, "debug", None, str(tmp_path)
    )
    settings = yaml.safe_load(path.read_text())
    assert settings["slurm-no-account"] is True
    assert "slurm_account" not in settings["default-resources"]
    assert settings["set-resources"]["train"]["slurm_partition"] == "debug"
