"""The JSON and TSV files an experiment's workflow writes, each with its kind, and which of
those on disk are damaged: what `mixscale status` reports, and what the workflow checks before
any job (``stop_if_damaged``, called by workflow/rules/common.smk).

Why before any job. Snakemake takes a file that exists as finished. A damaged one (truncated
by a full disk, emptied, edited) makes the jobs that read it fail, and Snakemake 9 deletes a
job's existing outputs before it runs (``Job.prepare``) and again when it fails: the good
table, weights and figures built before would be lost. Writing outputs to a temporary and
renaming cannot save them; only a check before Snakemake schedules anything can, and parsing
the workflow is that moment.

Why stop instead of moving the file aside. Parsing also happens for ``snakemake -n``,
``--lint``, ``--report`` and ``--summary``, which must leave the results folder as it is; a
damaged file usually has a cause (a full disk, a stray edit) its owner should see; and
deleting it is one command the message names. Nothing is deleted or moved by mixscale.

Cost: only planned files that exist are read, each once: about 0.2 ms of CPU per finished run
(5,206 runs' metrics.json in 1.0-1.2 s; docs/workflow.md#damaged-outputs). Snakemake's own
jobs on a cluster node skip it (``workflow.is_main_process``).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixscale.config.typed import Config
from mixscale.core.runtable import load_run_table
from mixscale.core.utility import load_anneal_table, load_costs
from mixscale.errors import InputError, say
from mixscale.kinds import (
    ANNEAL_COSTS,
    ANNEAL_RUNS,
    COMPARISON,
    DDO_WEIGHTS,
    DOWNSTREAM,
    FINETUNE_SCORE,
    METRICS,
    MIXTURE,
    PREDICTION,
    RUN_TABLE,
    UTILITY,
)
from mixscale.methods import Layout, method
from mixscale.plan.run import target_label
from mixscale.plan.specs import run_specs
from mixscale.shapes import Kind, TsvKind, read_kind, read_tsv_kind


@dataclass(frozen=True)
class Output:
    """A file the workflow writes; a table also names the file each of its rows came from."""

    path: Path
    kind: Kind | TsvKind
    rows: dict[str, Path] = field(default_factory=dict)


def planned_outputs(config: Config, root: Path = Path(".")) -> list[Output]:
    """Every JSON and TSV output of the plan (the paths of workflow/rules/*.smk), runs first."""
    out = root / config.out
    specs = run_specs(config)
    metrics = {run: out / "runs" / run / "metrics.json" for run in specs}
    found = [Output(path, METRICS) for path in metrics.values()]
    if config.mixture:
        found += _mixture_outputs(config, out, specs, metrics)
    if config.anneal is not None:
        found += _anneal_outputs(config, out, specs, metrics)
    found += _evaluation_outputs(config, out, specs)
    return found


def _runs(specs: dict[str, Any], stage: str, scale: str, round_: int = 1) -> list[str]:
    return [
        run
        for run, s in specs.items()
        if s["stage"] == stage and s["scale"] == scale and s.get("round", 1) == round_
    ]


def _table(path: Path, kind: TsvKind, runs: list[str], metrics: dict[str, Path]) -> Output:
    return Output(path, kind, {run: metrics[run] for run in runs})


def _mixture_outputs(
    config: Config, out: Path, specs: dict[str, Any], metrics: dict[str, Path]
) -> list[Output]:
    found = []
    for scale in config.ddo.scales:
        if scale.runs is None:  # else the user's own run table: checked with the config
            runs = _runs(specs, "ddo", scale.name)
            found.append(_table(out / "tables" / f"{scale.name}.tsv", RUN_TABLE, runs, metrics))
        found.append(Output(out / "ddo" / scale.name / "weights.json", DDO_WEIGHTS))
        if config.ddo.rounds > 1:
            for number in range(1, config.ddo.rounds + 1):
                weights = out / "ddo" / scale.name / f"round{number}" / "weights.json"
                found.append(Output(weights, DDO_WEIGHTS))
                if number > 1:
                    runs = _runs(specs, "ddo", scale.name, number)
                    table = out / "tables" / scale.name / f"round{number}.tsv"
                    found.append(_table(table, RUN_TABLE, runs, metrics))
    proxies = {s["scale"] for s in specs.values() if s["stage"] == "proxy" and not s.get("doremi")}
    for name in sorted(proxies):  # methods that gather their own proxy runs (RegMix, DML)
        runs = _runs(specs, "proxy", name)
        found.append(_table(out / "methods" / name / "runs.tsv", RUN_TABLE, runs, metrics))
    layout = Layout(out=str(out), scales=tuple(s.name for s in config.ddo.scales))
    kinds = {"ddo": DDO_WEIGHTS, "autoscale": PREDICTION}
    weights = set()
    for tokens in config.autoscale.targets:
        target = target_label(tokens)
        found.append(Output(out / "autoscale" / f"{target}.json", PREDICTION))
        if config.verify.methods:
            found.append(Output(out / "verify" / f"{target}.json", COMPARISON))
        for name in config.verify.methods:
            path = method(name).weights_file(layout, target)
            if path and Path(path).relative_to(out).parts[0] not in kinds:
                weights.add(Path(path))  # a method's own weights (DDO's and AutoScale's: above)
    found += [Output(path, MIXTURE) for path in sorted(weights)]
    return found


def _anneal_outputs(
    config: Config, out: Path, specs: dict[str, Any], metrics: dict[str, Path]
) -> list[Output]:
    from mixscale.plan.anneal import target_task

    runs = [run for run, s in specs.items() if s["stage"] == "anneal"]
    task = target_task(config) if config.backend == "torch" else None
    sources = (
        {run: out / "downstream" / run / f"{task.id}.json" for run in runs} if task else metrics
    )
    return [
        _table(out / "anneal" / "runs.tsv", ANNEAL_RUNS, runs, sources),
        Output(out / "anneal" / "costs.tsv", ANNEAL_COSTS),
        Output(out / "anneal" / "utility.json", UTILITY),
        *(Output(path, DOWNSTREAM) for run, path in sources.items() if task),
    ]


def _evaluation_outputs(config: Config, out: Path, specs: dict[str, Any]) -> list[Output]:
    """lm-eval results and fine-tuning scores of the verification models (real training)."""
    if config.backend != "torch" or not config.mixture:
        return []
    from mixscale.config.finetune import finetune_tasks
    from mixscale.config.tasks import task_entries

    models = [run for run, s in specs.items() if s["stage"] == "verify"]
    found = []
    for entry in task_entries(config):
        untrained = ["untrained"] if models and config.downstream.untrained else []
        for model in [*models, *untrained]:
            found.append(Output(out / "downstream" / model / f"{entry.id}.json", DOWNSTREAM))
    for task in finetune_tasks(config):
        untrained = ["untrained"] if models and config.finetune.untrained else []
        for model in [*models, *untrained]:
            path = out / "finetune" / "scores" / model / f"{task.id}.json"
            found.append(Output(path, FINETUNE_SCORE))
    return found


# --- damage ---------------------------------------------------------------------------------


def damage(output: Output) -> InputError | None:
    """Why an existing output is not what its writer wrote (one line with the fix), or None."""
    kind = output.kind
    try:
        if isinstance(kind, Kind):
            read_kind(output.path, kind.as_written)
        else:
            _check_table(output)
    except InputError as exc:
        return InputError(exc.source, exc.field, exc.problem, kind.fix)
    except OSError as exc:  # unreadable: a folder where the file was, no permission
        return InputError(str(output.path), "", exc.strerror or str(exc), kind.fix)
    return None


TABLE_LOADERS = {
    RUN_TABLE.name: lambda path: load_run_table(path, zero_tokens=True),
    ANNEAL_RUNS.name: load_anneal_table,
    ANNEAL_COSTS.name: lambda path: load_costs(path, None),
}


def _check_table(output: Output) -> None:
    """A table its reader accepts, not cut off, and with a row for every run it was gathered
    from: a run whose file is older than the table had its row when the table was written.
    (A run planned since, or rerun since, is not a loss: Snakemake gathers the table again.)"""
    path = output.path
    TABLE_LOADERS[output.kind.name](str(path))
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        if handle.read(1) != b"\n":  # the writer ends every line: a cut-off last line
            raise InputError(str(path), "last line", "cut off (the table is truncated)")
    if not output.rows:
        return
    header, rows = read_tsv_kind(path, output.kind)
    have = {cells[header.index("run")] for cells in rows} if "run" in header else set()
    written = path.stat().st_mtime_ns
    for run, source in output.rows.items():
        if run not in have and _older(source, written):
            raise InputError(
                str(path), f"run {run}", f"no row, though {source} is older than the table"
            )


def _older(path: Path, than_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns <= than_ns
    except OSError:
        return False


def incomplete_markers(root: Path) -> set[str]:
    """Output paths Snakemake marked as started-but-unfinished (it base64-encodes the path)."""
    folder = root / ".snakemake" / "incomplete"
    paths = set()
    for marker in folder.glob("*") if folder.is_dir() else []:
        try:
            paths.add(base64.urlsafe_b64decode(marker.name.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return paths


def damaged_outputs(
    config: Config, root: Path = Path("."), outputs: list[Output] | None = None
) -> list[tuple[Output, InputError]]:
    """Every planned output that exists, is finished (Snakemake does not mark it incomplete:
    it reruns those itself) and is damaged, in plan order, with why."""
    marked = incomplete_markers(root)
    found = []
    for output in planned_outputs(config, root) if outputs is None else outputs:
        if not output.path.is_file() and not output.path.is_dir():
            continue
        if str(output.path.relative_to(root)) in marked or str(output.path) in marked:
            continue
        problem = damage(output)
        if problem is not None:
            found.append((output, problem))
    return found


DRY_RUN = ("-n", "--dry-run", "--dryrun")
# Snakemake commands that run no job and must work on a damaged folder (to clean it up, too)
NO_JOBS = {
    "--unlock", "--cleanup-metadata", "--cm", "--delete-all-output", "--delete-temp-output",
    "--list-rules", "--list", "-l", "--list-target-rules", "--lt", "--summary", "-S",
    "--detailed-summary", "-D", "--lint", "--dag", "--rulegraph", "--filegraph", "--report",
    "--list-changes", "--lc", "--archive", "--cleanup-shadow", "--containerize",
}  # fmt: skip


def stop_if_damaged(config: Config, configfiles: list[Any], argv: list[str]) -> None:
    """For the workflow: a damaged output stops the run before any job, in one line naming
    the file, why, and the command that makes it again (this Snakemake command with the file
    as its target); exit 2, nothing touched."""
    if any(a.split("=")[0] in NO_JOBS for a in argv[1:]):
        return
    damaged = damaged_outputs(config)
    if not damaged:
        return
    output, problem = damaged[0]
    # the target first: after an option such as --configfile (several values) it would be one
    options = [a for a in argv[1:] if a not in DRY_RUN]
    command = shlex.join(["snakemake", str(output.path), *options])
    fix = f"delete it, then `{command}` {output.kind.again}, then rerun as before"
    line = InputError(problem.source, problem.field, problem.problem, fix).one_line()
    if len(damaged) > 1:
        files = shlex.join(a for f in configfiles for a in ("--configfile", str(f)))
        line += f"; {len(damaged) - 1} more: `python -m mixscale status {files}` lists them"
    say(f"mixscale: damaged output: {line}")
    raise SystemExit(2)
