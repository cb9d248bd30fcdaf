"""What an experiment has done so far, read from its files alone (no Snakemake needed).

Per planned run: ``finished`` (metrics.json), ``damaged`` (a metrics.json that is not what the
trainer writes: truncated, emptied, edited), ``interrupted`` (checkpoints but no metrics: the
next Snakemake run resumes it at the newest checkpoint's step), ``started`` (a log but nothing
resumable) or ``not started``. Snakemake's own marker of jobs it started and did not see finish
(``.snakemake/incomplete``) turns a run with recent progress into ``running?``: only the
scheduler knows for sure, so it is reported as a question. Per DDO scale: whether its signal can
be trusted (the same verdict as the report), once the scale has been fitted, or which of its
files is damaged. Every other output of the plan that is damaged is named with its fix. Status
is the command that diagnoses damaged files: it reports them, it never stops on one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mixscale.config.typed import Config
from mixscale.core.fit import scale_verdict
from mixscale.errors import InputError, printable
from mixscale.kinds import DDO_WEIGHTS, METRICS
from mixscale.plan.outputs import Output, damage, incomplete_markers, planned_outputs
from mixscale.plan.specs import run_specs
from mixscale.shapes import read_kind

RECENT_S = 600  # a checkpoint or log written within this many seconds counts as recent progress


def run_state(run_dir: Path, log: Path, marked: bool, now: float) -> dict[str, Any]:
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        problem = damage(Output(metrics, METRICS))
        if problem:  # Snakemake takes the run as done; every table built from it would fail
            return {"state": "damaged", "problem": problem.one_line()}
        return {"state": "finished"}
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    newest = [p for p in ([*checkpoints[-1:], log]) if p.exists()]
    recent = any(now - p.stat().st_mtime < RECENT_S for p in newest)
    if checkpoints:
        step = int(checkpoints[-1].stem.split("-")[1])
        state = "running?" if (marked and recent) else "interrupted"
        return {"state": state, "resume_step": step}
    if log.exists():
        return {"state": "running?" if (marked and recent) else "started"}
    return {"state": "not started"}


def experiment_status(config: Config, workdir: str | Path = ".") -> dict[str, Any]:
    root = Path(workdir)
    out = root / config.out
    marked = incomplete_markers(root)
    now = time.time()
    outputs = planned_outputs(config, root)
    runs = {}
    for run_id, spec in run_specs(config).items():
        metrics = out / "runs" / run_id / "metrics.json"
        is_marked = str(metrics.relative_to(root)) in marked or str(metrics) in marked
        state = run_state(metrics.parent, out / "logs" / "train" / f"{run_id}.log", is_marked, now)
        runs[run_id] = {"stage": spec["stage"], "scale": spec["scale"], **state}
    counts: dict[str, int] = {}
    for info in runs.values():
        counts[info["state"]] = counts.get(info["state"], 0) + 1
    damaged = _damaged(outputs)
    return {
        "experiment": config.experiment,
        "counts": counts,
        "runs": runs,
        "scales": _scales(config, out, damaged),
        "damaged": damaged,
    }


def _damaged(outputs: list[Output]) -> dict[str, str]:
    """Every existing output other than a run's metrics.json that is damaged: path -> the
    problem and its fix in one line."""
    found = {}
    for output in outputs:
        if output.kind is METRICS or not (output.path.is_file() or output.path.is_dir()):
            continue
        problem = damage(output)
        if problem is not None:
            found[str(output.path)] = problem.one_line()
    return found


def _scales(config: Config, out: Path, damaged: dict[str, str]) -> dict[str, str]:
    """Each DDO scale's verdict; "damaged: ..." when its run table or weights are, never
    "usable" read from a fit whose table is damaged."""
    verdicts = {}
    for scale in config.ddo.scales if config.ddo else []:
        path = out / "ddo" / scale.name / "weights.json"
        table = str(out / "tables" / f"{scale.name}.tsv")
        if table in damaged:
            verdicts[scale.name] = f"damaged: {damaged[table]}"
        elif str(path) in damaged:
            verdicts[scale.name] = f"damaged: {damaged[str(path)]}"
        elif not path.is_file():
            verdicts[scale.name] = "not fitted yet"
        else:
            verdicts[scale.name] = _verdict(path)
    return verdicts


def _verdict(path: Path) -> str:
    try:
        return scale_verdict(read_kind(path, DDO_WEIGHTS.as_written)["fit"])
    except (InputError, OSError) as exc:  # changed since it was checked: still no traceback
        return f"damaged: {exc}"


def format_status(status: dict[str, Any], verbose: bool = False) -> str:
    order = ("finished", "damaged", "running?", "interrupted", "started", "not started")
    total = sum(status["counts"].values())
    counts = ", ".join(f"{status['counts'][s]} {s}" for s in order if s in status["counts"])
    lines = [f"experiment {status['experiment']}: {total} runs: {counts}"]
    for run_id, info in status["runs"].items():
        if verbose or info["state"] != "finished":
            extra = f" (resumes at step {info['resume_step']})" if "resume_step" in info else ""
            if info["state"] == "damaged":
                extra = f": {info['problem']}"
            lines.append(f"  {info['state']:12s} {run_id}{extra}")
    if status["scales"]:
        lines.append("DDO scales:")
        lines += [f"  {name}: {verdict}" for name, verdict in status["scales"].items()]
    if status.get("damaged"):
        lines.append(f"Damaged outputs ({len(status['damaged'])}):")
        lines += [f"  {problem}" for problem in status["damaged"].values()]
    # a line break or control character in a run id, a path or a file's damage stays visible
    # on its own line
    return "\n".join(printable(line) for line in lines)
