"""Argument types and options shared by several command groups.

Every numeric flag reads its value through one of the range-carrying types below: ``Number``
(one value), ``Numbers`` (``1e5,3e5``), ``Pair`` (``[DOMAIN=]VALUE``, repeatable) and ``Pairs``
(``a=1,b=2``). A value is finite, inside the flag's range, and a whole number where a count is
meant (``2.0e+7`` reads as 20000000, ``2.5`` is refused). argparse reports a refusal as one line
naming the flag (``OneLineParser``), before the command reads any file. Where the config holds the
same quantity, the range is the schema's (``Number.schema``): each range is written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from mixscale.cli.paths import input_path
from mixscale.config.check import schema_default, schema_number
from mixscale.errors import InputError, printable


def _format(value: float) -> str:
    """Short where that is exact (1e+18), every digit where it is not (4294967295)."""
    if isinstance(value, int) and abs(value) > 1e300:  # beyond a float: its size
        return f"a {len(str(abs(value)))}-digit number"
    text = f"{value:g}"
    if float(text) == value:
        return text
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True)
class Number:
    """An argparse type: one finite number in a range (``lo``/``hi``, each closed unless
    ``lo_open``/``hi_open``), a whole number if ``integer`` (with an upper bound: memory or time
    grows with a count), or one of ``words`` as written (``--unit base_total``)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.integer and self.hi is None:
            raise ValueError("a count needs an upper bound")

    @classmethod
    def schema(cls, dotted: str, **changes: Any) -> Number:
        """The range of a config field (``mixscale.config.check.schema_number``)."""
        node = schema_number(dotted)
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        rule = cls(
            lo=node.get("exclusiveMinimum", node.get("minimum")),
            hi=node.get("exclusiveMaximum", node.get("maximum")),
            lo_open="exclusiveMinimum" in node,
            hi_open="exclusiveMaximum" in node,
            integer="integer" in kinds,
        )
        return dataclasses.replace(rule, **changes)

    def __call__(self, text: str) -> float | int | str:
        if text in self.words:
            return text
        try:
            return self.read(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (fix: give {self.describe()})") from None

    def read(self, text: str) -> float | int:
        """The value of text, or ValueError saying what is wrong with it."""
        text = text.strip()
        try:
            value: float | int = int(text) if self.integer and _is_int(text) else float(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{text!r} is not a number") from None
        return self.check(value)

    def check(self, value: float | int) -> float | int:
        """value if it is in range (as an int for a count), else ValueError."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if self.integer:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{_format(value)} is not a whole number")
            value = int(value)
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low or high:
            raise ValueError(f"{_format(value)} is outside {self.interval()}")
        return value

    def interval(self) -> str:
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else _format(self.lo)
        hi = "inf" if self.hi is None else _format(self.hi)
        return f"{left}{lo}, {hi}{right}"

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        words = f" or {' or '.join(self.words)}" if self.words else ""
        return f"{kind} in {self.interval()}{words}"


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isdigit()


@dataclass(frozen=True)
class Numbers:
    """An argparse type: comma-separated numbers of one range (``--scales 1e5,3e5``)."""

    item: Number
    example: str = "1e5,3e5"

    def __call__(self, text: str) -> tuple[float | int, ...]:
        parts = [part for part in text.split(",") if part.strip()]
        try:
            if not parts:
                raise ValueError(f"{text!r} holds no number")
            return tuple(self.item.read(part) for part in parts)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (fix: give {self.describe()})") from None

    def describe(self) -> str:
        return f"numbers like {self.example}, each {self.item.describe()}"


@dataclass(frozen=True)
class Pair:
    """An argparse type: ``DOMAIN=VALUE`` (or a bare ``VALUE`` for every domain, under the
    name ``*``, if ``bare``), the value in ``value``'s range."""

    value: Number
    bare: bool = False

    def __call__(self, text: str) -> tuple[str, float | int]:
        try:
            return self.read(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (fix: give {self.describe()})") from None

    def read(self, text: str) -> tuple[str, float | int]:
        name, sep, value = text.rpartition("=")
        name = name.strip()
        if not sep and not self.bare:
            raise ValueError(f"{text!r} is not DOMAIN=VALUE")
        if sep and not name:
            raise ValueError(f"{text!r} names no domain")
        try:
            number = self.value.read(value)
        except ValueError as exc:
            raise ValueError(f"{name}={value}: {exc}" if sep else str(exc)) from None
        return (name if sep else "*"), number

    def describe(self) -> str:
        form = "[DOMAIN=]VALUE" if self.bare else "DOMAIN=VALUE"
        return f"{form}, the value {self.value.describe()}"


@dataclass(frozen=True)
class Pairs:
    """An argparse type: ``a=1,b=2`` as a mapping (each domain once), the values in range and
    (weights of a mean, proportions) with a positive sum; ``text``: the checked text itself, for
    a reader that parses it again."""

    value: Number
    text: bool = False

    def __call__(self, text: str) -> dict[str, float | int] | str:
        one = Pair(self.value)
        try:
            items = [one.read(item) for item in text.split(",") if item.strip()]
            if not items:
                raise ValueError(f"{text!r} holds no DOMAIN=VALUE")
            given = dict(items)
            if len(given) < len(items):
                twice = next(n for n in given if [k for k, _ in items].count(n) > 1)
                raise ValueError(f"{twice} is given twice")
            if sum(given.values()) <= 0:
                raise ValueError(f"{text!r} sums to 0")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (fix: give {self.describe()})") from None
        return text if self.text else given

    def describe(self) -> str:
        return f"a=VALUE,b=VALUE, each value {self.value.describe()}, their sum > 0"


RANGE_TYPES = (Number, Numbers, Pair, Pairs)

# The quantities many commands share: token counts as a run table holds them, seeds
TOKENS = Number.schema("$defs.tokens")
SEED = Number.schema("$defs.seed")
WEIGHT = Number(0, 1)  # a share of the mixture
COST = Number(0, 1e30, lo_open=True)  # per token, any unit: a budget / cost stays finite
EPOCHS = Number(0, 1e6, lo_open=True)  # passes over a domain's data


def pair_dict(items: Sequence[tuple[str, float]] | None, flag: str) -> dict[str, float]:
    """Repeated ``Pair`` values as a mapping; a domain given twice is refused (the last would
    silently win)."""
    out: dict[str, float] = {}
    for name, value in items or []:
        if name in out:
            where = "every domain" if name == "*" else name
            raise InputError(flag, where, "given twice", f"give {flag} once per domain")
        out[name] = value
    return out


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusals are one line naming the flag, with a fix, as every other error
    of mixscale (argparse prints its usage block first: several lines). Its other messages
    quote the user's words too ("unrecognized arguments: ..."): they reach the terminal
    through ``printable`` like every other message. Subcommands' parsers are of this class."""

    def _print_message(self, message: str, file=None) -> None:
        super()._print_message(printable(message, keep="\n") if message else message, file)

    def error(self, message: str) -> NoReturn:
        match = re.match(r"argument ([^:]+): (.*)", message, re.S)
        flag, text = match.groups() if match else ("arguments", message)
        problem, _, fix = text.partition(" (fix: ")
        fix = fix.removesuffix(")") or f"see {self.prog} --help"
        line = InputError(flag, "", problem, fix).one_line()
        self.exit(2, f"{self.prog}: error: {line}\n")


def describe_ranges(parser: argparse.ArgumentParser) -> None:
    """Append each numeric option's range to its help, in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                describe_ranges(sub)
        elif isinstance(action.type, RANGE_TYPES) and action.help != argparse.SUPPRESS:
            action.help = f"{action.help or ''} [{action.type.describe()}]".strip()


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
        type=input_path,
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
    p.add_argument(
        "--eval-weights",
        type=Pairs(Number(0, 1e6), text=True),
        help="weighted mean over evaluation domains: a=0.5,b=0.5",
    )
    p.add_argument("--eval-domains", help="use only these evaluation domains: a,b")


def add_constraint_args(p: argparse.ArgumentParser, with_cost: bool = True) -> None:
    p.add_argument(
        "--min-weight",
        action="append",
        type=Pair(WEIGHT, bare=True),
        metavar="[DOMAIN=]W",
        help="minimum weight, for all domains or one (repeatable)",
    )
    p.add_argument(
        "--max-weight", action="append", type=Pair(WEIGHT, bare=True), metavar="[DOMAIN=]W"
    )
    p.add_argument(
        "--max-tokens",
        action="append",
        type=Pair(Number(0, TOKENS.hi)),
        metavar="DOMAIN=N",
        help="cap in tokens",
    )
    p.add_argument(
        "--available",
        action="append",
        type=Pair(Number(0, TOKENS.hi)),
        metavar="DOMAIN=N",
        help="tokens the domain holds (with --max-epochs)",
    )
    p.add_argument("--max-epochs", type=EPOCHS, help="cap each domain at this many passes")
    if with_cost:
        p.add_argument(
            "--cost", action="append", type=Pair(COST), metavar="DOMAIN=C", help="cost per token"
        )


def constraints_from(args: argparse.Namespace):

    from mixscale.core.ddo import Constraints

    return Constraints(
        min_weight=pair_dict(args.min_weight, "--min-weight"),
        max_weight=pair_dict(args.max_weight, "--max-weight"),
        max_tokens=pair_dict(args.max_tokens, "--max-tokens"),
        available=pair_dict(args.available, "--available"),
        max_epochs=args.max_epochs,
        cost=pair_dict(getattr(args, "cost", None), "--cost"),
    )
