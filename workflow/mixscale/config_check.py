"""Everything a config can fail before any job runs, reported as one line naming the config
file, the field and the fix. The Snakefile calls ``check_or_exit`` when it reads the config;
``python -m mixscale check --configfile F`` runs the same checks without Snakemake (and also
points at the line of malformed YAML, which Snakemake's own loader does not)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from mixscale.errors import InputError

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# the schema's name patterns, in words
PATTERNS = {
    "^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "letters, digits, '_', '-' and '.', not starting with '.'",
    "^[A-Za-z0-9_-]+$": "letters, digits, '_' and '-'",
}


def load_yaml_config(path: str) -> dict[str, Any]:
    """A config file, with the line and column of a YAML syntax error."""
    p = Path(path)
    if not p.is_file():
        raise InputError(path, "", "config file not found", "check --configfile")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(path, "", "not UTF-8 text", "save the config as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise InputError(
            path, where, f"malformed YAML: {problem}", "fix the syntax (spaces, not tabs)"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(path, "", "a config is a mapping of keys", "see config/README.md")
    return data


def check_config(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate against the schema, fill its defaults into config (in place), then run the
    checks the schema cannot express. Raises InputError naming source."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise schema_error(error, source)
    _with_defaults(Draft202012Validator)(schema).validate(config)
    try:
        _semantic_checks(config)
    except InputError as exc:
        if exc.source != "config":
            raise
        raise InputError(source, exc.field, exc.problem, exc.fix) from exc
    return config


def check_or_exit(config: dict[str, Any], configfiles: list[Any]) -> None:
    """For the Snakefile: a bad config prints one line and exits 2 before any job runs."""
    source = ", ".join(str(f) for f in configfiles) or "config/config.yaml"
    try:
        check_config(config, source)
    except InputError as exc:
        print(f"mixscale: {exc.one_line()}", file=sys.stderr)
        raise SystemExit(2) from None


def _semantic_checks(config: dict[str, Any]) -> None:
    """What the rules compute from the config when Snakemake builds the DAG."""
    from mixscale.anneal import target_task
    from mixscale.downstream import task_entries
    from mixscale.experiment import config_domains, run_specs, torch_settings
    from mixscale.plan import target_label

    config_domains(config)
    run_specs(config)
    if "autoscale" in config:
        [target_label(t) for t in config["autoscale"]["targets"]]
    if config["backend"] == "torch":
        torch_settings(config)
        task_entries(config)
        if config.get("anneal"):
            target_task(config)


def schema_error(error: ValidationError, source: str) -> InputError:
    """One schema violation as a sentence: where, what, how to fix."""
    field = _dotted(error.absolute_path)
    value = error.instance
    kind = error.validator
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
        rule = PATTERNS.get(error.validator_value, f"a name matching {error.validator_value}")
        return InputError(
            source, field, f"name {value!r} not allowed", f"use only {rule} (no '/' or spaces)"
        )
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
