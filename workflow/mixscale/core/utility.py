"""Data-source utility from annealing runs at several budgets (arXiv 2507.22250).

Input: annealing runs of one base model, one row per (source, budget, seed), plus a
replay-only ``control`` row per budget. For each source the gain over control is fitted with a
saturating power law in the annealing budget D (tokens):

    gain(D) = G * (1 - (1 + D / D0) ** -alpha),   G, D0, alpha > 0

which is 0 at D = 0, concave and increasing, and saturates at G. Up to a constant, -gain is
G * D0**alpha * (D0 + D)**-alpha: the solver's canonical form, so the allocation of a cost budget
across sources reuses the DDO solver. Assumption, stated in the output: gains of different
sources add up (the separable model DDO makes for domains).

Cost of annealing on source s for D tokens: D * (share_s * acquisition_s + training) + fixed_s,
where share_s is the fraction of the annealing mix that comes from the source (rest: replay).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import kendalltau

from mixscale.core.intervals import mean_interval
from mixscale.core.solve import Problem, solve
from mixscale.errors import InputError
from mixscale.fileio import parse_number
from mixscale.kinds import ANNEAL_COSTS, ANNEAL_RUNS
from mixscale.shapes import read_tsv_kind

CONTROL = "control"
MAX_FIXED_COST_SOURCES = 12


@dataclass(frozen=True)
class AnnealTable:
    source: str
    sources: list[str]  # run source names, control excluded
    rows: list[tuple[str, float, float, str]]  # (source, budget, metric, seed)


@dataclass(frozen=True)
class SourceCost:
    acquisition: float  # per source token
    training: float  # per annealing token
    share: float = 1.0  # fraction of the annealing mix drawn from the source
    fixed: float = 0.0
    max_tokens: float = math.inf  # annealing tokens that the available data supports

    def per_token(self) -> float:
        return self.share * self.acquisition + self.training

    def total(self, budget: float) -> float:
        return budget * self.per_token() + (self.fixed if budget > 0 else 0.0)


def _number(source: str, row: int, column: str, text: str, minimum: float | None = None) -> float:
    value = parse_number(source, row, column, text)
    if minimum is not None and value < minimum:
        raise InputError(
            source, f"row {row}, column {column}", f"must be >= {minimum}", "correct the value"
        )
    return value


def load_anneal_table(path: str) -> AnnealTable:
    header, rows = read_tsv_kind(path, ANNEAL_RUNS)
    idx = {h: i for i, h in enumerate(header)}
    parsed = []
    for r, cells in enumerate(rows, start=2):
        name = cells[idx["source"]]
        if not name:
            raise InputError(path, f"row {r}, column source", "empty", "name the source")
        budget = _number(path, r, "budget_tokens", cells[idx["budget_tokens"]])
        if budget <= 0:
            raise InputError(
                path, f"row {r}, column budget_tokens", "must be > 0", "correct the value"
            )
        metric = _number(path, r, "metric", cells[idx["metric"]])
        seed = cells[idx["seed"]] if "seed" in idx else "0"
        parsed.append((name, budget, metric, seed))
    sources = sorted({p[0] for p in parsed if p[0] != CONTROL})
    if not any(p[0] == CONTROL for p in parsed):
        raise InputError(
            path, "column source", "no 'control' rows", "add a replay-only run per budget"
        )
    if not sources:
        raise InputError(path, "column source", "no candidate sources", "add runs per source")
    control_budgets = {p[1] for p in parsed if p[0] == CONTROL}
    for name, budget, _, _ in parsed:
        if budget not in control_budgets:
            raise InputError(
                path,
                f"source {name}, budget {budget:g}",
                "no control run at this budget",
                "run the replay-only control at every budget",
            )
    seen = set()
    for name, budget, _, seed in parsed:
        key = (name, budget, seed)
        if key in seen:
            raise InputError(
                path,
                f"source {name}, budget {budget:g}, seed {seed}",
                "duplicate run",
                "keep one row",
            )
        seen.add(key)
    return AnnealTable(path, sources, parsed)


def load_costs(path: str, training_default: float | None) -> dict[str, SourceCost]:
    header, rows = read_tsv_kind(path, ANNEAL_COSTS)
    if not rows:
        raise InputError(path, "", "no sources", "add one row per source")
    idx = {h: i for i, h in enumerate(header)}
    costs = {}
    for r, cells in enumerate(rows, start=2):

        def get(col: str, default: float, minimum: float = 0.0, cells=cells, r=r) -> float:
            if col not in idx or cells[idx[col]] == "":
                return default
            return _number(path, r, col, cells[idx[col]], minimum)

        training = get(
            "training_cost_per_token",
            training_default if training_default is not None else math.nan,
        )
        if math.isnan(training):
            raise InputError(
                path,
                f"row {r}, column training_cost_per_token",
                "missing",
                "add the column or pass --train-cost-per-token",
            )
        share = get("share", 1.0)
        if not 0 < share <= 1:
            raise InputError(
                path, f"row {r}, column share", "must be in (0, 1]", "e.g. 0.3 with 70% replay"
            )
        source = cells[idx["source"]]
        if source in costs:
            raise InputError(
                path, f"row {r}, column source", f"{source} listed twice", "keep one row per source"
            )
        costs[source] = SourceCost(
            acquisition=get("acquisition_cost_per_token", 0.0),
            training=training,
            share=share,
            fixed=get("fixed_cost", 0.0),
            max_tokens=get("max_tokens", math.inf),
        )
    return costs


@dataclass
class Curve:
    status: str
    G: float = math.nan
    D0: float = math.nan
    alpha: float = math.nan
    reason: str = ""
    intervals: dict[str, list[float]] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.status == "ok"

    def gain(self, budget: np.ndarray | float) -> np.ndarray:
        return self.G * (
            1.0 - np.power(1.0 + np.asarray(budget, dtype=float) / self.D0, -self.alpha)
        )


def gains_by_budget(table: AnnealTable, direction: str) -> dict[str, dict[float, list[float]]]:
    """Gain over the control per source, budget and seed (paired by seed where possible)."""
    sign = 1.0 if direction == "lower" else -1.0
    control: dict[float, dict[str, float]] = {}
    for name, budget, metric, seed in table.rows:
        if name == CONTROL:
            control.setdefault(budget, {})[seed] = metric
    out: dict[str, dict[float, list[float]]] = {s: {} for s in table.sources}
    for name, budget, metric, seed in table.rows:
        if name == CONTROL:
            continue
        ref = control[budget].get(seed, float(np.mean(list(control[budget].values()))))
        out[name].setdefault(budget, []).append(sign * (ref - metric))
    return out


def fit_curve(budgets: np.ndarray, gains: np.ndarray, start: Curve | None = None) -> Curve:
    """Least-squares fit of G (1 - (1 + D/D0)^-alpha) over all (budget, gain) pairs.

    Multi-start from a grid, or from ``start`` alone (bootstrap refits start at the estimate).
    """
    order = np.unique(budgets)
    if len(order) < 3:
        return Curve("insufficient_data", reason=f"{len(order)} budgets; needs >= 3")
    means = np.array([gains[budgets == b].mean() for b in order])
    if means[-1] <= 0:
        return Curve("no_gain", reason="no gain over the control at the largest budget")
    scale = budgets.max()

    def residuals(theta: np.ndarray) -> np.ndarray:
        G, D0, alpha = np.exp(theta)
        return G * (1 - np.power(1 + budgets / (D0 * scale), -alpha)) - gains

    if start is not None:
        grid = [np.log([start.G, start.D0 / scale, start.alpha])]
    else:
        grid = [
            np.log([max(means.max(), 1e-9) * 1.5, d0, alpha])
            for d0 in (0.01, 0.1, 1.0, 10.0)
            for alpha in (0.3, 1.0, 2.0)
        ]
    best = None
    for x0 in grid:
        lower, upper = np.log([1e-12, 1e-6, 1e-3]), np.log([1e6, 1e6, 10.0])
        res = least_squares(residuals, np.clip(x0, lower, upper), bounds=(lower, upper))
        if best is None or res.cost < best.cost:
            best = res
    G, D0, alpha = np.exp(best.x)
    curve = Curve("ok", G=float(G), D0=float(D0 * scale), alpha=float(alpha))
    notes = []
    if np.any(np.diff(means) < 0):
        notes.append("observed gains are not monotone in budget; the fit smooths them")
    at_bound = np.isclose(best.x, lower, atol=1e-3) | np.isclose(best.x, upper, atol=1e-3)
    if at_bound.any() or D0 * scale > 10 * budgets.max():
        # G and D0 trade off when the curve has not bent yet: extrapolations are guesses
        notes.append("no saturation within the observed budgets: extrapolation unreliable")
    curve.reason = "; ".join(notes)
    return curve


def _bootstrap_curves(
    per_budget: dict[float, list[float]], n_boot: int, rng: np.random.Generator, estimate: Curve
) -> list[Curve]:
    if all(len(v) < 2 for v in per_budget.values()):
        return []
    out = []
    for _ in range(n_boot):
        b, g = [], []
        for budget, values in per_budget.items():
            pick = rng.choice(values, size=len(values), replace=True)
            b += [budget] * len(pick)
            g += list(pick)
        curve = fit_curve(np.array(b), np.array(g), start=estimate)
        if curve.usable:
            out.append(curve)
    return out


def _ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda s: (-scores[s], s))


def _flips(reference: list[str], other: list[str]) -> dict[str, Any]:
    pos_ref = {s: i for i, s in enumerate(reference)}
    pos_other = {s: i for i, s in enumerate(other)}
    pairs = [
        [a, b]
        for a, b in itertools.combinations(reference, 2)
        if (pos_ref[a] - pos_ref[b]) * (pos_other[a] - pos_other[b]) < 0
    ]
    tau = kendalltau([pos_ref[s] for s in reference], [pos_other[s] for s in reference]).statistic
    return {"kendall_tau": float(tau) if len(reference) > 1 else 1.0, "flipped_pairs": pairs}


def allocate(
    curves: dict[str, Curve], costs: dict[str, SourceCost], budget: float
) -> dict[str, Any]:
    """Maximise the summed fitted gains for a total cost budget (KKT solver per subset)."""
    usable = [s for s, c in curves.items() if c.usable]
    if not usable:
        return {"status": "no_usable_source", "tokens": {}, "gain": 0.0}
    with_fixed = [s for s in usable if costs[s].fixed > 0]
    if len(with_fixed) > MAX_FIXED_COST_SOURCES:
        raise InputError(
            "costs",
            "fixed_cost",
            f"more than {MAX_FIXED_COST_SOURCES} sources with fixed costs",
            "fixed costs make the allocation combinatorial; drop some",
        )
    best: dict[str, Any] | None = None
    for k in range(len(with_fixed) + 1):
        for excluded in itertools.combinations(with_fixed, k):
            chosen = [s for s in usable if s not in excluded]
            remaining = budget - sum(costs[s].fixed for s in chosen)
            candidate = _allocate_subset(chosen, curves, costs, remaining)
            if candidate is not None and (best is None or candidate["gain"] > best["gain"]):
                best = candidate
    if best is None:
        return {"status": "budget_below_fixed_costs", "tokens": {}, "gain": 0.0}
    best["status"] = "ok"
    return best


def _allocate_subset(
    chosen: list[str], curves: dict[str, Curve], costs: dict[str, SourceCost], remaining: float
) -> dict[str, Any] | None:
    if remaining < 0:
        return None
    if not chosen:
        return {"tokens": {}, "cost": {}, "gain": 0.0}
    per_token = np.array([costs[s].per_token() for s in chosen])
    upper = np.array([costs[s].max_tokens for s in chosen])
    # Spend everything unless the sources' data run out first.
    spend = min(remaining, float(per_token @ upper))
    problem = Problem(
        A=np.array([curves[s].G * curves[s].D0 ** curves[s].alpha for s in chosen]),
        S=np.array([curves[s].D0 for s in chosen]),
        b=np.array([curves[s].alpha for s in chosen]),
        lower=np.zeros(len(chosen)),
        upper=upper,
        cost=per_token,
        resource=spend,
    )
    tokens = solve(problem, source="allocation")
    gains = [float(curves[s].gain(t)) for s, t in zip(chosen, tokens, strict=True)]
    return {
        "tokens": {s: float(t) for s, t in zip(chosen, tokens, strict=True)},
        "cost": {s: float(costs[s].total(t)) for s, t in zip(chosen, tokens, strict=True)},
        "gain_by_source": dict(zip(chosen, gains, strict=True)),
        "gain": float(sum(gains)),
    }


def analyse(
    table: AnnealTable,
    costs: dict[str, SourceCost],
    budget: float | None,
    direction: str = "lower",
    extrapolate: tuple[float, ...] = (10.0, 100.0),
    n_boot: int = 200,
    seed: int = 0,
    plan_budget: float | None = None,
) -> dict[str, Any]:
    """Curves, rankings, rank flips, crossings, the micro-annealing recommendation against the
    fitted one at ``plan_budget`` (tokens; default the largest observed budget) and, with
    ``budget`` (money), the allocation."""
    if direction not in ("lower", "higher"):
        raise InputError("--direction", direction, "unknown", "lower (losses) or higher (scores)")
    missing = [s for s in table.sources if s not in costs]
    if missing:
        raise InputError(
            "costs", f"source {missing[0]}", "no cost row", "add a row for every source"
        )
    gains = gains_by_budget(table, direction)
    rng = np.random.default_rng(seed)
    curves: dict[str, Curve] = {}
    boot_curves: dict[str, list[Curve]] = {}
    observed: dict[str, dict[str, Any]] = {}
    for s in table.sources:
        per_budget = gains[s]
        b = np.concatenate([[k] * len(v) for k, v in per_budget.items()])
        g = np.concatenate(list(per_budget.values()))
        curve = fit_curve(b, g)
        boots = _bootstrap_curves(per_budget, n_boot, rng, curve) if curve.usable else []
        if boots:
            for name in ("G", "D0", "alpha"):
                vals = [getattr(c, name) for c in boots]
                curve.intervals[name] = [
                    float(np.quantile(vals, 0.05)),
                    float(np.quantile(vals, 0.95)),
                ]
        curves[s] = curve
        boot_curves[s] = boots
        observed[s] = {
            f"{k:g}": {
                "gain_mean": float(np.mean(v)),
                "gain_sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                "gain_interval_90": mean_interval(v)["interval"],
                "seeds": len(v),
                "cost": costs[s].total(k),
                "gain_per_cost": float(np.mean(v)) / costs[s].total(k),
            }
            for k, v in sorted(per_budget.items())
        }
        if boots:
            observed[s]["_bootstrap"] = boots  # temporary, removed below
    budgets = sorted({k for s in table.sources for k in gains[s]})
    largest = budgets[-1]
    points = [("observed", b) for b in budgets] + [
        ("extrapolated", largest * f) for f in extrapolate
    ]
    rankings = []
    for kind, b in points:
        if kind == "observed":
            gain = {
                s: observed[s][f"{b:g}"]["gain_mean"]
                for s in table.sources
                if f"{b:g}" in observed[s]
            }
        else:
            gain = {s: float(curves[s].gain(b)) for s in table.sources if curves[s].usable}
        per_cost = {s: g / costs[s].total(b) for s, g in gain.items()}
        rankings.append(
            {
                "budget_tokens": b,
                "kind": kind,
                "gain": gain,
                "gain_per_cost": per_cost,
                "rank_by_gain": _ranking(gain),
                "rank_by_gain_per_cost": _ranking(per_cost),
            }
        )
    reference = rankings[0]
    for r in rankings[1:]:
        common = [s for s in reference["rank_by_gain"] if s in r["gain"]]
        for key in ("rank_by_gain", "rank_by_gain_per_cost"):
            ref = [s for s in reference[key] if s in common]
            other = [s for s in r[key] if s in common]
            r[f"flips_vs_smallest_{key[len('rank_by_') :]}"] = _flips(ref, other)
    for s in table.sources:
        observed[s].pop("_bootstrap", None)
    out: dict[str, Any] = {
        "direction": direction,
        "curve_form": "gain(D) = G * (1 - (1 + D/D0)^-alpha)",
        "assumption": "allocation assumes the gains of different sources add up",
        "micro_annealing_budget": budgets[0],
        "sources": {
            s: {
                "curve": {
                    "status": curves[s].status,
                    "G": curves[s].G,
                    "D0": curves[s].D0,
                    "alpha": curves[s].alpha,
                    "reason": curves[s].reason,
                    "intervals_90": curves[s].intervals,
                },
                "cost_per_token": costs[s].per_token(),
                "fixed_cost": costs[s].fixed,
                "observed": observed[s],
            }
            for s in table.sources
        },
        "rankings": rankings,
        "rank_flips": [
            {
                "budget_tokens": r["budget_tokens"],
                "kind": r["kind"],
                "by_gain": r["flips_vs_smallest_gain"]["flipped_pairs"],
                "by_gain_per_cost": r["flips_vs_smallest_gain_per_cost"]["flipped_pairs"],
            }
            for r in rankings[1:]
            if r["flips_vs_smallest_gain"]["flipped_pairs"]
            or r["flips_vs_smallest_gain_per_cost"]["flipped_pairs"]
        ],
    }
    plan = float(plan_budget) if plan_budget else float(largest)
    if plan <= 0:
        raise InputError("--plan-budget", f"{plan:g}", "must be > 0", "annealing tokens")
    out["plan_budget"] = plan
    out["crossings"] = crossings(curves, boot_curves, budgets[0], max(plan, largest))
    if budget is not None:
        if budget <= 0:
            raise InputError("--budget", f"{budget:g}", "must be > 0", "correct the value")
        out["allocation"] = {"budget": budget, **allocate(curves, costs, budget)}
    out["recommendations"] = recommendations(rankings[0], curves, costs, plan, budget)
    return out


def _crossing(a: Curve, b: Curve, low: float, high: float) -> float | None:
    """The smallest budget in [low, high] where the two fitted curves' gains meet (None: they
    do not cross there). Found on a log grid, then refined by bisection."""
    grid = np.geomspace(low, high, 200)
    diff = a.gain(grid) - b.gain(grid)
    change = np.nonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0)[0]
    if not len(change):
        return None
    lo, hi = float(grid[change[0]]), float(grid[change[0] + 1])
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if (a.gain(mid) - b.gain(mid)) * (a.gain(lo) - b.gain(lo)) > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def crossings(
    curves: dict[str, Curve], boots: dict[str, list[Curve]], low: float, high: float
) -> list[dict[str, Any]]:
    """Per pair of sources with fitted curves: the budget where the curves cross within
    [low, high], which source leads before and after, and over the bootstrap refits (paired by
    index) the share that cross there and the 90% interval of where."""
    out = []
    usable = [s for s, c in curves.items() if c.usable]
    for a, b in itertools.combinations(usable, 2):
        at = _crossing(curves[a], curves[b], low, high)
        first = a if curves[a].gain(low) > curves[b].gain(low) else b
        entry: dict[str, Any] = {
            "pair": [a, b],
            "budget_tokens": at,
            "leads_first": first,
            "leads_after": (b if first == a else a) if at is not None else first,
        }
        pairs = list(zip(boots.get(a, []), boots.get(b, []), strict=False))
        if pairs:
            found = [x for x in (_crossing(p, q, low, high) for p, q in pairs) if x is not None]
            entry["bootstrap_share_crossing"] = len(found) / len(pairs)
            entry["interval_90"] = (
                [float(np.quantile(found, 0.05)), float(np.quantile(found, 0.95))]
                if len(found) >= 2
                else None
            )
        out.append(entry)
    return out


def recommendations(
    micro: dict[str, Any],
    curves: dict[str, Curve],
    costs: dict[str, SourceCost],
    plan: float,
    money: float | None,
) -> dict[str, Any]:
    """What one micro-annealing run per source would recommend (the source with the best gain,
    and per cost, at the smallest budget) against what the fitted curves recommend at the
    planned budget; with a money budget, what each would buy: the micro pick spends it all on
    its best source per cost, the fitted allocation spreads it; both valued on the curves."""
    usable = {s: c for s, c in curves.items() if c.usable}
    at_plan = {s: float(c.gain(plan)) for s, c in usable.items()}
    per_cost = {s: g / costs[s].total(plan) for s, g in at_plan.items()}
    out: dict[str, Any] = {
        "micro_budget_tokens": micro["budget_tokens"],
        "plan_budget_tokens": plan,
        "micro": {
            "best_by_gain": micro["rank_by_gain"][0] if micro["rank_by_gain"] else None,
            "best_by_gain_per_cost": (
                micro["rank_by_gain_per_cost"][0] if micro["rank_by_gain_per_cost"] else None
            ),
            "rank_by_gain": micro["rank_by_gain"],
            "rank_by_gain_per_cost": micro["rank_by_gain_per_cost"],
        },
        "fitted_at_plan": {
            "gain": at_plan,
            "gain_per_cost": per_cost,
            "rank_by_gain": _ranking(at_plan),
            "rank_by_gain_per_cost": _ranking(per_cost),
        },
    }
    out["agree_by_gain"] = out["micro"]["best_by_gain"] == (_ranking(at_plan) or [None])[0]
    out["agree_by_gain_per_cost"] = (
        out["micro"]["best_by_gain_per_cost"] == (_ranking(per_cost) or [None])[0]
    )
    if money is not None and usable:
        pick = out["micro"]["best_by_gain_per_cost"]
        if pick in usable:
            tokens = min(
                (money - costs[pick].fixed) / costs[pick].per_token(), costs[pick].max_tokens
            )
            tokens = max(tokens, 0.0)
            out["micro_allocation"] = {
                "tokens": {pick: tokens},
                "gain": float(usable[pick].gain(tokens)),
            }
        out["fitted_allocation"] = allocate(usable, costs, money)
    return out
