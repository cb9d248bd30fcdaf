"""Experiment tracking of real (tiny) training runs: TensorBoard event files read back with the
tensorboard library, an offline Weights & Biases run directory, an MLflow file store, and a
resumed run whose curves have no repeated steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_settings
from mixscale.config.training import check_trackers
from mixscale.errors import InputError

pytestmark = pytest.mark.slow


def tracked_cmd(out: Path, settings: dict, trackers: str) -> list[str]:
    run = {"books": 24_000, "code": 16_000}
    spec = {"id": "tracked", "stage": "ddo", "seed": 1, "total_tokens": 40_000, "tokens": run}
    return [
        *(sys.executable, "-m", "mixscale", "train", "--backend", "torch"),
        *("--spec", json.dumps(spec), "--settings", json.dumps(settings), "--eval-points", "4"),
        *("--tracking", trackers, "--out", str(out / "metrics.json")),
    ]


def checkpoint_at_least(out: Path, step: int) -> bool:
    return any(int(p.stem.split("-")[1]) >= step for p in (out / "checkpoints").glob("step-*.pt"))


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard events, as (step, value) per tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="session")
def tracked(data_dir, tmp_path_factory) -> Path:
    """One run logged to all three trackers."""
    out = tmp_path_factory.mktemp("tracked")
    result = subprocess.run(
        tracked_cmd(out, tiny_settings(data_dir), "tensorboard,wandb,mlflow"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_tensorboard_has_every_step_and_every_evaluation(tracked):
    metrics = json.loads((tracked / "metrics.json").read_text())
    got = scalars(tracked)
    steps = metrics["steps"]
    for tag in ("train/loss", "train/lr", "train/tokens_per_s"):
        assert [s for s, _ in got[tag]] == list(range(1, steps + 1)), tag
    by_step = dict(got["train/loss"])
    for point in metrics["curve"]:
        assert by_step[point["step"]] == pytest.approx(point["train_loss"], rel=1e-6)
        for domain, loss in point["losses"].items():
            assert dict(got[f"eval/{domain}"])[point["step"]] == pytest.approx(loss, rel=1e-6)
    for domain, weight in metrics["weights"].items():
        assert [v for _, v in got[f"mixture/{domain}"]] == pytest.approx(
            [weight] * len(metrics["curve"]), rel=1e-6
        )
    assert all(v > 0 for _, v in got["train/tokens_per_s"])


def test_wandb_writes_an_offline_run_to_sync_later(tracked):
    metrics = json.loads((tracked / "metrics.json").read_text())
    runs = list((tracked / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = list(runs[0].glob("run-*.wandb"))
    assert len(records) == 1
    data = records[0].read_bytes()
    # the run's history: one record per step and per evaluation (binary protobuf, JSON keys)
    assert data.count(b"train/loss") >= metrics["steps"]
    assert data.count(b"eval/books") >= len(metrics["curve"])


def test_mlflow_file_store_holds_the_curves(tracked):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    metrics = json.loads((tracked / "metrics.json").read_text())
    run_id = (tracked / "mlflow_run_id").read_text().split()[1]
    client = MlflowClient(tracking_uri=(tracked / "mlruns").as_uri())
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, metrics["steps"] + 1))
    final = {
        d: client.get_metric_history(run_id, f"eval/{d}")[-1].value for d in metrics["final_losses"]
    }
    assert final == pytest.approx(metrics["final_losses"], rel=1e-9)
    assert client.get_run(run_id).data.params["model.type"] == "gpt2"


def test_resumed_run_logs_each_step_once(data_dir, tmp_path):
    """kill -9 after a checkpoint, train again: TensorBoard purges the steps the killed process
    logged past the checkpoint; MLflow keeps them, and (resume being bit-exact) a step logged
    by both sessions has the same loss in both."""
    settings = tiny_settings(data_dir)
    cmd = tracked_cmd(tmp_path, settings, "tensorboard,mlflow")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not checkpoint_at_least(tmp_path, 10):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "metrics.json").exists(), "killed too late: the run had finished"
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_at_step"] >= 10
    assert [s for s, _ in scalars(tmp_path)["train/loss"]] == list(range(1, metrics["steps"] + 1))
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    run_id = (tmp_path / "mlflow_run_id").read_text().split()[1]
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    losses: dict[int, set[float]] = {}
    for point in client.get_metric_history(run_id, "train/loss"):
        losses.setdefault(point.step, set()).add(point.value)
    assert sorted(losses) == list(range(1, metrics["steps"] + 1))
    assert all(len(values) == 1 for values in losses.values())


def test_no_tracking_writes_no_tracker_files(data_dir, tmp_path):
    result = subprocess.run(
        tracked_cmd(tmp_path, tiny_settings(data_dir), "none"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not any((tmp_path / name).exists() for name in ("tensorboard", "wandb", "mlruns"))


def test_a_missing_tracker_library_fails_before_training(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    missing = r"tracking.*'wandb' is not installed.*mixscale\[tracking\]"
    with pytest.raises(InputError, match=missing):
        check_trackers(["tensorboard", "wandb"])
    with pytest.raises(InputError, match="unknown tracker 'comet'"):
        check_trackers(["comet"])


# --- trackers that cannot be reached: checked when the run starts, logged locally instead -----


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_tracker(name: str, run_dir: Path):
    from mixscale.train.tracking import open_trackers

    return open_trackers([name], run_dir, "run-a", "f" * 64, {"model": {"type": "gpt2"}}, None)


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mixscale train: warning:")]


def test_an_unreachable_mlflow_server_logs_to_the_run_folder_instead(tmp_path, monkeypatch, capsys):
    """Before: every job retried for 254 s, then a 100-line traceback."""
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(key, "")  # recorded, so the run's own defaults are undone after
        monkeypatch.delenv(key)
    start = time.monotonic()
    trackers = open_tracker("mlflow", tmp_path)
    assert time.monotonic() - start < 60  # one try, no retries (MLflow's default: 254 s)
    trackers.log(1, {"train/loss": 2.5})
    trackers.close()
    err = capsys.readouterr().err
    assert warnings_of(err) == err.strip().splitlines()  # nothing but the warning
    (line,) = warnings_of(err)
    assert f"mlflow server {uri} cannot be reached" in line and "mlruns" in line
    from mlflow import MlflowClient

    run_id = (tmp_path / "mlflow_run_id").read_text().split()[1]
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [2.5]
    # the run's later requests retry for seconds, not minutes
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


def test_wandb_online_without_a_key_logs_offline_instead(tmp_path, monkeypatch, capsys):
    """Before: a traceback in every job."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    start = time.monotonic()
    trackers = open_tracker("wandb", run_dir)
    assert time.monotonic() - start < 60
    trackers.log(1, {"train/loss": 2.5})
    trackers.close()
    (line,) = warnings_of(capsys.readouterr().err)
    assert "wandb cannot log online" in line and "wandb sync" in line and "WANDB_API_KEY" in line
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1


def test_an_mlflow_server_that_stops_answering_is_dropped_after_one_warning(
    tmp_path, monkeypatch, capsys
):
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    trackers = open_tracker("mlflow", tmp_path)
    (mlflow,) = trackers.loggers
    calls = []

    def down(*args, **kwargs):
        calls.append(args)
        raise MlflowException("API request failed: Connection refused")

    monkeypatch.setattr(mlflow.client, "log_batch", down)
    monkeypatch.setattr(mlflow.client, "set_terminated", down)
    for step in (1, 2, 3):
        trackers.log(step, {"train/loss": 2.5})  # the training goes on
    trackers.close()
    assert len(calls) == 1
    (line,) = warnings_of(capsys.readouterr().err)
    assert "failed at step 1" in line and "not logged to MLflow" in line


def test_a_resumed_run_continues_its_mlflow_run_only_in_the_same_store(tmp_path):
    from mixscale.train.tracking import _MLflow

    fingerprint = "f" * 64
    saved = tmp_path / "mlflow_run_id"
    saved.write_text(f"{fingerprint} abc http://server:5000\n")
    assert _MLflow._resumed_run(tmp_path, fingerprint, "http://server:5000") == "abc"
    assert _MLflow._resumed_run(tmp_path, fingerprint, "file:///local/mlruns") is None
    assert _MLflow._resumed_run(tmp_path, "0" * 64, "http://server:5000") is None
    saved.write_text(f"{fingerprint} abc\n")  # written before the store was recorded
    assert _MLflow._resumed_run(tmp_path, fingerprint, "file:///local/mlruns") == "abc"
