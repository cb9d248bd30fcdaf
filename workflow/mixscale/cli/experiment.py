"""A whole config: check it, price it (GPU-hours per stage)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mixscale.cli.args import add_configfiles, checked_config
from mixscale.cli.math import add_advise_args
from mixscale.cli.paths import input_path, output_file, output_parent
from mixscale.errors import InputError, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check a config (YAML, schema, names, scales) without running")
    add_configfiles(p)
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("budget", help="tokens, FLOPs and GPU-hours per stage of a config")
    add_configfiles(p)
    p.add_argument("--out", type=output_file, help="also write the budget as JSON")
    advise_args = p.add_argument_group(
        "design advice (with --pilot): the config's design checked against a pilot's noise"
    )
    add_advise_args(advise_args, with_config=False)
    p.set_defaults(handler=cmd_budget)

    p = sub.add_parser(
        "install-profile",
        help="install profiles/slurm under a name: then `snakemake --profile slurm` works",
    )
    p.add_argument("--account", help="SLURM account (omit on clusters without accounting)")
    p.add_argument("--partition", required=True, help="partition of CPU jobs (data, reports)")
    p.add_argument("--gpu-partition", help="partition of training jobs (default: --partition)")
    p.add_argument("--name", default="slurm", help="the profile's name (default slurm)")
    p.add_argument(
        "--source", type=input_path, default="profiles/slurm", help="the project's profile folder"
    )
    p.add_argument(
        "--config-dir",
        type=output_parent,
        help="where profiles live (default $XDG_CONFIG_HOME/snakemake)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing profile")
    p.set_defaults(handler=cmd_install_profile)


def cmd_check(args: argparse.Namespace) -> None:

    from mixscale.plan.specs import run_specs

    config = checked_config(args.configfile)
    kinds = [k for k in ("ddo", "anneal") if getattr(config, k) is not None]
    say(
        f"{', '.join(args.configfile)}: ok ({config.experiment}: {' + '.join(kinds)}, "
        f"{len(run_specs(config))} runs, backend {config.backend})",
        sys.stdout,
    )


def cmd_budget(args: argparse.Namespace) -> dict[str, Any] | None:

    from mixscale.plan.budget import budget_table, format_table

    config = checked_config(args.configfile)
    result = budget_table(config)
    say(format_table(result), sys.stdout)
    if args.pilot:
        from mixscale.cli.math import advice
        from mixscale.core.advise import format_advice

        if config.ddo is None:
            raise InputError("budget", "--pilot", "the config has no ddo", "drop --pilot")
        result["advice"] = advice(args, config)
        say(format_advice(result["advice"]), sys.stdout)
    return result if args.out else None  # the table is printed either way


def cmd_install_profile(args: argparse.Namespace) -> None:
    from mixscale.config.profile import install_profile

    path = install_profile(
        args.source,
        args.name,
        args.account,
        args.partition,
        args.gpu_partition,
        args.config_dir,
        args.force,
    )
    say(f"installed {path}: now `snakemake --profile {args.name} --configfile ...`", sys.stdout)
