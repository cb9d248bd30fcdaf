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
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mixscale.config.training import check_trackers


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

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "mixscale"),
            name=run_name,
            id=fingerprint[:32],
            resume="allow",
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=config,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, step, scalars):
        self.run.log(scalars, step=step)

    def close(self):
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir, run_name, fingerprint, config, resumed_at):
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # a local file store: no server, no database library; MLflow 3 asks for an opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlruns").resolve().as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "mixscale")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self._resumed_run(run_dir, fingerprint) if resumed_at else None
        if self.run_id is None:
            run = self.client.create_run(
                experiment_id, run_name=run_name, tags={"mixscale.fingerprint": fingerprint}
            )
            self.run_id = run.info.run_id
            (run_dir / "mlflow_run_id").write_text(f"{fingerprint} {self.run_id}\n")
            for key, value in _flat(config).items():
                self.client.log_param(self.run_id, key, value)

    @staticmethod
    def _resumed_run(run_dir: Path, fingerprint: str) -> str | None:
        """The MLflow run of an earlier session of this exact run, to continue its curves."""
        saved = run_dir / "mlflow_run_id"
        if not saved.is_file():
            return None
        parts = saved.read_text().split()
        return parts[1] if len(parts) == 2 and parts[0] == fingerprint else None

    def log(self, step, scalars):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, float(v), now, step) for tag, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self):
        self.client.set_terminated(self.run_id)


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
