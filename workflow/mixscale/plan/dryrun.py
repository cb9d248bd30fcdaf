"""The budget after a dry run: ``snakemake -n`` ends with the plan's runs, tokens, FLOPs and
GPU-hours per stage, as ``mixscale budget`` prints them, below Snakemake's own job table.

Snakemake runs no hooks in a dry run (``onstart``/``onsuccess`` are skipped), so the Snakefile
registers ``print_budget_after_dry_run`` to run when the process exits; it prints only after a
dry run that succeeded, which Snakemake says by logging "This was a dry-run". A job's own
Snakemake (on a SLURM node), ``--lint``, ``--report`` and real runs print nothing.
"""

from __future__ import annotations

import atexit
import logging
import sys
from typing import Any

from mixscale.config.typed import Config
from mixscale.errors import InputError, say
from mixscale.plan.budget import budget_table, format_table

SNAKEMAKE_LOGGER = "snakemake.logging"
DRY_RUN_DONE = "This was a dry-run"


class _DryRunWatch(logging.Handler):
    """Notes Snakemake's message that ends a successful dry run."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.done = False

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(DRY_RUN_DONE):
            self.done = True


def print_budget_after_dry_run(workflow: Any, config: Config) -> None:
    """Called by the Snakefile: arrange for the budget to follow a successful dry run."""
    watch = _DryRunWatch()
    logging.getLogger(SNAKEMAKE_LOGGER).addHandler(watch)

    def at_exit() -> None:
        if watch.done and getattr(workflow, "dryrun", False):
            text = budget_text(config)
            if text:
                say(text, sys.stdout)  # where Snakemake prints its job table

    atexit.register(at_exit)


def budget_text(config: Config) -> str:
    """The budget table, or nothing when the plan trains nothing (run tables given)."""
    try:
        budget = budget_table(config)
    except InputError as exc:  # e.g. a simulated world without model.params: not priced
        return f"\nmixscale budget: not priced ({exc.one_line()})"
    if not budget["stages"]:
        return ""
    return (
        "\nmixscale budget of this plan (every run, done or not; "
        "`python -m mixscale budget` prints the same):\n" + format_table(budget)
    )
