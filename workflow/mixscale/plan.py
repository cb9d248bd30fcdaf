"""The plan: every training run a config implies, as a pure function of the config.

Snakemake expands over it, ``mixscale budget`` prices it. A run is identified by a folder-safe
id; its mixture is either explicit tokens per domain (DDO sweeps) or the weights of a method's
output file at a target scale (verification runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mixscale.errors import InputError

VERIFY_METHODS = (
    "autoscale",
    "ddo_largest",
    "ddo_smallest",
    "uniform",
    "natural",
    "reference",
)


@dataclass(frozen=True)
class Run:
    id: str
    stage: str  # "ddo" | "verify"
    scale: str  # DDO scale name, or the target label
    seed: int
    total_tokens: float
    tokens: dict[str, float] = field(default_factory=dict)  # explicit mixture (ddo)
    method: str | None = None  # verification: where the weights come from
    perturbed: str | None = None  # ddo: the perturbed domain ("" for the base run)
    factor: float = 1.0
    source: str | None = None  # annealing: the candidate source (or "control")
    skip: dict[str, float] = field(default_factory=dict)  # annealing: tokens the base used

    def to_json(self) -> dict[str, Any]:
        spec = asdict(self)
        for key in ("source", "skip"):  # only annealing runs carry them: other specs unchanged
            if not spec[key]:
                del spec[key]
        return spec


def target_label(tokens: float) -> str:
    return f"{tokens:.6g}"


def _base_weights(config: dict[str, Any], domains: list[str]) -> dict[str, float]:
    base = config["ddo"].get("base_weights", "uniform")
    if base == "uniform":
        return {d: 1 / len(domains) for d in domains}
    missing = [d for d in domains if d not in base]
    if missing:
        raise InputError("config", f"ddo.base_weights.{missing[0]}", "missing", "give every domain")
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


def ddo_runs(config: dict[str, Any], domains: list[str]) -> list[Run]:
    ddo = config["ddo"]
    design, factor = ddo.get("design", "algorithm1"), float(ddo.get("factor", 3.0))
    weights = _base_weights(config, domains)
    runs = []
    for scale in ddo["scales"]:
        if "runs" in scale:  # an external run table: nothing to train
            continue
        base = {d: weights[d] * float(scale["tokens"]) for d in domains}
        mixtures = [("base", "", 1.0, base)]
        for d in domains:
            for f, tag in ((factor, "up"), (1 / factor, "down")):
                mixtures.append((f"{d}-{tag}", d, f, perturb(base, d, f, design)))
        for seed in range(int(ddo.get("seeds", 1))):
            for name, domain, f, tokens in mixtures:
                runs.append(
                    Run(
                        id=f"ddo-{scale['name']}-{name}-s{seed}",
                        stage="ddo",
                        scale=scale["name"],
                        seed=seed,
                        total_tokens=sum(tokens.values()),
                        tokens=tokens,
                        perturbed=domain,
                        factor=f,
                    )
                )
    return runs


def verify_runs(config: dict[str, Any]) -> list[Run]:
    verify = config.get("verify", {})
    methods = verify.get("methods", [])
    runs = []
    for target in config["autoscale"]["targets"]:
        label = target_label(target)
        for method in methods:
            for seed in range(int(verify.get("seeds", 1))):
                runs.append(
                    Run(
                        id=f"verify-{label}-{method}-s{seed}",
                        stage="verify",
                        scale=label,
                        seed=seed,
                        total_tokens=float(target),
                        method=method,
                    )
                )
    return runs


def make_plan(config: dict[str, Any], domains: list[str]) -> list[Run]:
    from mixscale.anneal import anneal_runs

    runs = anneal_runs(config, domains)
    if "ddo" in config:  # a mixture experiment (an annealing-only config has none)
        check_config(config, domains)
        runs = ddo_runs(config, domains) + verify_runs(config) + runs
    return runs


def check_config(config: dict[str, Any], domains: list[str]) -> None:
    """Checks the schema cannot express: order of scales and targets, names, references."""
    scales = config["ddo"]["scales"]
    names = [s["name"] for s in scales]
    if len(set(names)) != len(names):
        raise InputError("config", "ddo.scales[].name", "duplicate scale names", "make them unique")
    totals = [float(s["tokens"]) for s in scales]
    if totals != sorted(totals) or len(set(totals)) != len(totals):
        raise InputError(
            "config", "ddo.scales[].tokens", "scales must increase strictly", "sort them"
        )
    for t in config["autoscale"]["targets"]:
        if float(t) <= totals[-1]:
            raise InputError(
                "config",
                "autoscale.targets",
                f"target {t:g} is not above the largest DDO scale {totals[-1]:g}",
                "AutoScale predicts larger scales; use a DDO scale for this one",
            )
    unknown = [m for m in config.get("verify", {}).get("methods", []) if m not in VERIFY_METHODS]
    if unknown:
        raise InputError(
            "config", "verify.methods", f"unknown method '{unknown[0]}'", f"use {VERIFY_METHODS}"
        )
    reference = config.get("verify", {}).get("reference")
    if "reference" in config.get("verify", {}).get("methods", []):
        if not reference:
            raise InputError("config", "verify.reference", "missing", "give reference weights")
        unknown = [d for d in reference if d not in domains]
        if unknown:
            raise InputError(
                "config",
                f"verify.reference.{unknown[0]}",
                "unknown domain",
                f"use {', '.join(domains)}",
            )
        if abs(sum(reference.values()) - 1) > 1e-6:
            raise InputError(
                "config", "verify.reference", "weights must sum to 1", "normalise them"
            )
