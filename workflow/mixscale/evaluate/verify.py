"""After the runs: a DDO scale's run table, and the verification of methods at a target scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixscale.core.intervals import mean_interval, paired_difference
from mixscale.core.objective import Objective
from mixscale.core.runtable import RunTable
from mixscale.core.world import load_world, score
from mixscale.errors import InputError
from mixscale.kinds import METRICS_FOR_COMPARE, METRICS_FOR_TABLE
from mixscale.shapes import read_kinds


def run_table(metrics_paths: list[str], out: str) -> RunTable:
    rows = read_kinds(metrics_paths, METRICS_FOR_TABLE)  # one set of domains for every run
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


def _objective_of(objective: Objective, losses: list[dict[str, float]], source: str) -> float:
    """The objective DDO optimised, averaged over seeds, from each seed's per-domain losses."""
    evals = list(losses[0])
    matrix = np.array([[item[e] for e in evals] for item in losses])
    return float(np.mean(objective.evaluate(evals, matrix, source)))


def compare(
    metrics_paths: list[str],
    target: float,
    world_name: str | None,
    objective: Objective | None = None,
) -> dict[str, Any]:
    """Verification at one target scale: losses, perplexities, steps saved, world scores.

    ``objective``: the one DDO optimised (the config's), so "objective" and the steps saved
    compare methods on what they were chosen for; None: the runs' recorded mean loss."""
    objective = objective or Objective("mean")
    runs = read_kinds(metrics_paths, METRICS_FOR_COMPARE)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    methods: dict[str, Any] = {}
    for method, items in by_method.items():
        evals = list(items[0]["final_losses"])
        losses = np.array([[r["final_losses"][e] for e in evals] for r in items]).mean(axis=0)
        source = items[0].get("run", method)
        curve = [
            {
                "fraction": p["fraction"],
                "objective": _objective_of(
                    objective, [r["curve"][k]["losses"] for r in items], source
                ),
            }
            for k, p in enumerate(items[0]["curve"])
        ]
        methods[method] = {
            "weights": items[0]["weights"],
            "seeds": len(items),
            "objective": _objective_of(objective, [r["final_losses"] for r in items], source),
            "perplexity": {e: float(np.exp(v)) for e, v in zip(evals, losses, strict=True)},
            "mean_perplexity": float(np.exp(losses).mean()),
            "worst_perplexity": float(np.exp(losses).max()),
            "curve": curve,
        }
    out: dict[str, Any] = {
        "target_tokens": target,
        "objective": objective.describe(),
        "precision": sorted(
            {
                str(r["hardware"]["precision"])
                for r in runs
                if r.get("hardware", {}).get("precision")
            }
        ),
        # what exp(loss) is: perplexity (causal LM) or exp(MLM loss) (encoders)
        "metric": next((str(r["metric"]) for r in runs if r.get("metric")), "perplexity"),
        "methods": methods,
    }
    for method, items in by_method.items():
        methods[method]["objective_by_seed"] = {
            _seed_of(r, k): _objective_of(objective, [r["final_losses"]], r.get("run", method))
            for k, r in enumerate(items)
        }
        methods[method]["objective_interval"] = mean_interval(
            list(methods[method]["objective_by_seed"].values())
        )
    if "uniform" in methods:
        level = methods["uniform"]["objective"]
        for m in methods.values():
            reached = steps_to_reach(m["curve"], level)
            m["steps_saved_pct"] = None if reached is None else 100 * (1 - reached)
        _steps_saved_by_seed(by_method, methods, objective)
    _paired_comparisons(methods)
    if world_name:
        world = load_world(world_name)
        optimum = world.optimum(target)
        for m in methods.values():
            m["world_score"] = score(world, m["weights"], target, optimum)
    return out


def _seed_of(run: dict[str, Any], index: int) -> str:
    """A run's seed, the key methods are paired on; metrics written by hand may omit it, and
    then the k-th run of each method is paired with the k-th of the others."""
    return str(run.get("seed", f"#{index}"))


def _steps_saved_by_seed(
    by_method: dict[str, list[dict[str, Any]]], methods: dict[str, Any], objective: Objective
) -> None:
    """Per seed: the share of steps a method's run saved to reach the objective the uniform
    run of the same seed ended at; the interval over seeds when every seed reached it."""
    uniform_final = methods["uniform"]["objective_by_seed"]
    for method, items in by_method.items():
        saved: dict[str, float | None] = {}
        for k, r in enumerate(items):
            seed, run = _seed_of(r, k), r.get("run", method)
            if seed not in uniform_final:
                continue
            curve = [
                {
                    "fraction": p["fraction"],
                    "objective": _objective_of(objective, [p["losses"]], run),
                }
                for p in r["curve"]
            ]
            reached = steps_to_reach(curve, uniform_final[seed])
            saved[seed] = None if reached is None else 100 * (1 - reached)
        m = methods[method]
        m["steps_saved_by_seed"] = saved
        never = sum(v is None for v in saved.values())
        m["steps_saved_never"] = never
        m["steps_saved_interval"] = (
            mean_interval([v for v in saved.values() if v is not None]) if not never else None
        )


def _paired_comparisons(methods: dict[str, Any]) -> None:
    """Each method against uniform and against the best other method (lowest mean objective),
    paired by seed: the difference of the objective with its interval."""
    for method, m in methods.items():
        own = m["objective_by_seed"]
        if "uniform" in methods and method != "uniform":
            m["vs_uniform"] = paired_difference(own, methods["uniform"]["objective_by_seed"])
        others = {k: v for k, v in methods.items() if k != method}
        if others:
            best = min(others, key=lambda k: others[k]["objective"])
            m["vs_best_other"] = {
                "other": best,
                **paired_difference(own, others[best]["objective_by_seed"]),
            }
