"""Odd inputs that hung or gave a silent wrong answer (issue 36, parts 4 and 5): refused in one
line, or answered with a warning in the output and on stderr.

* YAML that expands (aliases) or nests without bound, through every reader of users' YAML.
* ``compare``: the same run twice, different mixtures as seeds of one method, off-target runs.
* Metrics whose tokens are not their run's planned tokens.
* Degenerate designs for RegMix and Data Mixing Laws: identical mixtures, fewer distinct
  mixtures than parameters, a domain never varied.
* AutoScale's ``predict`` from two scales too close to extrapolate from.

(Slow fits of many mixtures: tests/test_fit_scale.py; unreachable trackers:
tests/test_tracking.py.)
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, with_defaults
from mixscale.cli.args import json_or_file
from mixscale.cli.main import main
from mixscale.config.load import load_yaml_config
from mixscale.core.mixlaws import dml_optimum
from mixscale.core.objective import Objective
from mixscale.core.regmix import regmix_optimum
from mixscale.core.runtable import RunTable
from mixscale.core.safe_yaml import MAX_DEPTH, MAX_VALUES
from mixscale.core.world import load_world
from mixscale.errors import InputError

PACKAGE = ROOT / "workflow" / "mixscale"

# --- YAML: aliases and nesting are bounded in every reader of users' YAML -------------------

# Every reader of a YAML file a user hands mixscale; each must refuse the hostile documents.
YAML_READERS = {
    "config (load_yaml_config)": load_yaml_config,
    "world (load_world)": load_world,
    "training settings (json_or_file)": json_or_file,
}


def laughs(levels: int, width: int, key: str = "experiment") -> str:
    """A 'billion laughs': each level an anchored list of ``width`` aliases of the last."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\n{key}: *l{levels}\n"


def hostile_documents() -> dict[str, str]:
    """Generated: bombs of every depth that crosses the cap, loops, deep nesting by hand and
    through an alias, in block and flow style."""
    docs = {}
    for levels in range(2, 9):
        width = int(np.ceil(MAX_VALUES ** (1 / (levels + 1)))) + 1  # just over the cap
        docs[f"laughs, {levels} levels of {width}"] = laughs(levels, width)
    docs["alias inside its own list"] = "a: &a [1, *a]\n"
    docs["alias inside its own mapping"] = "a: &a {x: 1, y: *a}\n"
    docs["alias two levels inside"] = "a: &a {x: [1, {y: *a}]}\n"
    for depth in (MAX_DEPTH + 1, 10_000, 200_000):
        docs[f"flow lists {depth} deep"] = "x: " + "[" * depth + "]" * depth + "\n"
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * 70 + "v: 1\n"
    docs[f"block mappings {MAX_DEPTH + 1} deep"] = block
    half = MAX_DEPTH // 2 + 1
    docs["deep only through an alias"] = (
        "a: &a " + "[" * half + "]" * half + "\n" + "b: " + "[" * half + "*a" + "]" * half + "\n"
    )
    return docs


HOSTILE = hostile_documents()


@pytest.mark.parametrize("reader", YAML_READERS)
@pytest.mark.parametrize("doc", HOSTILE)
def test_every_yaml_reader_refuses_unbounded_documents(reader, doc, tmp_path):
    path = tmp_path / "file.yaml"
    path.write_text(HOSTILE[doc])
    with pytest.raises(InputError) as caught:
        YAML_READERS[reader](str(path))
    line = caught.value.one_line()
    assert str(path) in line and "line " in line and "\n" not in line
    assert any(word in line for word in ("values", "deep", "alias"))


@pytest.mark.parametrize("reader", [load_yaml_config, json_or_file])
def test_aliases_and_nesting_within_the_bounds_still_load(reader, tmp_path):
    path = tmp_path / "file.yaml"
    nested = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    path.write_text(
        "defaults: &d {seeds: 2, factor: 3}\nddo: {<<: *d, design: algorithm1}\n"
        f"{laughs(2, 20, key='wide')}deep: {nested}\n"
    )
    data = reader(str(path))
    assert data["ddo"] == {"seeds": 2, "factor": 3, "design": "algorithm1"}
    assert np.array(data["wide"]).shape == (20, 20, 20)


def test_shipped_worlds_load_through_the_bounded_loader():
    for name in (PACKAGE / "core" / "worlds").glob("*.yaml"):
        assert load_world(name.stem).domains


def test_check_refuses_a_bomb_in_one_line_before_walking_it(tmp_path, capsys):
    """The issue's case: a 1 KB file that kept `mixscale check` busy for minutes."""
    base = (ROOT / "config" / "examples" / "simulated-demo.yaml").read_text()
    path = tmp_path / "bomb.yaml"
    path.write_text(base + "\nmodel:\n  type: gpt2\n  " + laughs(8, 9).replace("\n", "\n  "))
    assert path.stat().st_size < 2000
    assert main(["check", "--configfile", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "more than 1,000,000 values" in err


def yaml_loads_in_package() -> list[str]:
    """Every call that parses YAML in the package, as 'file:line'."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "yaml"
                and node.func.attr in {"load", "safe_load", "full_load", "unsafe_load", "load_all"}
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


# YAML parsed outside safe_yaml, and why that is safe: not a user's file.
NOT_USER_FILES = {
    "config/check.py": "the schema, package data",
    "config/profile.py": "the profile template after load_yaml_config read it bounded",
}


def test_users_yaml_is_parsed_only_by_the_bounded_loader():
    """A new reader of users' YAML must go through mixscale.core.safe_yaml (the class)."""
    unbounded = [
        where
        for where in yaml_loads_in_package()
        if not where.startswith("core/safe_yaml.py") and where.split(":")[0] not in NOT_USER_FILES
    ]
    assert unbounded == []
    assert any(w.startswith("core/safe_yaml.py") for w in yaml_loads_in_package())


def test_deeply_nested_json_settings_are_one_line(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{" + '"a": [' * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match="invalid JSON/YAML"):
        json_or_file(str(path))


# --- compare and table: each run once, as planned, at the target ----------------------------

WORLD = "redpajama"
TARGET = 1e9


def simulated_run(run_id: str, tokens: dict[str, float], seed: int, method=None) -> dict:
    from mixscale.train.backends import train

    spec = {"id": run_id, "stage": "verify", "seed": seed, "tokens": tokens, "method": method}
    return train(spec, "simulate", WORLD, 4, None)


def mixture(weights: dict[str, float], total: float = TARGET) -> dict[str, float]:
    return {d: w * total for d, w in weights.items()}


UNIFORM = dict.fromkeys(load_world(WORLD).domains, 1 / 7)
NATURAL = dict(zip(UNIFORM, [0.6, 0.1, 0.05, 0.05, 0.1, 0.05, 0.05], strict=True))


def write_runs(folder: Path, runs: list[dict]) -> list[str]:
    paths = []
    for run in runs:
        path = folder / run["run"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run))
        paths.append(str(path))
    return paths


def verification_runs() -> list[dict]:
    return [
        simulated_run(f"verify-{m}-s{s}", mixture(w), s, m)
        for m, w in (("uniform", UNIFORM), ("natural", NATURAL))
        for s in range(3)
    ]


def refused(call, *args) -> str:
    with pytest.raises(InputError) as caught:
        call(*args)
    line = caught.value.one_line()
    assert "\n" not in line
    return line


def compare_runs(paths: list[str]) -> dict:
    from mixscale.evaluate.verify import compare

    return compare(paths, TARGET, WORLD)


def test_compare_accepts_each_method_s_seeds_at_the_target(tmp_path):
    result = compare_runs(write_runs(tmp_path, verification_runs()))
    assert {m: v["seeds"] for m, v in result["methods"].items()} == {"uniform": 3, "natural": 3}


def duplicated_inputs(tmp_path: Path, paths: list[str]) -> dict[str, list[str]]:
    """Generated: every run passed twice, by the same path, a symlink, a hard link, a copy."""
    cases = {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(paths):
        link, hard, copy = (tmp_path / f"{kind}{k}.json" for kind in ("link", "hard", "copy"))
        link.symlink_to(path)
        hard.hardlink_to(path)
        copy.write_text(Path(path).read_text())
        for kind, twin in (("path", path), ("symlink", link), ("hard link", hard), ("copy", copy)):
            cases[f"run {k} twice ({kind})"] = [*paths, str(twin)]
    return cases


def test_compare_refuses_a_run_counted_twice(tmp_path):
    paths = write_runs(tmp_path, verification_runs())
    cases = duplicated_inputs(tmp_path, paths)
    assert len(cases) == 4 * len(paths)
    for name, case in cases.items():
        line = refused(compare_runs, case)
        assert "pass each run's metrics.json once" in line, name


def test_compare_refuses_two_runs_of_one_method_and_seed(tmp_path):
    runs = verification_runs()
    for k, run in enumerate(runs):  # each run again, under another id, with the same seed
        again = {**run, "run": f"{run['run']}-again"}
        paths = write_runs(tmp_path / str(k), [*runs, again])
        line = refused(compare_runs, paths)
        assert f"method '{run['method']}' has seed {run['seed']} twice" in line


def test_compare_refuses_mixed_mixtures_within_one_method(tmp_path):
    runs = verification_runs()
    for k, run in enumerate(runs):  # each run retrained on the other method's mixture
        other = NATURAL if run["method"] == "uniform" else UNIFORM
        runs_k = list(runs)
        runs_k[k] = simulated_run(run["run"], mixture(other), run["seed"], run["method"])
        line = refused(compare_runs, write_runs(tmp_path / str(k), runs_k))
        assert f"method '{run['method']}' trained another mixture" in line


@pytest.mark.parametrize("scale", [0.1, 0.5, 0.98, 1.02, 3.0])
def test_compare_refuses_runs_at_another_scale(tmp_path, scale):
    runs = verification_runs()
    for k, run in enumerate(runs):
        weights = UNIFORM if run["method"] == "uniform" else NATURAL
        runs_k = list(runs)
        runs_k[k] = simulated_run(
            run["run"], mixture(weights, TARGET * scale), run["seed"], run["method"]
        )
        line = refused(compare_runs, write_runs(tmp_path / str(k), runs_k))
        assert "not at the target" in line and "total_tokens" in line


def test_compare_accepts_sequence_rounding_of_the_target(tmp_path):
    runs = verification_runs()
    runs[0] = simulated_run(runs[0]["run"], mixture(UNIFORM, TARGET * 1.001), 0, "uniform")
    assert compare_runs(write_runs(tmp_path, runs))["methods"]["uniform"]["seeds"] == 3


def scale_runs() -> list[dict]:
    """One DDO scale's runs: a base and each domain x3, two seeds."""
    base = mixture(UNIFORM, 1e8)
    runs = [simulated_run(f"base-s{s}", base, s) for s in range(2)]
    for d in base:
        up = {**base, d: base[d] * 3}
        runs += [simulated_run(f"{d}-up-s{s}", up, s) for s in range(2)]
    return runs


def table_of_runs(paths: list[str], tmp_path: Path):
    from mixscale.evaluate.verify import run_table

    return run_table(paths, str(tmp_path / "table.tsv"))


def test_table_takes_the_runs_as_planned(tmp_path):
    runs = scale_runs()
    table = table_of_runs(write_runs(tmp_path, runs), tmp_path)
    assert table.n_runs == len(runs) and len(table.mixture_groups()) == len(runs) // 2


def edited_tokens(run: dict) -> dict[str, dict]:
    """Generated: the run's metrics with one domain's tokens edited, for every domain, alone
    and with total_tokens and weights edited to agree (only the plan then disagrees)."""
    cases = {}
    for d in run["tokens"]:
        tokens = {**run["tokens"], d: run["tokens"][d] * 1.5}
        total = sum(tokens.values())
        weights = {k: v / total for k, v in tokens.items()}
        cases[f"{d} alone"] = {**run, "tokens": tokens}
        cases[f"{d} consistently"] = {
            **run,
            "tokens": tokens,
            "total_tokens": total,
            "weights": weights,
        }
    return cases


def test_table_refuses_metrics_edited_to_other_tokens(tmp_path):
    runs = scale_runs()
    n = 0
    for k in (0, 3, len(runs) - 1):  # the base, a perturbed run, the last run
        for name, edited in edited_tokens(runs[k]).items():
            folder = tmp_path / f"{k}-{name.replace(' ', '-')}"
            paths = write_runs(folder, [*runs[:k], edited, *runs[k + 1 :]])
            line = refused(table_of_runs, paths, folder)
            assert paths[k] in line and "tokens" in line and "rerun" in line
            n += 1
    assert n == 3 * 2 * 7


def test_table_refuses_a_run_counted_twice(tmp_path):
    runs = scale_runs()
    paths = write_runs(tmp_path, runs)
    for name, case in duplicated_inputs(tmp_path / "twins", paths[:3]).items():
        line = refused(table_of_runs, [*paths[3:], *case], tmp_path)
        assert "pass each run's metrics.json once" in line, name


# --- RegMix and Data Mixing Laws: designs they cannot learn from ----------------------------

TOTAL = 1e7
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sampled_table(weights: np.ndarray, seed: int = 0) -> RunTable:
    """Runs of these mixtures at one total, losses from a smooth world plus seed noise."""
    rng = np.random.default_rng(seed)
    n, m = weights.shape
    tokens = np.round(weights * TOTAL)
    tokens[:, -1] += TOTAL - tokens.sum(axis=1)  # exact totals
    a = np.linspace(0.5, 1.5, m)
    losses = 2.0 + (a * np.exp(-3.0 * weights)).sum(axis=1) + rng.normal(0, 1e-3, n)
    return RunTable(
        "runs.tsv",
        [f"d{j}" for j in range(m)],
        ["all"],
        tokens,
        losses[:, None],
        [f"r{i}" for i in range(n)],
        [str(i % 2) for i in range(n)],
    )


def regmix(table: RunTable, regressor: str = "linear"):
    return regmix_optimum(table, Objective("mean"), regressor=regressor, candidates=2000, top_k=16)


METHODS = {
    "RegMix, linear": lambda t: regmix(t, "linear"),
    "RegMix, LightGBM": lambda t: regmix(t, "lightgbm"),
    "Data Mixing Laws": lambda t: dml_optimum(t, Objective("mean")),
}


@FEW
@given(m=st.integers(2, 6), runs=st.integers(4, 24), seed=st.integers(0, 10_000))
def test_identical_mixtures_are_refused_by_every_method(m, runs, seed):
    """Before: RegMix reported confident weights and an in-sample Spearman of 1."""
    mixture = np.random.default_rng(seed).dirichlet(np.ones(m))
    table = sampled_table(np.tile(mixture, (runs, 1)), seed)
    for name, method in METHODS.items():
        with pytest.raises(InputError, match=f"all {runs} runs train one mixture"):
            method(table)
        assert name


@FEW
@given(m=st.integers(3, 7), seed=st.integers(0, 10_000), data=st.data())
def test_fewer_mixtures_than_parameters_are_refused(m, seed, data):
    needs = {"RegMix, linear": m, "RegMix, LightGBM": 4, "Data Mixing Laws": m + 1}
    for name, method in METHODS.items():
        distinct = data.draw(st.integers(2, needs[name] - 1), label=name)
        mixtures = np.random.default_rng(seed).dirichlet(np.ones(m), distinct)
        table = sampled_table(np.repeat(mixtures, 3, axis=0), seed)  # 3 seeds of each
        with pytest.raises(InputError, match=f"{distinct} distinct mixtures for {m} domains"):
            method(table)


def held_design(m: int, held: int, weight: float, runs: int, seed: int) -> np.ndarray:
    """Mixtures sampled over every domain but ``held``, which has ``weight`` in each."""
    free = np.random.default_rng(seed).dirichlet(np.ones(m - 1), runs) * (1 - weight)
    return np.insert(free, held, weight, axis=1)


@FEW
@given(
    m=st.integers(3, 6),
    held=st.integers(0, 5),
    weight=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 10_000),
)
def test_a_domain_never_varied_is_held_at_its_weight_with_a_warning(m, held, weight, seed):
    """Before: Data Mixing Laws put all weight on a domain held fixed in every run."""
    held %= m
    table = sampled_table(held_design(m, held, weight, 24, seed), seed)
    for name, method in METHODS.items():
        fit, best, *_ = method(table)
        assert best[held] == pytest.approx(weight, abs=1e-9), name
        assert abs(best.sum() - 1) < 1e-9
        (warning,) = fit.warnings
        assert f"domain 'd{held}' has weight {weight:.4g} in every run" in warning
        assert fit.to_json()["held_domains"] == {f"d{held}": pytest.approx(weight)}


@pytest.mark.parametrize("command", ["regmix", "dml"])
def test_the_warning_is_in_weights_json_and_on_stderr(command, tmp_path, capsys):
    table = sampled_table(held_design(4, 2, 0.25, 24, 1))
    runs, out = tmp_path / "runs.tsv", tmp_path / "weights.json"
    table.save(runs)
    assert main([command, "--runs", str(runs), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["weights"]["d2"] == pytest.approx(0.25)
    (warning,) = result["warnings"]
    assert f"mixscale {command}: warning: {warning}" in capsys.readouterr().err


def test_a_configured_prior_that_never_varies_a_domain_fails_the_check():
    from mixscale.methods.sampled import DataMixingLaws

    base = yaml_config("simulated-methods.yaml")
    base["verify"]["natural"] = {**base["verify"]["natural"], "github": 0}
    base["methods"]["dml"] = {**base["methods"].get("dml", {}), "prior": "natural"}
    config = with_defaults(base)
    with pytest.raises(InputError, match="'github' has weight 0 in every proxy run"):
        DataMixingLaws().check(config, list(config.verify.natural))


def yaml_config(name: str) -> dict:
    return load_yaml_config(str(ROOT / "config" / "examples" / name))


# --- AutoScale's predict: scales too close to extrapolate from -----------------------------


def predict_cli(tmp_path: Path, low: float, high: float, target: float, *flags: str):
    """`mixscale predict` from optima at two scales (domains growing at different rates)."""
    paths = []
    for total in (low, high):
        growth = np.log(total / low)
        tokens = {"a": 1.0 * np.exp(0.2 * growth), "b": 1.0 * np.exp(0.05 * growth)}
        scale = total / sum(tokens.values())
        path = tmp_path / f"opt{total:g}.json"
        path.write_text(json.dumps({"tokens": {d: v * scale for d, v in tokens.items()}}))
        paths += ["--optimum", str(path)]
    out = tmp_path / "pred.json"
    code = main(["predict", *paths, "--target", f"{target:g}", "--out", str(out), *flags])
    return code, (json.loads(out.read_text()) if code == 0 else None)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("ratio", [1.0001, 1.01, 1.1, 1.3, 1.49])
def test_predict_refuses_scales_too_close_to_extrapolate(tmp_path, capsys, ratio, discrete):
    flags = ["--discrete"] if discrete else []
    code, _ = predict_cli(tmp_path, 1e6, 1e6 * ratio, 1e8, *flags)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--optimum" in err and "x apart" in err and "little more than their own error" in err


def test_predict_between_close_scales_is_an_interpolation(tmp_path, capsys):
    code, result = predict_cli(tmp_path, 1e6, 1.01e6, 1.005e6)
    assert code == 0 and result["warnings"] == [] and result["regime"] == "interpolation"


@pytest.mark.parametrize(("ratio", "target", "warned"), [(2, 1e8, False), (2, 1e12, True)])
def test_predict_warns_when_the_target_is_many_spans_away(tmp_path, capsys, ratio, target, warned):
    code, result = predict_cli(tmp_path, 1e6, 1e6 * ratio, target)
    assert code == 0
    assert bool(result["warnings"]) is warned
    if warned:
        assert "spans" in result["warnings"][0] and "x apart" in result["warnings"][0]
        assert result["warnings"][0] in capsys.readouterr().err
