"""Where an experiment's domains and data live: the fields every stage reads first."""

from __future__ import annotations

from mixscale.config.sources import Derivation, is_derived
from mixscale.config.typed import Config
from mixscale.core.world import load_world


def config_domains(config: Config) -> list[str]:
    """The training domains: the world's (simulate), the config's list, or the data sources
    (derived sources, the annealing experiment's candidates, left out)."""
    if config.backend == "simulate":
        return list(load_world(config.world).domains)
    if config.domains:
        return list(config.domains)
    return [d for d, spec in config.data.sources.items() if not is_derived(spec)]


def derived_sources(config: Config) -> dict[str, Derivation]:
    """The derived sources of ``data.sources``, checked (their parents are corpus domains)."""
    if config.backend != "torch":
        return {}
    corpus = [d for d, spec in config.data.sources.items() if not is_derived(spec)]
    return {
        name: Derivation.from_spec(name, spec, corpus)
        for name, spec in config.data.sources.items()
        if is_derived(spec)
    }


def eval_only_domains(config: Config) -> list[str]:
    """Corpus domains the objective evaluates but no run trains on (the AutoScale paper's
    held-out non-training domains): named in objective.eval_domains, not in domains."""
    if config.backend != "torch":
        return []
    training = config_domains(config)
    return [d for d in config.objective.eval_domains or [] if d not in training]


def corpus_domains(config: Config) -> list[str]:
    """The data sources that are corpus domains (not derived from one)."""
    return [d for d, spec in config.data.sources.items() if not is_derived(spec)]


def store_domains(config: Config) -> list[str]:
    """Every domain with a token store: the training domains, the evaluation-only domains and
    the derived sources."""
    domains = config_domains(config) + eval_only_domains(config)
    return domains + [d for d in derived_sources(config) if d not in domains]


def data_dir(config: Config) -> str:
    return f"{config.out}/data"
