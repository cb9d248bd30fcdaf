"""Argument types and options shared by several command groups."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from mixscale.errors import InputError


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from exc


def count(text: str) -> int:
    """An integer that may be written 2.0e+7 (YAML configs)."""
    return int(number(text))


def pairs(
    values: Sequence[str] | None, flag: str, default_key: str | None = None
) -> dict[str, float]:
    """'domain=value' items (or a bare value for all domains when default_key is given)."""
    out: dict[str, float] = {}
    for item in values or []:
        name, sep, value = item.rpartition("=")
        if not sep:
            if default_key is None:
                raise InputError(flag, item, "expected domain=value", f"e.g. {flag} wiki=1e9")
            name = default_key
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise InputError(
                flag, item, f"'{value}' is not a number", f"e.g. {flag} wiki=1e9"
            ) from exc
    return out


def json_or_file(text: str) -> dict[str, Any]:
    """Training settings as JSON text, or a JSON/YAML file holding them."""
    import json
    from pathlib import Path

    import yaml

    source = "--settings"
    if not text.lstrip().startswith("{"):
        if not Path(text).is_file():
            raise InputError(text, "", "settings file not found", "pass JSON or a file path")
        source, text = text, Path(text).read_text(encoding="utf-8-sig")
    try:  # JSON first: YAML 1.1 would read 1e+30 as a string
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(source, "", "invalid JSON/YAML", "fix the settings") from exc
    if not isinstance(data, dict):
        raise InputError(source, "", "settings are a mapping", "see config/README.md")
    return data


def add_configfiles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        action="append",
        required=True,
        help="config YAML (repeat to merge several files in order)",
    )


def checked_config(paths: list[str]):
    """The merged config files (later ones override earlier ones, as in Snakemake), checked
    as the Snakefile checks them: the typed config (``mixscale.config.typed.Config``)."""
    from mixscale.config.load import load_configs
    from mixscale.plan.check import check_config  # the plan: imported only by commands needing it

    config = load_configs(paths)
    return check_config(config, ", ".join(paths))
