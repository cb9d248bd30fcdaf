"""One planned run trained by its backend: a simulated world (milliseconds) or torch
(the real trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.config.check import schema_default
from mixscale.config.training import TrainSettings
from mixscale.core.simulate import simulate_run
from mixscale.core.world import load_world
from mixscale.errors import InputError
from mixscale.fileio import (
    check_output_folder,
    check_output_parent,
    protect_inputs,
    reading_inputs,
    refuse_stream,
)
from mixscale.kinds import MIXTURE_TO_TRAIN
from mixscale.shapes import read_kind


def mixture_tokens(spec: dict[str, Any], weights_path: str | None) -> dict[str, float]:
    """Tokens per domain of a run: explicit in its spec, or a method's weights x its total."""
    tokens = spec.get("tokens") or {}
    if weights_path:
        weights = read_kind(weights_path, MIXTURE_TO_TRAIN)["weights"]
        total = float(spec["total_tokens"])
        tokens = {d: float(w) * total for d, w in weights.items()}
    if not tokens:
        raise InputError("--spec", "tokens", "no mixture", "pass --weights for this run")
    return tokens


def train(
    spec: dict[str, Any],
    backend: str,
    world_name: str | None,
    eval_points: int,
    weights_path: str | None,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
) -> dict[str, Any] | None:
    """One run of the plan. ``simulate`` returns its metrics; ``torch`` trains and writes them
    (with the model and side-folder checkpoints) next to ``out`` itself."""
    tokens = mixture_tokens(spec, weights_path)
    labels = {"run": spec["id"], "stage": spec["stage"], "method": spec.get("method")}
    if spec.get("source"):
        labels["source"] = spec["source"]
    if backend == "torch":
        return _train_torch(spec, tokens, settings or {}, eval_points, out, labels)
    if backend != "simulate":
        raise InputError(
            "config",
            "backend",
            f"'{backend}' cannot train",
            "use backend: torch or simulate, or give run tables (backend: tables)",
        )
    if not world_name:
        raise InputError("config", "world", "missing", "name a world for backend: simulate")

    metrics = simulate_run(load_world(world_name), tokens, int(spec["seed"]), eval_points)
    metrics.update(labels)
    # the run's planned tokens, as a torch run records them: `table` checks its tokens by them
    metrics["requested_tokens"] = {d: float(v) for d, v in tokens.items()}
    return metrics


@reading_inputs
def _train_torch(
    spec: dict[str, Any],
    tokens: dict[str, float],
    settings: dict[str, Any],
    eval_points: int,
    out: str | None,
    labels: dict[str, Any],
) -> None:
    for key in ("stores", "tokenizer", "model"):
        if not settings.get(key):
            raise InputError(
                "--settings", key, "missing", "pass the experiment's training settings"
            )
    if not out:
        raise InputError("train", "--out", "missing", "name the run's metrics.json")
    # a run may override the experiment's training settings and model (annealing: a
    # checkpoint, its own learning rate and schedule)
    train = TrainSettings.from_dict(
        {
            **settings.get("train", {}),
            **spec.get("train", {}),
            "seed": int(spec["seed"]),
            "eval_points": eval_points,
        }
    )
    model = spec.get("model") or settings["model"]
    protect_inputs(_run_inputs(settings, model, spec.get("doremi")))
    _check_run_folder(Path(out), train.save_model)
    # torch only for torch runs: importing it costs ~2 s, a simulated run takes milliseconds
    from mixscale.train.loop import train_run

    # the experiment's training domains, and any store the run's mixture names beyond them (a
    # derived annealing source); evaluated on the training domains only
    domains = settings.get("domains")
    extra = [d for d in tokens if domains and d not in domains]
    train_run(
        settings["stores"],
        settings["tokenizer"],
        model,
        tokens,
        train,
        str(Path(out).parent),
        eval_domains=settings.get("eval_domains") or (domains if extra else None),
        domains=[*domains, *extra] if domains else None,
        labels=labels,
        metrics_name=Path(out).name,
        skip=spec.get("skip"),
        doremi=spec.get("doremi"),
        tracking=settings.get("tracking", schema_default("tracking")),
    )
    return None


def _run_inputs(settings: dict[str, Any], model: Any, doremi: dict[str, Any] | None) -> list[str]:
    """What a torch run reads from disk besides its flags: its model (or the model it starts
    from, an annealing run's), stores and tokenizer; its own model may not replace them."""
    read = [settings["stores"], settings["tokenizer"]]
    if isinstance(model, dict):
        read.append(model.get("checkpoint"))
    if isinstance(doremi, dict):
        read.append(doremi.get("reference_model"))
    return [path for path in read if isinstance(path, str)]


def _check_run_folder(out: Path, save_model: bool) -> None:
    """A torch run writes beside its metrics.json (the model, checkpoints): refused now, not
    after hours of training, when those cannot be written there."""
    refuse_stream(out, "--out", "a torch run writes its model and checkpoints")
    check_output_parent(out.parent / "checkpoints")
    if save_model:
        check_output_folder(out.parent / "model")
