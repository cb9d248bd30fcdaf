"""After the runs: a DDO scale's run table, and the verification of methods at a target scale."""

from __future__ import annotations

from pathlib import Path
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
    _check_each_run_once(metrics_paths, rows)
    for path, row in zip(metrics_paths, rows, strict=True):
        _check_planned_tokens(path, row)
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


# --- the runs a table or a comparison is made of: each once, as planned -----------------------

# A method's runs share one mixture: weights agree to this (the sampler rounds each domain to
# whole sequences, which moves a weight by far less).
SAME_WEIGHTS = 1e-3
# A run is at the target scale when its total tokens are within this of it (sequence rounding
# moves it by far less).
SAME_TOTAL = 0.01


def _check_each_run_once(paths: list[str], runs: list[dict[str, Any]]) -> None:
    """The same file twice (by any path: the same one, a link, a copy of the path), or two
    files of the same run, would count one run as two replicates."""
    seen_files: dict[tuple[int, int], str] = {}
    seen_runs: dict[str, str] = {}
    for path, run in zip(paths, runs, strict=True):
        st = Path(path).stat()
        if (st.st_dev, st.st_ino) in seen_files:
            same = seen_files[(st.st_dev, st.st_ino)]
            raise InputError(path, "--metrics", f"the same file as {same}", _ONCE)
        seen_files[(st.st_dev, st.st_ino)] = path
        run_id = run.get("run")
        if run_id is None:
            continue
        if str(run_id) in seen_runs:
            raise InputError(path, "run", f"run '{run_id}' is also {seen_runs[str(run_id)]}", _ONCE)
        seen_runs[str(run_id)] = path


_ONCE = "pass each run's metrics.json once"


def _check_planned_tokens(path: str, run: dict[str, Any]) -> None:
    """A run's tokens are those it was trained on: the planned tokens per domain
    (``requested_tokens``, each rounded to whole sequences: within half a sequence), summing
    to ``total_tokens``, in the proportions of ``weights``. A metrics file edited to other
    tokens would join the table as some other mixture's replicate."""
    tokens = run.get("tokens")
    if not isinstance(tokens, dict) or not tokens:
        return  # the structure is the reader's to check
    values = np.array([float(v) for v in tokens.values()])
    total = float(values.sum())
    if "total_tokens" in run and not np.isclose(total, float(run["total_tokens"]), rtol=1e-6):
        raise InputError(
            path,
            "tokens",
            f"sum to {total:.6g}, not total_tokens {run['total_tokens']:.6g}",
            _REGENERATE,
        )
    weights = run.get("weights")
    if isinstance(weights, dict) and set(weights) == set(tokens) and total > 0:
        shares = np.array([float(weights[d]) for d in tokens])
        if not np.allclose(values / total, shares, rtol=1e-6, atol=1e-9):
            raise InputError(path, "tokens", "not in the proportions of weights", _REGENERATE)
    planned = run.get("requested_tokens")
    if not isinstance(planned, dict):
        return
    seq_len = float((run.get("settings") or {}).get("seq_len") or 0)
    for domain, value in tokens.items():
        want = float(planned.get(domain, 0.0))
        slack = seq_len / 2 if seq_len else REL_ROUNDING * want
        if abs(float(value) - want) > slack + 1e-6 * max(want, 1.0):
            raise InputError(
                path,
                f"tokens.{domain}",
                f"{float(value):.6g} tokens, the run was planned with {want:.6g}",
                _REGENERATE,
            )


REL_ROUNDING = 0.02  # metrics without their sequence length: rounding within 2%
_REGENERATE = "metrics.json is the run's record: delete it and rerun the run, do not edit it"


def _check_comparable(
    paths: list[str], runs: list[dict[str, Any]], target: float
) -> dict[str, list[dict[str, Any]]]:
    """The runs of a comparison by method: each run once, one run per method and seed, one
    mixture per method, every run at the target scale."""
    _check_each_run_once(paths, runs)
    by_method: dict[Any, list[dict[str, Any]]] = {}
    first_of: dict[tuple[Any, str], str] = {}
    mixture_of: dict[Any, tuple[str, dict[str, float]]] = {}
    for path, run in zip(paths, runs, strict=True):
        method = run["method"]
        seed = _seed_of(run, len(by_method.get(method, [])))
        if (method, seed) in first_of:
            raise InputError(
                path,
                "seed",
                f"method '{method}' has seed {seed} twice (also {first_of[(method, seed)]})",
                "pass one run per method and seed",
            )
        first_of[(method, seed)] = path
        weights = {d: float(w) for d, w in (run.get("weights") or {}).items()}
        first_path, first_weights = mixture_of.setdefault(method, (path, weights))
        if not _same_mixture(weights, first_weights):
            raise InputError(
                path,
                "weights",
                f"method '{method}' trained another mixture here than in {first_path} "
                f"({_differences(weights, first_weights)})",
                "compare one mixture per method: the seeds of its verification runs",
            )
        total = run.get("total_tokens")
        if total is not None and not abs(float(total) / target - 1) <= SAME_TOTAL:
            raise InputError(
                path,
                "total_tokens",
                f"a run of {float(total):.4g} tokens, not at the target {target:.4g}",
                "pass the runs trained at --target (or give their scale as --target)",
            )
        by_method.setdefault(method, []).append(run)
    return by_method


def _same_mixture(a: dict[str, float], b: dict[str, float]) -> bool:
    domains = set(a) | set(b)
    return all(abs(a.get(d, 0.0) - b.get(d, 0.0)) <= SAME_WEIGHTS for d in domains)


def _differences(a: dict[str, float], b: dict[str, float], shown: int = 3) -> str:
    """The domains whose weights differ most: 'web 0.600 vs 0.143, ...'."""
    domains = sorted(set(a) | set(b), key=lambda d: -abs(a.get(d, 0.0) - b.get(d, 0.0)))
    return ", ".join(f"{d} {a.get(d, 0.0):.3f} vs {b.get(d, 0.0):.3f}" for d in domains[:shown])


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
    by_method = _check_comparable(metrics_paths, runs, target)
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
