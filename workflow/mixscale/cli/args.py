"""Argument types and options shared by several command groups."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from mixscale.config.check import schema_default
from mixscale.errors import InputError


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from exc


def count(text: str) -> int:
    """An integer that may be written 2.0e+7 (YAML configs)."""
    return int(number(text))


def pairs(
    values: Sequence[str] | None, flag: str, default_key: str | None = None
) -> dict[str, float]:
    """'domain=value' items (or a bare value for all domains when default_key is given)."""
    out: dict[str, float] = {}
    for item in values or []:
        name, sep, value = item.rpartition("=")
        if not sep:
            if default_key is None:
                raise InputError(flag, item, "expected domain=value", f"e.g. {flag} wiki=1e9")
            name = default_key
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise InputError(
                flag, item, f"'{value}' is not a number", f"e.g. {flag} wiki=1e9"
            ) from exc
    return out


def json_or_file(text: str) -> dict[str, Any]:
    """Training settings as JSON text, or a JSON/YAML file holding them."""
    import json
    from pathlib import Path

    import yaml

    from mixscale.core.safe_yaml import load_bounded

    source = "--settings"
    if not text.lstrip().startswith("{"):
        if not Path(text).is_file():
            raise InputError(text, "", "settings file not found", "pass JSON or a file path")
        source, text = text, Path(text).read_text(encoding="utf-8-sig")
    try:  # JSON first: YAML 1.1 would read 1e+30 as a string
        data = json.loads(text) if text.lstrip().startswith("{") else load_bounded(text, source)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:  # deep JSON: recursion
        raise InputError(source, "", "invalid JSON/YAML", "fix the settings") from exc
    if not isinstance(data, dict):
        raise InputError(source, "", "settings are a mapping", "see config/README.md")
    return data


def add_configfiles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        action="append",
        required=True,
        help="config YAML (repeat to merge several files in order)",
    )


def checked_config(paths: list[str]):
    """The merged config files (later ones override earlier ones, as in Snakemake), checked
    as the Snakefile checks them: the typed config (``mixscale.config.typed.Config``)."""
    from mixscale.config.load import load_configs
    from mixscale.plan.check import check_config  # the plan: imported only by commands needing it

    config = load_configs(paths)
    return check_config(config, ", ".join(paths))


def add_objective_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--objective",
        default=schema_default("objective.kind"),
        choices=["mean", "perplexity"],
        help="mean perplexity exp(loss) over the evaluation domains (the paper's Eq. 1, "
        "default) or the mean validation loss",
    )
    p.add_argument("--eval-weights", help="weighted mean over evaluation domains: a=0.5,b=0.5")
    p.add_argument("--eval-domains", help="use only these evaluation domains: a,b")


def add_constraint_args(p: argparse.ArgumentParser, with_cost: bool = True) -> None:
    p.add_argument(
        "--min-weight",
        action="append",
        metavar="[DOMAIN=]W",
        help="minimum weight, for all domains or one (repeatable)",
    )
    p.add_argument("--max-weight", action="append", metavar="[DOMAIN=]W")
    p.add_argument("--max-tokens", action="append", metavar="DOMAIN=N", help="cap in tokens")
    p.add_argument(
        "--available",
        action="append",
        metavar="DOMAIN=N",
        help="tokens the domain holds (with --max-epochs)",
    )
    p.add_argument("--max-epochs", type=number, help="cap each domain at this many passes")
    if with_cost:
        p.add_argument("--cost", action="append", metavar="DOMAIN=C", help="cost per token")


def constraints_from(args: argparse.Namespace):

    from mixscale.core.ddo import Constraints

    return Constraints(
        min_weight=pairs(args.min_weight, "--min-weight", "*"),
        max_weight=pairs(args.max_weight, "--max-weight", "*"),
        max_tokens=pairs(args.max_tokens, "--max-tokens"),
        available=pairs(args.available, "--available"),
        max_epochs=args.max_epochs,
        cost=pairs(getattr(args, "cost", None), "--cost"),
    )
