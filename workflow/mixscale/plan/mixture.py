"""The runs of a mixture experiment: the DDO sweep per scale and seed (a base run, and per
domain its x factor and / factor runs), and the verification runs per target, method and seed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.methods import check_methods, method
from mixscale.plan.run import Run, distinct_labels, target_label


def _base_weights(config: Config, domains: list[str]) -> dict[str, float]:
    base = config.ddo.base_weights
    if base == "uniform":
        return {d: 1 / len(domains) for d in domains}
    missing = [d for d in domains if d not in base]
    if missing:
        raise InputError("config", f"ddo.base_weights.{missing[0]}", "missing", "give every domain")
    empty = [d for d in domains if float(base[d]) <= 0]
    if empty:
        raise InputError(
            "config",
            f"ddo.base_weights.{empty[0]}",
            "is 0: the base run has no tokens of it to multiply or divide",
            "give every domain a positive weight, or remove the domain",
        )
    total = sum(base.values())
    if abs(total - 1) > 1e-6:
        raise InputError("config", "ddo.base_weights", f"sum to {total:g}, not 1", "normalise them")
    return {d: float(base[d]) for d in domains}


def perturb(base: dict[str, float], domain: str, factor: float, design: str) -> dict[str, float]:
    """Tokens of a perturbed run: Algorithm 1 (others unchanged) or fixed total (rescaled)."""
    out = dict(base)
    out[domain] = base[domain] * factor
    if design == "fixed_total":
        total = sum(base.values())
        rest = total - base[domain]
        if out[domain] >= total:
            raise InputError(
                "config",
                "ddo.factor",
                f"{domain}'s share x{factor:g} exceeds the whole mixture",
                "lower the factor or the domain's base weight",
            )
        scale = (total - out[domain]) / rest
        for d in out:
            if d != domain:
                out[d] = base[d] * scale
    return out


def _perturbations(design: str, factor: float) -> tuple[tuple[float, str], ...]:
    """(factor, tag) of each perturbed run per domain: Algorithm 1's down run is optional."""
    if design == "algorithm1_up":
        return ((factor, "up"),)
    return ((factor, "up"), (1 / factor, "down"))


def ddo_runs(config: Config, domains: list[str]) -> list[Run]:
    """Every DDO run of every round. Rounds after the first (iterated DDO) are re-centred on
    the optimum of the round before, known only when it ends: their runs carry no tokens yet
    (``round_spec`` fills them in) and are priced at the first round's centre. A round's total
    does not depend on its centre: Algorithm 1 adds (factor - 1) x the scale over the domains'
    up runs whatever their shares, and a fixed-total run is always the scale."""
    ddo = config.ddo
    weights = _base_weights(config, domains)
    runs = []
    for scale in ddo.scales:
        if scale.runs is not None:  # an external run table: nothing to train
            continue
        for number in range(1, ddo.rounds + 1):
            sweep = sweep_runs(config, scale.name, float(scale.tokens), weights, number)
            if number > 1:
                sweep = [replace(run, tokens={}) for run in sweep]
            runs += sweep
    return runs


def sweep_runs(
    config: Config, scale: str, total: float, centre: dict[str, float], number: int = 1
) -> list[Run]:
    """One DDO round at one scale: a base run at ``centre`` and each domain's perturbed runs,
    for every seed. Round 1's ids carry no round number."""
    ddo = config.ddo
    design, factor = ddo.design, float(ddo.factor)
    base = {d: w * total for d, w in centre.items()}
    mixtures = [("base", "", 1.0, base)]
    for d in centre:
        for f, tag in _perturbations(design, factor):
            mixtures.append((f"{d}-{tag}", d, f, perturb(base, d, f, design)))
    prefix = f"ddo-{scale}-" if number == 1 else f"ddo-{scale}-r{number}-"
    return [
        Run(
            id=f"{prefix}{name}-s{seed}",
            stage="ddo",
            scale=scale,
            seed=seed,
            total_tokens=sum(tokens.values()),
            tokens=tokens,
            perturbed=domain,
            factor=f,
            round=number,
        )
        for seed in range(int(ddo.seeds))
        for name, domain, f, tokens in mixtures
    ]


def round_spec(config: Config, spec: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """A planned run of a later DDO round with its mixture: the round re-centred on
    ``previous`` (the WEIGHTS.json of the round before at the same scale)."""
    from mixscale.core.rounds import next_centre

    scale = next(s for s in config.ddo.scales if s.name == spec["scale"])
    source = f"round {spec['round'] - 1} of scale {scale.name}"
    centre = next_centre(previous, float(config.ddo.factor), source)
    for run in sweep_runs(config, scale.name, float(scale.tokens), centre, spec["round"]):
        if run.id == spec["id"]:
            return run.to_json()
    raise InputError(source, spec["id"], "not a run of this round", "rerun the workflow")


def later_rounds_note(config: Config, specs: dict[str, dict[str, Any]]) -> str | None:
    """What a dry run cannot show of iterated DDO: the rounds after the first, planned only when
    the round before ends."""
    if not config.mixture or config.ddo.rounds == 1:
        return None
    later = [s for s in specs.values() if s["stage"] == "ddo" and s.get("round", 1) > 1]
    scales = sorted({s["scale"] for s in later})
    per_round = len(later) // max(1, (config.ddo.rounds - 1) * len(scales))
    return (
        f"iterated DDO (ddo.rounds: {config.ddo.rounds}): the jobs listed run round 1; up to "
        f"{config.ddo.rounds - 1} more round(s) of {per_round} runs per scale follow, each "
        f"planned when the round before ends, none once a round moves no weight by more than "
        f"{config.ddo.round_tolerance:g} (mixscale budget prices them all)"
    )


def verify_runs(config: Config) -> list[Run]:
    verify = config.verify
    runs = []
    for target in config.autoscale.targets:
        label = target_label(target)
        for name in verify.methods:
            for seed in range(int(verify.seeds)):
                runs.append(
                    Run(
                        id=f"verify-{label}-{name}-s{seed}",
                        stage="verify",
                        scale=label,
                        seed=seed,
                        total_tokens=float(target),
                        method=name,
                    )
                )
    return runs


def method_proxy_runs(config: Config, domains: list[str]) -> list[Run]:
    """The proxy runs of the verified methods that train their own (RegMix, DML): stage
    "proxy", scale = the method's name."""
    budget = config.methods.proxy_tokens
    if budget == "ddo":  # compute-matched with AutoScale's DDO sweep
        budget = sum(run.total_tokens for run in ddo_runs(config, domains))
    runs = []
    for name in config.verify.methods:
        for proxy in method(name).proxy_runs(config, domains, budget):
            runs.append(
                Run(
                    id=f"{name}-{proxy.name}-s{proxy.seed}",
                    stage="proxy",
                    scale=name,
                    seed=proxy.seed,
                    total_tokens=sum(proxy.tokens.values()),
                    tokens=proxy.tokens,
                    method=name,
                    doremi=proxy.doremi,
                )
            )
    return runs


def check_mixture_stages(config: Config, domains: list[str]) -> None:
    """Checks the schema cannot express: order of scales and targets, names, methods."""
    scales = config.ddo.scales
    names = [s.name for s in scales]
    if len(set(names)) != len(names):
        raise InputError("config", "ddo.scales[].name", "duplicate scale names", "make them unique")
    totals = [float(s.tokens) for s in scales]
    if totals != sorted(totals) or len(set(totals)) != len(totals):
        raise InputError(
            "config", "ddo.scales[].tokens", "scales must increase strictly", "sort them"
        )
    distinct_labels(config.autoscale.targets, "autoscale.targets")
    for t in config.autoscale.targets:
        # continuous AutoScale also interpolates (the authors' validation); Algorithm 2 only
        # goes up from the largest scale
        if config.autoscale.discrete and float(t) <= totals[-1]:
            raise InputError(
                "config",
                "autoscale.targets",
                f"target {t:g} is not above the largest DDO scale {totals[-1]:g}",
                "the discrete Algorithm 2 only goes up; set autoscale.discrete: false to "
                "interpolate",
            )
    check_methods(config, domains)
