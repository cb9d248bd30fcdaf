"""The config schema (``schema.yaml``, shipped with the package): validation with one line
naming the file, the field and the fix, and the defaults filled in from the schema alone. The
checks that need the plan are ``mixscale.plan.check``."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # jsonschema is imported where a config is validated, not by every command
    from jsonschema.exceptions import ValidationError

from mixscale.errors import InputError

SCHEMA = Path(__file__).with_name("schema.yaml")  # package data: shipped with any install
# the schema's name patterns, in words
NAME = "^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_-])?$"  # the schema's $defs.name
NAME_PATTERNS = (NAME, "^[A-Za-z0-9_-]+$")
PATTERNS = {
    "^(auto|cpu|mps|cuda(:[0-9]+)?)$": "auto, cpu, mps, cuda or cuda:N",
    "^[A-Za-z0-9_./ ~+-]+$": "a tokenizer name or folder: letters, digits, '_', '.', '/', '-'",
    NAME: "letters, digits, '_', '-' and '.', not starting with '.' or '-', not ending with '.'",
    "^[A-Za-z0-9_-]+$": "letters, digits, '_' and '-'",
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The schema, read once per process: every command reads defaults from it, so libyaml's
    safe loader where PyYAML has it (7x faster than the pure-Python one; both build only plain
    data)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA.read_text(encoding="utf-8"), Loader=loader)


def schema_default(dotted: str) -> Any:
    """The schema's default of a field (``downstream.device``): command-line options that
    mirror a config field take their default from here, so it is written once."""
    node = schema()
    for key in dotted.split("."):
        node = node["properties"][key]
    return node["default"]


def schema_number(dotted: str) -> dict[str, Any]:
    """The schema's rule for a number: a field (``ddo.factor``), the items of a list
    (``autoscale.targets[]``), a mapping's values (``anneal.sources.*.max_tokens``) or a
    definition (``$defs.tokens``); references followed and, of alternatives (``oneOf``, a
    nullable type), the numeric one. Command-line options that read the same quantity take
    their range from here (``mixscale.cli.args.Number.schema``)."""
    root = schema()
    parts = dotted.split(".")
    node = root
    if parts[0] == "$defs":
        node, parts = root["$defs"][parts[1]], parts[2:]
    for part in parts:
        items = part.endswith("[]")
        key = part.removesuffix("[]")
        node = _numeric(root, node)
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
        if items:
            node = _numeric(root, node)["items"]
    node = _numeric(root, node)
    if not {"number", "integer"} & set(_types(node)):
        raise KeyError(f"{dotted} is not a number in the schema")
    return node


def _numeric(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """node with its $ref followed, or of its alternatives the number (else the object)."""
    node = _resolved(root, node)
    for kind in ("number", "integer", "object", "array"):
        for branch in node.get("oneOf", []):
            branch = _numeric(root, branch)
            if kind in _types(branch):
                return branch
    return node


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def validate_schema(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate against the schema and fill its defaults into config (in place): the schema is
    the one place every default is written. Raises InputError naming source."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    _check_keys_and_numbers(config, source, "")
    rules = copy.deepcopy(schema())  # a copy: validation fills defaults into it
    error = best_match(Draft202012Validator(rules).iter_errors(config))
    if error is not None:
        raise schema_error(error, source)
    _with_defaults(Draft202012Validator)(rules).validate(config)
    _whole_numbers(config, schema())
    return config


def _whole_numbers(value: Any, node: dict[str, Any]) -> Any:
    """value with every float the schema types as an integer made an int, in place: JSON
    Schema counts 2.0 as an integer and YAML writes a count as 2.0e+7, but range(), a shape or a
    job's JSON parameter (a rerun when it changes from 2 to 2.0) need the int."""
    root = schema()
    branches = [_resolved(root, b) for b in [node, *node.get("oneOf", []), *node.get("anyOf", [])]]
    whole = isinstance(value, float) and value.is_integer()
    if whole and any("integer" in _types(b) for b in branches):
        return int(value)
    if isinstance(value, dict):
        for key, item in value.items():
            child = next(filter(None, (_child(b, key) for b in branches)), None)
            if child is not None:
                value[key] = _whole_numbers(item, child)
    elif isinstance(value, list):
        items = next((b["items"] for b in branches if isinstance(b.get("items"), dict)), None)
        for i, item in enumerate(value if items is not None else []):
            value[i] = _whole_numbers(item, items)
    return value


def _child(node: dict[str, Any], key: str) -> dict[str, Any] | None:
    extra = node.get("additionalProperties")
    return node.get("properties", {}).get(key) or (extra if isinstance(extra, dict) else None)


def _resolved(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _check_keys_and_numbers(node: Any, source: str, where: str) -> None:
    """What JSON Schema lets through: a key YAML read as a number or a boolean (`2020:`,
    `no:`), and NaN or infinity (they pass every minimum and maximum)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        field = _join(where, str(key)) if isinstance(node, dict) else f"{where}[{key}]"
        if isinstance(node, dict) and not isinstance(key, str):
            raise InputError(
                source,
                field,
                f"key {key!r} is read as {type(key).__name__}, not text",
                f"quote it: '{key}'",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(source, field, f"{value} is not a finite number", "give a number")
        if isinstance(value, dict | list):
            _check_keys_and_numbers(value, source, field)


def schema_error(error: ValidationError, source: str) -> InputError:
    """One schema violation as a sentence: where, what, how to fix."""
    field = _dotted(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind in ("oneOf", "anyOf") and field and error.context:
        # the alternative the value was meant for (weights as a mapping, not the word uniform):
        # its own error, not "is not valid under any of the given schemas"
        meant = [e for e in error.context if e.validator not in ("type", "enum", "const")]
        if meant:
            from jsonschema.exceptions import best_match

            return schema_error(best_match(meant), source)
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        key = extra[0] if extra else "?"
        fix = f"remove it or use one of {', '.join(allowed)}" if allowed else "remove it"
        return InputError(source, _join(field, key), "unknown key", fix)
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        return InputError(source, _join(field, missing), "missing", "add it (see config/README.md)")
    if kind == "pattern":  # also the names of mappings (propertyNames): domains, sources
        rule = PATTERNS.get(error.validator_value, f"a value matching {error.validator_value}")
        if error.validator_value in NAME_PATTERNS:  # names become folder and file names
            return InputError(
                source, field, f"name {value!r} not allowed", f"use only {rule} (no '/' or spaces)"
            )
        return InputError(source, field, f"{value!r} not allowed", f"use {rule}")
    if kind == "dependentRequired":  # ddo without autoscale
        needed = next(
            (
                m
                for k, ms in error.validator_value.items()
                if k in value
                for m in ms
                if m not in value
            ),
            "?",
        )
        return InputError(source, needed, "missing: ddo needs it", "add autoscale.targets")
    if kind == "maxLength":
        return InputError(
            source, field, f"longer than {error.validator_value} characters", "shorten it"
        )
    if kind == "minProperties":
        return InputError(source, field, "is empty", "give at least one entry")
    if kind == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        return InputError(source, field, f"{value!r} is not an option", f"use one of {options}")
    if kind == "type":
        return InputError(
            source, field, f"{value!r} is not of type {error.validator_value}", _type_fix(value)
        )
    if kind == "minItems":
        return InputError(
            source, field, f"needs at least {error.validator_value} entries", "add entries"
        )
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return InputError(source, field, error.message, "use a value in the allowed range")
    if kind == "anyOf" and not field:
        return InputError(
            source,
            "ddo/anneal",
            "no experiment to run",
            "give ddo + autoscale (find a mixture) or anneal (value data sources), or both",
        )
    return InputError(source, field or "(top level)", error.message, "see config/README.md")


def _type_fix(value: Any) -> str:
    """PyYAML reads 1e9 (no dot, no sign) as text: the commonest type error in a config."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return "fix its type"
        return f"write it as {number:.1e} (YAML reads {value} as text)"
    return "fix its type"


def _with_defaults(validator_class):
    """A validator that fills schema defaults in (the recipe of the jsonschema FAQ, as
    snakemake.utils.validate does)."""
    from jsonschema import validators

    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator[ValidationError]:
        for name, subschema in properties.items():
            if isinstance(instance, dict) and "default" in subschema:
                instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _dotted(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key
