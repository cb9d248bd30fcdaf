"""The fine-tuning section of the report: the AutoScale paper's GLUE/SQuAD table, per method.

Every verification model and the untrained one (the same architecture at step 0, fine-tuned
the same way: the floor pretraining is read against) are fine-tuned on each task; rows are
methods (mean over training seeds, with the spread of the seeds), columns are tasks (their
headline metric), and the majority-class rate of each validation split is the last row."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixscale.kinds import FINETUNE_SCORE
from mixscale.report.common import markdown_table
from mixscale.shapes import read_kind


def finetune_tables(paths: list[str]) -> dict[str, dict[str, Any]]:
    """Per target scale: {columns, rows: {method: {task: [values]}}, majority, metrics}. The
    untrained model (no target) is a row of every table."""
    results = [read_kind(p, FINETUNE_SCORE) for p in paths]
    targets = sorted({str(r["target"]) for r in results if r.get("target")}, key=float)
    tables = {}
    for target in targets or ["None"]:
        chosen = [r for r in results if str(r.get("target")) in (target, "None")]
        rows: dict[str, dict[str, list[float]]] = {}
        majority: dict[str, float] = {}
        metrics: dict[str, str] = {}
        for r in chosen:
            if r["value"] is None:  # undefined for this model (constant predictions): no cell
                continue
            task = r["name"]
            rows.setdefault(r.get("label") or "model", {}).setdefault(task, []).append(r["value"])
            metrics[task] = r["metric"]
            if r.get("majority") is not None:
                majority[task] = r["majority"]
        columns = sorted({t for row in rows.values() for t in row})
        order = sorted(rows, key=lambda label: (label == "untrained", label))
        tables[target] = {
            "columns": columns,
            "rows": {label: rows[label] for label in order},
            "majority": majority,
            "metrics": metrics,
        }
    return tables


def finetune_lines(paths: list[str]) -> list[str]:
    lines: list[str] = []
    for target, table in finetune_tables(paths).items():
        title = "" if target == "None" else f" at {float(target):.4g} tokens"
        columns = table["columns"]
        lines += [f"## Fine-tuned tasks{title}", ""]
        lines += [
            "Each model fine-tuned on each task's training split and scored on its validation "
            "split (metric per column); mean over training seeds, ± their standard deviation. "
            "`untrained`: the architecture as initialised, fine-tuned the same way (the floor "
            "pretraining is read against); `majority`: always answering the most common label.",
            "",
        ]
        rows = []
        for label, scores in table["rows"].items():
            cells = [_cell(scores.get(c)) for c in columns]
            complete = all(c in scores for c in columns)
            average = np.mean([np.mean(scores[c]) for c in columns]) if complete else None
            rows.append([label, *cells, average])
        if table["majority"]:
            rows.append(["majority", *(table["majority"].get(c) for c in columns), None])
        header = [f"{c} ({table['metrics'][c]})" for c in columns]
        lines += markdown_table(["method", *header, "Avg"], rows)
        lines.append("")
    return lines


def _cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
