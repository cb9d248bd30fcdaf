"""One way to read numbers on the command line: every numeric flag of every command, found by
walking ``mixscale.cli.main.build_parser()``, gets NaN, both infinities, -1, 0 and 1e300 (and
2.5 where a whole number is meant). Each ends in exit 2 with exactly one line on stderr naming
the flag, or in a correct result.

Commands that are cheap in-process (the math: fit, solve, ddo, rounds, advise, budget, predict,
utility, world, dml, regmix, doremi, mixtures; and table-side ones: compare, anneal-costs,
corpus from a small file, train with the simulated backend) run from a valid baseline
invocation with the value in place, through ``main(argv)``: exit 0 with an output whose numbers
are finite and whose weights sum to 1, or exit 2 in one line and no output file; never a
traceback, a hang or a silent wrong file. The heavy commands (init-model, tokenizer, tokens,
derive, tasks, downstream (lm-eval), finetune-tasks, finetune, study) are checked at the parse:
a value is refused in one line naming the flag, or parsed as a finite number in the flag's
range. A numeric flag without a range (a bare ``type=float``, or a number default with no
type) fails ``test_every_numeric_flag_declares_its_range``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import ROOT, alg1_mixtures
from mixscale.cli.args import RANGE_TYPES, Number, Numbers, Pair, Pairs
from mixscale.cli.main import build_parser, main
from mixscale.cli.paths import ROLES as PATH_ROLES

ODD = ["nan", "inf", "-inf", "-1", "0", "1e300"]
NOT_WHOLE = "2.5"
LIMIT = 60  # seconds for one command (they take well under one)

# checked at the parse only: each would train a model, tokenize a corpus or run lm-eval
PARSE_ONLY = {
    "init-model", "tokenizer", "tokens", "derive", "tasks", "downstream", "finetune-tasks",
    "finetune", "study",
}  # fmt: skip


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def numeric_flags() -> list[tuple[str, str, Any]]:
    """(command, flag, type) of every option whose type carries a range."""
    return [
        (command, action.option_strings[0], action.type)
        for command, parser in subcommands().items()
        for action in parser._actions
        if action.option_strings and isinstance(action.type, RANGE_TYPES)
    ]


FLAGS = numeric_flags()


def test_every_numeric_flag_declares_its_range():
    """No option reads a number with a bare int/float (or any type without a range), and none
    has a number as default without a type (argparse would hand the handler a string)."""
    bare = []
    for command, parser in subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
                continue
            numeric_default = isinstance(action.default, int | float) and not isinstance(
                action.default, bool
            )
            takes_value = action.nargs != 0
            path = action.type in PATH_ROLES  # text: marked input or output (cli/paths.py)
            if action.type is not None and not path and not isinstance(action.type, RANGE_TYPES):
                bare.append((command, action.option_strings[0], action.type))
            elif takes_value and numeric_default and action.type is None:
                bare.append((command, action.option_strings[0], "number default, no type"))
    assert not bare, bare
    assert len(FLAGS) > 60, len(FLAGS)
    assert ("mixtures", "--count", Number.schema("methods.regmix.runs", lo=1)) in FLAGS


def test_a_bare_float_flag_is_caught(monkeypatch):
    """The walk above fails on a flag added with type=float: shown by adding one."""
    original = build_parser

    def with_bare_flag():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["fit"].add_argument("--new-number", type=float)
        return parser

    monkeypatch.setattr(f"{__name__}.build_parser", with_bare_flag)
    with pytest.raises(AssertionError, match="new-number"):
        test_every_numeric_flag_declares_its_range()


def test_ranges_come_from_the_schema():
    """Where the config holds the same quantity, the flag's range is the schema's."""
    types = {(c, f): t for c, f, t in FLAGS}
    assert types[("ddo", "--bootstrap")] == Number.schema("fit.bootstrap")
    assert types[("predict", "--target")] == Number.schema("autoscale.targets[]")
    assert types[("regmix", "--candidates")] == Number.schema("methods.regmix.candidates")
    assert types[("advise", "--factors")].item == Number.schema("ddo.factor")
    assert types[("tokenizer", "--vocab-size")] == Number.schema("data.tokenizer.vocab_size")
    from mixscale.core.runtable import TOKEN_RANGE

    tokens = Number.schema("$defs.tokens")
    assert (tokens.lo, tokens.hi) == TOKEN_RANGE  # a run table's cells hold the same counts


# --- values in place ---------------------------------------------------------------------------


def integer(kind: Any) -> bool:
    inner = {Number: lambda t: t, Numbers: lambda t: t.item, Pair: lambda t: t.value}
    rule = inner.get(type(kind), lambda t: t.value)(kind)
    return rule.integer


DOMAIN = {"solve": "web", "ddo": "web", "dml": "web", "regmix": "web", "mixtures": "a"}
PRIOR_DOMAINS = {"regmix": ["web", "wiki", "code"], "mixtures": ["a", "b", "c"]}


def as_text(command: str, flag: str, kind: Any, value: str) -> str:
    """value written as the flag takes it: DOMAIN=VALUE for pairs, one item for lists."""
    if isinstance(kind, Pair):
        return value if kind.bare else f"{DOMAIN[command]}={value}"
    if isinstance(kind, Pairs):
        first, *rest = PRIOR_DOMAINS.get(command, ["web"])
        return ",".join([f"{first}={value}", *(f"{d}=1" for d in rest)])
    return value


def with_flag(argv: list[str], flag: str, text: str) -> list[str]:
    """argv with every occurrence of flag replaced by one: flag text."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == flag:
            skip = True
        else:
            out.append(word)
    return [*out, flag, text]


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    alarm = threading.current_thread() is threading.main_thread()
    if alarm:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(int(seconds))
    try:
        yield
    finally:
        if alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def run(argv: list[str]) -> tuple[int, str]:
    """main(argv) in-process: its exit code and stderr (argparse exits with SystemExit)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            with time_limit(LIMIT):
                code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), err.getvalue()


def parse(argv: list[str]) -> tuple[int, str, argparse.Namespace | None]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return 0, "", build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue(), None


def assert_refused(code: int, stderr: str, flag: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr)
    assert len(lines) == 1, stderr
    assert flag in lines[0] and "(fix: " in lines[0] and "Traceback" not in stderr, lines[0]


def finite_numbers(node: Any, where: str = "") -> None:
    """Every number in a JSON result is finite; every 'weights' mapping sums to 1."""
    if isinstance(node, dict):
        weights = node.get("weights")
        if (
            isinstance(weights, dict)
            and weights
            and all(isinstance(w, int | float) for w in weights.values())
        ):
            assert all(w >= 0 for w in weights.values()), (where, weights)
            assert math.isclose(sum(weights.values()), 1, abs_tol=1e-6), (where, weights)
        for key, value in node.items():
            finite_numbers(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            finite_numbers(value, f"{where}[{i}]")
    elif isinstance(node, float):
        assert math.isfinite(node), (where, node)


def assert_sane_output(out: Path) -> None:
    if not out.suffix:  # a folder (corpus): its JSONL files, each with a document
        assert [p.stat().st_size > 1 for p in out.glob("*.jsonl")] == [True], list(out.iterdir())
        return
    assert out.is_file(), f"exit 0 without {out.name}"
    if out.suffix == ".json":
        finite_numbers(json.loads(out.read_text()))
    elif out.suffix == ".tsv":
        header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
        for row in rows:
            assert len(row) == len(header), row
            named = zip(row, header, strict=True)
            numbers = [float(c) for c, h in named if h not in ("run", "source") and c]
            assert all(math.isfinite(x) and x >= 0 for x in numbers), row


# --- baselines: a valid invocation of every command that runs in-process -----------------------


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> dict[str, list[str]]:
    """Inputs made once (a noisy separable world, its sweeps and sampled mixtures, two DDO
    optima of the worked example, annealing tables, simulated runs), and each command's valid
    argv ('OUT' marks its output)."""
    from mixscale.core.world import SHIPPED, simulate_run_table, world_from_dict

    d = tmp_path_factory.mktemp("baselines")
    world_data = yaml.safe_load((SHIPPED / "separable.yaml").read_text())
    world_data["noise"] = {"sigma": 0.01, "sigma_domain": 0.005}
    (d / "world.yaml").write_text(yaml.safe_dump(world_data))
    world = world_from_dict(world_data, str(d / "world.yaml"))
    simulate_run_table(world, alg1_mixtures(np.full(5, 2e5)), seeds=3).save(d / "pilot.tsv")
    # DML fits an exponential law per domain jointly (seconds per fit): three domains, 8 runs
    three = {**world_data, "domains": world.domains[:3], "skills": world_data["skills"][:3]}
    rng = np.random.default_rng(0)
    sampled = [(f"m{i}", rng.dirichlet(np.ones(3)) * 1e6) for i in range(8)]
    simulate_run_table(world_from_dict(three), sampled, seeds=1).save(d / "sampled.tsv")
    r10, r30 = str(ROOT / "examples/runs_10M.tsv"), str(ROOT / "examples/runs_30M.tsv")
    assert run(["fit", "--runs", r10, "--out", str(d / "fit.json")])[0] == 0
    for name, table, tokens in (("w10", r10, "1e7"), ("w30", r30, "3e7")):
        argv = ["ddo", "--runs", table, "--tokens", tokens, "--bootstrap", "0"]
        assert run([*argv, "--out", str(d / f"{name}.json")])[0] == 0
    _anneal_tables(d)
    _simulated_runs(d)
    config = {
        "experiment": "numbers",
        "backend": "simulate",
        "world": str(d / "world.yaml"),
        "objective": {"kind": "mean"},
        "model": {"params": 1.0e8, "proxy_params": 1.0e7},  # the budget prices runs
        "ddo": {"scales": [{"name": "1M", "tokens": 1.0e6}, {"name": "3M", "tokens": 3.0e6}]},
        "autoscale": {"targets": [3.0e7]},
    }
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    (d / "text.txt").write_text("A paragraph of plain text, long enough to be a document.\n" * 3)
    advise = ["--objective", "mean", "--trials", "20", "--max-seeds", "2", "--factors", "3"]
    f = {name: str(d / name) for name in ("fit.json", "w10.json", "w30.json")}
    spec = {"id": "r", "stage": "ddo", "seed": 0, "total_tokens": 1e6,
            "tokens": dict.fromkeys(world.domains, 2e5)}  # fmt: skip
    return {
        "fit": ["fit", "--runs", r10, "--out", "OUT.json"],
        "solve": ["solve", "--fit", f["fit.json"], "--tokens", "1e7", "--out", "OUT.json"],
        "ddo": ["ddo", "--runs", r10, "--tokens", "1e7", "--bootstrap", "0", "--out", "OUT.json"],
        "rounds": ["rounds", "--weights", f["w10.json"], "--planned", "1", "--tolerance", "0.01",
                   "--out", "OUT.json"],
        "advise": ["advise", "--pilot", str(d / "pilot.tsv"), "--scales", "1e6,3e6", "--target",
                   "3e7", *advise, "--out", "OUT.json"],
        "budget": ["budget", "--configfile", str(d / "config.yaml"), "--pilot",
                   str(d / "pilot.tsv"), "--trials", "20", "--max-seeds", "2", "--factors", "3",
                   "--out", "OUT.json"],
        "predict": ["predict", "--optimum", f["w10.json"], "--optimum", f["w30.json"],
                    "--target", "1e9", "--out", "OUT.json"],
        "utility": ["utility", "--runs", str(d / "anneal.tsv"), "--costs", str(d / "costs.tsv"),
                    "--train-cost-per-token", "1", "--bootstrap", "5", "--out", "OUT.json"],
        "world": ["world", "optimum", "--world", "separable", "--tokens", "1e7",
                  "--out", "OUT.json"],
        "dml": ["dml", "--runs", str(d / "sampled.tsv"), "--objective", "mean",
                "--out", "OUT.json"],
        "regmix": ["regmix", "--runs", str(d / "sampled.tsv"), "--objective", "mean",
                   "--regressor", "linear", "--candidates", "2000", "--top-k", "20",
                   "--out", "OUT.json"],
        "doremi": ["doremi", "--metrics", str(d / "doremi.json"), "--tokens", "1e7",
                   "--out", "OUT.json"],
        "mixtures": ["mixtures", "--prior", "a=1,b=2,c=1", "--count", "4", "--tokens", "1e6",
                     "--out", "OUT.tsv"],
        "train": ["train", "--spec", json.dumps(spec), "--backend", "simulate", "--world",
                  "separable", "--out", "OUT.json"],
        "compare": ["compare", "--metrics", *map(str, sorted(d.glob("verify-*.json"))),
                    "--target", "3e7", "--objective", "mean", "--out", "OUT.json"],
        "anneal-costs": ["anneal-costs", "--sources", '{"web": {"acquisition_cost": 1}}',
                         "--share", "0.3", "--training-cost", "1", "--out", "OUT.tsv"],
        "corpus": ["corpus", "--source", "mine=" + json.dumps({"path": str(d / "text.txt")}),
                   "--out", "OUT"],
    }  # fmt: skip


def _anneal_tables(d: Path) -> None:
    lines = ["source\tbudget_tokens\tmetric\tseed"]
    for b in (1e6, 1e7, 1e8, 1e9):
        for seed in (0, 1):
            noise = 1e-4 * seed
            lines.append(f"control\t{b}\t{2.0 + noise}\t{seed}")
            lines.append(f"web\t{b}\t{2.0 - 0.1 * (1 - (1 + b / 1e7) ** -0.5) + noise}\t{seed}")
            lines.append(f"math\t{b}\t{2.0 - 0.3 * (1 - (1 + b / 1e9) ** -0.5) + noise}\t{seed}")
    (d / "anneal.tsv").write_text("\n".join(lines) + "\n")
    (d / "costs.tsv").write_text("source\tacquisition_cost_per_token\nweb\t0.1\nmath\t2.0\n")
    doremi = {  # a DoReMi proxy run's metrics.json, the fields the command reads
        "final_losses": {"web": 3.1, "wiki": 3.0, "code": 2.5},
        "doremi": {"weights": {"web": 0.3, "wiki": 0.2, "code": 0.5}},
    }
    (d / "doremi.json").write_text(json.dumps(doremi))


def _simulated_runs(d: Path) -> None:
    """Two seeds of uniform verification runs at 3e7 tokens, as the workflow trains them."""
    from conftest import with_defaults
    from mixscale.plan.specs import run_specs

    config = with_defaults(
        {
            "experiment": "numbers",
            "backend": "simulate",
            "world": "separable",
            "ddo": {"scales": [{"name": "1M", "tokens": 1e6}, {"name": "3M", "tokens": 3e6}]},
            "autoscale": {"targets": [3e7]},
            "verify": {"methods": ["uniform"], "seeds": 2},
        }
    )
    for spec in run_specs(config).values():
        if spec["stage"] == "verify":
            argv = ["train", "--spec", json.dumps(spec), "--backend", "simulate", "--world",
                    "separable", "--out", str(d / f"{spec['id']}.json")]  # fmt: skip
            assert run(argv)[0] == 0


def test_every_command_with_a_number_is_run_or_parsed(baselines):
    """A new command with a numeric flag needs a baseline here, or a place in PARSE_ONLY."""
    commands = {command for command, _, _ in FLAGS}
    assert commands <= set(baselines) | PARSE_ONLY, commands - set(baselines) - PARSE_ONLY
    assert not set(baselines) & PARSE_ONLY


@pytest.mark.parametrize("command", sorted({c for c, _, _ in FLAGS} - PARSE_ONLY))
def test_baselines_run(baselines, command, tmp_path):
    """Each baseline is a valid invocation: the odd values below are its only fault."""
    out = tmp_path / Path(baselines[command][-1]).name.replace("OUT", "out")
    code, stderr = run([*baselines[command][:-1], str(out)])
    assert code == 0, stderr
    assert_sane_output(out)


RUN_CASES = [
    (command, flag, kind, value)
    for command, flag, kind in FLAGS
    if command not in PARSE_ONLY
    for value in [*ODD, *([NOT_WHOLE] if integer(kind) else [])]
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    ("command", "flag", "kind", "value"),
    RUN_CASES,
    ids=[f"{c} {f} {v}" for c, f, _, v in RUN_CASES],
)
def test_odd_numbers_are_refused_in_one_line_or_give_a_correct_result(
    baselines, command, flag, kind, value, tmp_path
):
    argv = baselines[command]
    out = tmp_path / Path(argv[-1]).name.replace("OUT", "out")
    argv = with_flag([*argv[:-1], str(out)], flag, as_text(command, flag, kind, value))
    code, stderr = run(argv)
    if code == 0:
        assert_sane_output(out)
        return
    assert_refused(code, stderr, flag)
    assert not out.exists(), "a refused command wrote its output"


def parse_baseline(command: str, parser: argparse.ArgumentParser) -> list[str]:
    """The command's required options with placeholder values (a parse runs no handler)."""
    argv = [command]
    for action in parser._actions:
        if not action.required and action.option_strings:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        value = action.choices[0] if action.choices else "x"
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    return argv


PARSE_CASES = [
    (command, flag, kind, value)
    for command, flag, kind in FLAGS
    if command in PARSE_ONLY
    for value in [*ODD, *([NOT_WHOLE] if integer(kind) else [])]
]


@pytest.mark.parametrize(
    ("command", "flag", "kind", "value"),
    PARSE_CASES,
    ids=[f"{c} {f} {v}" for c, f, _, v in PARSE_CASES],
)
def test_odd_numbers_of_heavy_commands_are_refused_at_the_parse_or_in_range(
    command, flag, kind, value
):
    argv = with_flag(
        parse_baseline(command, subcommands()[command]), flag, as_text(command, flag, kind, value)
    )
    code, stderr, args = parse(argv)
    if args is None:
        assert_refused(code, stderr, flag)
        return
    parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert isinstance(kind, Number), (flag, kind)  # the heavy commands take single numbers
    assert kind.check(parsed) == parsed  # finite, in range, whole if a count
    assert not kind.integer or type(parsed) is int, parsed
