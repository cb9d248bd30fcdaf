"""Reading config files: YAML with the line of a syntax error, a key written twice rejected
(PyYAML silently keeps the last), a byte-order mark accepted, aliases that expand a small file
into a huge tree refused (``mixscale.core.safe_yaml``), several files merged in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mixscale.core.safe_yaml import load_bounded
from mixscale.errors import InputError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader (no Python objects) that refuses a mapping with the same key twice."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A key the mapping itself writes twice is refused; one that overrides a key merged in
    with ``<<: *anchor`` is what the merge is for (SafeLoader's merge keys work as before)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key '{key}' written twice (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_yaml_config(path: str) -> dict[str, Any]:
    """A config file, with the line and column of a YAML syntax error."""
    p = Path(path)
    if p.is_dir():
        raise InputError(path, "", "is a folder, not a config file", "pass a YAML file")
    if not p.is_file():
        raise InputError(path, "", "config file not found", "check --configfile")
    try:
        text = p.read_bytes().decode("utf-8-sig")  # a spreadsheet or editor may write a BOM
    except UnicodeDecodeError as exc:
        raise InputError(path, "", "not UTF-8 text", "save the config as UTF-8 YAML") from exc
    except OSError as exc:
        raise InputError(path, "", f"cannot be read ({exc.strerror})", "check the path") from exc
    if "\x00" in text:
        raise InputError(path, "", "binary file, not YAML", "pass the config's YAML file")
    try:
        data = load_bounded(text, path, StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        fix = (
            "write it once"
            if "written twice" in str(problem)
            else "fix the syntax (spaces, not tabs)"
        )
        raise InputError(path, where, f"malformed YAML: {problem}", fix) from exc
    if not isinstance(data, dict):
        raise InputError(path, "", "a config is a mapping of keys", "see config/README.md")
    return data


def merge_into(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Later config files override earlier ones key by key, as in Snakemake."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = value


def load_configs(paths: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in paths:
        merge_into(config, load_yaml_config(path))
    return config
