"""Annealing results as tables: the target metric per run, and the cost per token of each source."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text
from mixscale.kinds import DOWNSTREAM_FOR_ANNEAL, METRICS_FOR_ANNEAL
from mixscale.shapes import read_kind


def anneal_table(paths: list[str], target: list[str], out: str, metric: str | None = None) -> int:
    """One TSV row per annealing run: source, budget_tokens, metric, seed (``mixscale utility``'s
    input). From metrics.json files: the mean held-out loss over the target domains; from
    downstream result files (``metric`` given): the mean of that metric over the entry's tasks."""
    lines = ["source\tbudget_tokens\tmetric\tseed\trun"]
    for path in sorted(paths):
        m = read_kind(path, DOWNSTREAM_FOR_ANNEAL if metric else METRICS_FOR_ANNEAL)
        value = _task_metric(path, m, metric) if metric else _loss_metric(path, m, target)
        if not math.isfinite(value):
            raise InputError(path, metric or "final_losses", "not finite", "rerun the run")
        if metric:  # a downstream result (downstream/<run>/<entry>.json): identity in its labels
            source, budget, seed = m["label"], float(m["target"]), m["run_seed"]
            run = Path(path).parent.name
        else:  # the planned budget: trained tokens are rounded to whole sequences per domain
            budget = sum((m.get("requested_tokens") or {}).values()) or m["total_tokens"]
            source, seed, run = m["source"], m["seed"], m["run"]
        lines.append(f"{source}\t{budget:.6g}\t{value:.6f}\t{seed}\t{run}")
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1


def _loss_metric(path: str, m: dict[str, Any], target: list[str]) -> float:
    losses = m.get("final_losses") or {}
    missing = [d for d in target if losses.get(d) is None]
    if missing:
        raise InputError(path, f"final_losses.{missing[0]}", "missing", "rerun the run")
    return sum(float(losses[d]) for d in target) / len(target)


def _task_metric(path: str, m: dict[str, Any], metric: str) -> float:
    values = [t[metric] for t in m.get("tasks", {}).values() if t.get(metric) is not None]
    if not values:
        raise InputError(path, f"tasks.*.{metric}", "missing", "check anneal.target.task.metric")
    return sum(values) / len(values)


def costs_table(sources: dict[str, Any], share: float, training: float, out: str) -> None:
    """``mixscale utility``'s costs TSV from anneal.sources, the share and the training cost."""
    lines = [
        "source\tacquisition_cost_per_token\ttraining_cost_per_token\tshare\tfixed_cost\tmax_tokens"
    ]
    for name, source in sources.items():
        source = source or {}
        if "acquisition_cost" not in source:
            raise InputError(
                "config", f"anneal.sources.{name}.acquisition_cost", "missing", "cost per token"
            )
        max_tokens = source.get("max_tokens", "")
        lines.append(
            f"{name}\t{float(source['acquisition_cost']):.6g}\t{training:.6g}\t{share:g}\t"
            f"{float(source.get('fixed_cost', 0)):.6g}\t{max_tokens}"
        )
    atomic_write_text(out, "\n".join(lines) + "\n")
