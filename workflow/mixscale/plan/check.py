"""Everything a config can fail before any job runs, as one line naming the config file, the
field and the fix: the schema (``mixscale.config``), then everything the rules compute from the
config when Snakemake builds the DAG (domains, the plan, training settings, task entries).

The Snakefile calls ``check_or_exit``; ``python -m mixscale check --configfile F`` runs the same
checks without Snakemake (and points at the line of malformed YAML, which Snakemake's own loader
does not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.config.check import validate_schema
from mixscale.config.domains import config_domains, corpus_domains, derived_sources
from mixscale.config.finetune import finetune_tasks
from mixscale.config.load import load_yaml_config
from mixscale.config.model import MASKED, objective_of
from mixscale.config.tasks import task_entries
from mixscale.config.typed import Config
from mixscale.core.world import load_world
from mixscale.errors import InputError, say
from mixscale.plan.anneal import target_task
from mixscale.plan.budget import model_params
from mixscale.plan.run import target_label
from mixscale.plan.specs import run_specs, torch_settings


def check_config(config: dict[str, Any], source: str) -> Config:
    """Schema and defaults (filled into ``config`` in place), then the checks the schema cannot
    express; the typed config every stage reads."""
    validate_schema(config, source)
    try:
        typed = Config.from_dict(config)
        _semantic_checks(typed)
    except InputError as exc:
        if exc.source != "config":
            raise
        raise InputError(source, exc.field, exc.problem, exc.fix) from exc
    return typed


def check_or_exit(config: dict[str, Any], configfiles: list[Any]) -> Config:
    """For the Snakefile: a bad config prints one line and exits 2 before any job runs.
    Each file is read again with mixscale's strict loader: Snakemake's keeps the last of a key
    written twice without a word."""
    files = [str(f) for f in configfiles] or ["config/config.yaml"]
    try:
        for path in files:
            load_yaml_config(path)
        return check_config(config, ", ".join(files))
    except InputError as exc:
        say(f"mixscale: {exc.one_line()}")
        raise SystemExit(2) from None


def _semantic_checks(config: Config) -> None:
    domains = config_domains(config)
    if config.world:  # the simulated world, or the world a table experiment is scored in
        load_world(config.world)
    _check_run_tables(config)
    _check_eval_domains(config, domains)
    run_specs(config)
    if config.autoscale:
        [target_label(t) for t in config.autoscale.targets]
    if config.backend == "torch":
        derived_sources(config)  # derived annealing sources name real parent domains
        objective_of(config.model)  # an encoder learns masked LM, a decoder causal LM
        torch_settings(config)
        if config.model.get("type"):  # the architecture builds (on the meta device)
            model_params(config, "proxy_params")
        _check_downstream_fits_the_objective(config)
        finetune_tasks(config)
        if config.anneal:
            target_task(config)


def _check_downstream_fits_the_objective(config: Config) -> None:
    """lm-eval scores a causal LM's likelihoods of continuations; an encoder's masked LM has
    none. Encoders are read by fine-tuning, as the AutoScale paper reads BERT."""
    entries = task_entries(config)
    if entries and objective_of(config.model) == MASKED:
        raise InputError(
            "config",
            "downstream.tasks",
            f"lm-eval scores causal LMs, and {config.model.get('type') or 'this model'} "
            "learns masked LM",
            "score encoders by fine-tuning (finetune.tasks: [embedded] or glue, squad) and "
            "leave downstream.tasks empty",
        )


def _check_run_tables(config: Config) -> None:
    """Backend tables: every scale's run table exists (a typo would fail only after the fits
    of the other scales)."""
    for i, scale in enumerate(config.ddo.scales if config.ddo else []):
        path = scale.runs
        if path is not None and not Path(path).is_file():
            raise InputError(
                "config", f"ddo.scales[{i}].runs", f"{path}: file not found", "check the path"
            )
    if config.ddo and config.ddo.rounds > 1:
        given = [i for i, s in enumerate(config.ddo.scales) if s.runs is not None]
        if given:
            raise InputError(
                "config",
                "ddo.rounds",
                f"{config.ddo.rounds} rounds, but ddo.scales[{given[0]}] is a run table "
                "(nothing to train around a new centre)",
                "set ddo.rounds: 1, or train the scale (remove its runs:)",
            )
    if config.backend == "tables" and config.ddo:
        missing = [i for i, s in enumerate(config.ddo.scales) if s.runs is None]
        if missing:
            raise InputError(
                "config",
                f"ddo.scales[{missing[0]}].runs",
                "missing (backend tables trains nothing)",
                "give the scale's run table, or use backend: torch or simulate",
            )


def _check_eval_domains(config: Config, domains: list[str]) -> None:
    """The objective's domains exist: the training domains or other corpus domains of
    data.sources (torch: evaluation-only domains) or the world's evaluation domains
    (simulate). Run tables name theirs, so backend tables is checked by the fit."""
    wanted = config.objective.eval_domains or []
    if config.backend == "simulate":
        domains = load_world(config.world).eval_domains
    elif config.backend == "torch":
        domains = [*domains, *(d for d in corpus_domains(config) if d not in domains)]
    else:
        return
    unknown = [d for d in wanted if d not in domains]
    if unknown:
        raise InputError(
            "config",
            "objective.eval_domains",
            f"unknown domain {unknown[0]}",
            f"use one of {', '.join(domains)}",
        )
