"""Commands that turn an experiment's files into the next: plan files, training, run tables,
verification comparison. Snakemake rules call these through the CLI; all logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mixscale.anneal import anneal_overrides
from mixscale.errors import InputError
from mixscale.fileio import read_json
from mixscale.plan import make_plan
from mixscale.runtable import RunTable


def load_config(path: str) -> dict[str, Any]:
    from mixscale.config_check import load_yaml_config

    return load_yaml_config(path)


def config_domains(config: dict[str, Any]) -> list[str]:
    if config.get("backend", "tables") == "simulate":
        from mixscale.world import load_world

        return list(load_world(config["world"]).domains)
    if config.get("domains"):
        return list(config["domains"])
    return list(config.get("data", {}).get("sources", {}))


def data_dir(config: dict[str, Any]) -> str:
    return f"results/{config['experiment']}/data"


def torch_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What every training job of a torch experiment shares (one Snakemake param, so a change
    reruns the runs it affects). The train keys are checked here, when the DAG is built."""
    from mixscale.settings import TrainSettings

    train = dict(config.get("train", {}))
    TrainSettings.from_dict({**train, "seed": 0})
    model = {
        k: v
        for k, v in config.get("model", {}).items()
        if k not in ("name", "params", "proxy_params")
    }
    if not model.get("type") and not model.get("checkpoint"):
        raise InputError(
            "config", "model.type", "missing", "e.g. model: {type: gpt2, n_layer: 2, ...}"
        )
    return {
        "stores": f"{data_dir(config)}/stores",
        "tokenizer": f"{data_dir(config)}/tokenizer",
        "model": model,
        "train": train,
        "domains": config_domains(config),
    }


def fixed_weights(config: dict[str, Any], method: str, domains: list[str]) -> dict[str, float]:
    verify = config.get("verify", {})
    if method == "uniform":
        return {d: 1 / len(domains) for d in domains}
    if method in ("natural", "reference"):
        weights = verify.get(method)
        if not weights:
            raise InputError("config", f"verify.{method}", "missing", f"give {method} weights")
        # normalise over this experiment's domains: a merged config may carry other keys
        total = sum(float(weights.get(d, 0.0)) for d in domains)
        if total <= 0:
            raise InputError(
                "config",
                f"verify.{method}",
                f"gives no weight to {', '.join(domains)}",
                "name them",
            )
        return {d: float(weights.get(d, 0.0)) / total for d in domains}
    raise ValueError(method)


def run_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every planned run's spec (JSON-able), with fixed verification mixtures filled in.

    Each training job gets only its own spec as a parameter, so changing one run (or adding a
    target) reruns that job alone.
    """
    domains = config_domains(config)
    specs = {}
    for run in make_plan(config, domains):
        spec = run.to_json()
        if run.stage == "verify" and run.method in ("uniform", "natural", "reference"):
            weights = fixed_weights(config, run.method, domains)
            spec["tokens"] = {d: w * run.total_tokens for d, w in weights.items()}
        if run.stage == "anneal":
            spec.update(anneal_overrides(config, base_model_dir(config)))
        specs[run.id] = spec
    return specs


def base_model_dir(config: dict[str, Any]) -> str:
    """Where the in-workflow stage-1 base model of an annealing experiment is saved."""
    from mixscale.anneal import BASE_RUN

    return f"results/{config['experiment']}/runs/{BASE_RUN}/model"


def mixture_tokens(spec: dict[str, Any], weights_path: str | None) -> dict[str, float]:
    """Tokens per domain of a run: explicit in its spec, or a method's weights x its total."""
    tokens = spec.get("tokens") or {}
    if weights_path:
        weights = read_json(weights_path).get("weights")
        if not isinstance(weights, dict) or not weights:
            raise InputError(weights_path, "weights", "missing", "regenerate the method's output")
        total = float(spec["total_tokens"])
        tokens = {d: float(w) * total for d, w in weights.items()}
    if not tokens:
        raise InputError("--spec", "tokens", "no mixture", "pass --weights for this run")
    return tokens


def train(
    spec: dict[str, Any],
    backend: str,
    world_name: str | None,
    eval_points: int,
    weights_path: str | None,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
) -> dict[str, Any] | None:
    """One run of the plan. ``simulate`` returns its metrics; ``torch`` trains and writes them
    (with the model and side-folder checkpoints) next to ``out`` itself."""
    tokens = mixture_tokens(spec, weights_path)
    labels = {"run": spec["id"], "stage": spec["stage"], "method": spec.get("method")}
    if spec.get("source"):
        labels["source"] = spec["source"]
    if backend == "torch":
        return _train_torch(spec, tokens, settings or {}, eval_points, out, labels)
    if backend != "simulate":
        raise InputError(
            "config",
            "backend",
            f"'{backend}' cannot train",
            "use backend: torch or simulate, or give run tables (backend: tables)",
        )
    if not world_name:
        raise InputError("config", "world", "missing", "name a world for backend: simulate")
    from mixscale.simulate import simulate_run
    from mixscale.world import load_world

    metrics = simulate_run(load_world(world_name), tokens, int(spec["seed"]), eval_points)
    metrics.update(labels)
    return metrics


def _train_torch(
    spec: dict[str, Any],
    tokens: dict[str, float],
    settings: dict[str, Any],
    eval_points: int,
    out: str | None,
    labels: dict[str, Any],
) -> None:
    from mixscale.trainer import TrainSettings, train_run

    for key in ("stores", "tokenizer", "model"):
        if not settings.get(key):
            raise InputError(
                "--settings", key, "missing", "pass the experiment's training settings"
            )
    if not out:
        raise InputError("train", "--out", "missing", "name the run's metrics.json")
    # a run may override the experiment's training settings and model (annealing: a
    # checkpoint, its own learning rate and schedule)
    train = TrainSettings.from_dict(
        {
            **settings.get("train", {}),
            **spec.get("train", {}),
            "seed": int(spec["seed"]),
            "eval_points": eval_points,
        }
    )
    train_run(
        settings["stores"],
        settings["tokenizer"],
        spec.get("model") or settings["model"],
        tokens,
        train,
        str(Path(out).parent),
        eval_domains=settings.get("eval_domains"),
        domains=settings.get("domains"),
        labels=labels,
        metrics_name=Path(out).name,
        skip=spec.get("skip"),
    )
    return None


def run_table(metrics_paths: list[str], out: str) -> RunTable:
    rows = [read_json(p) for p in metrics_paths]
    if not rows:
        raise InputError(
            "table", "--metrics", "no metrics files", "pass the runs' metrics.json files"
        )
    domains = list(rows[0]["tokens"])
    evals = list(rows[0]["final_losses"])
    table = RunTable(
        source=out,
        train_domains=domains,
        eval_domains=evals,
        tokens=np.array([[r["tokens"][d] for d in domains] for r in rows]),
        losses=np.array([[r["final_losses"][e] for e in evals] for r in rows]),
        run_ids=[r["run"] for r in rows],
        seeds=[str(r["seed"]) for r in rows],
    )
    table.save(out)
    return table


def steps_to_reach(curve: list[dict[str, Any]], level: float) -> float | None:
    """First fraction of the run (linearly interpolated) at which the objective <= level."""
    prev_t, prev_v = 0.0, None
    for point in curve:
        t, v = point["fraction"], point["objective"]
        if v <= level:
            if prev_v is None or prev_v == v:
                return t
            return prev_t + (t - prev_t) * (prev_v - level) / (prev_v - v)
        prev_t, prev_v = t, v
    return None


def compare(metrics_paths: list[str], target: float, world_name: str | None) -> dict[str, Any]:
    """Verification at one target scale: losses, perplexities, steps saved, world scores."""
    runs = [read_json(p) for p in metrics_paths]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    methods: dict[str, Any] = {}
    for method, items in by_method.items():
        evals = list(items[0]["final_losses"])
        losses = np.array([[r["final_losses"][e] for e in evals] for r in items]).mean(axis=0)
        curve = [
            {
                "fraction": p["fraction"],
                "objective": float(np.mean([r["curve"][k]["objective"] for r in items])),
            }
            for k, p in enumerate(items[0]["curve"])
        ]
        methods[method] = {
            "weights": items[0]["weights"],
            "seeds": len(items),
            "objective": float(np.mean([r["objective"] for r in items])),
            "perplexity": {e: float(np.exp(v)) for e, v in zip(evals, losses, strict=True)},
            "mean_perplexity": float(np.exp(losses).mean()),
            "worst_perplexity": float(np.exp(losses).max()),
            "curve": curve,
        }
    out: dict[str, Any] = {"target_tokens": target, "methods": methods}
    if "uniform" in methods:
        level = methods["uniform"]["objective"]
        for m in methods.values():
            reached = steps_to_reach(m["curve"], level)
            m["steps_saved_pct"] = None if reached is None else 100 * (1 - reached)
    if world_name:
        from mixscale.world import load_world, score

        world = load_world(world_name)
        optimum = world.optimum(target)
        for m in methods.values():
            m["world_score"] = score(world, m["weights"], target, optimum)
    return out
