"""No config value reaches a shell unquoted.

Every string field of the schema gets shell code (`$(...)`, backticks, `;`, `|`, quotes) and
a space and non-ASCII letters. A value the schema or the checks refuse
stops `mixscale check` in one line; every value they accept is put into one config, and every
job's real shell command from Snakemake's dry run is executed by bash with `python` and
`torchrun` replaced by a recorder: nothing the values hold runs, and each value arrives as one
intact argument (or inside the JSON argument that carries it).
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from conftest import run_snakemake as snakemake
from mixscale.config.check import SCHEMA
from mixscale.errors import InputError
from mixscale.plan import commands
from mixscale.plan.check import check_config

TORCH = yaml.safe_load((ROOT / "tests/configs/torch-tiny.yaml").read_text())
ANNEAL = yaml.safe_load((ROOT / "tests/configs/anneal-tiny.yaml").read_text())
SIMULATED = {
    "experiment": "odd",
    "backend": "simulate",
    "world": "separable",
    "fit": {"bootstrap": 5},
    "ddo": {"scales": [{"name": "1M", "tokens": 1.0e6}, {"name": "3M", "tokens": 3.0e6}]},
    "autoscale": {"targets": [3.0e7]},
    "verify": {"methods": ["autoscale", "uniform"]},
}


MARKER = "MARKER"  # a value that any shell interprets creates this file in its folder


def hostile(tag: str) -> str:
    # no newline: Snakemake's dry run prints a command on one line (shell_args' round trip
    # below covers newlines)
    return f"ü {tag}$(touch {MARKER})`touch {MARKER}`;touch {MARKER}|'\"&& x"


def markers(folder: Path) -> list[Path]:
    return list(folder.rglob(MARKER))


def string_fields(schema: dict, path: tuple = ()) -> list[tuple[str, ...]]:
    """Dotted paths of every string-valued field of the schema (mapping keys as '*')."""
    found = []
    kinds = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
    if any(k.get("type") == "string" for k in kinds) and path:
        found.append(path)
    for k in kinds:
        for name, sub in k.get("properties", {}).items():
            found += string_fields(sub, (*path, name))
        extra = k.get("additionalProperties")
        if isinstance(extra, dict):
            found += string_fields(extra, (*path, "*"))
        if isinstance(k.get("items"), dict):
            found += string_fields(k["items"], (*path, "0"))
    return sorted(set(found))


def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def base_for(field: tuple[str, ...]) -> dict:
    top = field[0]
    if top == "anneal":
        return ANNEAL
    if top in ("world", "ddo") or (top == "domains"):
        return SIMULATED
    return TORCH


def with_value(config: dict, field: tuple[str, ...], value: str) -> dict:
    config = copy.deepcopy(config)
    node = config
    for i, key in enumerate(field[:-1]):
        nxt = field[i + 1]
        if key == "*":
            key = next(iter(node)) if node else "books"
        if isinstance(node, list):
            if not isinstance(node[int(key)], dict):
                node[int(key)] = {"name": "embedded"}  # a task entry as a mapping
            node = node[int(key)]
            continue
        if key not in node or not isinstance(node[key], (dict, list)):
            node[key] = [{}] if nxt == "0" else {}
        node = node[key]
    last = field[-1]
    if last == "*":
        last = next(iter(node)) if node else "books"
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return config


def test_every_string_field_of_the_schema_is_covered():
    fields = string_fields(schema())
    assert ("data", "downloads") in fields and ("world",) in fields
    assert ("ddo", "scales", "0", "runs") in fields and ("downstream", "device") in fields
    assert len(fields) > 25


def accepted_fields(tmp_path: Path) -> dict[str, list[tuple[tuple, str]]]:
    """Each string field alone with a hostile value: refused in one line, or accepted."""
    accepted: dict[str, list[tuple[tuple, str]]] = {"torch": [], "anneal": [], "simulated": []}
    for n, field in enumerate(string_fields(schema())):
        value = hostile(f"f{n}")
        if field in (("world",), ("ddo", "scales", "0", "runs")):
            # a path must exist to pass the checks: make it, under a hostile name
            folder = tmp_path / f"dir {n} $(touch {MARKER})"
            folder.mkdir()
            source = ROOT / ("workflow/mixscale/core/worlds/separable.yaml" if field == ("world",)
                             else "examples/runs_10M.tsv")  # fmt: skip
            value = str(folder / f"ü{n};`x`.{source.suffix[1:]}")
            Path(value).write_text(source.read_text())
        base = base_for(field)
        config = with_value(base, field, value)
        if field == ("ddo", "scales", "0", "runs"):
            config["backend"] = "tables"
            config["ddo"]["scales"][1]["runs"] = str(ROOT / "examples/runs_30M.tsv")
            config["ddo"]["scales"][0]["tokens"], config["ddo"]["scales"][1]["tokens"] = 1e7, 3e7
            config["autoscale"] = {"targets": [1e9]}
            config["verify"] = {"methods": []}
            del config["world"]
        if field == ("downstream", "include_path"):  # read by named tasks, not embedded ones
            config["downstream"]["tasks"] = ["my_task"]
        try:
            check_config(copy.deepcopy(config), "hostile.yaml")
        except InputError:
            continue  # refused before any job (test_bad_inputs checks the one-line form)
        kind = {id(TORCH): "torch", id(ANNEAL): "anneal", id(SIMULATED): "simulated"}[id(base)]
        accepted[kind].append((field, value, config))
    return accepted


def record_shim(folder: Path, log: Path) -> Path:
    """`python` and `torchrun` that append their argv to log as JSON and do nothing else."""
    folder.mkdir()
    script = f"#!{sys.executable}\nimport json, sys\n"
    script += f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    for name in ("python", "torchrun"):
        (folder / name).write_text(script)
        (folder / name).chmod(0o755)
    return folder


def test_hostile_values_never_run_and_arrive_intact(tmp_path):
    accepted = accepted_fields(tmp_path)
    assert not markers(tmp_path)
    assert sum(len(v) for v in accepted.values()) >= 10  # paths, names, units, ... got through
    log = tmp_path / "argv.jsonl"
    shim = record_shim(tmp_path / "shim", log)
    for group, (config, values) in enumerate(combined(accepted)):
        work = tmp_path / f"work-{group}"
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        res = snakemake(work, "-n", "-p", "-F", "--configfile", str(work / "config.yaml"))
        assert res.returncode == 0, (list(values), res.stderr[-1500:], res.stdout[-3000:])
        shells = [
            line.removeprefix("Shell command: ")
            for line in res.stdout.splitlines()
            if line.startswith("Shell command: ") and line != "Shell command: None"
        ]
        assert shells
        before = log.read_text() if log.exists() else ""
        for command in shells:
            words = shlex.split(command)
            log_file = words[words.index(">") + 1]  # Snakemake makes the log's folder
            (work / log_file).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"},
                check=True,
                capture_output=True,
            )
        assert not markers(tmp_path), list(values)
        argv = [json.loads(line) for line in log.read_text()[len(before) :].splitlines()]
        words = [w for a in argv for w in a]
        for field, value in values.items():
            if _reaches_a_command(field):
                assert any(value == w or json.dumps(value)[1:-1] in w for w in words), field


# fields whose test config differs from the base in more than the field
ALONE = {("ddo", "scales", "0", "runs"), ("downstream", "include_path")}


def combined(accepted: dict[str, list]):
    """One config per base holding every value accepted alone (when the checks accept them
    together), else one config per value: a dry run costs seconds."""
    for items in accepted.values():
        together = [i for i in items if i[0] not in ALONE]
        apart = [i for i in items if i not in together]
        if together:
            config = together[0][2]
            for field, value, _ in together[1:]:
                config = with_value(config, field, value)
            try:
                check_config(copy.deepcopy(config), "hostile.yaml")
                yield config, {f: v for f, v, _ in together}
            except InputError:
                apart = items
        for field, value, config in apart:
            yield config, {field: value}


def _reaches_a_command(field: tuple[str, ...]) -> bool:
    """Fields that end up on some job's command line (others only shape the plan)."""
    return field in {
        ("world",),
        ("data", "downloads"),
        ("ddo", "scales", "0", "runs"),
        ("downstream", "include_path"),
        ("downstream", "datasets_cache"),
        ("anneal", "cost_unit"),
    }


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "two words",
        "ünïcödé 漢字",
        "$(touch M)",
        "`touch M`",
        "a;touch M",
        "a'b\"c",
        "a\nb",
    ],
)
def test_shell_args_round_trip_through_bash(value, tmp_path):
    args = commands.shell_args(("--flag", value), value, ("--off", None), ("--on", True))
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {args}"], capture_output=True, check=True, cwd=tmp_path
    ).stdout.decode()
    assert out.split("\0")[:-1] == ["--flag", value, value, "--on"]
    assert not (tmp_path / "M").exists()
    assert shlex.split(args) == ["--flag", value, value, "--on"]


def test_odd_paths_work_in_a_real_run(tmp_path):
    """A world file and run tables in folders with spaces, non-ASCII letters and `$(...)` in
    their names: the sweep runs to the end and nothing they hold runs."""
    odd = tmp_path / f"my data ü $(touch {MARKER})"
    odd.mkdir()
    world = odd / "wörld;1.yaml"
    world.write_text((ROOT / "workflow/mixscale/core/worlds/separable.yaml").read_text())
    config = {**SIMULATED, "world": str(world), "ddo": {**SIMULATED["ddo"], "seeds": 1}}
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    res = snakemake(work, "-c2", "--configfile", str(work / "config.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert (work / "results/odd/report/summary.md").is_file()
    tables = {}
    for scale in ("10M", "30M"):
        tables[scale] = odd / f"runs {scale} `x`.tsv"
        tables[scale].write_text((ROOT / f"examples/runs_{scale}.tsv").read_text())
    config = {
        "experiment": "odd-tables",
        "backend": "tables",
        "fit": {"bootstrap": 5},
        "ddo": {"scales": [{"name": s, "tokens": float(s[:-1]) * 1e6, "runs": str(p)}
                           for s, p in tables.items()]},
        "autoscale": {"targets": [1.0e9]},
        "verify": {"methods": []},
    }  # fmt: skip
    (work / "tables.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    res = snakemake(work, "-c2", "--configfile", str(work / "tables.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((work / "results/odd-tables/autoscale/1e+09.json").read_text())["weights"]
    assert not markers(tmp_path)
