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

import math
from pathlib import Path
from typing import Any

from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text, read_json
from mixscale.plan import Run, target_label

BASE_RUN = "anneal-base"
CONTROL = "control"


def anneal_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("anneal") or {}


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


def base_mix(config: dict[str, Any], domains: list[str]) -> dict[str, float]:
    """The stage-1 (general) mix: anneal.base.weights, uniform over the non-target domains by
    default (the target domain is what annealing is meant to add)."""
    anneal = anneal_config(config)
    targets = target_domains(config, domains)
    general = [d for d in domains if d not in targets] or domains
    return _weights(anneal.get("base", {}).get("weights"), general, "anneal.base.weights", domains)


def replay_mix(config: dict[str, Any], domains: list[str]) -> dict[str, float]:
    anneal = anneal_config(config)
    if anneal.get("replay") is None:
        return base_mix(config, domains)
    return _weights(anneal["replay"], domains, "anneal.replay")


def target_task(config: dict[str, Any]):
    """The lm-eval task entry that is the target metric (higher is better), if any."""
    from mixscale.downstream import entry_from

    task = anneal_config(config).get("target", {}).get("task")
    return entry_from(task, "anneal.target.task") if task else None


def target_domains(config: dict[str, Any], domains: list[str]) -> list[str]:
    """Target domains: the metric's held-out losses, and what the base mix leaves out."""
    target = anneal_config(config).get("target", {})
    targets = target.get("domains", [])
    if not targets and not target.get("task"):
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


def check_anneal(config: dict[str, Any], domains: list[str]) -> None:
    anneal = anneal_config(config)
    budgets = [float(b) for b in anneal.get("budgets", [])]
    if len(budgets) < 3:
        raise InputError(
            "config", "anneal.budgets", f"{len(budgets)} budgets", "give >= 3 (curves need 3)"
        )
    if budgets != sorted(budgets) or len(set(budgets)) != len(budgets):
        raise InputError("config", "anneal.budgets", "must increase strictly", "sort them")
    share = float(anneal.get("share", 0.3))
    if not 0 < share <= 1:
        raise InputError("config", "anneal.share", f"{share:g}", "a fraction in (0, 1]")
    sources = anneal.get("sources") or {}
    if not sources:
        raise InputError("config", "anneal.sources", "missing", "name candidate source domains")
    for name in sources:
        if name == CONTROL:
            raise InputError("config", "anneal.sources.control", "reserved name", "rename it")
        if name not in domains:
            raise InputError(
                "config", f"anneal.sources.{name}", "not a domain", "add it to data.sources"
            )
    base = anneal.get("base", {})
    if not base.get("checkpoint") and not base.get("tokens"):
        raise InputError(
            "config", "anneal.base", "needs checkpoint or tokens", "a model folder, or tokens"
        )
    target_domains(config, domains)


def anneal_runs(config: dict[str, Any], domains: list[str]) -> list[Run]:
    """The stage-1 base run (unless a checkpoint is given), then per budget and seed the
    replay-only control and one run per source."""
    anneal = anneal_config(config)
    if not anneal:
        return []
    check_anneal(config, domains)
    base = anneal.get("base", {})
    runs, skip = [], {}
    if not base.get("checkpoint"):
        tokens = {d: w * float(base["tokens"]) for d, w in base_mix(config, domains).items()}
        skip = tokens
        runs.append(
            Run(
                id=BASE_RUN,
                stage="anneal-base",
                scale="base",
                seed=int(base.get("seed", 0)),
                total_tokens=float(base["tokens"]),
                tokens=tokens,
            )
        )
    replay = replay_mix(config, domains)
    share = float(anneal.get("share", 0.3))
    for budget in anneal["budgets"]:
        label = target_label(float(budget))
        for seed in range(int(anneal.get("seeds", 1))):
            for source in [CONTROL, *anneal["sources"]]:
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


def anneal_overrides(config: dict[str, Any], base_model_dir: str | None) -> dict[str, Any]:
    """Per-run overrides of an annealing run: start from the base model, linear decay to zero."""
    anneal = anneal_config(config)
    schedule = anneal.get("schedule", {})
    train = {
        "schedule": "linear",
        "min_lr_ratio": 0.0,
        "warmup": float(schedule.get("warmup", 0.0)),
    }
    if "lr" in schedule:
        train["lr"] = float(schedule["lr"])
    checkpoint = anneal.get("base", {}).get("checkpoint") or base_model_dir
    return {"train": train, "model": {"checkpoint": checkpoint}}


# --- after the runs ---------------------------------------------------------------------------


def anneal_table(paths: list[str], target: list[str], out: str, metric: str | None = None) -> int:
    """One TSV row per annealing run: source, budget_tokens, metric, seed (``mixscale utility``'s
    input). From metrics.json files: the mean held-out loss over the target domains; from
    downstream result files (``metric`` given): the mean of that metric over the entry's tasks."""
    lines = ["source\tbudget_tokens\tmetric\tseed\trun"]
    for path in sorted(paths):
        m = read_json(path)
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


def training_cost_per_token(config: dict[str, Any]) -> float:
    """Training cost of one annealing token from the budget model: 6 x params FLOPs at the
    configured peak and utilisation, priced per GPU-hour (accelerator.price_per_gpu_hour)."""
    from mixscale.budget import _flops_per_gpu_hour, _model_params

    price = float(config.get("accelerator", {}).get("price_per_gpu_hour", 1.0))
    return 6 * _model_params(config, "params") / _flops_per_gpu_hour(config) * price


def anneal_training_cost(config: dict[str, Any]) -> float:
    """anneal.training_cost_per_token, or the budget model's price of a token."""
    given = anneal_config(config).get("training_cost_per_token")
    return float(given) if given is not None else training_cost_per_token(config)


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


# --- report -----------------------------------------------------------------------------------


def write_anneal_report(utility_path: str, runs_path: str, out: str, unit: str = "$") -> None:
    """anneal.md: curves (x: tokens and x: cost), rankings per budget with flips, allocation."""
    from mixscale.report import _table

    result = read_json(utility_path)
    folder = Path(out).parent
    plot_gain_curves(result, runs_path, folder / "anneal_gain_vs_tokens.png", "tokens")
    plot_gain_curves(result, runs_path, folder / "anneal_gain_vs_cost.png", "cost", unit)
    lines = ["# Data-source utility from annealing", ""]
    lines += [
        f"Gain = control's target loss - the run's (higher is better), per source and annealing "
        f"budget; curve {result['curve_form']}, 90% bootstrap intervals. Micro-annealing point: "
        f"{result['micro_annealing_budget']:.4g} tokens.",
        "",
        "![gain vs tokens](anneal_gain_vs_tokens.png)",
        "",
        "![gain vs cost](anneal_gain_vs_cost.png)",
        "",
        "## Fitted curves",
        "",
    ]
    rows = []
    for name, s in result["sources"].items():
        c = s["curve"]
        interval = c.get("intervals_90", {}).get("G")
        rows.append(
            [
                name,
                c["status"],
                c["G"],
                f"[{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "-",
                c["D0"],
                c["alpha"],
                s["cost_per_token"],
                c.get("reason") or "",
            ]
        )
    lines += _table(
        ["source", "status", "G", "G 90%", "D0", "alpha", f"cost/token ({unit})", "note"], rows
    )
    lines += ["", "## Rankings per budget (flips against the micro-annealing budget in bold)", ""]
    rows = []
    for r in result["rankings"]:
        flips_gain = _flipped(r.get("flips_vs_smallest_gain"))
        flips_cost = _flipped(r.get("flips_vs_smallest_gain_per_cost"))
        rows.append(
            [
                f"{r['budget_tokens']:.4g}",
                r["kind"],
                _ranked(r["rank_by_gain"], flips_gain),
                _ranked(r["rank_by_gain_per_cost"], flips_cost),
            ]
        )
    lines += _table(["budget (tokens)", "kind", "by gain", "by gain per cost"], rows)
    lines += ["", _flip_summary(result), ""]
    if "allocation" in result:
        a = result["allocation"]
        lines += [f"## Allocation of a budget of {a['budget']:.4g} {unit}", ""]
        if a.get("status") != "ok":
            lines += [f"No allocation: {a.get('status')}.", ""]
        else:
            rows = [
                [s, a["tokens"][s], a["cost"][s], a["gain_by_source"][s]]
                for s in sorted(a["tokens"], key=lambda s: -a["tokens"][s])
            ]
            lines += _table(["source", "annealing tokens", f"cost ({unit})", "fitted gain"], rows)
            lines += ["", f"Total fitted gain {a['gain']:.4g}; {result['assumption']}.", ""]
    atomic_write_text(out, "\n".join(lines) + "\n")


def _flipped(flips: dict[str, Any] | None) -> set[str]:
    return {s for pair in (flips or {}).get("flipped_pairs", []) for s in pair}


def _ranked(order: list[str], flipped: set[str]) -> str:
    return " > ".join(f"**{s}**" if s in flipped else s for s in order)


def _flip_summary(result: dict[str, Any]) -> str:
    flips = result.get("rank_flips") or []
    if not flips:
        return (
            "No rank flips: the micro-annealing budget ranks the sources as every larger "
            "observed and extrapolated budget does."
        )
    parts = []
    for f in flips:
        for kind, pairs in (("gain", f["by_gain"]), ("gain per cost", f["by_gain_per_cost"])):
            if pairs:
                text = ", ".join(f"{a} / {b}" for a, b in pairs)
                parts.append(f"{f['budget_tokens']:.4g} tokens ({f['kind']}, by {kind}): {text}")
    return "Rank flips against the micro-annealing budget: " + "; ".join(parts) + "."


def plot_gain_curves(
    result: dict[str, Any], runs_path: str, png: Path, axis: str, unit: str = "$"
) -> None:
    """Observed gains per seed and the fitted curve per source, against tokens or total cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mixscale.report import _save
    from mixscale.utility import gains_by_budget, load_anneal_table

    gains = gains_by_budget(load_anneal_table(runs_path), result["direction"])
    budgets = [float(k) for k in next(iter(result["sources"].values()))["observed"]]
    grid = np.geomspace(min(budgets) / 2, max(budgets) * 10, 100)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, source) in enumerate(result["sources"].items()):
        color = colors[i % len(colors)]

        def x(tokens, s=source):
            tokens = np.asarray(tokens, dtype=float)
            return tokens if axis == "tokens" else tokens * s["cost_per_token"] + s["fixed_cost"]

        for budget, values in gains[name].items():
            ax.plot(x([budget] * len(values)), values, "o", color=color, ms=3, alpha=0.7)
        c = source["curve"]
        if c["status"] == "ok":
            fit = c["G"] * (1 - (1 + grid / c["D0"]) ** -c["alpha"])
            ax.plot(x(grid), fit, "-", color=color, label=f"{name} (fit)")
        else:
            ax.plot([], [], "o", color=color, label=f"{name} ({c['status']})")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(x([max(budgets)])[0] if axis == "tokens" else np.nan, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("annealing tokens" if axis == "tokens" else f"total cost ({unit})")
    ax.set_ylabel("gain over control (target loss)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, png)


def anneal_metric_note(config: dict[str, Any], domains: list[str]) -> str:
    return "mean held-out loss over " + ", ".join(target_domains(config, domains))
