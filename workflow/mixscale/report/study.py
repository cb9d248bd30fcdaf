"""The method study's tables and figure (from STUDY.json of ``mixscale study``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixscale.fileio import atomic_write_text
from mixscale.report.common import markdown_table, save_figure


def _cell(entry: dict[str, Any] | None) -> str | None:
    if not entry or entry.get("mean") is None:
        return None
    if entry.get("interval") is None:
        return f"{entry['mean']:.3f}"
    low, high = entry["interval"]
    return f"{entry['mean']:.3f} [{low:.3f}, {high:.3f}]"


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
                f"**{row['value']}**" if row.get("is_baseline") and row["value"] else row["value"],
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
            f"## {world}",
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
            labels = [r["value"] for r in rows]
            diffs = [r["autoscale_minus_transfer"] for r in rows]
            means = [d["mean"] for d in diffs]
            lows = [d["mean"] - d["interval"][0] for d in diffs]
            highs = [d["interval"][1] - d["mean"] for d in diffs]
            ax.errorbar(
                range(len(rows)), means, yerr=[lows, highs], marker="o", capsize=3, label=world
            )
            ax.set_xticks(range(len(rows)), labels, rotation=30, fontsize=7)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{factor} (baseline in bold in the tables)", fontsize=9)
    for row_axes in grid:
        row_axes[0].set_ylabel("captured gain: AutoScale - transfer")
    axes[0].legend(fontsize=7)
    fig.suptitle("above 0: AutoScale wins (90% intervals over trials)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(out))
