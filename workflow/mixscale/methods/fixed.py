"""Fixed mixtures: uniform, natural proportions and reference weights, known from the config."""

from __future__ import annotations

from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.methods.base import Method


class Uniform(Method):
    name = "uniform"
    summary = "every domain the same share"

    def fixed_weights(self, config: Config, domains: list[str]) -> dict[str, float]:
        return {d: 1 / len(domains) for d in domains}


class FromConfig(Method):
    """Weights written in the config under ``verify.<name>``."""

    strict_domains = False  # reference weights must name known domains and sum to 1

    def check(self, config: Config, domains: list[str]) -> None:
        self.fixed_weights(config, domains)

    def fixed_weights(self, config: Config, domains: list[str]) -> dict[str, float]:
        field = f"verify.{self.name}"
        weights = getattr(config.verify, self.name)
        if not weights:
            raise InputError("config", field, "missing", f"give {self.name} weights")
        unknown = [d for d in weights if d not in domains]
        if unknown and self.strict_domains:
            raise InputError(
                "config", f"{field}.{unknown[0]}", "unknown domain", f"use {', '.join(domains)}"
            )
        if self.strict_domains and abs(sum(weights.values()) - 1) > 1e-6:
            raise InputError("config", field, "weights must sum to 1", "normalise them")
        # normalise over this experiment's domains: a merged config may carry other keys
        total = sum(float(weights.get(d, 0.0)) for d in domains)
        if total <= 0:
            raise InputError(
                "config", field, f"gives no weight to {', '.join(domains)}", "name them"
            )
        return {d: float(weights.get(d, 0.0)) / total for d in domains}


class Natural(FromConfig):
    name = "natural"
    summary = "the sources' natural proportions (verify.natural, normalised)"


class Reference(FromConfig):
    name = "reference"
    summary = "reference weights from the literature (verify.reference, summing to 1)"
    strict_domains = True
