"""Fault test 6: a corpus of bad inputs. Each stops with one line naming the file and the field
and how to fix it, a non-zero exit code, no traceback, and nothing already computed deleted.

Config mistakes are caught when the config is read (`python -m mixscale check` and the
Snakefile run the same checks); mistakes in data files, run tables and metrics files are caught
by the job that reads them, which fails alone (keep-going) with the one line in its log."""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from conftest import run_snakemake as snakemake

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

# A valid simulated experiment; every config case breaks one thing in it.
BASE = {
    "experiment": "bad",
    "backend": "simulate",
    "world": "separable",
    "fit": {"form": "auto", "loss": "linear", "bootstrap": 10},
    "ddo": {
        "seeds": 1,
        "scales": [{"name": "1M", "tokens": 1.0e6}, {"name": "3M", "tokens": 3.0e6}],
    },
    "autoscale": {"targets": [3.0e7]},
    "verify": {"methods": ["autoscale", "uniform"]},
}
TORCH = yaml.safe_load((ROOT / "tests/configs/torch-tiny.yaml").read_text())
ANNEAL = yaml.safe_load((ROOT / "tests/configs/anneal-tiny.yaml").read_text())


def put(path: str, value) -> Callable[[dict], dict]:
    """A change to one dotted field (list items by index) of a config."""

    def change(config: dict) -> dict:
        config = copy.deepcopy(config)
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return config

    return change


DELETE = object()


def world_file(text: str) -> Callable[[dict, Path], dict]:
    def change(config: dict, folder: Path) -> dict:
        (folder / "world.yaml").write_text(text)
        return {**config, "world": str(folder / "world.yaml")}

    return change


# name: (base config, change, what the one line must name). A change is a function of the
# config (or of the config and the case's folder), or raw file text/bytes.
CASES: dict[str, tuple[dict, object, str]] = {
    "malformed YAML": (BASE, "experiment: x\nddo: [unclosed\n", "malformed YAML"),
    "tab indentation": (BASE, "experiment: x\nddo:\n\tseeds: 1\n", "line 3"),
    "not a mapping": (BASE, "- experiment\n- ddo\n", "a config is a mapping"),
    "empty config": (BASE, "", "a config is a mapping"),
    "binary config": (BASE, b"\x00\xff\xfe\x01binary", "not UTF-8"),
    "unknown top-level key": (BASE, put("typo_key", 1), "typo_key: unknown key"),
    "unknown nested key": (BASE, put("fit.formm", "auto"), "fit.formm: unknown key"),
    "wrong type": (BASE, put("ddo.seeds", "two"), "ddo.seeds"),
    "seeds below 1": (BASE, put("ddo.seeds", 0), "ddo.seeds"),
    "number YAML reads as text": (BASE, put("autoscale.targets", ["1e9"]), "write it as 1.0e+09"),
    "experiment with /": (BASE, put("experiment", "a/b"), "experiment: name 'a/b'"),
    "experiment with ..": (BASE, put("experiment", "../up"), "experiment: name '../up'"),
    "experiment with space": (BASE, put("experiment", "my run"), "experiment: name 'my run'"),
    "scale name with /": (BASE, put("ddo.scales.0.name", "1/M"), "ddo.scales[0].name"),
    "scale name with space": (BASE, put("ddo.scales.1.name", "3 M"), "ddo.scales[1].name"),
    "scale name ..": (BASE, put("ddo.scales.0.name", ".."), "ddo.scales[0].name"),
    "duplicate scale names": (BASE, put("ddo.scales.1.name", "1M"), "duplicate scale names"),
    "scales out of order": (BASE, put("ddo.scales.0.tokens", 9.0e6), "scales must increase"),
    "a single DDO scale": (BASE, put("ddo.scales", [{"name": "1M", "tokens": 1e6}]), "ddo.scales"),
    "discrete target below the DDO scales": (
        BASE,
        put("autoscale", {"targets": [2.0e6], "discrete": True}),
        "autoscale.targets",
    ),
    "negative target": (BASE, put("autoscale.targets", [-1.0]), "autoscale.targets[0]"),
    "no targets": (BASE, put("autoscale.targets", []), "autoscale.targets"),
    "unknown fit form": (BASE, put("fit.form", "cubic"), "fit.form"),
    "unknown verify method": (BASE, put("verify.methods", ["magic"]), "verify.methods[0]"),
    "DML with fewer runs than domains": (
        BASE,
        lambda c: {**c, "verify": {"methods": ["dml"]}, "methods": {"dml": {"runs": 4}}},
        "methods.dml.runs: 4 proxy runs for 5 domains",
    ),
    "RegMix temperature 0": (
        BASE,
        lambda c: {
            **c,
            "verify": {"methods": ["regmix"]},
            "methods": {"regmix": {"temperature": 0}},
        },
        "methods.regmix.temperature",
    ),
    "RegMix natural prior without natural": (
        BASE,
        lambda c: {**c, "verify": {"methods": ["regmix"]}},
        "methods.regmix.prior: natural needs the natural proportions in verify.natural",
    ),
    "DoReMi on a simulated world": (
        BASE,
        lambda c: {**c, "verify": {"methods": ["doremi"]}},
        "doremi learns its weights while a real model trains: backend torch only",
    ),
    "DoReMi negative eta": (
        BASE,
        lambda c: {**c, "methods": {"doremi": {"eta": -1}}},
        "methods.doremi.eta",
    ),
    "RegMix unknown regressor": (
        BASE,
        lambda c: {**c, "methods": {"regmix": {"regressor": "xgboost"}}},
        "methods.regmix.regressor",
    ),
    "reference not summing to 1": (
        BASE,
        put("verify", {"methods": ["reference"], "reference": {"web": 0.5, "wiki": 0.2}}),
        "verify.reference: weights must sum to 1",
    ),
    "reference with unknown domain": (
        BASE,
        put("verify", {"methods": ["reference"], "reference": {"nope": 1.0}}),
        "verify.reference.nope: unknown domain",
    ),
    "base weights not summing to 1": (
        BASE,
        put(
            "ddo.base_weights", {"web": 0.5, "wiki": 0.5, "code": 0.5, "books": 0.5, "science": 0.5}
        ),
        "ddo.base_weights",
    ),
    "unknown backend": (BASE, put("backend", "tpu"), "backend"),
    "unknown world": (BASE, put("world", "no-such-world"), "no-such-world: world: no such"),
    "malformed world": (BASE, world_file("domains: [a, b\n"), "malformed YAML"),
    "world with duplicate domains": (
        BASE,
        world_file("domains: [a, a]\nskills: [{beta: 1, gamma: 0.3}, {beta: 1, gamma: 0.3}]\n"),
        "domains: duplicate names",
    ),
    "world with negative beta": (
        BASE,
        world_file("domains: [a]\nskills: [{beta: -1, gamma: 0.3}]\n"),
        "beta and gamma must be > 0",
    ),
    "nothing to run": (BASE, put("ddo", DELETE), "no experiment to run"),
    "domain name with /": (TORCH, put("data.sources", {"a/b": "builtin"}), "data.sources"),
    "domain name ..": (TORCH, put("data.sources", {"..": "builtin"}), "data.sources"),
    "unknown train key": (TORCH, put("train.lrr", 0.1), "train.lrr: unknown key"),
    "unknown precision": (TORCH, put("train.precision", "fp8"), "train.precision"),
    "unknown anneal source": (ANNEAL, put("anneal.sources", {"nope": {}}), "anneal.sources"),
    "anneal budgets out of order": (
        ANNEAL,
        put("anneal.budgets", [4.0e4, 1.0e4, 1.6e5]),
        "anneal.budgets: must increase strictly",
    ),
    "anneal share above 1": (ANNEAL, put("anneal.share", 1.5), "anneal.share"),
    # silently misread before
    "key written twice": (
        BASE,
        "experiment: one\nexperiment: two\nbackend: simulate\nworld: separable\n",
        "key 'experiment' written twice (lines 1 and 2)",
    ),
    "targets sharing a label": (
        BASE,
        put("autoscale.targets", [3.0e7, 3.0000001e7]),
        "both read 3e+07",
    ),
    "anneal budgets sharing a label": (
        ANNEAL,
        put("anneal.budgets", [1.0e4, 4.0e4, 4.00000001e4]),
        "anneal.budgets: 40000 and 40000.0001 both read 40000",
    ),
    "negative weight decay": (TORCH, put("train.weight_decay", -0.1), "train.weight_decay"),
    "min_lr_ratio above 1": (TORCH, put("train.min_lr_ratio", 1.5), "train.min_lr_ratio"),
    "negative checkpoint_every": (TORCH, put("train.checkpoint_every", -5), "checkpoint_every"),
    # late failures before: each was found only after a sweep had trained
    "zero base weight": (
        BASE,
        put(
            "ddo.base_weights",
            {"web": 0.0, "wiki": 0.25, "code": 0.25, "books": 0.25, "science": 0.25},
        ),
        "ddo.base_weights.web: is 0",
    ),
    "unknown evaluation domain": (
        BASE,
        put("objective", {"kind": "mean", "eval_domains": ["nope"]}),
        "objective.eval_domains: unknown domain nope",
    ),
    "empty data.sources": (TORCH, put("data.sources", {}), "data.sources: is empty"),
    "Adam betas outside [0, 1)": (TORCH, put("train.betas", [0.9, 1.2]), "train.betas"),
    "world file that does not exist": (
        BASE,
        put("world", "/nowhere/world.yaml"),
        "/nowhere/world.yaml",
    ),
    "run table that does not exist": (
        BASE,
        lambda c: {
            **put("backend", "tables")(c),
            "world": "separable",
            "ddo": {
                **c["ddo"],
                "scales": [{**s, "runs": f"/nowhere/{s['name']}.tsv"} for s in c["ddo"]["scales"]],
            },
        },
        "ddo.scales[0].runs: /nowhere/1M.tsv: file not found",
    ),
    # tracebacks before
    "infinite sequence length": (TORCH, put("train.seq_len", float("inf")), "train.seq_len"),
    "300-character experiment name": (
        BASE,
        put("experiment", "x" * 300),
        "experiment: longer than 64 characters",
    ),
    # hangs before: accepted, then ran for ever
    "a billion evaluation points": (BASE, put("eval_points", 1.0e9), "eval_points"),
    "200,000 DDO seeds": (BASE, put("ddo.seeds", 200000), "ddo.seeds"),
    # passed `mixscale check`, then failed after the sweep had trained (issue 36)
    "factor 1e300": (BASE, put("ddo.factor", 1e300), "ddo.factor"),
    "factor 1.0000001": (BASE, put("ddo.factor", 1.0000001), "ddo.factor"),
    "scales of 2 tokens": (
        BASE,
        lambda c: {
            **put("ddo.scales", [{"name": "a", "tokens": 2.0}, {"name": "b", "tokens": 6.0}])(c),
            "autoscale": {"targets": [20.0]},
        },
        "ddo.scales[0].tokens: run ddo-a-web-down-s0 trains 0.133 tokens of web",
    ),
    "scales near 1e18 tokens": (
        BASE,
        lambda c: {
            **c,
            "ddo": {
                **c["ddo"],
                "factor": 6,
                "scales": [{"name": "a", "tokens": 3e17}, {"name": "b", "tokens": 1e18}],
            },
            "autoscale": {"targets": [1e18]},
        },
        "ddo.scales[1].tokens: run ddo-b-web-up-s0 trains 1.2e+18 tokens of web",
    ),
    "scales too close for AutoScale": (
        BASE,
        put("ddo.scales.1.tokens", 1.01e6),
        "span 1.01x (1e+06 to 1.01e+06) and autoscale.targets[0] 3e+07 lies 341 spans above",
    ),
    "scale name ending in '.'": (BASE, put("ddo.scales.0.name", "1M."), "ddo.scales[0].name"),
    "domain name ending in '.'": (TORCH, put("data.sources", {"books.": "builtin"}), "books."),
    "world domain ending in '.'": (
        BASE,
        world_file("domains: [a., b]\nskills: [{beta: 4, gamma: 0.3}, {beta: 3, gamma: 0.3}]\n"),
        "domains: name 'a.' not allowed",
    ),
    "run ids that coincide": (
        BASE,
        lambda c, folder: {
            **world_file(
                "domains: [x-up, up]\nskills: [{beta: 4, gamma: 0.3}, {beta: 3, gamma: 0.3}]\n"
            )(c, folder),
            "ddo": {"scales": [{"name": "1M", "tokens": 1e6}, {"name": "1M-x", "tokens": 3e6}]},
        },
        "two planned runs are both ddo-1M-x-up-up-s0",
    ),
    "scale names differing in case": (BASE, put("ddo.scales.1.name", "1m"), "differ only in case"),
    "micro_batch not dividing batch_sequences": (
        TORCH,
        put("train.micro_batch", 3),
        "train.batch_sequences: 8 is not a multiple of accelerator.gpus_per_run (1) x "
        "train.micro_batch (3)",
    ),
    "a domain rounded away to whole sequences": (
        TORCH,
        put("ddo.base_weights", {"books": 0.996, "code": 0.002, "legal": 0.002}),
        "run ddo-15k-code-down-s0 trains 10 tokens of code, 0.312 sequences",
    ),
    "a DDO run below one optimizer step": (
        TORCH,
        put("ddo.scales.0.tokens", 300),
        "fewer than one optimizer step of train.batch_sequences 8",
    ),
    "max_bytes below validation_bytes": (
        TORCH,
        put("data.max_bytes", 1000),
        "data.max_bytes: 1000 bytes per domain, and data.validation_bytes (30000) are held out",
    ),
    "world without domains": (BASE, world_file("domains: []\nskills: []\n"), "a world needs"),
    "world with NaN beta": (
        BASE,
        world_file("domains: [a]\nskills: [{beta: .nan, gamma: 0.3}]\n"),
        "beta and gamma must be finite",
    ),
    "world whose perplexity overflows": (
        BASE,
        world_file("domains: [a]\nskills: [{beta: 800, gamma: 0.3}]\n"),
        "perplexity overflows",
    ),
    "train.seed, replaced by each run's seed": (TORCH, put("train.seed", 5), "train.seed"),
    "negative data seed": (TORCH, put("data.seed", -1), "data.seed"),
    "a count of 2.5": (BASE, put("ddo.seeds", 2.5), "ddo.seeds"),
    # YAML's own spellings (.inf, .nan): they pass every JSON Schema minimum and maximum
    "factor .inf in YAML": (BASE, put("ddo.factor", float("inf")), "ddo.factor: inf is not"),
    "target .nan in YAML": (
        BASE,
        put("autoscale.targets", [float("nan")]),
        "autoscale.targets[0]: nan is not",
    ),
    # values that reach a command line: validated by pattern (and quoted anyway)
    "device with shell code": (
        TORCH,
        put("downstream.device", "cpu; touch pwned"),
        "downstream.device: 'cpu; touch pwned' not allowed",
    ),
    "tokenizer with shell code": (
        TORCH,
        put("data.tokenizer", {"pretrained": "gpt2$(touch pwned)"}),
        "data.tokenizer.pretrained",
    ),
}


def case_config(case: str, folder: Path) -> Path:
    base, change, _ = CASES[case]
    path = folder / "config.yaml"
    if isinstance(change, bytes):
        path.write_bytes(change)
    elif isinstance(change, str):
        path.write_text(change)
    else:
        takes_folder = len(inspect.signature(change).parameters) == 2
        config = change(base, folder) if takes_folder else change(base)
        path.write_text(yaml.safe_dump(config))
    return path


def computed_before(folder: Path) -> dict[str, int]:
    """An earlier result in the working directory; it must survive the failed run."""
    earlier = folder / "results/bad/ddo/1M/weights.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"weights": {"web": 1.0}}')
    return {str(p): p.stat().st_mtime_ns for p in (folder / "results").rglob("*") if p.is_file()}


def named_file(case: str, config: Path) -> str:
    """The file the error is in: the config, or the world file it points at."""
    if getattr(CASES[case][1], "__qualname__", "").startswith("world_file"):
        return "world.yaml"
    if case == "world file that does not exist":
        return "/nowhere/world.yaml"
    return "no-such-world" if case == "unknown world" else config.name


def assert_one_line_error(res: subprocess.CompletedProcess[str], case: str, config: Path):
    assert res.returncode != 0
    assert "Traceback" not in res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Using profile")]
    assert len(lines) == 1, res.stderr
    assert named_file(case, config) in lines[0] and CASES[case][2] in lines[0], lines[0]
    assert "(fix: " in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_stops_in_one_line(case, tmp_path):
    config = case_config(case, tmp_path)
    before = computed_before(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "mixscale", "check", "--configfile", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        check=False,
    )
    assert res.returncode == 2
    assert_one_line_error(res, case, config)
    after = {str(p): p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*")}
    assert {p: after.get(p) for p in before} == before


# Snakemake reads the config before the Snakefile: malformed YAML gets its own message there
# (no line number; `mixscale check` gives it). Everything else stops in the Snakefile's check.
SNAKEMAKE_CASES = [
    "unknown nested key",
    "scales out of order",
    "discrete target below the DDO scales",
    "experiment with ..",
    "unknown world",
    "unknown precision",
    "anneal budgets out of order",
    "key written twice",
    "targets sharing a label",
    "zero base weight",
    "device with shell code",
    "scales too close for AutoScale",
]


@pytest.mark.parametrize("case", SNAKEMAKE_CASES)
def test_snakemake_stops_on_a_bad_config_in_one_line(case, tmp_path):
    config = case_config(case, tmp_path)
    before = computed_before(tmp_path)
    res = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert_one_line_error(res, case, config)
    assert all(Path(p).stat().st_mtime_ns == t for p, t in before.items())


def test_malformed_config_yaml_under_snakemake_fails_without_traceback(tmp_path):
    config = case_config("malformed YAML", tmp_path)
    res = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert res.returncode != 0
    output = res.stdout + res.stderr
    assert "Traceback" not in output and "not valid JSON or YAML" in output


# --- files read by jobs -------------------------------------------------------------------


def failed_job_log(workdir: Path, log: str) -> str:
    """The failing job's log: exactly one line, the error."""
    lines = [line for line in (workdir / log).read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "holds no text"), (b"\x00\x01\x02\xff\xfe binary \x00" * 50, "not UTF-8")],
    ids=["empty data file", "binary data file"],
)
def test_bad_data_file_fails_its_domain_only(tmp_path, content, expected):
    data = tmp_path / "mine.txt"
    data.write_bytes(content)
    config = {
        **TORCH,
        "experiment": "files",
        "data": {**TORCH["data"], "sources": {"books": "builtin", "mine": {"path": str(data)}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    corpus = "results/files/data/corpus"
    res = snakemake(
        tmp_path, f"{corpus}/books.jsonl", f"{corpus}/mine.jsonl", "-c2", "--keep-going",
        "--configfile", str(path),
    )  # fmt: skip
    assert res.returncode != 0
    line = failed_job_log(tmp_path, "results/files/logs/corpus/mine.log")
    assert str(data) in line and expected in line and "(fix: " in line
    assert (tmp_path / f"{corpus}/books.jsonl").stat().st_size > 0  # the other domain is done
    assert not (tmp_path / f"{corpus}/mine.jsonl").exists()


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> Path:
    """BASE run to the end with the local executor."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "config.yaml").write_text(yaml.safe_dump(BASE))
    res = snakemake(folder, "-c2", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    return folder


def test_truncated_metrics_file_stops_the_rerun_before_any_job(finished_sweep, tmp_path):
    """Snakemake would take the truncated file as finished, fail the table job and delete the
    good table: the workflow's pre-flight stops first, naming the file (tests/test_damaged.py
    damages every kind of output)."""
    folder = tmp_path / "sweep"
    subprocess.run(["cp", "-a", str(finished_sweep), str(folder)], check=True)
    out = folder / "results/bad"
    broken = out / "runs/ddo-1M-base-s0/metrics.json"
    broken.write_text(broken.read_text()[: len(broken.read_text()) // 2])
    untouched = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p != broken}
    res = snakemake(folder, "-c1", "--keep-going", "--configfile", str(folder / "config.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    line = next(x for x in res.stderr.splitlines() if x.startswith("mixscale: "))
    assert str(broken.relative_to(folder)) in line and "(fix: delete it, then `snakemake " in line
    # nothing computed was deleted or rewritten
    assert untouched and all(p.stat().st_mtime_ns == t for p, t in untouched.items())


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("run\ttokens.web\tloss.web\nr1\t10\tnan\n", "row 2, column loss.web: value is nan"),
        ("run\ttokens.web\tloss.web\nr1\t10\t2\nr1\t30\t1.9\n", "duplicate run id 'r1'"),
    ],
    ids=["run table with NaN", "run table with duplicate runs"],
)
def test_bad_run_table_fails_its_ddo_job(tmp_path, table, expected):
    good = ROOT / "examples/runs_30M.tsv"
    bad = tmp_path / "runs_10M.tsv"
    bad.write_text(table)
    config = {
        "experiment": "tables",
        "backend": "tables",
        "fit": {"bootstrap": 10},
        "ddo": {
            "scales": [
                {"name": "10M", "tokens": 1.0e7, "runs": str(bad)},
                {"name": "30M", "tokens": 3.0e7, "runs": str(good)},
            ]
        },
        "autoscale": {"targets": [1.0e9]},
        "verify": {"methods": []},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    res = snakemake(tmp_path, "-c2", "--keep-going", "--configfile", str(path))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    line = failed_job_log(tmp_path, "results/tables/logs/ddo/10M.log")
    assert str(bad) in line and expected in line
    done = json.loads((tmp_path / "results/tables/ddo/30M/weights.json").read_text())
    assert done["weights"]  # the good scale's DDO finished


def test_a_folder_given_as_the_config_stops_in_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "mixscale", "check", "--configfile", str(tmp_path)],
        capture_output=True, text=True, env=ENV, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "is a folder, not a config file" in res.stderr


def test_a_config_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(BASE).encode())
    res = subprocess.run(
        [sys.executable, "-m", "mixscale", "check", "--configfile", str(path)],
        capture_output=True, text=True, env=ENV, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ok (bad: ddo" in res.stdout
