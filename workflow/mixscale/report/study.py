"""The method study's tables and figure (from STUDY.json of ``mixscale study``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.fileio import atomic_write_text
from mixscale.report.common import (
    Markdown,
    bold,
    figure_text,
    interval,
    markdown_table,
    md,
    save_figure,
)


def _cell(entry: dict[str, Any] | None) -> str | None:
    if not entry or entry.get("mean") is None:
        return None
    if entry.get("interval") is None:
        return f"{entry['mean']:.3f}"
    return Markdown(f"{entry['mean']:.3f} {interval(*entry['interval'], '.3f')}")


def _winner(row: dict[str, Any]) -> str:
    diff = row.get("autoscale_minus_transfer")
    if not diff or diff.get("distinguishable") is None:
        return "-"
    if not diff["distinguishable"]:
        return "neither"
    return "AutoScale" if diff["mean"] > 0 else "transfer"


def study_rows(result: dict[str, Any], world: str) -> list[list[Any]]:
    rows = []
    for row in result["rows"]:
        if row["world"] != world:
            continue
        diff = row.get("autoscale_minus_transfer") or {}
        rows.append(
            [
                row["factor"],
                bold(row["value"]) if row.get("is_baseline") and row["value"] else row["value"],
                _cell(row.get("autoscale")),
                _cell(row.get("autoscale_ls")),
                _cell(row.get("transfer")),
                _cell(diff),
                f"{100 * diff['wins']:.0f}%" if diff else None,
                _winner(row),
                _cell(row.get("autoscale_exact")),
                _cell(row.get("transfer_exact")),
            ]
        )
    return rows


HEADER = [
    "factor",
    "value",
    "AutoScale",
    "AutoScale (least squares)",
    "transfer",
    "AutoScale - transfer",
    "AutoScale wins",
    "better",
    "AutoScale, exact optima",
    "transfer, exact optimum",
]


def study_markdown(result: dict[str, Any], out: str) -> None:
    lines = [
        "# Method study: AutoScale vs transferring the largest DDO optimum",
        "",
        f"Captured gain at the target (1 = the true optimum, 0 = uniform), mean over "
        f"{result['trials']} trials with its 90% interval; AutoScale - transfer paired by trial "
        "(better: the interval excludes zero). The exact columns predict from the true optima "
        "at the proxy scales: what extrapolation alone costs; exact minus fitted is what noise "
        "and the fit form cost. One factor varies at a time around the baseline.",
        "",
    ]
    for world in result["worlds"]:
        rows = [r for r in result["rows"] if r["world"] == world]
        base = rows[0]["setting"]
        lines += [
            f"## {md(world)}",
            "",
            "Baseline: sigma {sigma:g}, {seeds} seeds, factor {factor:g}, scales {s}, target "
            "{target:.3g}, trust region {tr}.".format(
                s=" / ".join(f"{x:.3g}" for x in base["scales"]),
                tr="on" if base["trust_region"] else "off",
                **{k: v for k, v in base.items() if k not in ("scales", "trust_region")},
            ),
            "",
            *markdown_table(HEADER, study_rows(result, world)),
            "",
        ]
    atomic_write_text(out, "\n".join(lines) + "\n")


def plot_study(result: dict[str, Any], out: str) -> None:
    """Per factor: AutoScale - transfer (captured gain) with its interval, one line per world."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = []
    for row in result["rows"]:
        if row["factor"] != "baseline" and row["factor"] not in factors:
            factors.append(row["factor"])
    columns = min(3, len(factors))
    grid_rows = -(-len(factors) // columns)
    fig, grid = plt.subplots(
        grid_rows, columns, figsize=(4.2 * columns, 3.4 * grid_rows), sharey=True, squeeze=False
    )
    axes = list(grid.flat)
    for ax in axes[len(factors) :]:
        ax.set_visible(False)
    for ax, factor in zip(axes, factors, strict=False):
        for world in result["worlds"]:
            rows = [r for r in result["rows"] if r["world"] == world and r["factor"] == factor]
            labels = [figure_text(r["value"]) for r in rows]
            diffs = [r["autoscale_minus_transfer"] for r in rows]
            means = [d["mean"] for d in diffs]
            lows = [d["mean"] - d["interval"][0] for d in diffs]
            highs = [d["interval"][1] - d["mean"] for d in diffs]
            ax.errorbar(
                range(len(rows)),
                means,
                yerr=[lows, highs],
                marker="o",
                capsize=3,
                label=figure_text(world),
            )
            ax.set_xticks(range(len(rows)), labels, rotation=30, fontsize=7)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(figure_text(f"{factor} (baseline in bold in the tables)"), fontsize=9)
    for row_axes in grid:
        row_axes[0].set_ylabel("captured gain: AutoScale - transfer")
    axes[0].legend(fontsize=7)
    fig.suptitle("above 0: AutoScale wins (90% intervals over trials)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(out))


# --- every method against the optimum (``mixscale study`` with ``methods:``) ---------------

LABELS = {
    "autoscale": "AutoScale",
    "ddo_largest": "DDO at the largest scale",
    "regmix": "RegMix",
    "dml": "Data Mixing Laws",
    "natural": "natural",
    "reference": "reference",
}


def _versus(entry: dict[str, Any]) -> str:
    diff = entry.get("minus_autoscale")
    if not diff or diff.get("interval") is None:
        return "-"
    word = "not distinguishable"
    if diff["distinguishable"]:
        word = "better" if diff["mean"] > 0 else "worse"
    return Markdown(f"{diff['mean']:+.3f} {interval(*diff['interval'], '+.3f')}: {word}")


def _fixed_or_cell(entry: dict[str, Any]) -> str | None:
    """Fixed weights score the same in every trial: their value alone."""
    interval = entry.get("interval")
    if interval is not None and interval[0] == interval[1]:
        return f"{entry['mean']:.3f}"
    return _cell(entry)


def methods_rows(row: dict[str, Any], targets: list[str]) -> list[list[Any]]:
    rows = []
    for name, entry in row["methods"].items():
        compute = entry.get("proxy_compute")
        runs = f" ({entry['proxy_runs']} runs)" if "proxy_runs" in entry else ""
        largest = entry["targets"][targets[-1]]
        failed = entry.get("failed_trials", 0)
        rows.append(
            [
                LABELS.get(name, name) + (f" ({failed} failed)" if failed else ""),
                f"{compute:.2f}x{runs}" if compute else "0",
                *[_fixed_or_cell(entry["targets"][t]) for t in targets],
                _versus(largest),
            ]
        )
    return rows


def methods_study_markdown(result: dict[str, Any], out: str) -> None:
    targets = [f"{t:g}" for t in result["targets"]]
    ddo = result["ddo"]
    lines = [
        "# Every method against the true optimum, over noise draws",
        "",
        f"Captured share of the true optimum's gain over uniform (1 = optimal, 0 = uniform), "
        f"mean over {result['trials']} trials with its 90% interval; each trial draws new run "
        f"noise and a new sample of proxy mixtures. DDO sweep: sigma {ddo['sigma']:g}, "
        f"{ddo['seeds']} seeds, factor {ddo['factor']:g}, scales "
        + " / ".join(f"{s:.3g}" for s in ddo["scales"])
        + f", trust region {'on' if ddo['trust_region'] else 'off'}. Proxy compute: tokens of "
        "the proxy runs per token of one run at the largest target. The last column is the "
        "method minus AutoScale at the largest target, paired by trial.",
        "",
    ]
    header = ["method", "proxy compute", *targets, f"minus AutoScale at {targets[-1]}"]
    for row in result["rows"]:
        matched = "compute-matched (RegMix, DML: the DDO sweep's tokens)"
        lines += [
            f"## {md(row['world'])}: {matched if row['compute_matched'] else 'own settings'}",
            "",
            *markdown_table(header, methods_rows(row, targets)),
            "",
        ]
    atomic_write_text(out, "\n".join(lines) + "\n")


def plot_methods_study(result: dict[str, Any], out: str) -> None:
    """Quality reached against proxy compute: one point per method (captured gain at the
    largest target with its interval), a panel per world, own settings and compute-matched
    as two markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(dict.fromkeys(r["world"] for r in result["rows"]))
    largest = f"{result['targets'][-1]:g}"
    fig, axes = plt.subplots(1, len(worlds), figsize=(5 * len(worlds), 4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, world in zip(axes[0], worlds, strict=True):
        for row in (r for r in result["rows"] if r["world"] == world):
            marker = "s" if row["compute_matched"] else "o"
            for k, (name, entry) in enumerate(row["methods"].items()):
                if row["compute_matched"] and "proxy_runs" not in entry:
                    continue  # the same as with own settings: drawn once
                cell = entry["targets"][largest]
                low, high = cell["interval"] or (cell["mean"], cell["mean"])
                x = entry.get("proxy_compute") or 0.0
                ax.errorbar(
                    x,
                    cell["mean"],
                    yerr=[[cell["mean"] - low], [high - cell["mean"]]],
                    marker=marker,
                    color=colours[k % len(colours)],
                    capsize=3,
                    label=figure_text(LABELS.get(name, name))
                    if not row["compute_matched"]
                    else None,
                )
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(1, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("proxy compute (x one run at the largest target)")
        title = f"{world}: target {largest} (o own settings, s compute-matched)"
        ax.set_title(figure_text(title), fontsize=9)
    axes[0][0].set_ylabel("captured gain (90% interval over trials)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, Path(out))
