"""Training: one run of the plan, and the untrained model (the floor of every task)."""

from __future__ import annotations

import argparse
from typing import Any

from mixscale.cli.args import SEED, Number, json_or_file
from mixscale.cli.paths import input_path, output_file, output_folder
from mixscale.config.check import schema_default
from mixscale.config.training import TrainSettings
from mixscale.errors import InputError, say

THREADS = Number(*TrainSettings.range_of("threads"), integer=True)  # train.threads' range


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="one training run of the plan (backend torch or simulate)")
    p.add_argument("--spec", required=True, help="the run's plan entry as JSON")
    p.add_argument("--backend", default="simulate")
    p.add_argument("--world", type=input_path, help="world YAML or shipped name (backend simulate)")
    p.add_argument(
        "--eval-points",
        type=Number.schema("eval_points"),
        default=schema_default("eval_points"),
        help="evaluations",
    )
    p.add_argument(
        "--weights", type=input_path, help="WEIGHTS.json giving the mixture (verification runs)"
    )
    p.add_argument(
        "--settings",
        type=input_path,
        help="backend torch: JSON (or a JSON/YAML file) with stores, tokenizer, model, train",
    )
    p.add_argument(
        "--threads", type=THREADS, default=0, help="torch threads per process (0: torch's default)"
    )
    p.add_argument(
        "--tracking",
        help="backend torch: comma-separated trackers (tensorboard, wandb, mlflow) or 'none' "
        f"(default: the settings' tracking, else {','.join(schema_default('tracking'))})",
    )
    p.add_argument(
        "--out",
        type=output_file,
        required=True,
        help="metrics.json (model/ and checkpoints/ beside)",
    )
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("init-model", help="save the configured model as initialised (step 0)")
    p.add_argument(
        "--settings", type=input_path, required=True, help="JSON with stores, tokenizer, model"
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", type=output_folder, required=True, help="model folder")
    p.set_defaults(handler=cmd_init_model)


def _spec(text: str) -> dict[str, Any]:
    import json

    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            "--spec", "", f"invalid JSON ({exc.msg})", "pass the run's plan entry"
        ) from exc
    for key in ("id", "stage", "seed", "total_tokens"):
        if key not in spec:
            raise InputError("--spec", key, "missing", "pass the run's plan entry")
    return spec


def _trackers(text: str) -> list[str]:
    from mixscale.config.training import check_trackers

    names = [] if text.strip() == "none" else [n.strip() for n in text.split(",") if n.strip()]
    check_trackers(names)
    return names


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.train.backends import train

    settings = json_or_file(args.settings) if args.settings else None
    if settings is not None and args.threads:
        settings.setdefault("train", {})["threads"] = args.threads
    if settings is not None and args.tracking is not None:
        settings["tracking"] = _trackers(args.tracking)
    return train(
        _spec(args.spec),
        args.backend,
        args.world,
        args.eval_points,
        args.weights,
        settings,
        args.out,
    )


def cmd_init_model(args: argparse.Namespace) -> None:
    # torch and transformers only for the command that needs them (~3 s to import)
    from mixscale.config.training import TrainSettings
    from mixscale.train.model import save_initial_model

    settings = json_or_file(args.settings)
    for key in ("stores", "tokenizer", "model"):
        if not settings.get(key):
            raise InputError("--settings", key, "missing", "pass the experiment's settings")
    seq_len = TrainSettings.from_dict({**settings.get("train", {}), "seed": 0}).seq_len
    params = save_initial_model(
        settings["stores"], settings["tokenizer"], settings["model"], seq_len, args.seed, args.out
    )
    say(f"untrained model: {params} parameters, seed {args.seed} -> {args.out}")
