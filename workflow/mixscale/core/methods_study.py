"""Every mixture method against the true optimum, over many noise draws of a simulated world.

What the workflow's simulated example (``config/examples/simulated-methods.yaml``) does once, a
trial here does with fresh noise and a fresh sample of proxy mixtures:

- the DDO sweep (Algorithm 1, noisy runs) at every proxy scale, then ``autoscale`` (AutoScale
  from every DDO optimum: the workflow's ``predict``) and ``ddo_largest`` (the largest scale's
  optimum transferred);
- ``regmix`` and ``dml``: their own proxy runs over mixtures sampled with RegMix's generator,
  noisy like every run, then the same fit and optimum as ``mixscale regmix|dml``;
- fixed weights: ``natural`` and ``reference`` where the world's entry gives them.

Each method's weights are scored at every target by the share of the true optimum's gain over
uniform they capture (uniform 0, the optimum 1); over trials, the mean with its 90% interval, and
each method minus AutoScale paired by trial. ``compute_matched: true`` gives RegMix and DML the
DDO sweep's proxy tokens (as many runs as fit), as the workflow's ``methods.proxy_tokens: ddo``.
DoReMi learns while a real model trains (per-step losses), which a simulated world does not have:
it is compared on real training only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixscale.core.intervals import mean_interval, paired_difference
from mixscale.core.mixlaws import dml_optimum
from mixscale.core.objective import Objective
from mixscale.core.predict import Optimum, predict_continuous
from mixscale.core.regmix import regmix_optimum, sample_mixtures
from mixscale.core.runtable import RunTable
from mixscale.core.study import Setting, ddo_optimum, setting_from_dict, sweep_table, world_named
from mixscale.core.world import World, score
from mixscale.errors import InputError

METHODS = ("autoscale", "ddo_largest", "regmix", "dml", "natural", "reference")
SAMPLED = ("regmix", "dml")
TRIAL_SEEDS = 1000  # trial t's runs use seeds 1000 t + s (the method study's convention)
PROXY_SEED_OFFSET = 500  # the sampled methods' runs: seeds 1000 t + 500 + s


@dataclass(frozen=True)
class Sampled:
    """A sampled-mixture method's proxy runs (as ``methods.regmix|dml`` in a workflow config)."""

    runs: int
    tokens: float
    prior: str = "uniform"  # natural | uniform
    temperature: float = 1.0
    seeds: int = 1
    seed: int = 0  # of the sampled mixtures; trial t samples with seed + t
    regressor: str = "lightgbm"  # regmix
    candidates: int = 100_000  # regmix
    top_k: int = 128  # regmix
    huber_delta: float = 0.05  # dml


@dataclass(frozen=True)
class WorldEntry:
    name: str
    natural: dict[str, float] | None = None
    reference: dict[str, float] | None = None


@dataclass(frozen=True)
class MethodsStudy:
    worlds: tuple[WorldEntry, ...]
    trials: int
    ddo: Setting
    targets: tuple[float, ...]
    methods: tuple[str, ...]
    sampled: dict[str, Sampled] = field(default_factory=dict)
    compute_matched: tuple[bool, ...] = (False,)


def sweep_tokens(world: World, ddo: Setting) -> float:
    """Tokens the DDO sweep trains (every scale, every mixture, every seed). Around a uniform
    base of total T, domain j x f adds (f - 1) T / m and / f adds (1/f - 1) T / m."""
    m = len(world.domains)
    per_base = 1 + 2 * m + (ddo.factor + 1 / ddo.factor - 2)
    return float(sum(scale * per_base * ddo.seeds for scale in ddo.scales))


def proxy_count(settings: Sampled, budget: float | None) -> int:
    """The configured runs, or as many as the budget pays for (compute-matched)."""
    if budget is None:
        return settings.runs
    return int(budget // (settings.tokens * settings.seeds))


def _weights(entry: WorldEntry, kind: str, domains: list[str]) -> np.ndarray | None:
    given = getattr(entry, kind)
    if given is None:
        return None
    w = np.array([float(given.get(d, 0.0)) for d in domains])
    return w / w.sum()


def _prior(entry: WorldEntry, settings: Sampled, domains: list[str]) -> np.ndarray:
    if settings.prior == "natural":
        natural = _weights(entry, "natural", domains)
        if natural is not None:
            return natural
    return np.full(len(domains), 1 / len(domains))


def proxy_table(
    world: World, entry: WorldEntry, settings: Sampled, count: int, trial: int
) -> RunTable:
    """A sampled method's proxy runs in one trial: mixtures from RegMix's generator (a new sample
    each trial), each trained ``seeds`` times with the world's noise."""
    prior = _prior(entry, settings, list(world.domains))
    mixtures = sample_mixtures(prior, count, settings.seed + trial, None, settings.temperature)
    tokens, losses, seeds = [], [], []
    for weights in mixtures:
        n = weights * settings.tokens
        for s in range(settings.seeds):
            evals = world.eval_losses(n, seed=TRIAL_SEEDS * trial + PROXY_SEED_OFFSET + s)
            tokens.append(n)
            losses.append([evals[e] for e in world.eval_domains])
            seeds.append(str(s))
    return RunTable(
        source=f"methods-study:{world.name}",
        train_domains=list(world.domains),
        eval_domains=list(world.eval_domains),
        tokens=np.array(tokens),
        losses=np.array(losses),
        run_ids=[f"m{i}" for i in range(len(tokens))],
        seeds=seeds,
    )


def sampled_weights(
    name: str, table: RunTable, world: World, entry: WorldEntry, settings: Sampled
) -> np.ndarray:
    """RegMix's or DML's weights from their proxy table (the objective: the mean loss, the
    simulated world's truth)."""
    objective = Objective(kind="mean")
    if name == "dml":
        _, weights = dml_optimum(table, objective, delta=settings.huber_delta)
        return weights
    prior = _prior(entry, settings, list(world.domains))
    _, weights, _, _ = regmix_optimum(
        table,
        objective,
        prior=prior,
        regressor=settings.regressor,
        candidates=settings.candidates,
        top_k=settings.top_k,
    )
    return weights


def trial_weights(
    world: World, entry: WorldEntry, spec: MethodsStudy, trial: int, matched: bool
) -> dict[str, dict[float, np.ndarray | None]]:
    """Every method's weights at every target in one trial (None: the method failed, which
    leaves the user with uniform)."""
    noisy = dataclasses.replace(world, sigma=spec.ddo.sigma, sigma_domain=spec.ddo.sigma / 2)
    domains = list(world.domains)
    optima = []
    for scale in spec.ddo.scales:
        table = sweep_table(noisy, scale, spec.ddo.factor, spec.ddo.seeds, trial)
        optima.append(ddo_optimum(table, scale, spec.ddo.trust_region)[0])
    out: dict[str, dict[float, np.ndarray | None]] = {}
    for name in spec.methods:
        if name == "autoscale":
            out[name] = {t: _autoscale(domains, optima, t) for t in spec.targets}
        elif name == "ddo_largest":
            out[name] = dict.fromkeys(spec.targets, optima[-1] / optima[-1].sum())
        elif name in SAMPLED:
            settings = spec.sampled[name]
            budget = sweep_tokens(world, spec.ddo) if matched else None
            table = proxy_table(noisy, entry, settings, proxy_count(settings, budget), trial)
            try:
                weights = sampled_weights(name, table, world, entry, settings)
            except InputError:
                weights = None
            out[name] = dict.fromkeys(spec.targets, weights)
        else:
            out[name] = dict.fromkeys(spec.targets, _weights(entry, name, domains))
    return out


def _autoscale(domains: list[str], optima: list[np.ndarray], target: float) -> np.ndarray | None:
    try:
        pred = predict_continuous([Optimum("study", domains, n) for n in optima], target)
    except InputError:
        return None
    return np.array([pred["weights"][d] for d in domains])


def captured(world: World, weights: np.ndarray | None, target: float, best: np.ndarray) -> float:
    if weights is None:
        return 0.0
    result = score(world, dict(zip(world.domains, weights, strict=True)), target, best)
    return float(result["captured_gain"])


def proxy_compute(world: World, spec: MethodsStudy, name: str, matched: bool) -> float | None:
    """Tokens of the proxy runs a method needs, per token of one run at the largest target."""
    largest = max(spec.targets)
    if name == "autoscale":
        return sweep_tokens(world, spec.ddo) / largest
    if name == "ddo_largest":
        one = dataclasses.replace(spec.ddo, scales=(spec.ddo.scales[-1],))
        return sweep_tokens(world, one) / largest
    if name in SAMPLED:
        settings = spec.sampled[name]
        budget = sweep_tokens(world, spec.ddo) if matched else None
        count = proxy_count(settings, budget)
        return count * settings.seeds * settings.tokens / largest
    return 0.0


def run_methods_study(spec: MethodsStudy) -> dict[str, Any]:
    """Every (world, compute matching): ``trials`` trials of every method, summarised."""
    rows = []
    for entry in spec.worlds:
        world = world_named(entry.name)
        exact = {t: world.optimum(t) for t in spec.targets}
        for matched in spec.compute_matched:
            gains: dict[str, dict[float, list[float]]] = {
                m: {t: [] for t in spec.targets} for m in spec.methods
            }
            failed = dict.fromkeys(spec.methods, 0)
            for trial in range(spec.trials):
                weights = trial_weights(world, entry, spec, trial, matched)
                for name, per_target in weights.items():
                    failed[name] += per_target[spec.targets[0]] is None
                    for target, w in per_target.items():
                        gains[name][target].append(captured(world, w, target, exact[target]))
            rows.append(_summary(world, entry, spec, matched, gains, failed))
    return {
        "kind": "methods",
        "trials": spec.trials,
        "ddo": {**dataclasses.asdict(spec.ddo), "scales": list(spec.ddo.scales)},
        "targets": list(spec.targets),
        "methods": list(spec.methods),
        "sampled": {k: dataclasses.asdict(v) for k, v in spec.sampled.items()},
        "rows": rows,
    }


def _summary(world, entry, spec, matched, gains, failed) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for name in spec.methods:
        if name in ("natural", "reference") and getattr(entry, name) is None:
            continue
        per_target = {}
        for target in spec.targets:
            values = gains[name][target]
            summary = mean_interval(values)
            summary["median"] = float(np.median(values))
            if name != "autoscale" and "autoscale" in gains:
                paired = paired_difference(
                    dict(enumerate(values)), dict(enumerate(gains["autoscale"][target]))
                )
                summary["minus_autoscale"] = {
                    k: paired[k] for k in ("mean", "interval", "distinguishable")
                }
            per_target[f"{target:g}"] = summary
        methods[name] = {
            "targets": per_target,
            "proxy_compute": proxy_compute(world, spec, name, matched),
            "failed_trials": int(failed[name]),
        }
        if name in SAMPLED:
            budget = sweep_tokens(world, spec.ddo) if matched else None
            methods[name]["proxy_runs"] = proxy_count(spec.sampled[name], budget)
    return {"world": entry.name, "compute_matched": matched, "methods": methods}


# --- the study file ------------------------------------------------------------------------

KEYS = ("worlds", "trials", "ddo", "targets", "methods", "regmix", "dml", "compute_matched")
SAMPLED_DEFAULTS = {
    "regmix": {"prior": "natural", "temperature": 0.5, "seed": 42},
    "dml": {"prior": "uniform", "temperature": 1.0, "seed": 7},
}


def methods_study_from_dict(data: Any, source: str) -> MethodsStudy:
    """A methods-study file, checked: a bad value stops with one line naming the field."""
    if not isinstance(data, dict):
        raise InputError(source, "", "not a mapping", f"write {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InputError(source, unknown[0], "unknown key", f"use {', '.join(KEYS)}")
    worlds = _worlds(data.get("worlds"), source)
    trials = data.get("trials", 20)
    if not isinstance(trials, int) or isinstance(trials, bool) or not 2 <= trials <= 10000:
        raise InputError(source, "trials", f"{trials!r}", "an integer from 2 to 10000")
    ddo = setting_from_dict(data.get("ddo", {}), source, "ddo")
    targets = _numbers(data.get("targets"), source, "targets")
    methods = data.get("methods", list(METHODS))
    if not isinstance(methods, list) or not methods:
        raise InputError(source, "methods", "not a non-empty list", f"any of {list(METHODS)}")
    for name in methods:
        if name not in METHODS:
            raise InputError(
                source, "methods", f"unknown method {name!r}", f"use any of {list(METHODS)}"
            )
    sampled = {
        name: _sampled(data.get(name), source, name, len(world_named(worlds[0].name).domains))
        for name in SAMPLED
        if name in methods
    }
    matched = data.get("compute_matched", [False])
    if (
        not isinstance(matched, list)
        or not matched
        or not all(isinstance(v, bool) for v in matched)
    ):
        raise InputError(source, "compute_matched", f"{matched!r}", "e.g. [false, true]")
    return MethodsStudy(
        worlds=tuple(worlds),
        trials=trials,
        ddo=ddo,
        targets=tuple(targets),
        methods=tuple(methods),
        sampled=sampled,
        compute_matched=tuple(matched),
    )


def _worlds(value: Any, source: str) -> list[WorldEntry]:
    if not isinstance(value, dict) or not value:
        raise InputError(
            source, "worlds", "not a non-empty mapping", "e.g. {redpajama: {natural: {...}}}"
        )
    entries = []
    for name, extra in value.items():
        try:
            world = world_named(str(name))
        except InputError as exc:
            raise InputError(source, f"worlds.{name}", exc.problem, exc.fix) from exc
        extra = extra or {}
        if not isinstance(extra, dict) or set(extra) - {"natural", "reference"}:
            raise InputError(
                source, f"worlds.{name}", "unknown keys", "give natural and/or reference"
            )
        weights = {}
        for kind in ("natural", "reference"):
            given = extra.get(kind)
            if given is None:
                continue
            if not isinstance(given, dict) or set(given) != set(world.domains):
                raise InputError(
                    source,
                    f"worlds.{name}.{kind}",
                    "must weigh every domain of the world",
                    f"give {', '.join(world.domains)}",
                )
            values = [given[d] for d in world.domains]
            if not all(isinstance(v, int | float) and v >= 0 for v in values) or sum(values) <= 0:
                raise InputError(
                    source, f"worlds.{name}.{kind}", "weights must be >= 0", "e.g. 0.5"
                )
            weights[kind] = {d: float(v) for d, v in given.items()}
        entries.append(WorldEntry(str(name), **weights))
    return entries


def _numbers(value: Any, source: str, where: str) -> list[float]:
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise InputError(source, where, f"{value!r}", "a list of token counts") from exc
    if not numbers or any(not v > 0 for v in numbers):
        raise InputError(source, where, f"{value!r}", "a non-empty list of token counts > 0")
    return numbers


def _sampled(value: Any, source: str, name: str, domains: int) -> Sampled:
    if not isinstance(value, dict):
        raise InputError(source, name, "missing or not a mapping", "give runs and tokens")
    fields = {f.name for f in dataclasses.fields(Sampled)}
    unknown = sorted(set(value) - fields)
    if unknown:
        raise InputError(source, f"{name}.{unknown[0]}", "unknown key", f"use {sorted(fields)}")
    given = {**SAMPLED_DEFAULTS[name], **value}
    try:
        given["tokens"] = float(given["tokens"])
        settings = Sampled(**given)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(source, name, f"{exc}", "give runs (integer) and tokens") from exc
    checks = (
        ("runs", isinstance(settings.runs, int) and settings.runs >= 4, "an integer >= 4"),
        ("tokens", settings.tokens > 0, "> 0"),
        ("prior", settings.prior in ("natural", "uniform"), "natural or uniform"),
        ("temperature", settings.temperature > 0, "> 0"),
        ("seeds", isinstance(settings.seeds, int) and settings.seeds >= 1, ">= 1"),
    )
    for key, ok, fix in checks:
        if not ok:
            raise InputError(source, f"{name}.{key}", f"{getattr(settings, key)!r}", fix)
    if name == "dml" and settings.runs < domains + 1:
        raise InputError(
            source, "dml.runs", f"{settings.runs} for {domains} domains", f">= {domains + 1}"
        )
    return settings
