"""The annealing report: anneal.md, gain curves against tokens and cost, rankings with flips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.config.check import schema_default
from mixscale.core.utility import gains_by_budget, load_anneal_table
from mixscale.fileio import atomic_write_text, refuse_stream
from mixscale.kinds import UTILITY
from mixscale.report.common import (
    Markdown,
    bold,
    figure_text,
    interval,
    joined,
    markdown_table,
    md,
    save_figure,
)
from mixscale.shapes import read_kind


def write_anneal_report(
    utility_path: str, runs_path: str, out: str, unit: str | None = None
) -> None:
    """anneal.md: curves (x: tokens and x: cost), rankings per budget with flips, allocation.
    The cost unit: ``unit``, else the one ``mixscale utility --unit`` recorded, else the
    config's default."""

    refuse_stream(out, "--out", "the report writes its figures")
    result = read_kind(utility_path, UTILITY)
    unit = unit or result.get("cost_unit") or schema_default("anneal.cost_unit")
    folder = Path(out).parent
    plot_gain_curves(result, runs_path, folder / "anneal_gain_vs_tokens.png", "tokens")
    plot_gain_curves(result, runs_path, folder / "anneal_gain_vs_cost.png", "cost", unit)
    lines = ["# Data-source utility from annealing", ""]
    lines += [
        f"Gain = control's target loss - the run's (higher is better), per source and annealing "
        f"budget; curve {md(result['curve_form'])}, 90% bootstrap intervals. Micro-annealing "
        f"point: {result['micro_annealing_budget']:.4g} tokens.",
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
        bounds = c.get("intervals_90", {}).get("G")
        rows.append(
            [
                name,
                c["status"],
                c["G"],
                interval(*bounds, ".3g") if bounds else "-",
                c["D0"],
                c["alpha"],
                s["cost_per_token"],
                c.get("reason") or "",
            ]
        )
    lines += markdown_table(
        ["source", "status", "G", "G 90%", "D0", "alpha", f"cost/token ({unit})", "note"], rows
    )
    lines += ["", "## Observed gains (mean over seeds, 90% interval)", ""]
    lines += _observed_table(result)
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
    lines += markdown_table(["budget (tokens)", "kind", "by gain", "by gain per cost"], rows)
    lines += ["", _flip_summary(result), ""]
    lines += _crossing_section(result)
    lines += _recommendation_section(result, unit)
    if "allocation" in result:
        a = result["allocation"]
        lines += [f"## Allocation of a budget of {a['budget']:.4g} {md(unit)}", ""]
        if a.get("status") != "ok":
            lines += [f"No allocation: {md(a.get('status'))}.", ""]
        else:
            rows = [
                [s, a["tokens"][s], a["cost"][s], a["gain_by_source"][s]]
                for s in sorted(a["tokens"], key=lambda s: -a["tokens"][s])
            ]
            lines += markdown_table(
                ["source", "annealing tokens", f"cost ({unit})", "fitted gain"], rows
            )
            lines += ["", f"Total fitted gain {a['gain']:.4g}; {md(result['assumption'])}.", ""]
    atomic_write_text(out, "\n".join(lines) + "\n")


def _observed_table(result: dict[str, Any]) -> list[str]:
    sources = list(result["sources"])
    budgets = sorted(
        {float(b) for s in result["sources"].values() for b in s["observed"]}, key=float
    )
    rows = []
    for budget in budgets:
        row: list[Any] = [f"{budget:.4g}"]
        for name in sources:
            cell = result["sources"][name]["observed"].get(f"{budget:g}")
            if cell is None:
                row.append("-")
                continue
            bounds = cell.get("gain_interval_90")
            mean = f"{cell['gain_mean']:.4f}"
            row.append(Markdown(f"{mean} {interval(*bounds, '.4f')}") if bounds else mean)
        rows.append(row)
    return markdown_table(["budget (tokens)", *sources], rows)


def _crossing_section(result: dict[str, Any]) -> list[str]:
    found = result.get("crossings")
    if found is None:
        return []
    lines = [
        "## Where the fitted curves cross",
        "",
        "Per pair of sources: the annealing budget where one source's fitted gain overtakes the "
        "other's, between the micro-annealing budget and the planned budget, with the share of "
        "bootstrap refits that cross there and the 90% interval of where they cross.",
        "",
    ]
    rows = []
    for c in found:
        a, b = c["pair"]
        share = c.get("bootstrap_share_crossing")
        bounds = c.get("interval_90")
        if c["budget_tokens"] is None:
            what = f"no crossing: {md(c['leads_first'])} leads throughout"
        else:
            what = (
                f"{md(c['leads_after'])} overtakes {md(c['leads_first'])} "
                f"at {c['budget_tokens']:.4g}"
            )
        rows.append(
            [
                joined((a, b), " / "),
                Markdown(what),
                f"{100 * share:.0f}%" if share is not None else "-",
                interval(*bounds) if bounds else "-",
            ]
        )
    lines += markdown_table(["pair", "fitted curves", "refits crossing", "crossing 90%"], rows)
    return [*lines, ""]


def _recommendation_section(result: dict[str, Any], unit: str) -> list[str]:
    rec = result.get("recommendations")
    if not rec:
        return []
    micro, fitted = rec["micro"], rec["fitted_at_plan"]
    best_gain = md((fitted["rank_by_gain"] or ["-"])[0])
    best_cost = md((fitted["rank_by_gain_per_cost"] or ["-"])[0])
    lines = [
        f"## A micro-annealing run against the fitted curves at {rec['plan_budget_tokens']:.4g} "
        "tokens",
        "",
        f"- One micro-annealing run per source ({rec['micro_budget_tokens']:.4g} tokens) ranks "
        f"by gain: {joined(micro['rank_by_gain'], ' > ')}; by gain per cost: "
        f"{joined(micro['rank_by_gain_per_cost'], ' > ')}.",
        f"- The fitted curves at the planned {rec['plan_budget_tokens']:.4g} tokens rank by gain: "
        f"{joined(fitted['rank_by_gain'], ' > ')}; by gain per cost: "
        f"{joined(fitted['rank_by_gain_per_cost'], ' > ')}.",
        f"- Best source: micro-annealing says {md(micro['best_by_gain'])} (gain) and "
        f"{md(micro['best_by_gain_per_cost'])} (gain per cost); the fitted curves say "
        f"{best_gain} and {best_cost}"
        + (
            ": the same."
            if rec["agree_by_gain"] and rec["agree_by_gain_per_cost"]
            else ": **the micro-annealing run would have recommended the wrong source**."
        ),
    ]
    if "fitted_allocation" in rec and "micro_allocation" in rec:
        m, f = rec["micro_allocation"], rec["fitted_allocation"]
        bought = ", ".join(f"{t:.4g} tokens of {md(s)}" for s, t in m["tokens"].items())
        spread = ", ".join(
            f"{t:.4g} of {md(s)}"
            for s, t in sorted(f.get("tokens", {}).items(), key=lambda x: -x[1])
        )
        lines += [
            f"- With the allocation budget, the micro pick buys {bought} (fitted gain "
            f"{m['gain']:.4g}); the fitted allocation buys {spread or 'nothing'} (fitted gain "
            f"{f.get('gain', 0.0):.4g}), both valued on the fitted curves ({md(unit)} budget as in "
            "the allocation below).",
        ]
    return [*lines, ""]


def _flipped(flips: dict[str, Any] | None) -> set[str]:
    return {s for pair in (flips or {}).get("flipped_pairs", []) for s in pair}


def _ranked(order: list[str], flipped: set[str]) -> Markdown:
    return joined((bold(s) if s in flipped else s for s in order), " > ")


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
                text = ", ".join(joined(pair, " / ") for pair in pairs)
                parts.append(
                    f"{f['budget_tokens']:.4g} tokens ({md(f['kind'])}, by {kind}): {text}"
                )
    return "Rank flips against the micro-annealing budget: " + "; ".join(parts) + "."


def plot_gain_curves(
    result: dict[str, Any], runs_path: str, png: Path, axis: str, unit: str = "$"
) -> None:
    """Observed gains per seed and the fitted curve per source, against tokens or total cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
            ax.plot(x(grid), fit, "-", color=color, label=figure_text(f"{name} (fit)"))
        else:
            ax.plot([], [], "o", color=color, label=figure_text(f"{name} ({c['status']})"))
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(x([max(budgets)])[0] if axis == "tokens" else np.nan, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("annealing tokens" if axis == "tokens" else figure_text(f"total cost ({unit})"))
    ax.set_ylabel("gain over control (target loss)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png)
