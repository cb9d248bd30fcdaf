"""What an experiment has done so far, read from its files alone (no Snakemake needed).

Per planned run: ``finished`` (metrics.json), ``interrupted`` (checkpoints but no metrics: the
next Snakemake run resumes it at the newest checkpoint's step), ``started`` (a log but nothing
resumable) or ``not started``. Snakemake's own marker of jobs it started and did not see finish
(``.snakemake/incomplete``) turns a run with recent progress into ``running?``: only the
scheduler knows for sure, so it is reported as a question. Per DDO scale: whether its signal can
be trusted (the same verdict as the report), once the scale has been fitted.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from mixscale.config.typed import Config
from mixscale.core.fit import scale_verdict
from mixscale.errors import InputError, printable
from mixscale.fileio import read_json
from mixscale.plan.specs import run_specs

RECENT_S = 600  # a checkpoint or log written within this many seconds counts as recent progress


def _incomplete_markers(workdir: Path) -> set[str]:
    """Output paths Snakemake marked as started-but-unfinished (it base64-encodes the path)."""
    folder = workdir / ".snakemake" / "incomplete"
    paths = set()
    for marker in folder.glob("*") if folder.is_dir() else []:
        try:
            paths.add(base64.urlsafe_b64decode(marker.name.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return paths


def run_state(run_dir: Path, log: Path, marked: bool, now: float) -> dict[str, Any]:
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        problem = unreadable_json(metrics)
        if problem:  # Snakemake takes the run as done; every table built from it would fail
            return {"state": "damaged", "problem": problem}
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
    marked = _incomplete_markers(root)
    now = time.time()
    runs = {}
    for run_id, spec in run_specs(config).items():
        metrics = out / "runs" / run_id / "metrics.json"
        is_marked = str(metrics.relative_to(root)) in marked or str(metrics) in marked
        state = run_state(metrics.parent, out / "logs" / "train" / f"{run_id}.log", is_marked, now)
        runs[run_id] = {"stage": spec["stage"], "scale": spec["scale"], **state}
    counts: dict[str, int] = {}
    for info in runs.values():
        counts[info["state"]] = counts.get(info["state"], 0) + 1
    return {
        "experiment": config.experiment,
        "counts": counts,
        "runs": runs,
        "scales": _scales(config, out),
    }


def _scales(config: Config, out: Path) -> dict[str, str]:
    verdicts = {}
    for scale in config.ddo.scales if config.ddo else []:
        path = out / "ddo" / scale.name / "weights.json"
        if not path.is_file():
            verdicts[scale.name] = "not fitted yet"
        elif problem := unreadable_json(path, "fit"):
            verdicts[scale.name] = f"damaged: {problem} (delete {path} and rerun)"
        else:
            verdicts[scale.name] = scale_verdict(read_json(path)["fit"])
    return verdicts


def unreadable_json(path: Path, key: str | None = None) -> str | None:
    """Why a finished output cannot be read (emptied, truncated, not a JSON object, missing
    ``key``), or None."""
    try:
        data = read_json(path)
    except InputError as exc:
        return exc.problem
    if not isinstance(data, dict):
        return "not a JSON object"
    if key is not None and key not in data:
        return f"no '{key}'"
    return None


def format_status(status: dict[str, Any], verbose: bool = False) -> str:
    order = ("finished", "damaged", "running?", "interrupted", "started", "not started")
    total = sum(status["counts"].values())
    counts = ", ".join(f"{status['counts'][s]} {s}" for s in order if s in status["counts"])
    lines = [f"experiment {status['experiment']}: {total} runs: {counts}"]
    for run_id, info in status["runs"].items():
        if verbose or info["state"] != "finished":
            extra = f" (resumes at step {info['resume_step']})" if "resume_step" in info else ""
            if info["state"] == "damaged":
                extra = f" (metrics.json: {info['problem']}; delete it and rerun: it trains again)"
            lines.append(f"  {info['state']:12s} {run_id}{extra}")
    if status["scales"]:
        lines.append("DDO scales:")
        lines += [f"  {name}: {verdict}" for name, verdict in status["scales"].items()]
    # a line break or control character in a run id, a path or a file's damage stays visible
    # on its own line
    return "\n".join(printable(line) for line in lines)
