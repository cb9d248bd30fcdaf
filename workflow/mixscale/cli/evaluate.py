"""After the runs: run tables, verification, downstream scores, annealing tables."""

from __future__ import annotations

import argparse
from typing import Any

from mixscale.cli.args import SEED, TOKENS, Number, add_objective_args, json_or_file
from mixscale.cli.paths import input_path, output_file
from mixscale.config.check import schema_default
from mixscale.errors import InputError, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="gather runs' metrics.json into a run table (TSV)")
    p.add_argument("--metrics", type=input_path, nargs="+", required=True)
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_table)

    p = sub.add_parser("compare", help="verification runs at one target scale")
    p.add_argument("--metrics", type=input_path, nargs="+", required=True)
    p.add_argument("--target", type=TOKENS, required=True)
    p.add_argument(
        "--world", type=input_path, help="score against this world's optimum (backend simulate)"
    )
    add_objective_args(p)  # the objective DDO optimised: the methods are compared on it
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("downstream", help="score a saved model on an lm-eval task")
    p.add_argument(
        "--model", type=input_path, required=True, help="saved model folder (transformers)"
    )
    p.add_argument("--task", required=True, help="lm-eval task or group, or 'embedded'")
    p.add_argument("--shots", type=Number.schema("downstream.tasks[].shots"), default=0)
    p.add_argument("--metric", default="acc", help="the metric the report shows")
    p.add_argument(
        "--include-path", type=input_path, help="folder of task YAMLs (the embedded tasks)"
    )
    p.add_argument(
        "--limit",
        type=Number.schema("downstream.limit"),
        help="items per task (a fraction if < 1)",
    )
    p.add_argument(
        "--batch-size",
        type=Number.schema("downstream.batch_size"),
        default=schema_default("downstream.batch_size"),
    )
    p.add_argument(
        "--device", default=schema_default("downstream.device"), help="auto, cpu, cuda, cuda:0"
    )
    p.add_argument("--cache-dir", help="HF_HOME for this job (default: beside the model)")
    p.add_argument("--datasets-cache", type=input_path, help="a prepared datasets cache (cluster)")
    p.add_argument("--online", action="store_true", help="allow the Hugging Face hub")
    p.add_argument("--seed", type=SEED, default=0, help="few-shot sampling seed")
    p.add_argument("--label", help="row label in the report (the method)")
    p.add_argument("--target", help="target scale label the model was trained for")
    p.add_argument("--run-seed", type=SEED, help="training seed of the run")
    p.add_argument("--out", type=output_file, required=True, help="results JSON")
    p.set_defaults(handler=cmd_downstream)

    p = sub.add_parser("anneal-table", help="annealing runs' target metric as utility's TSV")
    p.add_argument(
        "--metrics", type=input_path, nargs="+", required=True, help="annealing runs' metrics.json"
    )
    p.add_argument("--target", help="target domains: a,b (mean held-out loss)")
    p.add_argument("--task-metric", help="or: downstream result files, mean of this metric")
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_anneal_table)

    p = sub.add_parser("anneal-costs", help="utility's costs TSV from anneal.sources")
    p.add_argument(
        "--sources", type=input_path, required=True, help="JSON: {source: {acquisition_cost, ...}}"
    )
    p.add_argument(
        "--share",
        type=Number.schema("anneal.share"),
        required=True,
        help="source share of the mix",
    )
    p.add_argument(
        "--training-cost",
        type=Number.schema("anneal.training_cost_per_token"),
        required=True,
        help="per annealing token",
    )
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_anneal_costs)


def cmd_table(args: argparse.Namespace) -> None:

    from mixscale.evaluate.verify import run_table

    run_table(args.metrics, args.out)


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.core.objective import parse_objective
    from mixscale.evaluate.verify import compare

    objective = parse_objective(args.objective, args.eval_weights, args.eval_domains)
    return compare(args.metrics, args.target, args.world, objective)


def cmd_downstream(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.config.tasks import TaskEntry
    from mixscale.evaluate.downstream import evaluate

    entry = TaskEntry(args.task, args.shots, args.metric)
    result = evaluate(
        args.model,
        entry,
        include_path=args.include_path,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        offline=not args.online,
        datasets_cache=args.datasets_cache,
        seed=args.seed,
    )
    result.update({"label": args.label, "target": args.target, "run_seed": args.run_seed})
    for name, scores in result["tasks"].items():
        value = scores.get(args.metric, scores.get("acc"))
        say(f"{name:32s} {args.metric} {value}")
    return result


def cmd_anneal_table(args: argparse.Namespace) -> None:

    from mixscale.evaluate.anneal import anneal_table

    if not args.target and not args.task_metric:
        raise InputError("anneal-table", "--target", "missing", "give --target or --task-metric")
    target = args.target.split(",") if args.target else []
    rows = anneal_table(args.metrics, target, args.out, args.task_metric)
    say(f"{rows} annealing runs -> {args.out}")


def cmd_anneal_costs(args: argparse.Namespace) -> None:

    from mixscale.evaluate.anneal import costs_table

    costs_table(json_or_file(args.sources), args.share, args.training_cost, args.out)
