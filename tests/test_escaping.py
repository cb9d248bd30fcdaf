"""Text that reaches a page, a table or a terminal is escaped (issue 36, part 3).

- report.html: ``snakemake --report`` writes the parameters of every job behind a report item
  into a ``<script>`` block unescaped. A hostile value in every string field of the schema, on
  each base config: no config text reaches the page; and a real simulated run whose world path
  holds ``</script><img src=x onerror=...>`` gives a report.html in which headless Chromium runs
  no script (the same payload in a page built the way Snakemake builds it does run: the probe
  works). Captions: every caption a rule names is static reStructuredText.
- Markdown: every report writer (summary.md with its downstream and fine-tuning sections,
  anneal.md, the method study and the methods study) gets hostile names and free text; the
  page renders (CommonMark/GFM and Python-Markdown) to the same HTML structure as with plain
  names, and shows the hostile text literally.
- Terminal: every control and format character is shown escaped by ``printable`` (hence in every
  InputError line); no module prints but through ``say``; argparse's messages for every
  command; shell words with control characters are printed visibly and arrive intact.
- Profile names cannot leave their folder.
"""

from __future__ import annotations

import ast
import copy
import html.parser
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from conftest import ROOT, run_cli
from conftest import run_snakemake as snakemake
from mixscale.cli.args import Pair, Pairs
from mixscale.cli.main import build_parser, main
from mixscale.config.profile import install_profile
from mixscale.errors import InputError, printable
from mixscale.plan import commands
from mixscale.plan.check import check_config

PACKAGE = ROOT / "workflow" / "mixscale"


# --- terminal ------------------------------------------------------------------------------------


def terminal_actors() -> list[str]:
    """Every character a terminal acts on or hides: C0/C1 controls and DEL (Cc), format
    characters incl. bidi overrides and zero-width ones (Cf), line/paragraph separators, spaces
    other than ' ', and lone surrogates (undecodable bytes of a file name)."""
    found = []
    for code in range(sys.maxunicode + 1):
        c = chr(code)
        category = unicodedata.category(c)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs") or (category == "Zs" and c != " "):
            found.append(c)
    return found


ACTORS = terminal_actors()


def test_printable_shows_every_control_and_format_character():
    assert len(ACTORS) > 2000 and "\x1b" in ACTORS and "\u202e" in ACTORS and "\x00" in ACTORS
    for c in ACTORS:
        shown = printable(f"a{c}b")
        assert shown == f"a{repr(c)[1:-1]}b" and shown.isprintable(), repr(c)
        line = InputError(f"run{c}s.tsv", f"row 2, column x{c}", f"bad {c}", f"fix {c}").one_line()
        assert line.isprintable() and line.count(repr(c)[1:-1]) == 4, repr(c)
    assert printable("a\nb\x1b", keep="\n") == "a\nb\\x1b"
    for text in ("plain", "ü 漢字 🙂", "back\\slash 'quotes' \"x\"", "tab?"):
        assert printable(text) == text


def print_calls(tree: ast.AST) -> list[ast.Call]:
    """print(...) and sys.stdout/stderr.write(...) calls."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            found.append(node)
        elif isinstance(func, ast.Attribute) and func.attr == "write":
            owner = func.value
            if isinstance(owner, ast.Attribute) and owner.attr in ("stdout", "stderr"):
                found.append(node)
    return found


def test_no_module_prints_but_through_say():
    """Every message of the package reaches the terminal through mixscale.errors.say (which
    escapes what a terminal acts on): a new print() anywhere fails this test."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 60
    offenders = []
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed: set[int] = set()
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef)
                and node.name == "say"
                and path.name == "errors.py"
            ):
                allowed |= {id(c) for c in print_calls(node)}
        offenders += [
            f"{path.relative_to(ROOT)}:{c.lineno}"
            for c in print_calls(tree)
            if id(c) not in allowed
        ]
    assert not offenders, offenders


def subcommands() -> dict[str, list[str]]:
    """Every command, with its required options filled in (argparse names a missing one before
    it names an unrecognized word)."""
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    found = {}
    for name, sub in action.choices.items():
        argv = [name]
        for option in sub._actions:
            value = str((option.choices or ["1"])[0])
            if isinstance(option.type, Pair | Pairs):
                value = "a=1"
            if option.required:
                argv += [option.option_strings[0], value] if option.option_strings else [value]
        found[name] = argv
    return found


COMMANDS = subcommands()
CONTROL_WORD = "--x\x1b]0;owned\x07\x1b[2J\u202e\x9b"


@pytest.mark.parametrize("command", COMMANDS)
def test_argparse_messages_are_escaped_for_every_command(command, capsys):
    """argparse names the user's words raw ("unrecognized arguments: ..."): every command's
    parser is the escaping one."""
    with pytest.raises(SystemExit) as stop:
        main([*COMMANDS[command], CONTROL_WORD])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert all(c.isprintable() or c == "\n" for c in err), repr(err)
    assert f"unrecognized arguments: {printable(CONTROL_WORD)}" in err
    assert len(COMMANDS) >= 30


def test_error_lines_from_a_table_cell_show_control_characters(tmp_path, capsys):
    """The issue's case: ESC, BEL and NUL from a run table's cell, and an output path with
    control characters in the success line."""
    table = tmp_path / "runs.tsv"
    table.write_text("run\ttokens.a\tloss.a\nr1\t1e6\t3.1\x1b[31m\x07\x00\n", encoding="utf-8")
    assert main(["fit", "--runs", str(table), "--out", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and all(c.isprintable() for c in err.rstrip("\n"))
    assert "\\x1b[31m\\x07\\x00" in err
    world = ROOT / "workflow/mixscale/core/worlds/separable.yaml"
    out = tmp_path / "w\x1b]0;t\x07\u202e.json"
    assert (
        main(["world", "optimum", "--world", str(world), "--tokens", "1e9", "--out", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert out.is_file() and "w\\x1b]0;t\\x07\\u202e.json" in err
    assert all(c.isprintable() or c == "\n" for c in err)


# NUL and the lone surrogates that stand for no byte cannot be in any program's arguments
SHELL_CASES = [
    c
    for c in ACTORS
    if c not in "\x00\n\t" and not ("\ud800" <= c <= "\udfff" and not "\udc80" <= c <= "\udcff")
] + ["\\", "'", '"', "$(x)", "ü"]


def test_shell_words_show_control_characters_and_arrive_intact(tmp_path):
    """Every character a terminal acts on (NUL cannot be an argument), in a word with quotes and
    backslashes around it: Snakemake prints the command (printshellcmds) with the character as
    a visible escape, and bash hands the command the exact bytes."""
    words = [f"a'{c}\\b" for c in SHELL_CASES]
    command = commands.shell_args(*words)
    assert all(ch.isprintable() for ch in command)
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, check=True, cwd=tmp_path
    ).stdout
    got = [w.decode("utf-8", "surrogateescape") for w in out.split(b"\0")[:-1]]
    assert got == words
    assert len(words) > 300 and not list(tmp_path.iterdir())


# --- profile names ----------------------------------------------------------------------------

BAD_PROFILE_NAMES = [
    "", ".", "..", "../x", "../../etc", "/abs", "/", "a/b", "a\\b", ".hidden", "-x", "x y",
    "a\x1bb", "a\nb", "~", "~root", "x/..", "a\x00b",
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_PROFILE_NAMES)
def test_profile_names_cannot_leave_their_folder(name, tmp_path):
    folder = tmp_path / "config" / "snakemake"
    with pytest.raises(InputError) as err:
        install_profile(str(ROOT / "profiles/slurm"), name, None, "cpu", None, str(folder))
    line = err.value.one_line()
    assert err.value.source == "--name" and line.isprintable() and "fix:" in line
    assert not any(tmp_path.rglob("*")), "nothing may be written"


def test_a_bad_profile_name_is_one_line_from_the_cli(tmp_path):
    res = run_cli(
        "install-profile", "--name", "..", "--partition", "cpu", "--config-dir", str(tmp_path)
    )
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "--name: ..: not a profile name" in res.stderr and not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["slurm", "my-cluster_2.prod", "a"])
def test_plain_profile_names_work(name, tmp_path):
    path = install_profile(str(ROOT / "profiles/slurm"), name, None, "cpu", None, str(tmp_path))
    assert path == tmp_path / name / "config.yaml" and path.is_file()


@pytest.mark.parametrize("partition", ["null", "true", "007", "1e3", "yes", "no", "Off"])
def test_partition_names_stay_strings_in_the_profile(partition, tmp_path):
    """YAML reads an unquoted null, true or 007 as None, a bool or 7."""
    path = install_profile(
        str(ROOT / "profiles/slurm"), "p", partition, partition, partition, str(tmp_path)
    )
    settings = yaml.safe_load(path.read_text())
    assert settings["default-resources"]["slurm_partition"] == partition
    assert settings["default-resources"]["slurm_account"] == partition
    assert settings["set-resources"]["train"]["slurm_partition"] == partition


# --- Markdown ----------------------------------------------------------------------------------

PAYLOADS = {
    "pipe": "a|b||c",
    "script": "<script>alert(1)</script>",
    "img": "<img src=x onerror=alert(1)>",
    "backticks": "`code` ``x``",
    "stars": "*em* **strong**",
    "underscores": "_em_ __strong__ a_b",
    "link": "[x](javascript:alert(1))",
    "image": "![i](x.png)",
    "autolink": "<http://example.com>",
    "newline": "x\n# heading\n| a | b |\n---",
    "control": "\x1b[31mred\x07\x00\x7f\x9b",
    "bidi": "\u202eevil\u2066",
    "entities": "&lt;b&gt; &amp; &#60;",
    "strike": "~~strike~~ ~x~",
    "attr_list": "{: onclick=alert(1) }",
    "mathtext": "$\\frac{1$ $x$",
    "backslash": "\\`\\*\\ end\\",
    "braces": "{{ config }} {% x %}",
}
BENIGN = "plainX"


class Structure(html.parser.HTMLParser):
    """The element structure of an HTML page (tags, attribute names), its text, its images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(f"<{tag} {' '.join(sorted(name for name, _ in attrs))}>")
        self.images += [value or "" for name, value in attrs if tag == "img" and name == "src"]

    def handle_endtag(self, tag):
        self.tags.append(f"</{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def renderers() -> dict[str, Callable[[str], str]]:
    found = {}
    try:
        from markdown_it import MarkdownIt

        gfm = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
        found["markdown-it (CommonMark, GFM tables and strikethrough, raw HTML on)"] = gfm.render
    except ImportError:
        pass
    try:
        import markdown

        found["Python-Markdown (tables, attr_list)"] = lambda text: markdown.markdown(
            text, extensions=["tables", "attr_list"]
        )
    except ImportError:
        pass
    if not found:
        pytest.skip("no Markdown renderer installed (markdown-it-py or Markdown)")
    return found


def parsed(page: str) -> Structure:
    structure = Structure()
    structure.feed(page)
    structure.close()
    return structure


def assert_escaped(plain: str, hostile: str, payload: str) -> None:
    """The hostile page has no raw control character, renders to the plain page's structure in
    every renderer (no new element, attribute, cell, heading or line), and shows the payload
    literally (every control character as its escape)."""
    assert all(c.isprintable() or c == "\n" for c in hostile), "raw control character"
    assert len(hostile.splitlines()) == len(plain.splitlines())
    for name, render in renderers().items():
        want, got = parsed(render(plain)), parsed(render(hostile))
        assert got.tags == want.tags, (name, first_difference(want.tags, got.tags))
        assert printable(payload) in "".join(got.text), (name, printable(payload))
        for src in got.images:
            assert src.endswith(".png") and ":" not in src.split("/")[0], (name, src)


def first_difference(want: list[str], got: list[str]) -> tuple[int, list[str], list[str]]:
    i = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    i = min(len(want), len(got)) if i is None else i
    return i, want[max(0, i - 3) : i + 3], got[max(0, i - 3) : i + 3]


def code_literals() -> set[str]:
    """Strings the package's code names itself (statuses, keys, method names): a writer may
    branch on them, so they are not user text."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


LITERALS = code_literals()


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def transformed(data: Any, names: dict[str, str], text: Callable[[str], str]) -> Any:
    """``data`` with every name (key or value) renamed and every other string a writer does not
    branch on (free text: warnings, descriptions, statuses it only shows) changed by ``text``."""
    if isinstance(data, dict):
        return {names.get(k, k): transformed(v, names, text) for k, v in data.items()}
    if isinstance(data, list):
        return [transformed(v, names, text) for v in data]
    if isinstance(data, str):
        if data in names:
            return names[data]
        return data if data in LITERALS or is_number(data) else text(data)
    return data


# Names of the fixtures (not literals of the package's code, so they are user text); each
# writer gets them renamed, with the payload, and every free-text string extended by it.
DOMAINS = ["dom_alpha", "dom_beta", "dom_gamma"]
TASKS = ["task_one", "task_two"]
SOURCES = ["quick", "slow"]
LABELS = ["untrained"]
WORLDS = ["separable", "random:1"]


def world_yaml(folder: Path) -> Path:
    skills = [
        {"name": d, "beta": b, "gamma": g}
        for d, b, g in zip(DOMAINS, (45.0, 30.0, 60.0), (0.22, 0.35, 0.30), strict=True)
    ]
    world = {
        "name": "three",
        "domains": DOMAINS,
        "skills": skills,
        "irreducible": 1.7,
        "noise": {"sigma": 0.002, "sigma_domain": 0.0},
    }
    path = folder / "three.yaml"
    path.write_text(yaml.safe_dump(world))
    return path


def cli(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def simulated_experiment(folder: Path) -> dict[str, Any]:
    """A whole simulated experiment run in-process through the workflow's own command lines
    (plan.commands): the real weights, predictions and comparisons summary.md is written from,
    plus lm-eval and fine-tuning results in their written shape."""
    from mixscale.methods import Layout, method
    from mixscale.plan.run import target_label
    from mixscale.plan.specs import run_specs

    config = check_config(
        {
            "experiment": "esc",
            "backend": "simulate",
            "world": str(world_yaml(folder)),
            "fit": {"bootstrap": 5},
            "ddo": {
                "scales": [{"name": "s1", "tokens": 1.0e6}, {"name": "s3", "tokens": 3.0e6}],
                "seeds": 2,
            },
            "autoscale": {"targets": [3.0e7]},
            "verify": {"methods": ["autoscale", "uniform", "ddo_largest"], "seeds": 2},
        },
        "esc.yaml",
    )
    out = folder / config.out
    specs = run_specs(config)

    def train(run_id: str, weights: list[str]) -> str:
        path = str(out / "runs" / run_id / "metrics.json")
        flags = shlex.split(commands.train(config, specs[run_id], "", weights))
        cli("train", "--spec", json.dumps(specs[run_id]), *flags, "--out", path)
        return path

    optima = []
    for scale in config.ddo.scales:
        runs = [
            train(i, [])
            for i, s in specs.items()
            if s["stage"] == "ddo" and s["scale"] == scale.name
        ]
        table = str(out / "tables" / f"{scale.name}.tsv")
        cli("table", "--metrics", *runs, "--out", table)
        optima.append(str(out / "ddo" / scale.name / "weights.json"))
        figure = str(out / "ddo" / scale.name / "fits.png")
        flags = shlex.split(commands.ddo(config, scale.tokens))
        cli("ddo", "--runs", table, *flags, "--figure", figure, "--out", optima[-1])
    target = config.autoscale.targets[0]
    label = target_label(target)
    prediction = str(out / "autoscale" / f"{label}.json")
    cli("predict", *shlex.split(commands.predict(config, optima, target)), "--out", prediction)
    layout = Layout(out=str(out), scales=tuple(s.name for s in config.ddo.scales))
    verified = []
    for run_id, spec in specs.items():
        if spec["stage"] == "verify":
            weights = method(spec["method"]).weights_file(layout, spec["scale"])
            verified.append(train(run_id, [weights] if weights else []))
    compare = str(out / "verify" / f"{label}.json")
    cli("compare", "--metrics", *verified, *shlex.split(commands.compare(config, target)),
        "--out", compare)  # fmt: skip
    return {
        "ddo": [read(p) for p in optima],
        "scales": [s.name for s in config.ddo.scales],
        "autoscale": [read(prediction)],
        "compare": [read(compare)],
        "downstream": downstream_results(label),
        "finetune": finetune_results(label),
        "proxy_tokens": {"autoscale": 4.0e7, "ddo_largest": 3.0e7, "uniform": 0.0},
    }


def read(path: str) -> Any:
    return json.loads(Path(path).read_text())


def downstream_results(target: str) -> list[dict[str, Any]]:
    """lm-eval results as `mixscale downstream` writes them (tests/test_downstream.py)."""
    results = []
    for label, seed in (("autoscale", 0), ("uniform", 0), ("uniform", 1), ("untrained", None)):
        results.append(
            {
                "label": label,
                "target": None if label == "untrained" else target,
                "run_seed": seed,
                "shots": 0,
                "metric": "acc",
                "tasks": {
                    task: {"acc": 0.3 + 0.1 * k, "acc_stderr": 0.02, "chance": 0.25}
                    for k, task in enumerate(TASKS)
                },
            }
        )
    return results


def finetune_results(target: str) -> list[dict[str, Any]]:
    return [
        {"name": task, "label": label, "target": None if label == "untrained" else float(target),
         "value": 0.6 + 0.05 * k, "metric": "accuracy", "majority": 0.5}
        for k, task in enumerate(TASKS)
        for label in ("autoscale", "uniform", "untrained")
    ]  # fmt: skip


def anneal_inputs(folder: Path) -> dict[str, Any]:
    """utility.json from `mixscale utility` on two sources whose curves cross (the rankings,
    flips, crossings, recommendations and allocation sections all appear)."""
    from test_anneal import crossing_table

    from mixscale.evaluate.anneal import costs_table

    crossing_table(folder / "runs.tsv")
    costs = {s: {"acquisition_cost": 1.0} for s in SOURCES}
    costs_table(costs, 0.5, 0.0, str(folder / "costs.tsv"))
    cli("utility", "--runs", str(folder / "runs.tsv"), "--costs", str(folder / "costs.tsv"),
        "--budget", "5e4", "--bootstrap", "10", "--unit", "USD",
        "--out", str(folder / "utility.json"))  # fmt: skip
    return {
        "utility": read(str(folder / "utility.json")),
        "runs": (folder / "runs.tsv").read_text(),
    }


def study_result() -> dict[str, Any]:
    from mixscale.core.study import Setting, run_study

    return run_study(["separable"], Setting(sigma=0.001, seeds=1), {"factor": [2.0]}, 2)


def methods_study_result() -> dict[str, Any]:
    """`mixscale study` with methods: in its written shape (a real one takes minutes)."""

    def cell(mean: float, versus: bool) -> dict[str, Any]:
        entry = {"n": 2, "mean": mean, "interval": [mean - 0.1, mean + 0.1]}
        if versus:
            entry["minus_autoscale"] = {
                "mean": mean - 0.9, "interval": [mean - 1.0, mean - 0.8], "distinguishable": True
            }  # fmt: skip
        return entry

    methods = {
        name: {
            "targets": {t: cell(0.5 + 0.1 * k, name != "autoscale") for t in ("1e+09", "1e+10")},
            "proxy_compute": 0.5 * k,
            "failed_trials": k % 2,
            **({"proxy_runs": 8} if name == "dml" else {}),
        }
        for k, name in enumerate(["autoscale", "ddo_largest", "dml", "natural"])
    }
    return {
        "kind": "methods",
        "trials": 2,
        "ddo": {
            "sigma": 0.004,
            "seeds": 1,
            "factor": 3.0,
            "scales": [3e7, 3e8],
            "trust_region": True,
        },
        "targets": [1e9, 1e10],
        "rows": [
            {"world": "random:1", "compute_matched": matched, "methods": methods}
            for matched in (False, True)
        ],
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("escaping-inputs")
    previous = Path.cwd()
    os.chdir(folder)  # the experiment's results/ folder, as for Snakemake
    try:
        summary = simulated_experiment(folder)
    finally:
        os.chdir(previous)
    return {
        "summary": summary,
        "anneal": anneal_inputs(folder),
        "study": study_result(),
        "methods_study": methods_study_result(),
    }


def dump(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def folder_name(text: str) -> str:
    """A payload that can be a folder's name (the summary reads each scale's name from its
    folder): no '/' or NUL, at most 255 bytes."""
    name = text.replace("/", "%").replace("\x00", "")
    while len(name.encode("utf-8", "surrogateescape")) > 240:
        name = name[:-1]
    return name


def write_summary_page(data: dict[str, Any], names: dict[str, str], text, folder: Path) -> str:
    from mixscale.report.summary import write_summary

    ddo = []
    for scale, weights in zip(data["scales"], data["ddo"], strict=True):
        scale_dir = folder / "ddo" / folder_name(names.get(scale, scale))
        ddo.append(dump(scale_dir / "weights.json", transformed(weights, names, text)))
        (scale_dir / "fits.png").write_bytes(b"png")  # the page links each scale's fits
    one = lambda key: [  # noqa: E731
        dump(folder / key / f"{i}.json", transformed(d, names, text))
        for i, d in enumerate(data[key])
    ]
    out = folder / "report" / "summary.md"
    write_summary(
        names.get("esc", "esc"), ddo, one("autoscale"), one("compare"), str(out), None,
        one("downstream"), transformed(data["proxy_tokens"], names, text), one("finetune"),
    )  # fmt: skip
    return out.read_text(encoding="utf-8")


def write_anneal_page(data: dict[str, Any], names: dict[str, str], text, folder: Path) -> str:
    from mixscale.report.anneal import write_anneal_report

    runs = data["runs"]
    for old, new in names.items():  # the sources' names in the annealing table too
        if old in SOURCES:
            runs = re.sub(rf"^{old}\t", lambda _, new=new: f"{new}\t", runs, flags=re.M)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runs.tsv").write_text(runs, encoding="utf-8")
    utility = dump(folder / "utility.json", transformed(data["utility"], names, text))
    out = folder / "report" / "anneal.md"
    write_anneal_report(utility, str(folder / "runs.tsv"), str(out))
    return out.read_text(encoding="utf-8")


def write_study_page(data: dict[str, Any], names: dict[str, str], text, folder: Path) -> str:
    from mixscale.report.study import plot_study, study_markdown

    result = transformed(data, names, text)
    out = folder / "study.md"
    folder.mkdir(parents=True, exist_ok=True)
    study_markdown(result, str(out))
    if FIGURES_ON:
        plot_study(result, str(folder / "study.png"))
    return out.read_text(encoding="utf-8")


def write_methods_page(data: dict[str, Any], names: dict[str, str], text, folder: Path) -> str:
    from mixscale.report.study import methods_study_markdown, plot_methods_study

    result = transformed(data, names, text)
    out = folder / "methods.md"
    folder.mkdir(parents=True, exist_ok=True)
    methods_study_markdown(result, str(out))
    if FIGURES_ON:
        plot_methods_study(result, str(folder / "methods.png"))
    return out.read_text(encoding="utf-8")


FIGURES_ON = True
WRITERS = {
    # writer, its inputs, the names it shows (renamed), whether its names pass through a TSV
    "summary": (write_summary_page, "summary", [*DOMAINS, *TASKS, *LABELS, "s1", "s3", "esc",
                "autoscale", "uniform", "ddo_largest", "accuracy"]),
    "anneal": (write_anneal_page, "anneal", [*SOURCES, "USD"]),
    "study": (write_study_page, "study", WORLDS),
    "methods_study": (write_methods_page, "methods_study", [*WORLDS, "dml", "natural"]),
}  # fmt: skip


def render_pair(
    writer: str, inputs, payload: str, tmp_path: Path, plain_names: tuple[str, ...] = ()
) -> tuple[str, str]:
    """The writer's page with benign names and free text, and with the payload in them (names
    in ``plain_names`` get a plain suffix in both)."""
    write, key, shown = WRITERS[writer]
    pages = []
    for tag, extra in (("plain", BENIGN), ("hostile", payload)):
        names = {n: f"{n}{BENIGN if n in plain_names else extra}" for n in shown}
        pages.append(write(inputs[key], names, lambda s, x=extra: f"{s} {x}", tmp_path / tag))
    return pages[0], pages[1]


@pytest.fixture
def no_figures(monkeypatch):
    """The Markdown of one payload at a time: figures are drawn once per writer, with every
    payload at once (test_figures_take_hostile_names)."""
    import mixscale.report.anneal as anneal
    import mixscale.report.summary as summary

    for module, names in ((summary, ["plot_weights_vs_scale", "plot_loss_curves",
                                     "plot_quality_vs_compute", "plot_downstream"]),
                          (anneal, ["plot_gain_curves"])):  # fmt: skip
        for name in names:
            monkeypatch.setattr(module, name, lambda *a, **k: None)
    monkeypatch.setattr(sys.modules[__name__], "FIGURES_ON", False)


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
@pytest.mark.parametrize("writer", WRITERS)
def test_report_pages_escape_every_name_and_text(
    writer, payload, inputs, tmp_path, no_figures, unvalidated_reads
):
    plain, hostile = render_pair(writer, inputs, PAYLOADS[payload], tmp_path)
    assert "plainX" in plain, "the names and free text reach the page"
    assert_escaped(plain, hostile, PAYLOADS[payload])


@pytest.fixture
def unvalidated_reads(monkeypatch):
    """The readers refuse such names and free text in run ids (mixscale.shapes, tested in
    tests/test_damaged.py): switched off here, to show that the writers escape whatever reaches
    them all the same (defence in depth: a report never trusts its inputs)."""
    import mixscale.shapes as shapes

    monkeypatch.setattr(shapes, "check_data", lambda *args, **kwargs: None)
    monkeypatch.setattr(shapes, "is_name", lambda text: True)
    monkeypatch.setattr(shapes, "is_id", lambda text: True)


@pytest.mark.parametrize("writer", WRITERS)
def test_figures_take_hostile_names(writer, inputs, tmp_path, unvalidated_reads):
    """Every payload at once, figures drawn: matplotlib reads $...$ as TeX and fails on bad TeX;
    every figure is written and the page is still escaped. (The annealing figure reads its
    sources' names from the annealing TSV, whose names are config names: the payload reaches
    its figure through the cost unit and free text.)"""
    every = "".join(PAYLOADS.values())
    plain_names = tuple(SOURCES) if writer == "anneal" else ()
    plain, hostile = render_pair(writer, inputs, every, tmp_path, plain_names)
    assert_escaped(plain, hostile, every)
    pngs = sorted(p.name for p in (tmp_path / "hostile").rglob("*.png") if p.stat().st_size > 5000)
    assert pngs, "figures were drawn"


def test_fit_figure_takes_hostile_domain_names(tmp_path, capsys):
    """The per-domain fits figure (`mixscale ddo --figure`) titles each panel with a run
    table's domain name: TeX-like or markup names are drawn as text (or the table is refused
    in one line, where run-table names are validated)."""
    names = {"web": "w$\\frac{1$ <b>|*", "wiki": "wi\u202eki `x`"}
    text = (ROOT / "examples/runs_10M.tsv").read_text()
    for old, new in names.items():
        text = text.replace(f".{old}\t", f".{new}\t").replace(f".{old}\n", f".{new}\n")
    table = tmp_path / "runs.tsv"
    table.write_text(text, encoding="utf-8")
    figure = tmp_path / "fits.png"
    code = main(["ddo", "--runs", str(table), "--tokens", "1e7", "--bootstrap", "0",
                 "--figure", str(figure), "--out", str(tmp_path / "w.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert all(c.isprintable() or c == "\n" for c in err)
    if code == 2:
        assert len(err.splitlines()) == 1 and "error:" in err
    else:
        assert code == 0 and figure.stat().st_size > 10_000
        assert set(names.values()) <= set(read(str(tmp_path / "w.json"))["weights"])


def test_table_cells_and_headers_are_escaped():
    from mixscale.report.common import Markdown, bold, markdown_table, md

    lines = markdown_table(["a|b", "c"], [["x|y", 1.5], [Markdown("**k**"), None], [bold("*"), 2]])
    assert lines == [
        "| a\\|b | c |", "|---|---|", "| x\\|y | 1.5 |", "| **k** | - |", "| **\\*** | 2 |"
    ]  # fmt: skip
    assert md("wiki_en") == "wiki_en" and md("_x_") == "\\_x\\_" and md("$") == "$"


# --- report.html ---------------------------------------------------------------------------------

MARK = "XSSMARK"


def html_payload(n: int) -> str:
    return f"{MARK}{n}</script><img src=x onerror=alert({n})>"


def report_outputs(config: dict[str, Any], work: Path) -> list[Path]:
    """Every .md and .png a rule writes under the experiment (report items among them), each
    scale's for a {scale} wildcard: the page needs its report items to exist."""
    found = set()
    for rules in (ROOT / "workflow/rules").glob("*.smk"):
        found |= set(re.findall(r'f"\{OUT\}/([^"]+\.(?:md|png))"', rules.read_text()))
    out = work / "results" / config["experiment"]
    scales = [s["name"] for s in config.get("ddo", {}).get("scales", [])]
    paths = []
    for pattern in sorted(found):
        if "{{scale}}" in pattern and "{{round}}" not in pattern:
            paths += [out / pattern.replace("{{scale}}", s) for s in scales]
        elif "{{" not in pattern:
            paths.append(out / pattern)
    return paths


def holds(config: Any, value: str) -> bool:
    if isinstance(config, dict):
        return any(holds(k, value) or holds(v, value) for k, v in config.items())
    if isinstance(config, list):
        return any(holds(v, value) for v in config)
    return config == value


def hostile_configs(tmp_path: Path) -> list[tuple[str, dict[str, Any], list[tuple[str, ...]]]]:
    """Configs holding an HTML payload in every string field of the schema the checks accept
    (test_hardening's walk of the schema, on its base configs): per base, as many fields as
    the checks accept together in one config, the rest in further configs."""
    from test_hardening import ANNEAL, SIMULATED, TORCH, base_for, schema, string_fields, with_value

    bases = {"torch": TORCH, "anneal": ANNEAL, "simulated": SIMULATED}
    pending: dict[str, list[tuple[tuple[str, ...], str]]] = {kind: [] for kind in bases}
    for n, field in enumerate(string_fields(schema())):
        if field[-1] == "runs":
            continue  # a run table replaces the simulated sweep; it is an input, not a param
        kind = next(k for k, c in bases.items() if c is base_for(field))
        for value in (html_payload(n), f"{MARK}</script>"):  # the short one: maxLength 16
            if field == ("world",):
                path = tmp_path / "paths" / value / "world.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text((ROOT / "workflow/mixscale/core/worlds/separable.yaml").read_text())
                value = str(path)
            try:
                check_config(with_value(bases[kind], field, value), "hostile.yaml")
            except InputError:
                continue  # refused in one line before any job (test_bad_inputs)
            pending[kind].append((field, value))
            break
    configs = []
    for kind, items in pending.items():
        while items:
            config, held = copy.deepcopy(bases[kind]), []
            for field, value in items:
                candidate = with_value(config, field, value)
                try:
                    check_config(copy.deepcopy(candidate), "hostile.yaml")
                except InputError:
                    continue
                config = candidate
            held = [(f, v) for f, v in items if holds(config, v)]
            assert held, (kind, items)
            configs.append((kind, config, [f for f, _ in held]))
            items = [i for i in items if i not in held]
    return configs


@pytest.mark.slow
def test_no_config_text_reaches_report_html(tmp_path):
    """snakemake --report on every base config with a payload in every accepted string field:
    the page holds none of them (params of report items carry no config text; the report items
    exist as placeholders, so no job runs)."""
    configs = hostile_configs(tmp_path)
    accepted = [f for _, _, fields in configs for f in fields]
    assert ("world",) in accepted and ("anneal", "cost_unit") in accepted and len(accepted) >= 15
    for number, (kind, config, fields) in enumerate(configs):
        work = tmp_path / f"{kind}-{number}"
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        items = report_outputs(config, work)
        for item in items:
            item.parent.mkdir(parents=True, exist_ok=True)
            item.write_bytes(b"placeholder")
        page = work / "report.html"
        res = snakemake(work, "--configfile", str(work / "config.yaml"), "--report", str(page))
        assert res.returncode == 0, (kind, res.stderr[-2000:])
        text = page.read_text(encoding="utf-8")
        assert "Snakemake Report" in text and len(items) >= 3
        assert MARK not in text, (kind, fields, text[text.find(MARK) - 200 : text.find(MARK) + 80])


def test_captions_are_static_restructured_text():
    """Snakemake renders a caption with Jinja (the job's config, wildcards, params at hand)
    and then docutils into the page: a caption must template nothing and hold no raw HTML."""
    from docutils.core import publish_parts

    named = set()
    for rules in (ROOT / "workflow/rules").glob("*.smk"):
        named |= {
            Path(c).name for c in re.findall(r'caption=[^"]*"([^"]+\.rst)"', rules.read_text())
        }
    captions = sorted((ROOT / "workflow/report").glob("*.rst"))
    assert named == {c.name for c in captions} and len(captions) >= 8
    for caption in captions:
        text = caption.read_text(encoding="utf-8")
        assert not re.search(r"\{\{|\{%|\{#|\.\. *raw::|:raw-html:", text), caption.name
        body = publish_parts(text, writer="html")["body"]
        assert "<script" not in body and "<a " not in body, caption.name


# --- report.html in a browser -------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Probe(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        Probe.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def probe():
    """A local HTTP server a payload's script would call: any request means a script ran."""
    Probe.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def browser_payload(port: int) -> str:
    """Sets the page's title and calls the probe; no space, quote, '/' or '>' inside the tag,
    so it survives as a folder name and as an unquoted attribute."""
    codes = lambda text: ",".join(str(ord(c)) for c in text)  # noqa: E731
    call = f"fetch(String.fromCharCode({codes(f'http://127.0.0.1:{port}/ran')}))"
    title = f"document.title=String.fromCharCode({codes('PWNED')})"
    return f"</script><img src=x onerror={title};{call}>"


def rendered_title(page: Path, tmp_path: Path) -> str:
    """The page's title after its scripts ran, from headless Chromium's DOM."""
    profile = tmp_path / f"chromium-profile-{page.stem}"
    profile.mkdir()
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0 and "</html>" in res.stdout, res.stderr[-2000:]
    found = re.search(r"<title>(.*?)</title>", res.stdout, re.S)
    return found.group(1) if found else ""


def small_world(folder: Path) -> Path:
    """Two domains: the simulated DAG in a few seconds."""
    path = folder / "world.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "two", "domains": ["web", "code"],
             "skills": [{"name": "web", "beta": 45.0, "gamma": 0.22},
                        {"name": "code", "beta": 60.0, "gamma": 0.30}],
             "irreducible": 1.7, "noise": {"sigma": 0.0, "sigma_domain": 0.0}}
        )
    )  # fmt: skip
    return path


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_html_runs_no_script_from_a_hostile_path(tmp_path, probe):
    """The issue's case: a world path holding </script><img src=x onerror=...>. A real
    simulated run, its report.html opened in headless Chromium: the title stays Snakemake's and
    the probe hears nothing. The same payload where Snakemake's page puts parameters (a JSON
    string in a <script> block) does run: the probe works."""
    payload = browser_payload(probe)
    folder = tmp_path / "data" / payload  # its '/' are folders: the path holds the payload
    folder.mkdir(parents=True)
    config = {
        "experiment": "xss",
        "backend": "simulate",
        "world": str(small_world(folder)),
        "fit": {"bootstrap": 5},
        "ddo": {"scales": [{"name": "1M", "tokens": 1.0e6}, {"name": "3M", "tokens": 3.0e6}]},
        "autoscale": {"targets": [3.0e7]},
        "verify": {"methods": ["autoscale", "uniform"]},
    }
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    run = snakemake(work, "-c2", "-p", "--configfile", str(work / "config.yaml"))
    assert run.returncode == 0, run.stderr[-2000:]
    # the report still draws the world's optimum: its file reached the command, as an input
    assert f"--world {shlex.quote(config['world'])} " in run.stdout + run.stderr
    page = work / "report.html"
    made = snakemake(work, "--configfile", str(work / "config.yaml"), "--report", str(page))
    assert made.returncode == 0, made.stderr[-2000:]
    title = rendered_title(page, tmp_path)
    assert title == "Snakemake Report" and not Probe.hits, (title, Probe.hits)
    assert "onerror=document.title" not in page.read_text(encoding="utf-8")
    # the probe: the payload inside a JSON string in a <script> block, as Snakemake writes
    # parameters (json.dumps escapes neither '<' nor '/')
    control = tmp_path / "control.html"
    control.write_text(
        "<html><head><title>Snakemake Report</title></head><body><script>\n"
        f"var results = {json.dumps({'params': f'--world {folder}/world.yaml'})};\n"
        "</script></body></html>"
    )
    assert rendered_title(control, tmp_path) == "PWNED" and Probe.hits == ["/ran"]
