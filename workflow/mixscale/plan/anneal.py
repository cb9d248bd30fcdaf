"""Annealing experiments (arXiv 2507.22250): what each candidate data source is worth.

A base model (a checkpoint, or a stage-1 run on a general mix trained inside the workflow) is
annealed many times: per budget D a replay-only ``control`` run, and per (source, D, seed) a run
whose mix takes ``share`` of its tokens from the source and the rest from the general (replay)
mix, with the learning rate decaying linearly to zero over the run. The target metric is the
held-out loss on the target domain(s). ``mixscale utility`` turns the gains over the control into
fitted curves, rankings per budget, rank flips against the smallest (micro-annealing) budget and
a cost-aware allocation.

Annealing runs read each domain *after* the tokens the in-workflow base run used (``skip``), so
replay and sources are fresh text, as they would be on a cluster.
"""

from __future__ import annotations

from typing import Any

from mixscale.config.domains import derived_sources
from mixscale.config.tasks import entry_from
from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.plan.run import Run, distinct_labels, target_label

BASE_RUN = "anneal-base"
CONTROL = "control"


def _weights(
    spec: Any, domains: list[str], field: str, allowed: list[str] | None = None
) -> dict[str, float]:
    """'uniform' over ``domains``, or explicit weights (normalised) naming known domains."""
    if spec in (None, "uniform"):
        return {d: 1 / len(domains) for d in domains}
    if not isinstance(spec, dict) or not spec:
        raise InputError(
            "config", field, "expected uniform or {domain: weight}", "e.g. replay: uniform"
        )
    unknown = [d for d in spec if d not in (allowed or domains)]
    if unknown:
        raise InputError("config", f"{field}.{unknown[0]}", "unknown domain", "add it to data")
    total = float(sum(spec.values()))
    if total <= 0:
        raise InputError("config", field, "weights sum to 0", "give positive weights")
    return {d: float(w) / total for d, w in spec.items() if w > 0}


def base_mix(config: Config, domains: list[str]) -> dict[str, float]:
    """The stage-1 (general) mix: anneal.base.weights, uniform over the non-target domains by
    default (the target domain is what annealing is meant to add)."""
    targets = target_domains(config, domains)
    general = [d for d in domains if d not in targets] or domains
    return _weights(config.anneal.base.weights, general, "anneal.base.weights", domains)


def replay_mix(config: Config, domains: list[str]) -> dict[str, float]:
    if config.anneal.replay is None:
        return base_mix(config, domains)
    return _weights(config.anneal.replay, domains, "anneal.replay")


def target_task(config: Config):
    """The lm-eval task entry that is the target metric (higher is better), if any."""
    task = config.anneal.target.task if config.anneal else None
    return entry_from(task, "anneal.target.task") if task else None


def target_domains(config: Config, domains: list[str]) -> list[str]:
    """Target domains: the metric's held-out losses, and what the base mix leaves out."""
    target = config.anneal.target
    targets = target.domains
    if not targets and not target.task:
        raise InputError(
            "config", "anneal.target", "needs domains or a task", "e.g. domains: [science]"
        )
    unknown = [d for d in targets if d not in domains]
    if unknown:
        raise InputError(
            "config",
            "anneal.target.domains",
            f"unknown domain {unknown[0]}",
            "use a domain of data.sources",
        )
    return list(targets)


def check_anneal(config: Config, domains: list[str]) -> None:
    anneal = config.anneal
    budgets = [float(b) for b in anneal.budgets]
    if len(budgets) < 3:
        raise InputError(
            "config", "anneal.budgets", f"{len(budgets)} budgets", "give >= 3 (curves need 3)"
        )
    if budgets != sorted(budgets) or len(set(budgets)) != len(budgets):
        raise InputError("config", "anneal.budgets", "must increase strictly", "sort them")
    distinct_labels(budgets, "anneal.budgets")
    share = float(anneal.share)
    if not 0 < share <= 1:
        raise InputError("config", "anneal.share", f"{share:g}", "a fraction in (0, 1]")
    sources = anneal.sources
    if not sources:
        raise InputError("config", "anneal.sources", "missing", "name candidate source domains")
    for name in sources:
        if name == CONTROL:
            raise InputError("config", "anneal.sources.control", "reserved name", "rename it")
        if name not in domains and name not in derived_sources(config):
            raise InputError(
                "config", f"anneal.sources.{name}", "not a domain", "add it to data.sources"
            )
    if not anneal.base.checkpoint and not anneal.base.tokens:
        raise InputError(
            "config", "anneal.base", "needs checkpoint or tokens", "a model folder, or tokens"
        )
    target_domains(config, domains)


def anneal_runs(config: Config, domains: list[str]) -> list[Run]:
    """The stage-1 base run (unless a checkpoint is given), then per budget and seed the
    replay-only control and one run per source."""
    anneal = config.anneal
    if not anneal:
        return []
    check_anneal(config, domains)
    base = anneal.base
    runs, skip = [], {}
    if not base.checkpoint:
        tokens = {d: w * float(base.tokens) for d, w in base_mix(config, domains).items()}
        skip = tokens
        runs.append(
            Run(
                id=BASE_RUN,
                stage="anneal-base",
                scale="base",
                seed=int(base.seed),
                total_tokens=float(base.tokens),
                tokens=tokens,
            )
        )
    replay = replay_mix(config, domains)
    share = float(anneal.share)
    for budget in anneal.budgets:
        label = target_label(float(budget))
        for seed in range(int(anneal.seeds)):
            for source in [CONTROL, *anneal.sources]:
                mix = _anneal_tokens(replay, source, share, float(budget))
                runs.append(
                    Run(
                        id=f"anneal-{label}-{source}-s{seed}",
                        stage="anneal",
                        scale=label,
                        seed=seed,
                        total_tokens=float(budget),
                        tokens=mix,
                        source=source,
                        skip={d: skip[d] for d in mix if d in skip},
                    )
                )
    return runs


def _anneal_tokens(
    replay: dict[str, float], source: str, share: float, budget: float
) -> dict[str, float]:
    """Control: the replay mix alone. Source run: ``share`` from the source, the rest replay."""
    if source == CONTROL:
        return {d: w * budget for d, w in replay.items()}
    mix = {d: w * budget * (1 - share) for d, w in replay.items()}
    mix[source] = mix.get(source, 0.0) + share * budget
    return mix


def anneal_overrides(
    config: Config, base_model_dir: str | None, source: str | None = None
) -> dict[str, Any]:
    """Per-run overrides of an annealing run: start from the base model, linear decay to zero.
    A derived source may hold fewer tokens than a large budget asks of it (a small curated
    set): its runs repeat it, and metrics.json reports the epochs."""
    anneal = config.anneal
    schedule = anneal.schedule
    train: dict[str, Any] = {
        "schedule": "linear",
        "min_lr_ratio": 0.0,
        "warmup": float(schedule.warmup),
    }
    if source in derived_sources(config):
        train["allow_repeat"] = True
    if schedule.lr is not None:
        train["lr"] = float(schedule.lr)
    checkpoint = anneal.base.checkpoint or base_model_dir
    return {"train": train, "model": {"checkpoint": checkpoint}}


# --- after the runs ---------------------------------------------------------------------------


# --- report -----------------------------------------------------------------------------------
