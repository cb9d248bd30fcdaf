"""The plan: every training run a config implies, as a pure function of the config.

Snakemake expands over it, ``mixscale budget`` prices it. Each run's spec (JSON) is the single
parameter of its training job, so changing one run (or adding a target) reruns that job alone.
A run's mixture is explicit tokens per domain (DDO sweeps, fixed methods, annealing) or the
weights file of a method at a target scale (see ``mixscale.methods``).
"""

from __future__ import annotations

from typing import Any

from mixscale.config.check import schema_default
from mixscale.config.domains import config_domains, data_dir, eval_only_domains
from mixscale.config.training import TrainSettings, check_trackers
from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.methods import method
from mixscale.plan.anneal import BASE_RUN, anneal_overrides, anneal_runs
from mixscale.plan.mixture import check_mixture_stages, ddo_runs, method_proxy_runs, verify_runs
from mixscale.plan.run import Run


def make_plan(config: Config, domains: list[str]) -> list[Run]:
    runs = anneal_runs(config, domains)
    if config.mixture:  # a mixture experiment (an annealing-only config has none)
        check_mixture_stages(config, domains)
        proxies = method_proxy_runs(config, domains)
        runs = ddo_runs(config, domains) + proxies + verify_runs(config) + runs
    return runs


# run_specs of the configs seen in this process. A Config is read-only, so its plan never
# changes; the Snakefile, the budget and the checks all ask for it (a 2,000-run plan: 0.35 s).
_PLANS: dict[int, tuple[Config, dict[str, dict[str, Any]]]] = {}


def run_specs(config: Config) -> dict[str, dict[str, Any]]:
    """Every planned run's spec (JSON-able), with fixed verification mixtures filled in. The
    same mapping for the same config object: read it, never change it."""
    cached = _PLANS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    specs = _plan_specs(config)
    _PLANS[id(config)] = (config, specs)  # the config held: its id is not reused
    return specs


def _plan_specs(config: Config) -> dict[str, dict[str, Any]]:
    domains = config_domains(config)
    specs = {}
    for run in make_plan(config, domains):
        spec = run.to_json()
        if run.stage == "verify":
            weights = method(run.method).fixed_weights(config, domains)
            if weights is not None:
                spec["tokens"] = {d: w * run.total_tokens for d, w in weights.items()}
        if run.stage == "anneal":
            spec.update(anneal_overrides(config, base_model_dir(config), run.source))
        specs[run.id] = spec
    return specs


def base_model_dir(config: Config) -> str:
    """Where the in-workflow stage-1 base model of an annealing experiment is saved."""
    return f"{config.out}/runs/{BASE_RUN}/model"


def torch_settings(config: Config) -> dict[str, Any]:
    """What every training job of a torch experiment shares (one Snakemake param, so a change
    reruns the runs it affects). The train keys are checked here, when the DAG is built."""
    train = dict(config.train)
    TrainSettings.from_dict({**train, "seed": 0})
    model = {k: v for k, v in config.model.items() if k not in ("name", "params", "proxy_params")}
    if not model.get("type") and not model.get("checkpoint"):
        raise InputError(
            "config", "model.type", "missing", "e.g. model: {type: gpt2, n_layer: 2, ...}"
        )
    check_trackers(config.tracking)
    settings = {
        "stores": f"{data_dir(config)}/stores",
        "tokenizer": f"{data_dir(config)}/tokenizer",
        "model": model,
        "train": train,
        "domains": config_domains(config),
    }
    extra = eval_only_domains(config)
    if extra:  # evaluated beside the training domains, never trained on
        settings["eval_domains"] = [*settings["domains"], *extra]
    # only when not the default: a new key would change every finished run's params (a rerun)
    if config.tracking != schema_default("tracking"):
        settings["tracking"] = config.tracking
    return settings
