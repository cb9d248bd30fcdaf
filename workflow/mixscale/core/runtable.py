"""The run table: one row per training run, validated on load.

Columns: ``tokens.<domain>`` (training tokens of that domain in the run), ``loss.<domain>``
(validation loss on that evaluation domain; evaluation domains may differ from training
domains), optional ``run`` (unique id), ``seed`` and ``step``. Any other column is kept aside.
Domains, run ids, seeds and steps are names, as in the config (``mixscale.kinds.RUN_TABLE``):
they become file names and report cells. Lines starting with '#' before the header are
comments; below it, every line is a run.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixscale.errors import InputError
from mixscale.fileio import parse_number, write_tsv
from mixscale.kinds import MIXTURES, RUN_TABLE
from mixscale.shapes import read_tsv_kind

TOKENS_PREFIX = "tokens."
LOSS_PREFIX = "loss."


@dataclass(frozen=True)
class RunTable:
    source: str
    train_domains: list[str]
    eval_domains: list[str]
    tokens: np.ndarray  # (runs, train_domains), float64, > 0 (>= 0 with zero_tokens)
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
        tokens = np.ascontiguousarray(self.tokens, dtype=float)
        if not np.all(np.isfinite(tokens)) or np.any(tokens == 0):
            # NaN != NaN and 0.0 == -0.0: only here do float and byte equality differ.
            keys: list[object] = [tuple(float(x) for x in row) for row in tokens]
        else:
            # Equal finite nonzero floats have equal bytes: one bytes key per row is the same
            # grouping as a tuple of floats, without m Python floats per run.
            keys = [row.tobytes() for row in tokens]
        groups: dict[object, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def save(self, path: str | Path) -> None:
        header = ["run", "seed"] + [TOKENS_PREFIX + d for d in self.train_domains]
        header += [LOSS_PREFIX + d for d in self.eval_domains]
        rows = []
        for i in range(self.n_runs):
            tok = [int(x) if float(x).is_integer() else float(x) for x in self.tokens[i]]
            rows.append([self.run_ids[i], self.seeds[i], *tok, *map(float, self.losses[i])])
        write_tsv(path, header, rows)


# What a cell can hold. Token counts are whole tokens of a real run: under one is a share
# written as a count, above 1e18 (100,000x the largest runs published) a unit slip; either
# would overflow the fits (found by tests/test_properties.py). A validation cross-entropy in
# nats is ~ln(vocabulary) at worst (~14 for a million-token vocabulary): far above 1e6 the
# run diverged.
TOKEN_RANGE = (1.0, 1e18)
LOSS_RANGE = (0.0, 1e6)
LOSS_FIX = "give the validation cross-entropy in nats"


def load_run_table(path: str | Path, zero_tokens: bool = False) -> RunTable:
    """``zero_tokens``: a run may leave a domain out (0 tokens; sampled mixtures of RegMix and
    Data Mixing Laws often do). DDO's power laws are in log tokens and need every domain > 0."""
    source = str(path)
    header, rows = read_tsv_kind(path, RUN_TABLE)
    return parse_run_table(source, header, rows, zero_tokens)


def parse_run_table(
    source: str, header: list[str], rows: list[list[str]], zero_tokens: bool = False
) -> RunTable:
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
    tokens = _valid_numbers(rows, [index[c] for c in token_cols], True, zero_tokens)
    losses = _valid_numbers(rows, [index[c] for c in loss_cols], positive=False)
    if tokens is None or losses is None:
        tokens, losses = _parse_cells(source, rows, index, token_cols, loss_cols, zero_tokens)
    if zero_tokens and np.any(tokens.sum(axis=1) == 0):
        row = int(np.flatnonzero(tokens.sum(axis=1) == 0)[0]) + 2
        raise InputError(source, f"row {row}", "a run of 0 tokens", "drop it or give its tokens")
    return _with_ids(source, rows, index, token_cols, loss_cols, tokens, losses)


def _valid_numbers(
    rows: list[list[str]], positions: list[int], positive: bool, zero_ok: bool = False
) -> np.ndarray | None:
    """The cells at ``positions`` of every row as a (rows x positions) float array, if all are
    valid: finite and within TOKEN_RANGE (``positive``, tokens) or LOSS_RANGE (losses). None
    otherwise.

    The fast path: one ``float`` per cell, as ``parse_number`` does, without a Python call and
    checks per cell (a 1,000-domain table has 4 million cells). Any invalid cell sends the
    caller to ``_parse_cells``, which names the first one exactly as before.
    """
    width = len(positions)
    get = operator.itemgetter(*positions)
    cells = map(get, rows) if width > 1 else ((c,) for c in map(get, rows))
    try:
        flat = np.fromiter(
            map(float, itertools.chain.from_iterable(cells)), dtype=float, count=len(rows) * width
        )
    except (ValueError, TypeError, IndexError):  # the cell-by-cell loop reports it
        return None
    values = flat.reshape(len(rows), width)
    low, high = TOKEN_RANGE if positive else LOSS_RANGE
    inside = (values >= low) & (values <= high)
    if zero_ok:
        inside |= values == 0
    if not np.all(np.isfinite(values)) or not np.all(inside):
        return None
    return values


def _parse_cells(
    source: str,
    rows: list[list[str]],
    index: dict[str, int],
    token_cols: list[str],
    loss_cols: list[str],
    zero_ok: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cell by cell, raising InputError at the first invalid cell (row by row, tokens first)."""
    tokens = np.empty((len(rows), len(token_cols)))
    losses = np.empty((len(rows), len(loss_cols)))
    for r, cells in enumerate(rows):
        row_no = r + 2  # header is line 1
        for j, col in enumerate(token_cols):
            value = parse_number(source, row_no, col, cells[index[col]])
            where = f"row {row_no}, column {col}"
            if value == 0 and zero_ok:
                tokens[r, j] = 0.0
                continue
            if value < 0 and zero_ok:
                raise InputError(
                    source, where, f"tokens must be >= 0, got {cells[index[col]]}", "fix it"
                )
            if value <= 0:
                raise InputError(
                    source,
                    where,
                    f"tokens must be > 0, got {cells[index[col]]}",
                    "the power laws are in log tokens; give every trained domain some tokens",
                )
            if not TOKEN_RANGE[0] <= value <= TOKEN_RANGE[1]:
                raise InputError(
                    source,
                    where,
                    f"{cells[index[col]]} tokens is outside [1, {TOKEN_RANGE[1]:.0e}]",
                    "give the number of training tokens of that domain (not a share)",
                )
            tokens[r, j] = value
        for j, col in enumerate(loss_cols):
            value = parse_number(source, row_no, col, cells[index[col]])
            where = f"row {row_no}, column {col}"
            if value < 0:
                raise InputError(
                    source, where, f"loss must be >= 0, got {cells[index[col]]}", LOSS_FIX
                )
            if value > LOSS_RANGE[1]:
                raise InputError(
                    source,
                    where,
                    f"a loss of {cells[index[col]]} (above {LOSS_RANGE[1]:.0e}): the run diverged?",
                    "rerun or drop that run; " + LOSS_FIX,
                )
            losses[r, j] = value
    return tokens, losses


def _with_ids(
    source: str,
    rows: list[list[str]],
    index: dict[str, int],
    token_cols: list[str],
    loss_cols: list[str],
    tokens: np.ndarray,
    losses: np.ndarray,
) -> RunTable:
    """The run table with its run ids (checked unique), seeds and steps."""
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


def load_mixtures(path: str | Path, train_domains: list[str]) -> tuple[list[str], np.ndarray]:
    """Run ids and mixtures (weights, rows summing to 1) of a table with ``tokens.<d>`` columns
    for exactly ``train_domains`` (``loss.<d>`` columns optional): mixtures to score."""
    source = str(path)
    header, rows = read_tsv_kind(path, MIXTURES)
    columns = {
        h[len(TOKENS_PREFIX) :]: i for i, h in enumerate(header) if h.startswith(TOKENS_PREFIX)
    }
    if sorted(columns) != sorted(train_domains):
        raise InputError(
            source,
            "header",
            f"tokens columns for {', '.join(sorted(columns)) or 'no domain'}",
            f"give one tokens.<d> column per domain of the fit: {', '.join(train_domains)}",
        )
    if not rows:
        raise InputError(source, "", "no mixtures", "add one row per mixture to score")
    tokens = np.empty((len(rows), len(train_domains)))
    for r, cells in enumerate(rows):
        for j, domain in enumerate(train_domains):
            col = TOKENS_PREFIX + domain
            value = parse_number(source, r + 2, col, cells[columns[domain]])
            if value < 0:
                raise InputError(source, f"row {r + 2}, column {col}", "tokens < 0", "fix it")
            tokens[r, j] = value
        if tokens[r].sum() <= 0:
            raise InputError(source, f"row {r + 2}", "a mixture of 0 tokens", "give its tokens")
    run = header.index("run") if "run" in header else None
    ids = [cells[run] if run is not None else f"row{r + 2}" for r, cells in enumerate(rows)]
    return ids, tokens / tokens.sum(axis=1, keepdims=True)
