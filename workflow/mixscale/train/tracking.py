"""Experiment tracking of a training run: TensorBoard event files (the default), Weights & Biases
and MLflow, all writing local files so a run on a compute node without internet is tracked.

Only the main process logs. What a run logs: per step the training loss, the learning rate and
the step's tokens/s; at every evaluation point the held-out loss per domain, the objective and
the mixture weights (fixed for most runs, moving for a DoReMi proxy run).

Where the files go (a run's folder is ``results/<experiment>/runs/<run>/``):
- tensorboard: ``<run>/tensorboard/``; a resumed run first drops the events after its
  checkpoint (``purge_step``), so the curves never show the steps it redid.
- wandb: ``<run>/wandb/`` in offline mode (``WANDB_MODE`` overrides it); the run id is the
  run's fingerprint, so ``wandb sync`` merges its sessions.
- mlflow: the store ``MLFLOW_TRACKING_URI`` names, else a file store ``<run>/mlruns``.

A tracker that cannot be reached never holds up or fails the training: it is checked when the
run starts, with a short timeout, and a W&B run that cannot go online (no API key, no network)
or an MLflow server that does not answer is logged to the local files above instead, with one
warning line on stderr that says where and how to upload it later. An MLflow server that stops
answering mid-run is dropped after one warning (its requests retry for seconds, not minutes).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mixscale.config.training import check_trackers
from mixscale.errors import say

# Seconds a tracker's server gets to answer when a run starts: MLflow's request timeout (with
# no retries) and W&B's init_timeout. Unanswered: the run is logged locally instead.
TRACKER_TIMEOUT_S = 10

# MLflow's own defaults retry a failed request 7 times with backoff (254 s) and wait 120 s
# for an answer; a run's later requests get these unless the user set their own.
MLFLOW_REQUEST_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def _warn(text: str) -> None:
    say(f"mixscale train: warning: tracking: {text}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class Trackers:
    """The run's trackers behind one ``log``; a no-op on the other processes and with none."""

    def __init__(self, loggers: list[Any]):
        self.loggers = loggers

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log(step, scalars)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_trackers(
    names: list[str],
    run_dir: Path,
    run_name: str,
    fingerprint: str,
    config: dict[str, Any],
    resumed_at: int | None,
    main: bool = True,
) -> Trackers:
    """Open every tracker ``names`` asks for; ``resumed_at``: the checkpoint's step, if any."""
    if not main or not names:
        return Trackers([])
    check_trackers(names)
    openers = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}
    return Trackers([openers[n](run_dir, run_name, fingerprint, config, resumed_at) for n in names])


class _TensorBoard:
    def __init__(self, run_dir, run_name, fingerprint, config, resumed_at):
        from torch.utils.tensorboard import SummaryWriter

        # events from step resumed_at + 1 on were logged by a session past its checkpoint:
        # TensorBoard drops them, and this session logs them again
        purge = resumed_at + 1 if resumed_at else None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
        if not resumed_at:
            self.writer.add_text("run", f"{run_name} ({fingerprint[:12]})", 0)

    def log(self, step, scalars):
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self):
        self.writer.close()


class _WandB:
    def __init__(self, run_dir, run_name, fingerprint, config, resumed_at):
        import wandb

        mode = os.environ.get("WANDB_MODE", "offline")
        init = {
            "project": os.environ.get("WANDB_PROJECT", "mixscale"),
            "name": run_name,
            "id": fingerprint[:32],
            "resume": "allow",
            "dir": str(run_dir),
            "config": config,
        }
        if mode in ("offline", "dryrun", "disabled"):
            self.run = wandb.init(
                mode=mode, settings=wandb.Settings(silent=True, console="off"), **init
            )
            return
        try:  # online: no API key fails at once, no network after TRACKER_TIMEOUT_S
            settings = wandb.Settings(silent=True, console="off", init_timeout=TRACKER_TIMEOUT_S)
            self.run = wandb.init(mode=mode, settings=settings, **init)
        except wandb.errors.Error as exc:
            _warn(
                f"wandb cannot log {mode} ({_first_line(exc)}): logging offline to "
                f"{run_dir / 'wandb'} instead; upload it later with `wandb sync "
                f"{run_dir / 'wandb'}/offline-run-*` (fix: `wandb login` or WANDB_API_KEY, "
                "or WANDB_MODE=offline)"
            )
            settings = wandb.Settings(silent=True, console="off")
            self.run = wandb.init(mode="offline", settings=settings, **init)

    def log(self, step, scalars):
        self.run.log(scalars, step=step)

    def close(self):
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir, run_name, fingerprint, config, resumed_at):
        from mlflow.exceptions import MlflowException

        self.failed = False
        uri = os.environ.get("MLFLOW_TRACKING_URI") or _local_store(run_dir)
        if _is_server(uri):
            for key, value in MLFLOW_REQUEST_DEFAULTS.items():
                os.environ.setdefault(key, value)
            try:
                with _one_short_try():
                    self._open(uri, run_dir, run_name, fingerprint, config, resumed_at)
                return
            except (MlflowException, OSError) as exc:
                local = _local_store(run_dir)
                _warn(
                    f"mlflow server {uri} cannot be reached ({_first_line(exc)}): logging to the "
                    f"file store {local} instead (fix: start the server or correct "
                    "MLFLOW_TRACKING_URI; unset it to log to the run folder)"
                )
                uri = local
        self._open(uri, run_dir, run_name, fingerprint, config, resumed_at)

    def _open(self, uri, run_dir, run_name, fingerprint, config, resumed_at) -> None:
        """The experiment's run in the store ``uri``: the earlier session's (a resumed run
        logged to the same store), else a new one with the run's settings as params."""
        import mlflow
        from mlflow.entities import Param

        self.uri = uri
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "mixscale")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self._resumed_run(run_dir, fingerprint, uri) if resumed_at else None
        if self.run_id is None:
            run = self.client.create_run(
                experiment_id, run_name=run_name, tags={"mixscale.fingerprint": fingerprint}
            )
            self.run_id = run.info.run_id
            (run_dir / "mlflow_run_id").write_text(f"{fingerprint} {self.run_id} {uri}\n")
            params = [Param(key, value) for key, value in _flat(config).items()]
            for start in range(0, len(params), 100):  # MLflow takes 100 params per request
                self.client.log_batch(self.run_id, params=params[start : start + 100])

    @staticmethod
    def _resumed_run(run_dir: Path, fingerprint: str, uri: str) -> str | None:
        """The MLflow run of an earlier session of this exact run in the same store, to
        continue its curves (files without the store, from before, name the same store)."""
        saved = run_dir / "mlflow_run_id"
        if not saved.is_file():
            return None
        parts = saved.read_text().split(maxsplit=2)
        if len(parts) < 2 or parts[0] != fingerprint:
            return None
        return parts[1] if len(parts) == 2 or parts[2].strip() == uri else None

    def log(self, step, scalars):
        from mlflow.entities import Metric

        if self.failed:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(tag, float(v), now, step) for tag, v in scalars.items()]
        self._call(f"step {step}", self.client.log_batch, self.run_id, metrics=metrics)

    def close(self):
        if not self.failed:
            self._call("the end of the run", self.client.set_terminated, self.run_id)

    def _call(self, when: str, method, *args, **kwargs) -> None:
        """A request to a server that stopped answering: one warning, then no more requests
        (the training goes on; metrics.json holds the run's results either way)."""
        from mlflow.exceptions import MlflowException

        try:
            method(*args, **kwargs)
        except (MlflowException, OSError) as exc:
            self.failed = True
            _warn(
                f"mlflow {self.uri} failed at {when} ({_first_line(exc)}): the rest of this "
                "run is not logged to MLflow"
            )


def _local_store(run_dir: Path) -> str:
    """The run folder's file store: no server, no database library (MLflow 3 asks for an
    opt-in to file stores)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").resolve().as_uri()


def _is_server(uri: str) -> bool:
    """A tracking URI MLflow reaches over the network (not a file store or a local database)."""
    scheme = urlparse(uri).scheme.lower()
    return scheme in ("http", "https") or scheme.startswith("databricks")


@contextlib.contextmanager
def _one_short_try() -> Iterator[None]:
    """MLflow requests inside: no retries, TRACKER_TIMEOUT_S to answer (MLflow reads these
    variables at every request)."""
    short = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(TRACKER_TIMEOUT_S),
    }
    saved = {key: os.environ.get(key) for key in short}
    os.environ.update(short)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow params (flat string keys)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = str(value)[:500]  # MLflow caps a param's length
    return flat
