"""The run table: one row per training run, validated on load.

Columns: ``tokens.<domain>`` (training tokens of that domain in the run), ``loss.<domain>``
(validation loss on that evaluation domain; evaluation domains may differ from training
domains), optional ``run`` (unique id), ``seed`` and ``step``. Any other column is kept aside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixscale.errors import InputError
from mixscale.fileio import parse_number, read_tsv_rows, write_tsv

TOKENS_PREFIX = "tokens."
LOSS_PREFIX = "loss."


@dataclass(frozen=True)
class RunTable:
    source: str
    train_domains: list[str]
    eval_domains: list[str]
    tokens: np.ndarray  # (runs, train_domains), float64, > 0
    losses: np.ndarray  # (runs, eval_domains), float64, >= 0, finite
    run_ids: list[str]
    seeds: list[str]
    steps: list[str] = field(default_factory=list)

    @property
    def n_runs(self) -> int:
        return int(self.tokens.shape[0])

    def mixture_groups(self) -> list[list[int]]:
        """Row indices grouped by identical token vectors (replicate seeds of one mixture).

        Groups are ordered by first appearance so results do not depend on seed order.
        """
        groups: dict[tuple[float, ...], list[int]] = {}
        for i, row in enumerate(self.tokens):
            groups.setdefault(tuple(float(x) for x in row), []).append(i)
        return list(groups.values())

    def save(self, path: str | Path) -> None:
        header = ["run", "seed"] + [TOKENS_PREFIX + d for d in self.train_domains]
        header += [LOSS_PREFIX + d for d in self.eval_domains]
        rows = []
        for i in range(self.n_runs):
            tok = [int(x) if float(x).is_integer() else float(x) for x in self.tokens[i]]
            rows.append([self.run_ids[i], self.seeds[i], *tok, *map(float, self.losses[i])])
        write_tsv(path, header, rows)


def load_run_table(path: str | Path) -> RunTable:
    source = str(path)
    header, rows = read_tsv_rows(path)
    return parse_run_table(source, header, rows)


def parse_run_table(source: str, header: list[str], rows: list[list[str]]) -> RunTable:
    token_cols = [h for h in header if h.startswith(TOKENS_PREFIX)]
    loss_cols = [h for h in header if h.startswith(LOSS_PREFIX)]
    if not token_cols:
        raise InputError(
            source, "header", "no tokens.<domain> columns", "add one per training domain"
        )
    if not loss_cols:
        raise InputError(
            source, "header", "no loss.<domain> columns", "add one per evaluation domain"
        )
    for col in token_cols + loss_cols:
        if col.endswith("."):
            raise InputError(source, f"column '{col}'", "empty domain name", "name the domain")
    if not rows:
        raise InputError(source, "", "no runs", "add one row per training run")

    index = {h: i for i, h in enumerate(header)}
    tokens = np.empty((len(rows), len(token_cols)))
    losses = np.empty((len(rows), len(loss_cols)))
    for r, cells in enumerate(rows):
        row_no = r + 2  # header is line 1
        for j, col in enumerate(token_cols):
            value = parse_number(source, row_no, col, cells[index[col]])
            if value <= 0:
                raise InputError(
                    source,
                    f"row {row_no}, column {col}",
                    f"tokens must be > 0, got {cells[index[col]]}",
                    "the power laws are in log tokens; give every trained domain some tokens",
                )
            tokens[r, j] = value
        for j, col in enumerate(loss_cols):
            value = parse_number(source, row_no, col, cells[index[col]])
            if value < 0:
                raise InputError(
                    source,
                    f"row {row_no}, column {col}",
                    f"loss must be >= 0, got {cells[index[col]]}",
                    "give the validation cross-entropy in nats",
                )
            losses[r, j] = value

    run_ids = [cells[index["run"]] for cells in rows] if "run" in index else []
    if run_ids:
        seen: dict[str, int] = {}
        for r, rid in enumerate(run_ids):
            if not rid:
                raise InputError(source, f"row {r + 2}, column run", "empty run id", "name it")
            if rid in seen:
                raise InputError(
                    source,
                    f"row {r + 2}, column run",
                    f"duplicate run id '{rid}' (also row {seen[rid]})",
                    "give every run a unique id",
                )
            seen[rid] = r + 2
    else:
        run_ids = [f"row{r + 2}" for r in range(len(rows))]
    seeds = [cells[index["seed"]] for cells in rows] if "seed" in index else ["0"] * len(rows)
    steps = [cells[index["step"]] for cells in rows] if "step" in index else []
    return RunTable(
        source=source,
        train_domains=[c[len(TOKENS_PREFIX) :] for c in token_cols],
        eval_domains=[c[len(LOSS_PREFIX) :] for c in loss_cols],
        tokens=tokens,
        losses=losses,
        run_ids=run_ids,
        seeds=seeds,
        steps=steps,
    )
