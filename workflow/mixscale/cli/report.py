"""Reports: the experiment's summary, the annealing report, the status of every run."""

from __future__ import annotations

import argparse
import sys

from mixscale.cli.args import Number, checked_config
from mixscale.cli.paths import input_path, output_file
from mixscale.config.check import schema_default
from mixscale.errors import InputError, say
from mixscale.fileio import write_json

# the sum of a method's proxy runs (0 for fixed weights): finite, no bound of its own
PROXY_TOKENS = Number(lo=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="summary.md of an experiment")
    p.add_argument("--experiment", required=True)
    p.add_argument(
        "--ddo", type=input_path, nargs="+", required=True, help="DDO WEIGHTS.json per scale"
    )
    p.add_argument(
        "--autoscale", type=input_path, nargs="*", default=[], help="PRED.json per target"
    )
    p.add_argument(
        "--compare", type=input_path, nargs="*", default=[], help="compare JSON per target"
    )
    p.add_argument(
        "--world",
        type=input_path,
        nargs="?",
        help="draw this world's true optimum (backend simulate); the workflow passes its world "
        "file, or no value",
    )
    p.add_argument(
        "--downstream", type=input_path, nargs="*", default=[], help="downstream results JSONs"
    )
    p.add_argument(
        "--finetune", type=input_path, nargs="*", default=[], help="fine-tuning results JSONs"
    )
    p.add_argument(
        "--proxy-tokens",
        default="{}",
        help="JSON {method: tokens of its proxy runs} (the workflow passes it)",
    )
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("anneal-report", help="anneal.md + gain curves from UTILITY.json")
    p.add_argument("--utility", type=input_path, required=True)
    p.add_argument(
        "--runs", type=input_path, required=True, help="the annealing TSV the utility was fitted on"
    )
    p.add_argument(
        "--unit",
        help="cost unit (default: the one utility recorded, else "
        f"{schema_default('anneal.cost_unit')})",
    )
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_anneal_report)

    p = sub.add_parser("status", help="finished, running, interrupted and missing runs")
    p.add_argument(
        "--configfile",
        type=input_path,
        action="append",
        default=None,
        help="the experiment's config (default: config/config.yaml)",
    )
    p.add_argument(
        "--directory", type=input_path, default=".", help="the workflow's working directory"
    )
    p.add_argument("--verbose", action="store_true", help="list finished runs too")
    p.add_argument("--out", type=output_file, help="also write the status as JSON")
    p.set_defaults(handler=cmd_status)


def cmd_report(args: argparse.Namespace) -> None:

    from mixscale.report.summary import write_summary

    write_summary(
        args.experiment,
        args.ddo,
        args.autoscale,
        args.compare,
        args.out,
        args.world,
        args.downstream,
        _proxy_tokens(args.proxy_tokens),
        args.finetune,
    )


def _proxy_tokens(text: str) -> dict[str, float]:
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("--proxy-tokens", "", "not JSON", 'e.g. {"autoscale": 1e9}') from exc
    if not isinstance(data, dict) or not all(isinstance(v, int | float) for v in data.values()):
        raise InputError("--proxy-tokens", "", "not {method: tokens}", 'e.g. {"autoscale": 1e9}')
    try:  # JSON lets NaN and Infinity through
        return {str(k): float(PROXY_TOKENS.check(v)) for k, v in data.items()}
    except ValueError as exc:
        raise InputError("--proxy-tokens", "", str(exc), f"give {PROXY_TOKENS.describe()}") from exc


def cmd_anneal_report(args: argparse.Namespace) -> None:

    from mixscale.report.anneal import write_anneal_report

    write_anneal_report(args.utility, args.runs, args.out, args.unit)


def cmd_status(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.report.status import experiment_status, format_status

    config = checked_config(args.configfile or [str(Path(args.directory) / "config/config.yaml")])
    status = experiment_status(config, args.directory)
    say(format_status(status, args.verbose), sys.stdout)
    if args.out:
        write_json(args.out, status)
