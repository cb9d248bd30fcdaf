"""Where an experiment's domains and data live: the fields every stage reads first."""

from __future__ import annotations

from typing import Any

from mixscale.core.world import load_world


def config_domains(config: dict[str, Any]) -> list[str]:
    if config["backend"] == "simulate":
        return list(load_world(config["world"]).domains)
    if config.get("domains"):
        return list(config["domains"])
    return list(config.get("data", {}).get("sources", {}))


def data_dir(config: dict[str, Any]) -> str:
    return f"results/{config['experiment']}/data"
