"""``python -m mixscale``: every command of the workflow and of the math core, grouped by stage
(``mixscale.cli.<group>``, each parser next to its handler).

Handlers import the stage modules they call inside the function: the CLI starts in 0.1 s
instead of 1.8 s, and every Snakemake job calls it. Every command reads files, writes its output
atomically, and on bad input prints one line naming the input and the field, exiting with 2.
Every path flag is marked as an input or an output (``mixscale.cli.paths``): before a handler
runs, its outputs are checked against its inputs and against what stands at their paths.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mixscale.cli import data, evaluate, experiment, finetune, math, mixtures, report, train
from mixscale.cli.args import OneLineParser, describe_ranges
from mixscale.cli.paths import path_flags, paths_checked
from mixscale.errors import InputError, environment_error, say
from mixscale.fileio import write_json

GROUPS = (math, mixtures, train, data, evaluate, finetune, experiment, report)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mixscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)  # subparsers: OneLineParser too
    for group in GROUPS:
        group.register(sub)
    for command in sub.choices.values():  # each command carries its marked path flags
        command.set_defaults(path_flags=path_flags(command))
    describe_ranges(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with paths_checked(args):  # outputs against inputs: one line before any work
            result = args.handler(args)
            if result is not None:  # commands that write their own format return None
                write_json(args.out, result)
    except InputError as exc:
        say(f"mixscale {args.command}: error: {exc.one_line()}")
        return 2
    except Exception as exc:
        problem = environment_error(exc)  # a full disk, a read-only folder
        if problem is None:
            raise
        say(f"mixscale {args.command}: error: {problem.one_line()}")
        return 2
    if getattr(args, "out", None):
        say(f"mixscale {args.command}: wrote {args.out}")
    return 0
