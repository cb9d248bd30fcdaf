"""Downstream evaluation through lm-eval: embedded tasks built from held-out text, and any
lm-eval task by name (the paper's Table 1 suite on a cluster).

Embedded tasks (two per domain). Each item is a passage from one of the domain's held-out
documents (never trained on, never seen by the tokenizer): the context is ``context_words``
consecutive words and the true answer the ``continuation_words`` words that follow.

- ``mixscale_next_<domain>``: the distractors are spans of the same length from *other* held-out
  documents of the same domain. Topic alone does not give the answer away; the model must link
  the continuation to this passage (hard for tiny models: a few points above chance).
- ``mixscale_order_<domain>``: the distractors are the true continuation's words in shuffled
  orders. Same words, same unconditional unigram cost: only a model that learned how text of this
  domain is written prefers the real order (tiny models move well off chance).

Chance is 1 / choices. Items come from non-overlapping windows of the documents, drawn with a
seeded generator (so the same corpus and settings give the same tasks); passages made of very long
"words" (URLs, code lines) are skipped so that items fit small context windows.
Words are whitespace-separated tokens joined by single spaces, so every choice starts at a word
boundary (lm-eval needs that, with ``target_delimiter: " "``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.config.tasks import EMBEDDED, TASK_PREFIX, TaskEntry, needs_generated_tasks
from mixscale.errors import InputError
from mixscale.kinds import DOWNSTREAM, TASKS
from mixscale.shapes import read_kind

# --- evaluation -----------------------------------------------------------------------------


def offline_environment(cache_dir: str, offline: bool, datasets_cache: str | None) -> None:
    """Point every Hugging Face cache at ``cache_dir`` (parallel jobs never share a lock) and
    forbid the hub unless told otherwise. Must run before datasets/transformers are imported."""
    cache = Path(cache_dir).resolve()
    os.environ["HF_HOME"] = str(cache)
    os.environ["HF_DATASETS_CACHE"] = str(
        Path(datasets_cache).resolve() if datasets_cache else cache / "datasets"
    )
    flag = "1" if offline else "0"
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[key] = flag
    import datasets.config  # already imported in a long-lived process: patch its view too

    datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])
    datasets.config.HF_DATASETS_OFFLINE = offline
    datasets.config.HF_HUB_OFFLINE = offline


def evaluate(
    model_dir: str,
    entry: TaskEntry,
    include_path: str | None = None,
    limit: float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    cache_dir: str | None = None,
    offline: bool = True,
    datasets_cache: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score one saved model on one task entry with ``lm_eval.simple_evaluate`` (the hf model)."""
    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(model_dir, "", "no saved model here", "train the run (save_model: true)")
    offline_environment(
        cache_dir or str(Path(model_dir).parent / "hf-cache"), offline, datasets_cache
    )
    names = _task_names(entry, include_path)
    manager = _task_manager(names, include_path)
    _check_known(manager, names, entry, include_path)
    import lm_eval

    device, dtype = _device_and_dtype(device)
    start = time.perf_counter()
    try:
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model_dir},tokenizer={model_dir},dtype={dtype}",
            tasks=names,
            num_fewshot=entry.shots,
            batch_size=batch_size,
            device=device,
            limit=limit,
            task_manager=manager,
            log_samples=False,
            bootstrap_iters=1000,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    except Exception as exc:  # lm-eval wraps dataset errors in many types
        raise _dataset_error(exc, entry, offline) from exc
    return {
        "model": str(model_dir),
        "task": entry.name,
        "shots": entry.shots,
        "metric": entry.metric,
        "limit": limit,
        "device": device,
        "dtype": dtype,
        "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
        "seconds": time.perf_counter() - start,
        "tasks": _scores(out, names, _chance(include_path) if needs_generated_tasks(entry) else {}),
    }


def _device_and_dtype(device: str) -> tuple[str, str]:
    """auto: the GPU when there is one (bf16 where native), else the CPU in float32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    native_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return device, "bfloat16" if native_bf16 else "float32"


def _task_names(entry: TaskEntry, include_path: str | None) -> list[str]:
    """The embedded entry expands to the generated domain tasks; other names pass through."""
    if entry.name != EMBEDDED:
        return [entry.name]
    if not include_path or not (Path(include_path) / "tasks.json").is_file():
        raise InputError(
            "downstream",
            "tasks: embedded",
            "no generated tasks",
            "build them with `python -m mixscale tasks` and pass --include-path",
        )
    return sorted(read_kind(Path(include_path) / "tasks.json", TASKS)["tasks"])


def _task_manager(names: list[str], include_path: str | None):
    from lm_eval.tasks import TaskManager

    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(n in local.all_tasks for n in names):  # skip lm-eval's 11 s index
            return local
    return TaskManager(include_path=include_path)


def _check_known(manager, names: list[str], entry: TaskEntry, include_path: str | None) -> None:
    for name in names:
        if name not in manager.all_tasks:
            raise InputError(
                "downstream.tasks",
                entry.name,
                f"'{name}' is not an lm-eval task",
                "check the name with `lm_eval ls tasks`, or put its task YAML in a folder "
                "named by downstream.include_path"
                + (f" (searched {include_path})" if include_path else ""),
            )


def _dataset_error(exc: Exception, entry: TaskEntry, offline: bool) -> Exception:
    """A missing dataset becomes one line naming the task and how to make it available."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    hints = ("offline", "connect", "couldn't find", "not found", "doesn't exist", "no such file")
    if any(h in text.lower() for h in hints) or isinstance(exc, (OSError, ConnectionError)):
        fix = (
            "download its dataset once where the hub is reachable (downstream.offline: false, "
            "same downstream.datasets_cache), then run offline"
            if offline
            else "check the dataset name and your network"
        )
        return InputError("downstream.tasks", entry.name, f"dataset not available ({text})", fix)
    return exc


def _chance(include_path: str | None) -> dict[str, float]:
    manifest_path = Path(include_path or ".") / "tasks.json"
    if not manifest_path.is_file():
        return {}
    manifest = read_kind(manifest_path, TASKS)
    return {name: task["chance"] for name, task in manifest["tasks"].items()}


def _scores(
    out: dict[str, Any], names: list[str], chance: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """acc / acc_norm (and their standard errors) per task from lm-eval's results."""
    scores = {}
    for name in names:
        raw = out["results"].get(name, {})
        row: dict[str, Any] = {}
        for key, value in raw.items():
            metric, _, _filter = key.partition(",")
            if metric != "alias" and isinstance(value, int | float):
                row[metric] = float(value)
        samples = out.get("n-samples", {}).get(name, {})
        row["samples"] = samples.get("effective")
        row["chance"] = chance.get(name)
        scores[name] = row
    return scores


# --- tables ---------------------------------------------------------------------------------


def downstream_tables(paths: list[str]) -> dict[str, dict[str, Any]]:
    """Per target scale: methods x tasks (the paper's Table 1), seeds averaged. The untrained
    model (no target) is a row of every table."""
    results = [read_kind(p, DOWNSTREAM) for p in paths]
    targets = sorted({str(r["target"]) for r in results if r.get("target")}, key=float)
    return {
        target: method_table([r for r in results if str(r.get("target")) in (target, "None")])
        for target in targets or ["None"]
    }


def method_table(results: list[dict[str, Any]]) -> dict[str, Any]:
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    chance: dict[str, float] = {}
    for result in results:
        label = result.get("label") or "model"
        for name, task in result["tasks"].items():
            column = column_name(name, result["shots"])
            metric = result["metric"] if result["metric"] in task else "acc"
            if task.get(metric) is None:  # not scored, or NaN (written as null)
                continue
            err = task.get(f"{metric}_stderr") or 0.0
            scores.setdefault(label, {}).setdefault(column, []).append((task[metric], err))
            if task.get("chance") is not None:
                chance[column] = task["chance"]
    columns = sorted({c for row in scores.values() for c in row})
    labels = sorted(scores, key=lambda label: (label == "untrained", label))
    rows = {}
    for label in labels:
        cells = scores[label]
        mean = {c: float(np.mean([v for v, _ in cells[c]])) for c in columns if c in cells}
        # standard error of a mean over seeds: sqrt(sum se^2) / n
        err = {
            c: float(np.sqrt(sum(e * e for _, e in cells[c])) / len(cells[c]))
            for c in columns
            if c in cells
        }
        complete = len(mean) == len(columns)
        rows[label] = {
            "scores": mean,
            "stderr": err,
            "seeds": max(len(v) for v in cells.values()),
            "average": float(np.mean(list(mean.values()))) if complete else None,
        }
    return {"columns": columns, "rows": rows, "chance": chance}


def column_name(task: str, shots: int) -> str:
    short = task.removeprefix(TASK_PREFIX)
    return short if shots == 0 else f"{short} ({shots}-shot)"
