"""Damaged outputs are named in one line, never crash a reader or `status`, and never cost a
finished output.

Every kind of JSON and TSV file the project writes (``mixscale.kinds.REGISTRY``) gets real
files, written in-process by the project's own writers on the simulated backend: the plan's
runs (``mixscale.train.backends.train``), ``table``, ``ddo``, ``rounds``, ``fit``, ``predict``,
``regmix``, ``mixtures``, ``compare``, ``anneal-table``, ``anneal-costs`` and
``utility``, in the results tree of a config with every method and the annealing experiment.
Kinds only real training writes (lm-eval and fine-tuning results, task and token-store files,
corpus lines) get the dict their writer builds, built from the writer's own helpers where
there is one. Each file is then damaged every way the test derives from its kind's declared
shape: truncated at five offsets, emptied, not UTF-8, not an object, nested too deeply, every
declared field nulled, given each wrong type, NaN and inf, dropped, a key that is not a name,
an empty map or list, an extra domain in every map whose domains must agree. Every reader's
view of the kind must refuse it in one line naming the file (or accept it, where the damage is
to an optional field that reader does not use), ``damage`` (what `status` and the workflow's
pre-flight use) must flag every change to what the writer writes, and `status` on damaged trees
names the file and returns. Tables get the same from their declared columns. A new kind
without samples, or a new reader that reads a file without a kind, fails
``test_every_kind_has_samples_and_a_reader`` or ``test_every_file_read_goes_through_a_kind``.
The workflow tests damage a finished simulated sweep and rerun Snakemake: the rerun stops in
one line before any job and nothing finished is touched; following the fix regenerates.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import json
import math
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, with_defaults
from conftest import run_snakemake as snakemake
from mixscale import kinds
from mixscale.cli.main import main
from mixscale.errors import InputError
from mixscale.fileio import write_json
from mixscale.methods import Layout, method
from mixscale.plan.outputs import Output, damage, planned_outputs
from mixscale.plan.run import target_label
from mixscale.plan.specs import run_specs
from mixscale.report.status import experiment_status, format_status
from mixscale.shapes import (
    BOOL,
    INTEGER,
    NAME,
    NAME_PATTERN,
    NUMBER,
    NUMERIC,
    NUMERIC_TEXT,
    RUN_ID,
    TEXT,
    Kind,
    List,
    Map,
    Nullable,
    Scalar,
    TsvKind,
    Where,
    read_jsonl_kind,
    read_kind,
)
from mixscale.train.backends import train

PACKAGE = ROOT / "workflow" / "mixscale"
TREE = {
    "experiment": "dmg",
    "backend": "simulate",
    "world": "separable",
    "eval_points": 3,
    "objective": {"kind": "mean"},
    "fit": {"bootstrap": 3},
    "ddo": {"seeds": 1, "scales": [{"name": "1M", "tokens": 1e6}, {"name": "3M", "tokens": 3e6}]},
    "autoscale": {"targets": [3.0e7]},
    "verify": {"methods": ["autoscale", "uniform", "regmix"]},  # (dml: the same kinds, slower)
    "methods": {
        "regmix": {"runs": 8, "tokens": 3.0e6, "prior": "uniform", "regressor": "linear",
                   "candidates": 2000, "top_k": 16},
    },
    "anneal": {
        "base": {"tokens": 1.0e6},
        "target": {"domains": ["science"]},
        "sources": {"web": {"acquisition_cost": 1}, "code": {"acquisition_cost": 2}},
        "budgets": [1.0e4, 3.0e4, 1.0e5],
        "bootstrap": 5,
        "training_cost_per_token": 1,
    },
}  # fmt: skip


def cli(*args: str) -> None:
    assert main([str(a) for a in args]) == 0, args


def build_tree(root: Path) -> tuple[Any, dict[str, list[Path]]]:
    """TREE's results folder as the workflow writes it (its rules' commands, in-process) and
    the sample files of every kind, by kind name."""
    config = with_defaults(TREE)
    out = root / config.out
    specs = run_specs(config)
    layout = Layout(out=str(out), scales=tuple(s.name for s in config.ddo.scales))
    metrics = {run: out / "runs" / run / "metrics.json" for run in specs}

    def run(run_id: str, weights: Path | None = None) -> None:
        spec = specs[run_id]
        write_json(
            metrics[run_id], train(spec, "simulate", config.world, 3, weights and str(weights))
        )

    def runs_of(stage: str, scale: str) -> list[str]:
        return [r for r, s in specs.items() if s["stage"] == stage and s["scale"] == scale]

    later = {r for r, s in specs.items() if s["stage"] == "verify" and not s.get("tokens")}
    for run_id in specs:
        if run_id not in later:
            run(run_id)
    optima = []
    for scale in config.ddo.scales:
        table = out / "tables" / f"{scale.name}.tsv"
        cli("table", "--metrics", *(metrics[r] for r in runs_of("ddo", scale.name)), "--out", table)
        weights = out / "ddo" / scale.name / "weights.json"
        cli("ddo", "--runs", table, "--tokens", scale.tokens, "--objective", "mean",
            "--bootstrap", 3, "--out", weights)  # fmt: skip
        optima += ["--optimum", weights]
    target = target_label(config.autoscale.targets[0])
    cli("predict", *optima, "--target", config.autoscale.targets[0],
        "--out", out / "autoscale" / f"{target}.json")  # fmt: skip
    table = out / "methods" / "regmix" / "runs.tsv"
    cli("table", "--metrics", *(metrics[r] for r in runs_of("proxy", "regmix")), "--out", table)
    cli("regmix", "--runs", table, "--tokens", config.autoscale.targets[0], "--objective", "mean",
        "--regressor", "linear", "--candidates", 2000, "--top-k", 16,
        "--out", out / "methods" / "regmix" / f"{target}.json")  # fmt: skip
    for run_id in sorted(later):
        run(run_id, Path(method(specs[run_id]["method"]).weights_file(layout, target)))
    verify = [metrics[r] for r, s in specs.items() if s["stage"] == "verify"]
    cli("compare", "--metrics", *verify, "--target", config.autoscale.targets[0],
        "--world", config.world, "--objective", "mean",
        "--out", out / "verify" / f"{target}.json")  # fmt: skip
    anneal = out / "anneal"
    annealed = [metrics[r] for r, s in specs.items() if s["stage"] == "anneal"]
    cli("anneal-table", "--metrics", *annealed, "--target", "science",
        "--out", anneal / "runs.tsv")  # fmt: skip
    cli("anneal-costs", "--sources", json.dumps(TREE["anneal"]["sources"]), "--share", 0.3,
        "--training-cost", 1, "--out", anneal / "costs.tsv")  # fmt: skip
    cli("utility", "--runs", anneal / "runs.tsv", "--costs", anneal / "costs.tsv",
        "--bootstrap", 5, "--out", anneal / "utility.json")  # fmt: skip
    samples: dict[str, list[Path]] = {}
    for output in planned_outputs(config, root):
        samples.setdefault(output.kind.name, []).append(output.path)
    samples.update(_extra_samples(root / "extra", out))
    return config, samples


def _extra_samples(folder: Path, out: Path) -> dict[str, list[Path]]:
    """Kinds outside TREE's results: FIT.json, a rounds WEIGHTS.json, a mixtures table (their
    commands), and the files only real training writes (the dicts their writers build)."""
    from mixscale.data.finetune_tasks import embedded_task_spec
    from mixscale.evaluate.downstream import _scores

    folder.mkdir()
    weights = out / "ddo" / "1M" / "weights.json"
    cli(
        "fit",
        "--runs",
        out / "tables" / "1M.tsv",
        "--objective",
        "mean",
        "--out",
        folder / "fit.json",
    )
    cli("rounds", "--weights", weights, weights, "--planned", 2, "--tolerance", 1,
        "--out", folder / "rounds.json")  # fmt: skip
    cli("mixtures", "--prior", "a=1,b=2", "--count", 4, "--tokens", 1e6, "--out", folder / "m.tsv")
    order = ["mixscale_order_web"]
    lm_eval = {
        "results": {"mixscale_order_web": {"alias": "x", "acc,none": 0.5, "acc_stderr,none": 0.1}},
        "n-samples": {"mixscale_order_web": {"effective": 40}},
    }
    written = {
        "downstream.json": {
            "model": "runs/x/model", "task": "embedded", "shots": 0, "metric": "acc",
            "limit": None, "device": "cpu", "dtype": "float32", "lm_eval_version": "0.4",
            "seconds": 1.0, "tasks": _scores(lm_eval, order, {"mixscale_order_web": 0.25}),
            "label": "uniform", "target": "3e+07", "run_seed": 0,
        },
        "finetune.json": {
            "task": "domain", "kind": "single", "metric": "accuracy", "value": 0.7,
            "metrics": {"accuracy": 0.7}, "majority": 0.3, "fine_tuned": True, "name": "domain",
            "label": "uniform", "target": "3e+07", "run_seed": 0,
        },
        "tasks.json": {"tasks": {"mixscale_order_web": {"domain": "web", "kind": "order",
                                                        "items": 40, "chance": 0.25}}},
        "task.json": embedded_task_spec("domain", ["web", "code"]),
        "meta.json": {"domain": "web", "dtype": "uint16", "vocab_size": 512, "eos_id": 0,
                      "corpus": "data/corpus/web.jsonl", "train_tokens": 100},
    }  # fmt: skip
    for name, data in written.items():
        write_json(folder / name, data)
    (folder / "web.jsonl").write_text('{"text": "one document"}\n{"text": "another"}\n')
    names = [
        (kinds.FIT, "fit.json"), (kinds.DOWNSTREAM, "downstream.json"),
        (kinds.FINETUNE_SCORE, "finetune.json"), (kinds.TASKS, "tasks.json"),
        (kinds.FINETUNE_TASK, "task.json"), (kinds.TOKEN_STORE, "meta.json"),
        (kinds.DOCUMENT, "web.jsonl"), (kinds.MIXTURES, "m.tsv"),
    ]  # fmt: skip
    samples = {kind.name: [folder / name] for kind, name in names}
    samples[kinds.DDO_WEIGHTS.name] = [folder / "rounds.json"]
    return samples


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Any, Path, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("tree")
    config, samples = build_tree(root)
    return config, root, samples


# --- the registry ---------------------------------------------------------------------------


def base_kinds() -> list[Kind | TsvKind]:
    return [k for k in kinds.REGISTRY.values() if not getattr(k, "base", "")]


def views_of(kind: Kind) -> list[Kind]:
    return [
        kind.as_written,
        *(k for k in kinds.REGISTRY.values() if getattr(k, "base", "") == kind.name),
    ]


TABLE_READERS: dict[str, Callable[[Path, list[str]], Any]] = {
    kinds.RUN_TABLE.name: lambda path, header: _reader(kinds.RUN_TABLE)(path, zero_tokens=True),
    kinds.MIXTURES.name: lambda path, header: _reader(kinds.MIXTURES)(
        path, [h[len("tokens.") :] for h in header if h.startswith("tokens.")]
    ),
    kinds.ANNEAL_RUNS.name: lambda path, header: _reader(kinds.ANNEAL_RUNS)(path),
    kinds.ANNEAL_COSTS.name: lambda path, header: _reader(kinds.ANNEAL_COSTS)(path, None),
}


def _reader(kind: TsvKind) -> Callable[..., Any]:
    module, function = kind.reader.split(":")
    return getattr(importlib.import_module(module), function)


def test_every_kind_has_samples_and_a_reader(tree):
    """A kind added to the registry without a sample here, or a table kind without its reader,
    fails; every sample is accepted as written, by every view that needs what it holds."""
    _, _, samples = tree
    missing = [k.name for k in base_kinds() if k.name not in samples]
    assert missing == []
    assert sorted(TABLE_READERS) == sorted(k.name for k in base_kinds() if isinstance(k, TsvKind))
    for kind in base_kinds():
        for path in samples[kind.name]:
            if isinstance(kind, TsvKind):
                TABLE_READERS[kind.name](path, path.read_text().split("\n")[0].split("\t"))
            elif kind is kinds.DOCUMENT:
                assert list(read_jsonl_kind(path, kind))
            else:
                read_kind(path, kind.as_written)
    for view in (k for k in kinds.REGISTRY.values() if getattr(k, "base", "")):
        assert any(_accepts(view, p) for p in samples[view.base]), view.name


def test_the_name_pattern_is_the_config_schema_s():
    from mixscale.config.check import schema

    assert schema()["$defs"]["name"]["pattern"] == NAME_PATTERN


# --- damaging JSON --------------------------------------------------------------------------

DROP = object()


def wrong_values(shape: Any) -> list[Any]:
    if isinstance(shape, Where):
        return [*wrong_values(shape.shape), *([] if isinstance(shape.shape, dict) else ["int8"])]
    if shape is NUMBER:
        return ["1", True, math.nan, math.inf]
    if shape is INTEGER:
        return ["1", 1.5, True]
    if shape in (NAME, RUN_ID):
        return [1, "<b>a|b</b>", "a\x1b[31m"]
    if shape is NUMERIC_TEXT:
        return [1, "many"]
    if shape is TEXT:
        return [1, ["a"]]
    if shape is BOOL:
        return ["yes", 1]
    if isinstance(shape, Scalar):
        raise AssertionError(f"no wrong values for {shape.word}")
    if isinstance(shape, List):
        return [{}, "x"]
    return [[], "x"]  # an object or a map


def keysets(shape: Any, value: Any) -> list[str]:
    """The keysets of the maps present in ``value``, once per map."""
    if isinstance(shape, Where | Nullable):
        return keysets(shape.shape, value) if value is not None else []
    if isinstance(shape, dict) and isinstance(value, dict):
        return [
            k for key, sub in shape.items() if key.rstrip("?") in value
            for k in keysets(sub, value[key.rstrip("?")])
        ]  # fmt: skip
    if isinstance(shape, Map) and isinstance(value, dict):
        found = [shape.keyset] if shape.keyset else []
        return found + [k for item in value.values() for k in keysets(shape.value, item)]
    if isinstance(shape, List) and isinstance(value, list):
        return [k for item in value for k in keysets(shape.item, item)]
    return []


def field_changes(shape: Any, value: Any, path: tuple, sets: list[str]) -> Iterator[tuple]:
    """(label, path, new value or DROP, the top-level optional key it drops or None) for
    every declared field present in ``value``."""
    nullable = isinstance(shape, Nullable)
    if nullable:
        shape = shape.shape
    if value is None:
        return
    if path:
        if not nullable:
            yield f"null {path}", path, None, None
        for wrong in wrong_values(shape):
            yield f"{wrong!r} at {path}", path, wrong, None
    inner = shape.shape if isinstance(shape, Where) else shape
    if isinstance(inner, dict):
        for key, sub in inner.items():
            name, optional = key.rstrip("?"), key.endswith("?")
            if name not in value:
                continue
            if not optional or not path:
                yield f"no {(*path, name)}", (*path, name), DROP, name if optional else None
            yield from field_changes(sub, value[name], (*path, name), sets)
    elif isinstance(inner, Map) and value:
        first = next(iter(value))
        yield from field_changes(inner.value, value[first], (*path, first), sets)
        if inner.keys == "name":
            yield f"key '<b>' in {path}", path, {"<b>": value[first]}, None
        if inner.keys == NUMERIC:
            yield f"key 'many' in {path}", path, {"many": value[first]}, None
        if not inner.empty_ok:
            yield f"empty {path}", path, {}, None
        if inner.keyset and sets.count(inner.keyset) >= 2:
            yield f"extra domain in {path}", path, {**value, "extra": value[first]}, None
    elif isinstance(inner, List) and value:
        yield from field_changes(inner.item, value[0], (*path, 0), sets)
        if not inner.empty_ok:
            yield f"empty {path}", path, [], None


def changed(data: Any, path: tuple, new: Any) -> Any:
    data = copy.deepcopy(data)
    holder = data
    for step in path[:-1]:
        holder = holder[step]
    if new is DROP:
        del holder[path[-1]]
    else:
        holder[path[-1]] = new
    return data


def json_damage(text: bytes, shape: dict[str, Any]) -> Iterator[tuple[str, bytes, str | None]]:
    """(label, damaged content, the top-level optional key it drops or None)."""
    size = len(text.rstrip())
    for cut in sorted({1, size // 5, size // 3, size // 2, size - 2}):
        yield f"truncated at {cut} of {size}", text[:cut], None
    yield "empty", b"", None
    yield "blank", b" \n", None
    yield "not UTF-8", text[: size // 2] + b"\xff\xfe" + text[size // 2 :], None
    for other in (b"[]", b"null", b"3"):
        yield f"not an object: {other!r}", other, None
    yield "nested too deeply", b"[" * 100_000, None
    data = json.loads(text)
    for label, path, new, optional in field_changes(shape, data, (), keysets(shape, data)):
        yield label, json.dumps(changed(data, path, new)).encode(), optional


def _error(view: Kind, path: Path) -> InputError | None:
    try:
        read_kind(path, view)
    except InputError as error:
        return error
    return None


def _accepts(view: Kind, path: Path) -> bool:
    return _error(view, path) is None


def chosen(kind: Kind, paths: list[Path]) -> list[Path]:
    """The fewest samples such that every view of ``kind`` reads one (a DDO run's metrics,
    a verification run's, an annealing run's)."""
    picked: list[Path] = []
    for view in views_of(kind):
        if not any(_accepts(view, p) for p in picked):
            picked.append(next(p for p in paths if _accepts(view, p)))
    return picked


def json_cases(tree) -> Iterator[tuple[Kind, Path, str, bytes, str | None]]:
    _, _, samples = tree
    for kind in base_kinds():
        if isinstance(kind, Kind) and kind is not kinds.DOCUMENT:
            for path in chosen(kind, samples[kind.name]):
                for label, content, optional in json_damage(path.read_bytes(), kind.shape):
                    yield kind, path, label, content, optional


def assert_names_the_file(error: InputError, path: Path, label: str) -> None:
    line = error.one_line()
    assert str(path) in line and "(fix: " in line, (label, line)
    assert len(line.splitlines()) == 1, (label, line)


def test_every_view_of_every_json_kind_refuses_every_damage(tree, tmp_path):
    """Each damage, through each reader's view: one line naming the file, or (an optional
    field that reader does not use, dropped) the file is read. ``damage`` (status and the
    pre-flight) flags every change to what the writer writes."""
    counts = {"cases": 0, "refusals": 0}
    for kind, sample, label, content, optional in json_cases(tree):
        path = tmp_path / sample.name
        path.write_bytes(content)
        counts["cases"] += 1
        for view in views_of(kind):
            if not _accepts(view, sample):
                continue  # a sample of another stage (a DDO run for compare's view)
            refused = optional is None or optional in view.needs
            error = _error(view, path)
            assert (error is not None) == refused, (view.name, label, error)
            if error is not None:
                assert_names_the_file(error, path, f"{view.name}: {label}")
                counts["refusals"] += 1
        problem = damage(Output(path, kind))
        assert (problem is None) == (optional is not None and optional not in kind.written), label
    print(counts)  # the counts the log shows
    assert counts["cases"] > 900 and counts["refusals"] > 1500, counts


def test_json_lines_refuse_every_damage(tree, tmp_path):
    """A corpus file (one JSON object per line): each line damaged as a JSON file is."""
    from mixscale.data.corpus import read_documents

    sample = tree[2][kinds.DOCUMENT.name][0]
    lines = sample.read_bytes().split(b"\n")
    cases = [(label, content) for label, content, _ in json_damage(lines[0], kinds.DOCUMENT.shape)]
    cases += [
        ("whole file not UTF-8", b'{"text": "\xff"}\n'),
        ("cut mid-line", sample.read_bytes()[:30]),
    ]
    assert len(cases) > 15
    print({"json-lines cases": len(cases)})
    for label, content in cases:
        path = tmp_path / "web.jsonl"
        path.write_bytes(b"\n".join([content, *lines[1:]]) if "whole" not in label else content)
        if label in ("empty", "blank"):
            assert read_documents(path) == ["another"]  # blank lines are not documents
            continue
        with pytest.raises(InputError) as error:
            read_documents(path)
        assert_names_the_file(error.value, path, label)


# --- damaging tables ------------------------------------------------------------------------


def table_damage(text: str, kind: TsvKind) -> Iterator[tuple[str, str, bool]]:
    """(label, damaged table, whether its reader alone can tell): from the declared columns
    and the sample's own cells."""
    lines = text.splitlines()
    header = lines[0].split("\t")
    boundary = len("\n".join(lines[:-1])) + 1  # a whole last row lost: only the rows can tell
    for cut in sorted({len(lines[0]) + 5, len(text) // 2, len(text) - 3}):
        yield f"truncated at {cut}", text[:cut], False
    yield "last row lost", text[:boundary], False
    yield "empty", "", True
    yield "header only", lines[0] + "\n", True
    yield (
        "ragged row",
        "\n".join([*lines[:1], lines[1].rsplit("\t", 1)[0], *lines[2:]]) + "\n",
        True,
    )
    yield "comment after the header", "\n".join([*lines[:2], "# note", *lines[2:]]) + "\n", True
    yield "duplicate column", "\n".join(f"{ln}\t{ln.split(chr(9))[0]}" for ln in lines) + "\n", True
    for column in kind.required:
        at = header.index(column)
        yield f"no column {column}", "\n".join(_without(ln, [at]) for ln in lines) + "\n", True
    for prefix in kind.prefixes:
        ats = [i for i, h in enumerate(header) if h.startswith(prefix)]
        if ats:
            yield f"no {prefix}* columns", "\n".join(_without(ln, ats) for ln in lines) + "\n", True
            bad = header[:]
            bad[ats[0]] = prefix + "<b>a|b"
            yield f"domain {bad[ats[0]]!r}", "\n".join(["\t".join(bad), *lines[1:]]) + "\n", True
    first = lines[1].split("\t")
    for column in (*kind.name_columns, *kind.id_columns):
        if column in header:
            for name in ("#r1", "<b>x</b>", "a|b", "x\x1b[31m"):
                yield f"{column} {name!r}", _cell(lines, header.index(column), name), True
    for at, cell in enumerate(first):
        if _number(cell) and header[at] not in (*kind.name_columns, *kind.id_columns):
            for bad_cell in ("null", "nan", "inf", "x"):
                yield f"{header[at]} {bad_cell!r}", _cell(lines, at, bad_cell), True


def _without(line: str, ats: list[int]) -> str:
    return "\t".join(c for i, c in enumerate(line.split("\t")) if i not in ats)


def _cell(lines: list[str], at: int, text: str) -> str:
    cells = lines[1].split("\t")
    cells[at] = text
    return "\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n"


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_every_table_kind_refuses_every_damage(tree, tmp_path):
    """Each table damaged: its reader refuses in one line naming the file (or reads a table
    that lost whole rows: only its sources can tell), and ``damage`` flags every damage of a
    table the workflow writes, lost rows included where the table names its runs."""
    config, root, samples = tree
    rows = {str(o.path): o.rows for o in planned_outputs(config, root)}
    count = 0
    for kind in (k for k in base_kinds() if isinstance(k, TsvKind)):
        for sample in samples[kind.name]:
            text = sample.read_text()
            header = text.splitlines()[0].split("\t")
            for label, content, reader_tells in table_damage(text, kind):
                path = sample.with_name(f"damaged-{sample.name}")
                path.write_text(content)
                count += 1
                try:
                    TABLE_READERS[kind.name](path, header)
                except InputError as error:
                    assert_names_the_file(error, path, f"{kind.name}: {label}")
                else:
                    assert not reader_tells, (kind.name, label, "accepted")
                if not kind.workflow_output:
                    continue
                sources = rows.get(str(sample), {})
                problem = damage(Output(path, kind, sources))
                tells = reader_tells or "truncated" in label or (sources and "lost" in label)
                assert (problem is not None) == bool(tells), (kind.name, label, problem)
                path.unlink()
    print({"table cases": count})  # the counts the log shows
    assert count > 80, count


def test_comments_before_the_header_and_hash_run_ids(tmp_path):
    """'#' lines before the header are comments; after it, a '#' line is a row, so a run id
    starting with '#' is named (not a name), never dropped as a comment."""
    from mixscale.core.runtable import load_run_table

    table = "run\ttokens.a\tloss.a\nr1\t10\t2.0\nr2\t30\t1.9\n"
    path = tmp_path / "runs.tsv"
    path.write_text("# my sweep\n\n# seeds 0-1\n" + table)
    assert load_run_table(path).run_ids == ["r1", "r2"]
    path.write_text(table.replace("r2", "#r2"))
    with pytest.raises(InputError) as error:
        load_run_table(path)
    assert error.value.field == "row 3, column run" and "'#r2' not allowed" in error.value.problem
    path.write_text(table + "# trailing note\n")
    with pytest.raises(InputError) as error:
        load_run_table(path)
    assert "a '#' comment after the header" in error.value.one_line()


HOSTILE_NAMES = ["<b>x</b>", "a|b", "x\x1b[31m", "a b", ".hidden", "é", "a/b", "`x`", "x" * 201]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("where", ["tokens", "loss", "run", "seed"])
def test_run_table_names_are_names(tmp_path, name, where):
    """Domain names, run ids and seeds of a run table: one line naming the row or column."""
    from mixscale.core.runtable import load_run_table

    header = ["run", "seed", "tokens.a", "loss.a"]
    row = ["r1", "0", "10", "2.0"]
    if where in ("tokens", "loss"):
        header[2 if where == "tokens" else 3] = f"{where}.{name}"
    else:
        row[header.index(where)] = name
    path = tmp_path / "runs.tsv"
    path.write_text("\t".join(header) + "\n" + "\t".join(row) + "\n")
    with pytest.raises(InputError) as error:
        load_run_table(path)
    line = error.value.one_line()
    assert (f"column {where}" in line or f"column '{where}." in line) and len(
        line.splitlines()
    ) == 1


# --- status ---------------------------------------------------------------------------------


def test_status_names_each_damaged_output_and_never_stops(tree):
    """`status` on the tree with one output damaged at a time, one damage of each sort per
    output kind: it returns, names the file with its fix, marks a run damaged, and never calls
    a scale "usable" whose table or weights are damaged."""
    config, root, _ = tree
    checked = 0
    for output in planned_outputs(config, root):
        if not output.path.is_file() or (output.kind is kinds.METRICS and checked > 40):
            continue
        original = output.path.read_bytes()
        damages = (
            json_damage(original, output.kind.shape) if isinstance(output.kind, Kind)
            else ((label, content.encode(), None) for label, content, _ in
                  table_damage(original.decode(), output.kind))
        )  # fmt: skip
        sorts: set[str] = set()
        try:
            for label, content, optional in damages:
                sort = label.split(" ")[0]
                if optional is not None or sort in sorts or label.endswith("lost"):
                    continue
                sorts.add(sort)
                output.path.write_bytes(content)
                text = format_status(experiment_status(config, root), verbose=True)
                assert str(output.path) in text and "(fix: " in text, (output.path, label)
                if output.kind is kinds.METRICS:
                    assert f"damaged      {output.path.parent.name}: " in text, label
                scale = (
                    output.path.stem if "tables" in output.path.parts else output.path.parent.name
                )
                verdict = [x for x in text.splitlines() if x.startswith(f"  {scale}: ")]
                if output.kind in (kinds.RUN_TABLE, kinds.DDO_WEIGHTS) and verdict:
                    assert verdict[0].startswith(f"  {scale}: damaged: "), (label, verdict)
                checked += 1
        finally:
            output.path.write_bytes(original)
    print({"status runs on damaged trees": checked})
    assert checked > 100, checked
    text = format_status(experiment_status(config, root))
    assert "damaged" not in text.lower(), text


def test_the_pre_flight_names_the_first_damaged_file_and_the_command_that_remakes_it(
    tree, monkeypatch, capsys
):
    """In-process, as common.smk calls it: exit 2, one line with the file, the Snakemake command
    that remakes it (the dry-run flag dropped) and how many more; commands that run no job
    (--unlock, --summary, --delete-all-output, ...) are let through."""
    from mixscale.plan.outputs import stop_if_damaged

    config, root, _ = tree
    monkeypatch.chdir(root)
    out = Path(config.out)
    damaged = [out / "tables/1M.tsv", out / "runs/ddo-3M-base-s0/metrics.json"]
    originals = {p: p.read_bytes() for p in damaged}
    argv = ["/x/bin/snakemake", "-n", "--profile", "my profile", "--configfile", "c.yaml"]
    stop_if_damaged(config, ["c.yaml"], argv)  # nothing damaged: nothing said
    assert capsys.readouterr().err == ""
    try:
        for path in damaged:
            truncate(path)
        with pytest.raises(SystemExit) as stop:
            stop_if_damaged(config, ["c.yaml"], argv)
        assert stop.value.code == 2
        line = capsys.readouterr().err
        assert len(line.splitlines()) == 1
        first = damaged[1]  # the runs come first: a table is gathered from them
        want = f"`snakemake {first} --profile 'my profile' --configfile c.yaml` trains the run"
        assert line.startswith(f"mixscale: damaged output: {first}: ") and want in line, line
        assert "; 1 more: `python -m mixscale status --configfile c.yaml` lists them" in line
        for flag in ("--unlock", "--summary", "--delete-all-output", "--report=r.html"):
            stop_if_damaged(config, ["c.yaml"], [*argv, flag])  # no SystemExit
    finally:
        for path, data in originals.items():
            path.write_bytes(data)


# --- every read goes through a kind ---------------------------------------------------------

READ_CALLS = {"read_json", "read_tsv_rows", "load", "loads", "safe_load", "read_csv", "load_file"}
# Reads that are not of files mixscale writes and reads back, and why they need no kind.
ALLOWED = {
    "mixscale.shapes": "the checked readers themselves",
    "mixscale.fileio": "the raw parsers the checked readers call",
    "mixscale.cli.args:json_or_file": "--settings: the user's JSON/YAML, checked as settings",
    "mixscale.cli.report:_proxy_tokens": "--proxy-tokens: command-line JSON, checked",
    "mixscale.cli.train:_spec": "--spec: command-line JSON, checked",
    "mixscale.config.check:schema": "the package's own schema",
    "mixscale.config.profile:fill": "the profile template it writes, checked as YAML",
    "mixscale.config.finetune:_own_task": "the user's task folder: errors name the config field",
    "mixscale.config.finetune:_check_labels": "the user's task rows, checked line by line",
    "mixscale.config.model:checkpoint_type": "a probe of a model folder: None when unreadable",
    "mixscale.core.safe_yaml:load_bounded": "the user's YAML (configs, worlds, settings), its "
    "size and depth bounded first; callers check what it holds",
    "mixscale.data.corpus:_books": "a pinned package's data (the KJV verses)",
    "mixscale.data.corpus:_jsonl_docs": "the user's source, checked line by line",
    "mixscale.data.tokens:_own_tokenizer": "a probe: transformers loads the tokenizer otherwise",
    "mixscale.evaluate.finetune:read_rows": "task rows, checked per task by _checked_row",
    "mixscale.plan.budget:_read_params_cache": "a cache: unreadable means counted again",
    "mixscale.plan.budget:_count_params": "JSON built by the same module",
    "mixscale.train.saved:saved_native_config": "a probe: transformers loads the folder otherwise",
    "mixscale.train.saved:load_weights": "safetensors: no code runs; the caller checks the keys",
    "mixscale.train.checkpoints:_load_state": "weights_only; a torn file is moved aside",
}


@functools.cache
def modules() -> dict[str, ast.Module]:
    """Every module of the package, parsed once."""
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): ast.parse(
            p.read_text(encoding="utf-8")
        )
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def read_sites() -> list[tuple[str, str, str]]:
    """(module, function, call) of every call in the package that parses a file or text."""
    found = []
    for module, tree in modules().items():
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                    if name in READ_CALLS and not _is_method_of_a_non_parser(node):
                        found.append((module, function.name, name))
    return found


def _is_method_of_a_non_parser(node: ast.Call) -> bool:
    """``x.load(...)`` of objects that are not parsers (a DoReMi state, a sampler)."""
    owner = getattr(node.func, "value", None)
    return getattr(node.func, "attr", "") == "load" and getattr(owner, "id", "") not in (
        "json", "yaml", "np", "numpy", "torch", "pickle",
    )  # fmt: skip


def test_every_file_read_goes_through_a_kind():
    """No module parses JSON, TSV, YAML, numpy or torch data outside ``mixscale.shapes``
    except the reads listed with their reason; every checked read names a registered kind."""
    sites = read_sites()
    unexplained = sorted(
        {
            f"{m}:{f} calls {c}"
            for m, f, c in sites
            if m not in ALLOWED and f"{m}:{f}" not in ALLOWED
        }
    )
    assert unexplained == []
    used = {m for m, _, _ in sites} | {f"{m}:{f}" for m, f, _ in sites}
    assert sorted(set(ALLOWED) - used) == []  # no reason kept for a read that is gone
    registered = {id(v) for v in kinds.REGISTRY.values()}
    names = {n for n, v in vars(kinds).items() if id(v) in registered}
    readers = ("read_kind", "read_kinds", "read_tsv_kind", "read_jsonl_kind")
    bad = []
    for module, tree in modules().items():
        if module in ("mixscale.shapes", "mixscale.plan.outputs"):  # kinds passed on as values
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in readers:
                arg = node.args[1]
                given = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
                for kind in given:
                    if isinstance(kind, ast.Attribute) and kind.attr == "as_written":
                        kind = kind.value
                    if getattr(kind, "id", None) not in names:
                        bad.append(f"{module}:{node.lineno}")
    assert bad == []
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert "read_json(" not in rules and "json.load" not in rules


# --- the workflow: a damaged output stops the rerun, nothing finished is lost -----------------

SIMULATED = {
    "experiment": "sweep",
    "backend": "simulate",
    "world": "separable",
    "fit": {"bootstrap": 5},
    "ddo": {"seeds": 1, "scales": [{"name": "1M", "tokens": 1e6}, {"name": "3M", "tokens": 3e6}]},
    "autoscale": {"targets": [3.0e7]},
    "verify": {"methods": ["autoscale", "uniform"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "config.yaml").write_text(yaml.safe_dump(SIMULATED))
    res = snakemake(folder, "-c2", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    return folder


def files(folder: Path) -> dict[Path, int]:
    results = folder / "results"
    return {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def null_fields(path: Path) -> None:
    data = json.loads(path.read_text())
    data["weights"] = dict.fromkeys(data["weights"])
    data["fit"]["domains"][next(iter(data["fit"]["domains"]))]["status"] = None
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damaged", "how"),
    [
        ("runs/ddo-1M-base-s0/metrics.json", truncate),
        ("tables/1M.tsv", truncate),
        ("ddo/3M/weights.json", null_fields),
    ],
    ids=["truncated metrics", "truncated table", "weights with nulls"],
)
def test_a_damaged_output_stops_the_rerun_and_nothing_finished_is_lost(
    finished_sweep, tmp_path, damaged, how
):
    folder = tmp_path / "sweep"
    subprocess.run(["cp", "-a", str(finished_sweep), str(folder)], check=True)
    path = folder / "results/sweep" / damaged
    how(path)
    before = files(folder)
    res = snakemake(folder, "-c2", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("mixscale: ")]
    assert len(lines) == 1 and f"results/sweep/{damaged}: " in lines[0], res.stderr[-2000:]
    command = f"`snakemake results/sweep/{damaged} -s "
    assert "(fix: delete it, then " in lines[0] and command in lines[0], lines[0]
    assert files(folder) == before  # every output still there, none rewritten


def test_following_the_fix_regenerates_only_what_depends_on_it(finished_sweep, tmp_path):
    """A truncated metrics.json deleted and asked for with the command the line gives: that
    run trains again; the rerun as before rebuilds what reads it and the report is complete;
    the other scale's runs are not touched."""
    folder = tmp_path / "sweep"
    subprocess.run(["cp", "-a", str(finished_sweep), str(folder)], check=True)
    out = folder / "results/sweep"
    path = out / "runs/ddo-1M-base-s0/metrics.json"
    good = json.loads(path.read_text())
    truncate(path)
    other = {p: t for p, t in files(folder).items() if "3M" in str(p) and "runs" in p.parts}
    res = snakemake(folder, "-c2", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 2
    command = res.stderr.split("(fix: delete it, then `", 1)[1].split("`", 1)[0]
    path.unlink()
    args = shlex.split(command)[1:]
    for flag in ("-s", "--directory"):  # run_snakemake gives both
        at = args.index(flag)
        del args[at : at + 2]
    res = snakemake(folder, *args)
    assert res.returncode == 0 and path.is_file(), res.stderr[-2000:]
    assert json.loads(path.read_text())["final_losses"] == good["final_losses"]
    res = snakemake(folder, "-c2", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "table" in res.stderr and "ddo" in res.stderr  # what reads the run was rebuilt
    assert (out / "report/summary.md").is_file() and (out / "tables/1M.tsv").is_file()
    assert other and all(p.stat().st_mtime_ns == t for p, t in other.items())
    shutil.rmtree(folder)
