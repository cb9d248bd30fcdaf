"""The Snakemake workflow as users run it: dry-run job counts, end to end, rerun, schema, lint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = str(Path(sys.executable).parent)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [
            f"{BIN}/snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "-c1",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


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


@pytest.mark.parametrize(("targets", "expected"), [((1e9,), 4), ((1e9, 5e9, 1e10), 6)])
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
