"""Where an experiment's domains and data live: the fields every stage reads first."""

from __future__ import annotations

from mixscale.config.typed import Config
from mixscale.core.world import load_world


def config_domains(config: Config) -> list[str]:
    """The training domains: the world's (simulate), the config's list, or the data sources."""
    if config.backend == "simulate":
        return list(load_world(config.world).domains)
    if config.domains:
        return list(config.domains)
    return list(config.data.sources)


def data_dir(config: Config) -> str:
    return f"{config.out}/data"
