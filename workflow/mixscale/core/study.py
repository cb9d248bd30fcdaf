"""The method study: when does AutoScale beat transferring the largest DDO optimum?

In a simulated world (whose optimum at every scale is known) each trial runs what a user would:
DDO (Algorithm 1, noisy runs) at each proxy scale, then

- ``autoscale``: AutoScale from the two largest proxy optima,
- ``autoscale_ls``: AutoScale by least squares over every proxy scale (three or more),
- ``transfer``: the largest proxy scale's DDO weights used at the target,

each scored by the share of the true optimum's gain over uniform it captures at the target
(uniform scores 0, the optimum 1). The same predictions from the *exact* optima at the proxy
scales (``*_exact``) separate the two errors: exact = the method's extrapolation error alone;
exact minus fitted = what noise and fit form cost.

One factor is varied at a time around a baseline, over many trials whose noise differs; every
number is a mean over trials with its 90% interval, and AutoScale vs transfer is compared paired
by trial.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixscale.core.ddo import Constraints, optimize
from mixscale.core.fit import FitResult, fit_runs
from mixscale.core.intervals import mean_interval, paired_difference
from mixscale.core.predict import Optimum, predict_continuous
from mixscale.core.runtable import RunTable
from mixscale.core.world import World, load_world, score, world_from_dict
from mixscale.errors import InputError

METHODS = ("autoscale", "autoscale_ls", "transfer")
FACTORS = ("sigma", "seeds", "factor", "scales", "target", "trust_region")


@dataclass(frozen=True)
class Setting:
    """What one trial runs. ``sigma``: the noise shared by a run's evaluation domains (each
    domain adds independent noise of sigma / 2, the shipped RedPajama world's ratio)."""

    sigma: float = 0.004
    seeds: int = 1
    factor: float = 3.0
    scales: tuple[float, ...] = (3e7, 3e8)
    target: float = 1e10
    trust_region: bool = True

    def label(self, factor: str) -> str:
        value = getattr(self, factor)
        if factor == "scales":
            return "/".join(f"{s:.3g}" for s in value)
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"{value:g}"


def random_world(seed: int, domains: int = 6) -> World:
    """A world drawn at random: each domain mostly feeds its own skill and leaks a little into
    the others; skills' sizes (beta) and speeds (gamma) span the shipped RedPajama world's."""
    rng = np.random.default_rng(seed)
    leak = (
        rng.dirichlet(np.full(domains, 0.5), size=domains)
        * rng.uniform(0.05, 0.3, domains)[:, None]
    )
    A = np.eye(domains) * 1.0 + leak.T
    A = A / A.sum(axis=0, keepdims=True)  # each token counts once in total equivalent data
    skills = [
        {"name": f"s{k}", "beta": float(b), "gamma": float(g)}
        for k, (b, g) in enumerate(
            zip(rng.uniform(8, 70, domains), rng.uniform(0.15, 0.46, domains), strict=True)
        )
    ]
    return world_from_dict(
        {
            "name": f"random{seed}",
            "domains": [f"d{j}" for j in range(domains)],
            "skills": skills,
            "A": A.tolist(),
            "irreducible": 1.9,
        },
        f"random world {seed}",
    )


def world_named(name: str) -> World:
    """A shipped world by name, or ``random:<seed>``."""
    if name.startswith("random:"):
        try:
            return random_world(int(name.split(":", 1)[1]))
        except ValueError as exc:
            raise InputError("study", "worlds", f"{name!r}", "write random:<integer>") from exc
    return load_world(name)


def sweep_table(
    world: World,
    total: float,
    factor: float,
    seeds: int,
    trial: int,
    base: np.ndarray | None = None,
    design: str = "algorithm1",
) -> RunTable:
    """Algorithm 1 at one scale: the base mixture (``base`` proportions; uniform by default),
    each domain x factor and / factor, ``seeds`` replicates each, with the world's noise; the
    noise of every run differs between trials. ``design="fixed_total"``: Section 2.2's design
    instead (the domain's share x factor and / factor, the others rescaled to the same total)."""
    m = len(world.domains)
    centre = np.full(m, total / m) if base is None else np.asarray(base, float) * total
    mixtures = [centre]
    for j in range(m):
        for f in (factor, 1 / factor):
            if design == "fixed_total":
                n = centre * (total - centre[j] * f) / (total - centre[j])
            else:
                n = centre.copy()
            n[j] = centre[j] * f
            mixtures.append(n)
    tokens, losses, seed_ids = [], [], []
    for n in mixtures:
        for s in range(seeds):
            evals = world.eval_losses(n, seed=1000 * trial + s)
            tokens.append(n)
            losses.append([evals[e] for e in world.eval_domains])
            seed_ids.append(str(s))
    return RunTable(
        source=f"study:{world.name}",
        train_domains=list(world.domains),
        eval_domains=list(world.eval_domains),
        tokens=np.array(tokens),
        losses=np.array(losses),
        run_ids=[f"r{i}" for i in range(len(tokens))],
        seeds=seed_ids,
    )


def _optimum(domains: list[str], tokens: np.ndarray) -> Optimum:
    return Optimum("study", list(domains), np.asarray(tokens, float))


def ddo_optimum(
    table: RunTable, total: float, trust_region: bool = True
) -> tuple[np.ndarray, FitResult]:
    """The DDO optimum (tokens per domain) a user would get at one scale from these runs, and
    the fit it came from."""
    fit = fit_runs(table)
    weights = optimize(fit, total, Constraints(trust_region=trust_region))
    return np.array([weights["tokens"][d] for d in table.train_domains]), fit


def ddo_tokens(world: World, total: float, setting: Setting, trial: int) -> np.ndarray:
    """The DDO optimum from a setting's noisy runs at one proxy scale."""
    noisy = dataclasses.replace(world, sigma=setting.sigma, sigma_domain=setting.sigma / 2)
    table = sweep_table(noisy, total, setting.factor, setting.seeds, trial)
    return ddo_optimum(table, total, setting.trust_region)[0]


def predictions(optima: list[np.ndarray], domains: list[str], target: float) -> dict[str, Any]:
    """Each method's weights at the target from the proxy optima (None where it cannot run)."""
    as_optima = [_optimum(domains, n) for n in optima]
    out: dict[str, Any] = {"transfer": optima[-1] / optima[-1].sum()}
    for name, used in (("autoscale", as_optima[-2:]), ("autoscale_ls", as_optima)):
        if name == "autoscale_ls" and len(as_optima) < 3:
            out[name] = None
            continue
        try:
            pred = predict_continuous(used, target)
            out[name] = np.array([pred["weights"][d] for d in domains])
        except InputError:
            out[name] = None  # counted as a failure, scored as uniform
    return out


def _gain(world: World, weights: np.ndarray | None, target: float, best: np.ndarray) -> float:
    if weights is None:
        return 0.0  # a failed method leaves the user with uniform
    result = score(world, dict(zip(world.domains, weights, strict=True)), target, best)
    return float(result["captured_gain"])


def run_trial(
    world: World, setting: Setting, trial: int, exact: dict[float, np.ndarray]
) -> dict[str, float]:
    """Captured gain of every method, fitted and exact, in one trial."""
    fitted = [ddo_tokens(world, s, setting, trial) for s in setting.scales]
    best = exact[setting.target]
    out: dict[str, float] = {}
    for tag, optima in (("", fitted), ("_exact", [exact[s] for s in setting.scales])):
        for name, weights in predictions(optima, world.domains, setting.target).items():
            if name == "autoscale_ls" and len(setting.scales) < 3:
                continue
            out[name + tag] = _gain(world, weights, setting.target, best)
            if weights is None and not tag:
                out[name + "_failed"] = 1.0
    return out


def summarise(trials: list[dict[str, float]]) -> dict[str, Any]:
    """Means over trials with intervals; AutoScale vs transfer paired by trial."""
    methods = [k for k in trials[0] if not k.endswith("_failed")]
    out: dict[str, Any] = {"trials": len(trials)}
    for name in methods:
        out[name] = mean_interval([t[name] for t in trials])
    for name in ("autoscale", "autoscale_ls"):
        if name not in trials[0]:
            continue
        a = {str(i): t[name] for i, t in enumerate(trials)}
        b = {str(i): t["transfer"] for i, t in enumerate(trials)}
        diff = paired_difference(a, b)
        diff["wins"] = float(np.mean([t[name] > t["transfer"] for t in trials]))
        out[f"{name}_minus_transfer"] = diff
        out[f"{name}_failed"] = int(sum(t.get(f"{name}_failed", 0) for t in trials))
    return out


def settings_of(baseline: Setting, vary: dict[str, list[Any]]) -> list[tuple[str, Setting]]:
    """The baseline, and one setting per value of each varied factor (one factor at a time;
    a value equal to the baseline's is listed again, so each factor's row shows it)."""
    out = [("baseline", baseline)]
    for factor, values in vary.items():
        if factor not in FACTORS:
            raise InputError(
                "study", f"vary.{factor}", "unknown factor", f"use {', '.join(FACTORS)}"
            )
        for value in values:
            if factor == "scales":
                value = tuple(float(v) for v in value)
            out.append((factor, dataclasses.replace(baseline, **{factor: value})))
    return out


def run_study(
    worlds: list[str], baseline: Setting, vary: dict[str, list[Any]], trials: int
) -> dict[str, Any]:
    """Every (world, setting): ``trials`` trials, summarised."""
    rows = []
    for name in worlds:
        world = world_named(name)
        done: dict[Setting, dict[str, Any]] = {}  # the baseline's value of a factor: run once
        for factor, setting in settings_of(baseline, vary):
            if setting not in done:
                exact = {s: world.optimum(s) for s in {*setting.scales, setting.target}}
                results = [run_trial(world, setting, t, exact) for t in range(trials)]
                done[setting] = summarise(results)
            rows.append(
                {
                    "world": name,
                    "factor": factor,
                    "value": setting.label(factor) if factor != "baseline" else "",
                    "setting": {**dataclasses.asdict(setting), "scales": list(setting.scales)},
                    "is_baseline": setting == baseline,
                    **done[setting],
                }
            )
    return {"worlds": worlds, "trials": trials, "rows": rows}


def study_from_dict(data: Any, source: str) -> dict[str, Any]:
    """A study file's ``worlds``, ``trials``, ``baseline`` and ``vary``, checked: a bad value
    stops with one line naming the field."""
    if not isinstance(data, dict):
        raise InputError(source, "", "not a mapping", "write worlds, trials, baseline and vary")
    unknown = set(data) - {"worlds", "trials", "baseline", "vary"}
    if unknown:
        field_name = sorted(unknown)[0]
        raise InputError(source, field_name, "unknown key", "use worlds, trials, baseline, vary")
    worlds = data.get("worlds", ["redpajama"])
    if not isinstance(worlds, list) or not worlds:
        raise InputError(source, "worlds", "not a non-empty list", "e.g. [redpajama, random:1]")
    for name in worlds:
        try:
            world_named(str(name))
        except InputError as exc:
            raise InputError(source, "worlds", f"{name!r}: {exc.problem}", exc.fix) from exc
    trials = data.get("trials", 30)
    if not isinstance(trials, int) or isinstance(trials, bool) or not 2 <= trials <= 10000:
        raise InputError(source, "trials", f"{trials!r}", "an integer from 2 to 10000")
    baseline = setting_from_dict(data.get("baseline", {}), source, "baseline")
    vary = data.get("vary", {})
    if not isinstance(vary, dict):
        raise InputError(source, "vary", "not a mapping", "factor: [values]")
    for factor, values in vary.items():
        if factor not in FACTORS:
            raise InputError(
                source, f"vary.{factor}", "unknown factor", f"use {', '.join(FACTORS)}"
            )
        if not isinstance(values, list) or not values:
            raise InputError(source, f"vary.{factor}", "not a non-empty list", "list its values")
        for value in values:
            setting_from_dict({factor: value}, source, "vary")
    return {
        "worlds": [str(w) for w in worlds],
        "trials": trials,
        "baseline": baseline,
        "vary": vary,
    }


def setting_from_dict(values: Any, source: str, where: str) -> Setting:
    if not isinstance(values, dict):
        raise InputError(source, where, "not a mapping", f"give {', '.join(FACTORS)}")
    for key in values:
        if key not in FACTORS:
            raise InputError(source, f"{where}.{key}", "unknown key", f"use {', '.join(FACTORS)}")
    setting = Setting(**{k: _coerce(k, v, source, where) for k, v in values.items()})
    checks = (
        ("sigma", isinstance(setting.sigma, int | float) and setting.sigma >= 0, "a number >= 0"),
        ("seeds", isinstance(setting.seeds, int) and 1 <= setting.seeds <= 20, "1 to 20"),
        ("factor", isinstance(setting.factor, int | float) and setting.factor > 1, "> 1"),
        (
            "scales",
            len(setting.scales) >= 2 and all(np.diff(setting.scales) > 0) and setting.scales[0] > 0,
            "two or more increasing token totals",
        ),
        ("target", isinstance(setting.target, int | float) and setting.target > 0, "> 0"),
        ("trust_region", isinstance(setting.trust_region, bool), "true or false"),
    )
    for key, ok, fix in checks:
        if not ok:
            raise InputError(source, f"{where}.{key}", f"{getattr(setting, key)!r}", fix)
    return setting


def _coerce(key: str, value: Any, source: str, where: str) -> Any:
    """Numbers as numbers (YAML reads 3e7, without a dot, as a string)."""
    try:
        if key == "scales":
            return tuple(float(v) for v in value)
        if key in ("sigma", "factor", "target"):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"{where}.{key}", f"{value!r}", "give numbers") from exc
    return value
