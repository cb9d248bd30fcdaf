"""The plain summary page of an experiment (results/<exp>/report/summary.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from mixscale.core.design import classify
from mixscale.core.fit import scale_verdict
from mixscale.core.intervals import verdict
from mixscale.core.world import load_world
from mixscale.evaluate.downstream import downstream_tables
from mixscale.fileio import atomic_write_text, refuse_stream
from mixscale.kinds import COMPARISON, PREDICTION_FOR_REPORT, WEIGHTS_FOR_REPORT
from mixscale.report.common import (
    Markdown,
    figure_text,
    interval,
    joined,
    markdown_table,
    md,
    save_figure,
)
from mixscale.report.finetune import finetune_lines
from mixscale.shapes import read_kind, read_kinds


def plot_weights_vs_scale(
    ddo: list[dict[str, Any]],
    autoscale: list[dict[str, Any]],
    png: Path,
    world_name: str | None = None,
) -> None:
    """DDO optima per proxy scale, AutoScale's predictions and (simulated) the true optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    domains = list(ddo[0]["weights"])
    scales = [d["total_tokens"] for d in ddo]
    targets = [p["target_tokens"] for p in autoscale]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    world = None
    if world_name:
        world = load_world(world_name)
        grid = np.geomspace(min(scales), max(targets or scales), 30)
        truth = np.array([world.optimum(n) / n for n in grid])
    for i, d in enumerate(domains):
        color = colors[i % len(colors)]
        ax.plot(scales, [x["weights"][d] for x in ddo], "o-", color=color, label=figure_text(d))
        if targets:
            ax.plot(targets, [p["weights"][d] for p in autoscale], "s--", color=color, mfc="none")
        if world is not None:
            ax.plot(grid, truth[:, world.domains.index(d)], ":", color=color, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("domain weight")
    note = "o DDO at proxy scales, □ AutoScale" + (", ··· true optimum" if world else "")
    ax.set_title(note, fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    save_figure(fig, png)


def plot_loss_curves(compares: list[dict[str, Any]], png: Path) -> None:
    """Objective against the fraction of the run, per method, one panel per target scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = max(1, len(compares))
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    for ax, c in zip(axes[0], compares, strict=False):
        level = c["methods"].get("uniform", {}).get("objective")
        for method, m in c["methods"].items():
            xs = [p["fraction"] for p in m["curve"]]
            ax.plot(xs, [p["objective"] for p in m["curve"]], "o-", ms=3, label=figure_text(method))
        if level is not None:
            ax.axhline(level, color="grey", lw=0.8, ls=":", label="uniform's final")
        ax.set_title(f"target {c['target_tokens']:.3g} tokens", fontsize=9)
        ax.set_xlabel("fraction of the run")
        what = c.get("objective", "mean loss over all evaluation domains")
        ax.set_ylabel(figure_text(what), fontsize=8)
        ax.legend(fontsize=7)
    if not compares:
        axes[0][0].text(0.5, 0.5, "no verification runs in this config", ha="center")
    fig.tight_layout()
    save_figure(fig, png)


def plot_quality_vs_compute(
    compares: list[dict[str, Any]], proxy_tokens: dict[str, float], png: Path
) -> None:
    """One point per method at each target: quality reached against its proxy compute. In a
    simulated world, the captured share of the optimum's gain; with real training, the objective
    minus uniform's, paired by seed, with its 90% interval (lower is better; steps saved are
    often undefined there: a method that never reaches uniform's loss saves none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = max(1, len(compares))
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    for ax, c in zip(axes[0], compares, strict=False):
        simulated = all(m.get("world_score") for m in c["methods"].values())
        for method, m in c["methods"].items():
            y, low, high = _quality(method, m, simulated)
            if y is None:
                continue
            x = max(proxy_tokens.get(method, 0.0) / c["target_tokens"], 1e-3)
            ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", capsize=3)
            ax.annotate(
                figure_text(method), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("proxy compute (x one target run; fixed weights at 0.001)")
        ax.set_ylabel(
            "captured gain (world)"
            if simulated
            else "objective - uniform, paired by seed (lower: better)"
        )
        ax.set_title(f"target {c['target_tokens']:.3g} tokens (90% intervals)", fontsize=9)
    if not compares:
        axes[0][0].text(0.5, 0.5, "no verification runs in this config", ha="center")
    fig.tight_layout()
    save_figure(fig, png)


def _quality(method: str, m: dict[str, Any], simulated: bool) -> tuple[float | None, float, float]:
    """(value, low, high) of one method's point; no interval: low = high = value."""
    if simulated:
        y = m["world_score"]["captured_gain"]
        return y, y, y
    if method == "uniform":
        return 0.0, 0.0, 0.0
    diff = m.get("vs_uniform")
    if diff is None:  # uniform was not verified: nothing to read against
        return None, 0.0, 0.0
    low, high = diff.get("interval") or [diff["mean"], diff["mean"]]
    return diff["mean"], low, high


def plot_fits(table, objective, fit, png: Path) -> None:
    """Per domain (paper Fig. 5): the objective of the base and perturbed runs (every seed, and
    their mean) against the domain's tokens, with the fitted curve along the design's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    y = objective.evaluate(table.eval_domains, table.losses)
    base_rows = [table.run_ids.index(r) for r in fit.base_runs if r in table.run_ids]
    base = table.tokens[base_rows[0]] if base_rows else np.median(table.tokens, axis=0)
    m = len(table.train_domains)
    cols = min(3, m)
    rows = -(-m // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for j, name in enumerate(table.train_domains):
        ax = axes[j // cols][j % cols]
        picked = []
        for i in range(table.n_runs):
            how = classify(base, table.tokens[i])
            if np.allclose(table.tokens[i], base) or (how is not None and how[1] == j):
                picked.append(i)
        xs = table.tokens[picked, j]
        ax.plot(xs, y[picked], ".", color="grey", alpha=0.6, label="runs (seeds)")
        for x in np.unique(xs):
            ax.plot(x, y[picked][xs == x].mean(), "o", color="C0")
        domain = fit.domains.get(name)
        if domain is not None and domain.usable:
            factors = np.geomspace(0.25, 4.0, 60)
            path = np.repeat(base[None, :], len(factors), axis=0)
            path[:, j] = base[j] * factors
            if fit.design == "fixed_total":
                rest = np.delete(np.arange(m), j)
                scale = (base.sum() - path[:, j]) / base[rest].sum()
                path[:, rest] = base[rest][None, :] * scale[:, None]
            ok = path.min(axis=1) > 0
            ax.plot(path[ok, j], fit.predict(path[ok], table.train_domains), "-", color="C1")
        status = domain.status if domain else "-"
        r = (domain.diagnostics.get("r") if domain else None) or float("nan")
        form = (domain.form if domain else None) or "no fit"
        ax.set_title(figure_text(f"{name}: {status}, {form}, r={r:.2g}"), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.tick_params(labelsize=7)
    for k in range(m, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.supxlabel("tokens of the domain", fontsize=8)
    fig.supylabel(figure_text(objective.describe()), fontsize=8)
    fig.tight_layout()
    save_figure(fig, png)


def plot_downstream(tables: dict[str, dict[str, Any]], png: Path) -> None:
    """Per-task bars per method with standard errors, one panel per target scale; chance as a
    dashed tick per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width_in = max(6, 0.7 * max(len(t["columns"]) for t in tables.values()) + 2)
    fig, axes = plt.subplots(len(tables), 1, figsize=(width_in, 4 * len(tables)), squeeze=False)
    for ax, (target, table) in zip(axes[:, 0], tables.items(), strict=True):
        columns, rows = table["columns"], table["rows"]
        x = np.arange(len(columns))
        width = 0.8 / max(1, len(rows))
        for i, (label, row) in enumerate(rows.items()):
            ax.bar(
                x + (i - (len(rows) - 1) / 2) * width,
                [row["scores"].get(c, np.nan) for c in columns],
                width,
                yerr=[row["stderr"].get(c, 0.0) for c in columns],
                label=figure_text(label),
                capsize=1.5,
                error_kw={"lw": 0.6},
            )
        for j, c in enumerate(columns):
            if c in table["chance"]:
                ax.hlines(table["chance"][c], j - 0.45, j + 0.45, colors="k", ls="--", lw=0.8)
        ax.set_xticks(x, [figure_text(c) for c in columns], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("accuracy (dashed: chance)")
        if target != "None":
            ax.set_title(f"models trained on {float(target):.4g} tokens", fontsize=9)
        ax.legend(fontsize=7, ncol=min(5, len(rows)))
    fig.tight_layout()
    save_figure(fig, png)


def downstream_lines(paths: list[str], out: str) -> list[str]:
    """The Table-1-like section: methods x tasks and the average per target, and bars."""

    tables = downstream_tables(paths)
    plot_downstream(tables, Path(out).with_name("downstream.png"))
    lines = []
    for target, table in tables.items():
        title = "" if target == "None" else f" at {float(target):.4g} tokens"
        lines += [f"## Downstream tasks (lm-eval){title}", ""]
        lines += [
            "Accuracy per task (mean over seeds, ± the standard error from lm-eval); "
            "`untrained` is the same architecture at step 0, the floor every trained model "
            "is read against.",
            "",
        ]
        rows = []
        for label, row in table["rows"].items():
            cells = [
                Markdown(f"{row['scores'][c]:.3f} ± {row['stderr'].get(c, 0):.3f}")
                if c in row["scores"]
                else "-"
                for c in table["columns"]
            ]
            rows.append([label, *cells, row["average"]])
        if table["chance"]:
            rows.append(["chance", *(table["chance"].get(c) for c in table["columns"]), None])
        lines += markdown_table(["method", *table["columns"], "Avg"], rows)
        lines.append("")
    lines += ["![downstream tasks](downstream.png)", ""]
    return lines


def _fit_choices(fit: dict[str, Any], weights: dict[str, Any]) -> str:
    """The choices that move the answer, stated where the weights are (issue: the objective
    and the fit's unit, normalisation, root and trust region are not neutral)."""
    normalised = fit.get("objective_scale", 1.0) != 1.0
    region = "on" if weights.get("trust_region") else "off"
    return (
        f"Objective: {md(fit['objective'])}. Fit: form {md(fit.get('form_requested', 'auto'))}, "
        f"unit {md(fit.get('unit_kind', 'base_total'))}, "
        f"{'normalised by the base run' if normalised else 'raw objective'}, "
        f"root {md(fit.get('root', 'smallest_b'))}; trust region {region}."
    )


def _caveats(weights: dict[str, Any]) -> list[str]:
    """Bounds that bind, the spread between exact Eq. 2 roots, warnings, unmatched runs."""
    lines = []
    bound = weights.get("at_bound", {})
    if bound:
        lines.append(
            "On a bound: "
            + ", ".join(f"{md(d)} ({md(side)})" for d, side in bound.items())
            + ". The fitted curve would move these domains further than their runs observed; "
            "the optimum there is the bound's, not the fit's."
        )
    if "root_spread" in weights:
        lines.append(
            f"Two exact Eq. 2 curves fit some domains: the weights move by up to "
            f"{weights['root_spread']:.4f} between the smallest-b and largest-b roots."
        )
    lines += [f"Warning: {md(w)}." for w in weights.get("warnings", [])]
    unmatched = weights.get("fit", {}).get("unmatched_runs", [])
    if unmatched:
        lines.append(f"Runs that match no perturbation (not used): {joined(unmatched)}.")
    return [part for line in lines for part in (line, "")]


def _round_lines(weights: dict[str, Any]) -> list[str]:
    """Iterated DDO: each round's centre, optimum and largest move, and why it stopped."""
    history = weights.get("rounds")
    if not history:
        return []
    domains = list(weights["weights"])
    rows = [["centre (round 1)", *[history[0]["centre"][d] for d in domains], "-"]]
    rows += [
        [f"round {r['round']}", *[r["weights"][d] for d in domains], r["moved"]] for r in history
    ]
    lines = [
        f"Iterated DDO ({md(weights['rounds_note'])}; each round re-centred on the one before; "
        f"tolerance {weights['round_tolerance']:g}). The weights above are the last round's.",
        "",
    ]
    lines += markdown_table(["round", *domains, "largest move"], rows)
    return [*lines, ""]


def _interpolation_lines(predictions: list[dict[str, Any]]) -> list[str]:
    """Each inner DDO scale predicted from its neighbours (the authors' validation)."""
    with_checks = [p["interpolation_checks"] for p in predictions if p.get("interpolation_checks")]
    checks = with_checks[0] if with_checks else []  # the same for every target
    if not checks:
        return []
    rows = [
        [
            f"{c['held_out_total']:.4g}",
            " and ".join(f"{t:.4g}" for t in c["from_totals"]),
            c["max_abs_weight_error"],
        ]
        for c in checks
    ]
    lines = ["Each inner DDO scale interpolated from its two neighbours, against DDO there:", ""]
    lines += markdown_table(["scale (tokens)", "from scales", "largest weight error"], rows)
    return [*lines, ""]


def write_summary(
    experiment: str,
    ddo: list[str],
    autoscale: list[str],
    compares: list[str],
    out: str,
    world: str | None = None,
    downstream: list[str] | None = None,
    proxy_tokens: dict[str, float] | None = None,
    finetuned: list[str] | None = None,
) -> None:
    refuse_stream(out, "--out", "the report writes its figures")
    proxy_tokens = proxy_tokens or {}
    lines = [f"# mixscale report: {md(experiment)}", ""]
    png = Path(out).with_name("weights_vs_scale.png")
    plot_weights_vs_scale(
        read_kinds(ddo, WEIGHTS_FOR_REPORT),
        read_kinds(autoscale, PREDICTION_FOR_REPORT),
        png,
        world,
    )
    lines += ["![weights against scale](weights_vs_scale.png)", ""]
    lines += ["## DDO per scale", ""]
    domains: list[str] = []
    for path in ddo:
        data = read_kind(path, WEIGHTS_FOR_REPORT)
        fit = data["fit"]
        domains = list(data["weights"])
        scale = Path(path).parent.name
        lines += [f"### {md(scale)}: {data['total_tokens']:.4g} tokens", ""]
        lines += [f"Signal: **{md(scale_verdict(fit))}**. Design: {md(fit['design'])}.", ""]
        lines += [_fit_choices(fit, data), ""]
        if Path(path).with_name("fits.png").is_file():
            lines += [f"![fits at {md(scale)}](../ddo/{quote(scale)}/fits.png)", ""]
        rows = []
        for d in domains:
            f = fit["domains"][d]
            diag = f["diagnostics"]
            bounds = data.get("weight_intervals_90", {}).get(d)
            rows.append(
                [
                    d,
                    data["weights"][d],
                    interval(bounds["low"], bounds["high"], ".4f") if bounds else "-",
                    f["status"],
                    f["form"],
                    diag.get("r"),
                    diag.get("b"),
                    diag.get("effect_high_over_se"),
                    data.get("at_bound", {}).get(d, "-"),
                ]
            )
        header = ["domain", "weight", "90% interval", "status", "form", "r", "b"]
        lines += markdown_table([*header, "x3 effect / SE", "on a bound"], rows)
        lines.append("")
        lines += _round_lines(data)
        lines += _caveats(data)
    if autoscale:
        lines += ["## AutoScale predictions", ""]
        doubtful = {
            Path(p).parent.name: v
            for p in ddo
            if (v := scale_verdict(read_kind(p, WEIGHTS_FOR_REPORT)["fit"])) != "usable"
            and not v.startswith("usable (")
        }
        if doubtful:
            lines += [
                "**Do not trust these weights as an optimum.** "
                + "; ".join(f"{md(scale)}: {md(v)}" for scale, v in doubtful.items())
                + ". Domains without a valid fit keep their base weight, so the prediction "
                "extrapolates a partly fixed mixture; the verification below shows what it is "
                "worth, and differences smaller than the seed noise are not evidence.",
                "",
            ]
        rows = []
        for path in autoscale:
            p = read_kind(path, PREDICTION_FOR_REPORT)
            rows.append([f"{p['target_tokens']:.4g}", *(p["weights"][d] for d in domains)])
        lines += markdown_table(["target tokens", *domains], rows)
        lines.append("")
        lines += _interpolation_lines(read_kinds(autoscale, PREDICTION_FOR_REPORT))
    plot_loss_curves(read_kinds(compares, COMPARISON), Path(out).with_name("loss_curves.png"))
    if compares:
        lines += ["![loss curves](loss_curves.png)", ""]
    quality = Path(out).with_name("quality_vs_compute.png")
    plot_quality_vs_compute(read_kinds(compares, COMPARISON), proxy_tokens, quality)
    if compares:
        lines += [
            "![quality against proxy compute](quality_vs_compute.png)",
            "",
            "Proxy compute: tokens of the proxy runs a method needs (the DDO sweep for AutoScale "
            "and DDO, a method's own runs for RegMix, DML and DoReMi, none for fixed weights), "
            "as a multiple of one verification run at that target; with iterated DDO, every "
            "planned round (an upper bound where a scale stopped early).",
            "",
        ]
    for path in compares:
        c = read_kind(path, COMPARISON)
        lines += [f"## Verification at {c['target_tokens']:.4g} tokens", ""]
        what = c.get("objective", "mean loss over all evaluation domains")
        lines += [f"Objective: {md(what)} (what DDO optimised; steps saved are read on it).", ""]
        metric = c.get("metric", "perplexity")
        if metric != "perplexity":  # the same columns, another name: exp of the MLM loss
            lines += [f"Here 'ppl' and 'perplexity' are {md(metric)}, the paper's MLM metric.", ""]
        lines += _precision_lines(c.get("precision") or [])
        rows = []
        for method, m in c["methods"].items():
            score = m.get("world_score") or {}
            spent = proxy_tokens.get(method)
            rows.append(
                [
                    method,
                    m["objective"],
                    _interval_text(m.get("objective_interval")),
                    m["mean_perplexity"],
                    m["worst_perplexity"],
                    m.get("steps_saved_pct"),
                    _steps_interval_text(m),
                    score.get("excess_loss"),
                    score.get("captured_gain"),
                    spent / c["target_tokens"] if spent is not None else None,
                ]
            )
        lines += markdown_table(
            [
                "method",
                "objective",
                "90% interval over seeds",
                "mean ppl",
                "worst ppl",
                "steps saved vs uniform %",
                "steps saved 90% interval",
                "excess loss (world)",
                "captured gain (world)",
                "proxy compute (x target run)",
            ],
            rows,
        )
        lines.append("")
        lines += _paired_lines(c)
        evals = list(next(iter(c["methods"].values()))["perplexity"])
        lines += [f"Per-domain {md(metric)} at {c['target_tokens']:.4g} tokens:", ""]
        lines += markdown_table(
            ["method", *evals],
            [[method, *(m["perplexity"][e] for e in evals)] for method, m in c["methods"].items()],
        )
        lines.append("")
    if downstream:
        lines += downstream_lines(downstream, out)
    if finetuned:
        lines += finetune_lines(finetuned)
    atomic_write_text(out, "\n".join(lines) + "\n")


def _interval_text(result: dict[str, Any] | None) -> Markdown | None:
    if not result or result.get("interval") is None:
        return None
    low, high = result["interval"]
    return interval(low, high)


def _steps_interval_text(m: dict[str, Any]) -> str | None:
    never = m.get("steps_saved_never")
    if never:
        return f"never reaches uniform in {never} of {len(m['steps_saved_by_seed'])} seeds"
    return _interval_text(m.get("steps_saved_interval"))


def _paired_lines(c: dict[str, Any]) -> list[str]:
    """Each method against uniform and against the best other method, paired by seed; a
    difference counts only when its interval excludes zero."""
    rows = []
    for method, m in c["methods"].items():
        for key, label in (("vs_uniform", "uniform"), ("vs_best_other", None)):
            d = m.get(key)
            if not d:
                continue
            other = label or d["other"]
            if key == "vs_best_other" and other == "uniform" and "vs_uniform" in m:
                continue  # the same comparison as the row above
            rows.append([method, other, d["n"], d["mean"], _interval_text(d), verdict(d)])
    if not rows:
        return []
    seeds = max(m.get("seeds", 1) for m in c["methods"].values())
    lines = [
        "Paired by seed (method minus other, on the objective; lower is better): a difference "
        "is called lower or higher only when its 90% interval (the wider of the bootstrap over "
        "seeds and Student's t) excludes zero"
        + (
            "; with one verification seed no difference can be told from seed noise "
            "(verify.seeds >= 3)."
            if seeds < 2
            else "."
        ),
        "",
    ]
    lines += markdown_table(
        ["method", "vs", "seeds", "difference", "90% interval", "verdict"], rows
    )
    return [*lines, ""]


def _precision_lines(precisions: list[str]) -> list[str]:
    """The precision the runs trained in, as resolved on their machine (`auto` is bf16 on CPUs
    with native bf16, fp32 elsewhere): mixing them adds a difference of about one seed sigma."""
    if not precisions:
        return []
    if len(precisions) == 1:
        return [f"Trained in {md(precisions[0])} (train.precision as resolved on the machine).", ""]
    mixed = joined(precisions)
    return [
        f"**Warning: the verification runs trained in different precisions ({mixed})**: their "
        "differences include the precision's; pin train.precision and rerun.",
        "",
    ]
