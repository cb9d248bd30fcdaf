"""Encoder fine-tuning: task folders (embedded, or GLUE/SQuAD from the hub) and fine-tuning runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mixscale.cli.args import SEED, Number, json_or_file
from mixscale.cli.paths import input_path, output_file, output_folder, output_parent
from mixscale.config.check import schema_default
from mixscale.errors import say

VALIDATION_BYTES = schema_default("data.validation_bytes")
EMBEDDED = {
    key: schema_default(f"finetune.embedded.{key}")
    for key in ("train_items", "eval_items", "passage_words")
}
ITEMS = {key: Number.schema(f"finetune.embedded.{key}") for key in EMBEDDED}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune-tasks",
        help="embedded fine-tuning tasks (domain, same_document) from held-out text",
    )
    p.add_argument(
        "--corpus", type=input_path, nargs="+", required=True, help="<domain>.jsonl files"
    )
    p.add_argument(
        "--seed",
        type=Number.schema("data.seed"),
        default=schema_default("data.seed"),
        help="document shuffle",
    )
    p.add_argument(
        "--validation-bytes",
        type=Number.schema("data.validation_bytes"),
        default=VALIDATION_BYTES,
    )
    p.add_argument("--task-seed", type=SEED, help="item draws (default: --seed)")
    p.add_argument("--train-items", type=ITEMS["train_items"], default=EMBEDDED["train_items"])
    p.add_argument("--eval-items", type=ITEMS["eval_items"], default=EMBEDDED["eval_items"])
    p.add_argument(
        "--passage-words", type=ITEMS["passage_words"], default=EMBEDDED["passage_words"]
    )
    p.add_argument(
        "--out",
        type=output_folder,
        required=True,
        help="folder: one sub-folder per task + tasks.json",
    )
    p.set_defaults(handler=cmd_finetune_tasks)

    p = sub.add_parser("finetune", help="fine-tune a saved encoder on one task, score validation")
    p.add_argument(
        "--model", type=input_path, required=True, help="saved model folder (transformers)"
    )
    p.add_argument(
        "--task",
        type=input_path,
        required=True,
        help="task folder (task.json, train/validation.jsonl)",
    )
    p.add_argument(
        "--settings",
        type=input_path,
        default="{}",
        help="JSON text or a JSON/YAML file: epochs, batch_size, lr, warmup, max_length, ...",
    )
    p.add_argument(
        "--no-train", action="store_true", help="score the fresh head only (the floor to beat)"
    )
    p.add_argument("--name", help="task name in the report (default: task.json's name)")
    p.add_argument("--label", help="row label in the report (the method)")
    p.add_argument("--target", help="target scale label the model was trained for")
    p.add_argument("--run-seed", type=SEED, help="training seed of the pretraining run")
    p.add_argument("--out", type=output_file, required=True, help="results JSON")
    p.set_defaults(handler=cmd_finetune)

    p = sub.add_parser("prepare-finetune", help="GLUE/SQuAD task folders from the hub (login node)")
    p.add_argument("--tasks", nargs="+", required=True, help="glue (8 tasks), glue/cola..., squad")
    p.add_argument("--cache-dir", help="datasets cache folder")
    p.add_argument(
        "--out", type=output_parent, required=True, help="folder: one sub-folder per task"
    )
    p.set_defaults(handler=cmd_prepare_finetune)


def cmd_finetune_tasks(args: argparse.Namespace) -> None:

    from mixscale.data.finetune_tasks import build_embedded_tasks

    files = {Path(path).name.removesuffix(".jsonl"): path for path in args.corpus}
    summary = build_embedded_tasks(
        files,
        args.out,
        args.seed,
        args.validation_bytes,
        args.train_items,
        args.eval_items,
        args.passage_words,
        args.task_seed,
    )
    for name, task in summary["tasks"].items():
        say(f"{name:16s} {task['train_items']} train, {task['eval_items']} eval")


def cmd_finetune(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.evaluate.finetune import evaluate_without_finetuning, finetune

    settings = json_or_file(args.settings)
    run = evaluate_without_finetuning if args.no_train else finetune
    result = run(args.model, args.task, settings)
    result.update(
        {
            "name": args.name or result["task"],
            "label": args.label,
            "target": args.target,
            "run_seed": args.run_seed,
        }
    )
    say(f"{result['task']:16s} {result['metric']} {result['value']}")
    return result


def cmd_prepare_finetune(args: argparse.Namespace) -> None:

    from mixscale.config.finetune import GROUPS
    from mixscale.data.finetune_tasks import prepare_hub_tasks

    # `glue` stands for its eight tasks, as in finetune.tasks
    names = [n for name in args.tasks for n in (GROUPS.get(name) if name == "glue" else [name])]
    summary = prepare_hub_tasks(names, args.out, args.cache_dir)
    for name, task in summary["tasks"].items():
        say(f"{name:16s} {task['train_items']} train, {task['eval_items']} eval")
