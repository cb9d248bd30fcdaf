"""Everything a config can fail before any job runs, as one line naming the config file, the
field and the fix: the schema (``mixscale.config``), then everything the rules compute from the
config when Snakemake builds the DAG (domains, the plan, training settings, task entries).

The Snakefile calls ``check_or_exit``; ``python -m mixscale check --configfile F`` runs the same
checks without Snakemake (and points at the line of malformed YAML, which Snakemake's own loader
does not)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.config.check import NAME, PATTERNS, validate_schema
from mixscale.config.domains import config_domains, corpus_domains, derived_sources
from mixscale.config.finetune import finetune_tasks
from mixscale.config.load import load_yaml_config
from mixscale.config.model import MASKED, objective_of
from mixscale.config.tasks import task_entries
from mixscale.config.training import TrainSettings
from mixscale.config.typed import Config
from mixscale.core.design import REL_TOL, classify
from mixscale.core.objective import MAX_PERPLEXITY_LOSS
from mixscale.core.predict import MAX_SPANS, MIN_SPAN, extrapolation_spans, span_needed
from mixscale.core.runtable import TOKEN_RANGE
from mixscale.core.world import World, load_world
from mixscale.errors import InputError, say
from mixscale.plan.anneal import target_task
from mixscale.plan.budget import model_params
from mixscale.plan.run import target_label
from mixscale.plan.specs import make_plan, run_specs, torch_settings


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
    if config.world:  # the simulated world, or the world a table experiment is scored in
        _check_world(config, load_world(config.world))
    domains = config_domains(config)
    _check_names_apart(config, domains)
    _check_run_tables(config)
    _check_eval_domains(config, domains)
    run_specs(config)
    _check_run_ids(config, domains)
    _check_sweep_tokens(config)
    if config.autoscale:
        [target_label(t) for t in config.autoscale.targets]
        _check_autoscale_span(config)
    if config.backend == "torch":
        derived_sources(config)  # derived annealing sources name real parent domains
        objective_of(config.model)  # an encoder learns masked LM, a decoder causal LM
        torch_settings(config)
        _check_batches(config)
        _check_max_bytes(config)
        _check_whole_sequences(config)
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


# --- what used to fail after training ----------------------------------------------------------


def _check_world(config: Config, world: World) -> None:
    """The world's domain names become run-table columns and run ids, as config names do; its
    losses must stay where the objective can take exp() of them."""
    for field, names in (("domains", world.domains), ("eval_domains", world.eval_domains)):
        bad = [n for n in names if not re.fullmatch(NAME, n)]
        if bad:
            raise InputError(
                config.world, field, f"name {bad[0]!r} not allowed", f"use only {PATTERNS[NAME]}"
            )
    if config.objective.kind == "perplexity" and world.max_loss > MAX_PERPLEXITY_LOSS:
        raise InputError(
            config.world,
            "skills",
            f"losses reach {world.max_loss:.3g} nats: their perplexity overflows",
            f"keep losses below {MAX_PERPLEXITY_LOSS:g} (lower beta), or objective.kind: mean",
        )


def _check_names_apart(config: Config, domains: list[str]) -> None:
    """Names that differ only in case are one folder on macOS and Windows file systems."""
    groups = {
        "ddo.scales[].name": [s.name for s in config.ddo.scales] if config.ddo else [],
        "domains": [
            *domains,
            *config.data.sources,
            *(config.anneal.sources if config.anneal else []),
        ],
    }
    for field, names in groups.items():
        seen: dict[str, str] = {}
        for name in dict.fromkeys(names):
            other = seen.setdefault(name.casefold(), name)
            if other != name:
                raise InputError(
                    "config",
                    field,
                    f"{other!r} and {name!r} differ only in case: one folder on macOS and Windows",
                    "rename one",
                )


def _check_run_ids(config: Config, domains: list[str]) -> None:
    """Run ids join names with '-' (ddo-<scale>-<domain>-up-s0): scale 'a' with domain 'b-c' and
    scale 'a-b' with domain 'c' would share one job and one metrics.json."""
    counts = Counter(run.id for run in make_plan(config, domains))
    twice = [run_id for run_id, n in counts.items() if n > 1]
    if twice:
        raise InputError(
            "config",
            "ddo.scales[].name",
            f"two planned runs are both {twice[0]}: scale and domain names joined with '-' "
            "coincide",
            "rename a scale or a domain (e.g. without '-')",
        )


def _scale_field(config: Config, spec: dict[str, Any]) -> str:
    index = [s.name for s in config.ddo.scales].index(spec["scale"])
    return f"ddo.scales[{index}].tokens"


def _check_sweep_tokens(config: Config) -> None:
    """Every domain of every DDO run holds a token count a run table holds (TOKEN_RANGE): a
    scale of 2 tokens (its /3 runs: 0.1 token of a domain) or 1e18 (its x3 runs: 6e17 of one)
    failed the table job after the whole sweep had trained."""
    low, high = TOKEN_RANGE
    cells = [
        (tokens, domain, spec)
        for spec in run_specs(config).values()
        if spec["stage"] == "ddo"
        for domain, tokens in spec["tokens"].items()
    ]
    if not cells:
        return
    fewest, most = min(cells, key=lambda c: c[0]), max(cells, key=lambda c: c[0])
    for (tokens, domain, spec), bound, word in ((fewest, low, "at least"), (most, high, "at most")):
        if low <= tokens <= high:
            continue
        scale = next(s.tokens for s in config.ddo.scales if s.name == spec["scale"])
        raise InputError(
            "config",
            _scale_field(config, spec),
            f"run {spec['id']} trains {tokens:.3g} tokens of {domain}, and a run table holds "
            f"{low:g} to {high:g} per domain",
            f"make the scale {word} {scale * bound / tokens:.3g} tokens, or change ddo.factor "
            "or the base weights",
        )


def _check_autoscale_span(config: Config) -> None:
    """AutoScale from scales too close together (1e6 and 1.01e6) for its targets: the
    extrapolation amplifies the DDO optima's errors (the limits: mixscale.core.predict)."""
    scales = sorted(float(s.tokens) for s in config.ddo.scales)
    if config.autoscale.discrete:
        scales = scales[-2:]  # Algorithm 2 steps by the ratio of the two largest
    low, high = scales[0], scales[-1]
    span = high / low
    for i, target in enumerate(config.autoscale.targets):
        above = target > high
        spans = extrapolation_spans(low, high, target)
        if span >= MIN_SPAN and spans <= MAX_SPANS:
            continue
        needed = span_needed(low, high, target)
        which = "the two largest DDO scales" if config.autoscale.discrete else "the DDO scales"
        raise InputError(
            "config",
            "ddo.scales[].tokens",
            f"{which} span {span:.3g}x ({low:.3g} to {high:.3g}) and autoscale.targets[{i}] "
            f"{target:.3g} lies {spans:.3g} spans {'above' if above else 'below'} them: "
            "AutoScale extrapolates log tokens over the span, so an error in the DDO optima "
            f"grows ~{spans + 1:.3g}x",
            f"make the largest scale at least {needed:.3g}x the smallest "
            f"(at most {MAX_SPANS:g} spans, a span of at least {MIN_SPAN:g}x), or move the target",
        )


def _check_batches(config: Config) -> None:
    """Every process trains micro-batches of one optimizer step's sequences; the seed is each
    run's own (a train.seed was silently replaced by it)."""
    if "seed" in config.train:
        raise InputError(
            "config",
            "train.seed",
            "each run is seeded by its plan (ddo.seeds, verify.seeds, ...): this one is unused",
            "remove it",
        )
    settings = TrainSettings.from_dict({**config.train, "seed": 0})
    gpus = config.accelerator.gpus_per_run
    if settings.batch_sequences % (gpus * settings.micro_batch):
        raise InputError(
            "config",
            "train.batch_sequences",
            f"{settings.batch_sequences} is not a multiple of accelerator.gpus_per_run ({gpus}) "
            f"x train.micro_batch ({settings.micro_batch})",
            "make batch_sequences a multiple of gpus_per_run x micro_batch",
        )


def _check_max_bytes(config: Config) -> None:
    """validation_bytes of every domain are held out first: a cap at or below it leaves nothing
    to train on (the token stores failed with 'empty domain', naming the text, not the cap)."""
    cap, held_out = config.data.max_bytes, config.data.validation_bytes
    if cap is not None and cap <= held_out:
        raise InputError(
            "config",
            "data.max_bytes",
            f"{cap:g} bytes per domain, and data.validation_bytes ({held_out}) are held out "
            "first: nothing is left to train on",
            "raise max_bytes well above validation_bytes, or lower validation_bytes",
        )


def _check_whole_sequences(config: Config) -> None:
    """Torch trains whole sequences: each domain's tokens are rounded to a multiple of
    train.seq_len (the sampler's round()). A sweep whose rounding moves a perturbation beyond the
    design's tolerance (core.design.REL_TOL), or rounds a domain away, failed its fit; a run
    smaller than one optimizer step failed its job."""
    settings = TrainSettings.from_dict({**config.train, "seed": 0})
    seq, batch = settings.seq_len, settings.batch_sequences
    specs = [s for s in run_specs(config).values() if s.get("tokens")]
    fields = {"verify": "autoscale.targets", "anneal": "anneal.budgets"}
    for spec in specs:
        sequences = {d: round(t / seq) for d, t in spec["tokens"].items()}
        if sum(sequences.values()) < batch:
            field = fields.get(spec["stage"], "train.batch_sequences")
            raise InputError(
                "config",
                _scale_field(config, spec) if spec["stage"] == "ddo" else field,
                f"run {spec['id']} trains {sum(sequences.values())} sequences of train.seq_len "
                f"{seq}, fewer than one optimizer step of train.batch_sequences {batch}",
                "raise the run's tokens, or lower batch_sequences or seq_len",
            )
    bases = {
        (s["scale"], s["seed"]): s for s in specs if s["stage"] == "ddo" and not s["perturbed"]
    }
    for spec in specs:
        base = bases.get((spec["scale"], spec["seed"]))
        if spec["stage"] != "ddo" or not spec["perturbed"] or base is None:
            continue
        domains = list(base["tokens"])
        rounded = [[round(run["tokens"][d] / seq) * seq for d in domains] for run in (base, spec)]
        found = classify(*map(np.asarray, rounded)) if min(map(min, rounded)) > 0 else None
        if found is None or domains[found[1]] != spec["perturbed"]:
            smallest, domain = min((t, d) for run in (base, spec) for d, t in run["tokens"].items())
            scale = next(s.tokens for s in config.ddo.scales if s.name == spec["scale"])
            # enough sequences that rounding moves a ratio of two runs by at most REL_TOL
            enough = seq * (1 + 1 / config.ddo.factor) / (2 * REL_TOL)
            raise InputError(
                "config",
                _scale_field(config, spec),
                f"run {spec['id']} trains {smallest:.3g} tokens of {domain}, "
                f"{smallest / seq:.3g} sequences of train.seq_len {seq}: rounded to whole "
                f"sequences, its x{spec['factor']:.3g} is lost in the fit's {REL_TOL:.0%} "
                "tolerance",
                f"raise the scale to at least {scale * enough / smallest:.3g} tokens, or lower "
                "train.seq_len",
            )
