"""`mixscale status`: each run's state read from the experiment's files."""

from __future__ import annotations

import base64
import os
import time

import yaml

from conftest import with_defaults
from mixscale.fileio import write_json
from mixscale.plan.specs import run_specs
from mixscale.report.status import experiment_status, format_status
from mixscale.train.backends import train


def finished(path, config, run_id):
    """A run's metrics.json as the simulated backend writes it."""
    spec = run_specs(config)[run_id]
    write_json(path, train(spec, "simulate", config.world, 3, None))


def _config():
    return {
        "experiment": "st",
        "backend": "simulate",
        "world": "separable",
        "ddo": {"seeds": 1, "scales": [{"name": "a", "tokens": 1e6}, {"name": "b", "tokens": 3e6}]},
        "autoscale": {"targets": [1e7]},
        "verify": {"methods": ["uniform"]},
    }


def test_states_from_files(tmp_path):
    config = with_defaults(_config())
    ids = list(run_specs(config))
    runs = tmp_path / "results/st/runs"
    logs = tmp_path / "results/st/logs/train"
    logs.mkdir(parents=True)
    finished(runs / ids[0] / "metrics.json", config, ids[0])
    for run_id, step in ((ids[1], 40), (ids[2], 80)):  # checkpoints, no metrics
        (runs / run_id / "checkpoints").mkdir(parents=True)
        (runs / run_id / "checkpoints" / f"step-{step:09d}.pt").write_bytes(b"x")
    old = time.time() - 3600
    os.utime(runs / ids[1] / "checkpoints" / f"step-{40:09d}.pt", (old, old))
    (logs / f"{ids[3]}.log").write_text("started\n")
    # Snakemake marked ids[2] as running; its checkpoint is fresh -> running?
    marker = tmp_path / ".snakemake/incomplete"
    marker.mkdir(parents=True)
    name = base64.urlsafe_b64encode(f"results/st/runs/{ids[2]}/metrics.json".encode()).decode()
    (marker / name).write_text("")
    status = experiment_status(config, tmp_path)
    states = {r: info["state"] for r, info in status["runs"].items()}
    assert states[ids[0]] == "finished"
    assert states[ids[1]] == "interrupted" and status["runs"][ids[1]]["resume_step"] == 40
    assert states[ids[2]] == "running?"
    assert states[ids[3]] == "started"
    assert status["counts"]["not started"] == len(ids) - 4
    assert status["scales"] == {"a": "not fitted yet", "b": "not fitted yet"}
    text = format_status(status)
    assert f"interrupted  {ids[1]} (resumes at step 40)" in text
    assert ids[0] not in text  # finished runs only with --verbose
    assert ids[0] in format_status(status, verbose=True)


def test_status_cli(tmp_path, cli):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config()))
    result = cli("status", "--configfile", str(path), "--directory", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "experiment st: 23 runs: 23 not started" in result.stdout


def test_damaged_outputs_are_named_not_taken_as_finished(tmp_path, cli):
    """A finished run's metrics.json emptied, truncated, not an object or with a null loss (a
    full disk, a stray editor, a NaN), and a scale's weights.json that is not the fit's:
    status names each, with the fix, and exits 0."""
    config = _config()
    ids = list(run_specs(with_defaults(config)))
    runs = tmp_path / "results/st/runs"
    texts = ("", '{"loss": 2.', "[1, 2]", '{"final_losses": {"web": null}}')
    for run_id, text in zip(ids, texts, strict=False):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "metrics.json").write_text(text)
    (tmp_path / "results/st/ddo/a").mkdir(parents=True)
    (tmp_path / "results/st/ddo/a/weights.json").write_text('{"weights": {}}')
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("status", "--configfile", str(path), "--directory", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "23 runs: 4 damaged, 19 not started" in result.stdout
    for run_id, problem in zip(
        ids[:4],
        ("empty file", "truncated", "a list, not an object", "final_losses.web: null"),
        strict=True,
    ):
        line = next(x for x in result.stdout.splitlines() if run_id in x)
        assert line.split()[0] == "damaged" and problem in line, line
        assert "(fix: delete it and ask snakemake for it" in line, line
        assert "trains the run again)" in line, line
    scale = next(x for x in result.stdout.splitlines() if x.startswith("  a: "))
    assert scale.startswith("  a: damaged: ") and "ddo/a/weights.json: weights: empty" in scale
    assert "(fix: delete it and ask snakemake for it" in scale and "fits the scale again" in scale
