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

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.errors import InputError
from mixscale.fileio import read_json, write_json

EMBEDDED = "embedded"  # the task entry that stands for every generated domain task
TASK_PREFIX = "mixscale_"
GROUP = "mixscale_embedded"
MIN_ITEMS = 10  # fewer items than this cannot tell a model from chance


@dataclass(frozen=True)
class TaskBuild:
    """How the embedded tasks are generated (config ``downstream.embedded``)."""

    items: int = 200
    choices: int = 4
    context_words: int = 24
    continuation_words: int = 8
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TaskBuild:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(
                "config",
                f"downstream.embedded.{sorted(unknown)[0]}",
                "unknown field",
                f"use {', '.join(cls.__dataclass_fields__)}",
            )
        build = cls(**{k: int(v) for k, v in data.items()})
        for name in ("items", "context_words", "continuation_words"):
            if getattr(build, name) < 1:
                raise InputError(
                    "config", f"downstream.embedded.{name}", "must be >= 1", "raise it"
                )
        if build.choices < 2:
            raise InputError(
                "config",
                "downstream.embedded.choices",
                "must be >= 2",
                "a choice needs at least 2 options",
            )
        return build


def task_name(domain: str, kind: str) -> str:
    return f"{TASK_PREFIX}{kind}_{domain}"


KINDS = ("next", "order")
MAX_CHARS_PER_WORD = 8  # skip passages of long "words" (URLs, code): they overflow small contexts


OVERLAP_WORDS = 13  # GPT-3's contamination test: a shared 13-word sequence counts as seen


def ngram_hashes(docs: list[str], n: int) -> set[int]:
    """Hashes of every n-word sequence of the documents (whitespace words)."""
    seen: set[int] = set()
    for doc in docs:
        words = doc.split()
        seen.update(hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1))
    return seen


def _seen(words: list[str], n: int, training: set[int]) -> bool:
    return any(hash(tuple(words[i : i + n])) in training for i in range(len(words) - n + 1))


def continuation_items(
    docs: list[str],
    build: TaskBuild,
    seed: int,
    kind: str = "next",
    training: set[int] | None = None,
) -> list[dict[str, Any]]:
    """Multiple-choice items from one domain's held-out documents (see the module doc).
    ``training``: n-gram hashes of the training documents (see ``ngram_hashes``); passages that
    share an n-gram with them are skipped (licences and boilerplate repeat across documents)."""
    n = min(OVERLAP_WORDS, build.context_words + build.continuation_words)
    rng = np.random.default_rng(seed)
    words = [doc.split() for doc in docs]
    span = build.context_words + build.continuation_words
    windows = [(d, s) for d, w in enumerate(words) for s in range(0, len(w) - span + 1, span)]
    sources = [d for d, w in enumerate(words) if len(w) >= build.continuation_words]
    if kind == "next" and len(sources) < build.choices:  # distractors come from other documents
        return []
    items = []
    for index in rng.permutation(len(windows)):
        if len(items) == build.items:
            break
        doc, start = windows[int(index)]
        cut = start + build.context_words
        context = " ".join(words[doc][start:cut])
        answer_words = words[doc][cut : cut + build.continuation_words]
        if training and _seen(words[doc][start : cut + build.continuation_words], n, training):
            continue
        if kind == "next":
            distractors = _other_documents(words, sources, doc, build, rng)
        else:
            distractors = _shuffled(answer_words, build.choices - 1, rng)
        answer = " ".join(answer_words)
        if distractors is None or not _usable(context, answer, distractors, build):
            continue
        label = int(rng.integers(build.choices))
        choices = [*distractors[:label], answer, *distractors[label:]]
        items.append({"context": context, "choices": choices, "label": label, "document": doc})
    return items


def _other_documents(words, sources, doc, build, rng) -> list[str]:
    """``choices - 1`` spans of the continuation's length from distinct other documents."""
    others = [d for d in sources if d != doc]
    spans = []
    for i in rng.choice(len(others), size=build.choices - 1, replace=False):
        w = words[others[int(i)]]
        start = int(rng.integers(len(w) - build.continuation_words + 1))
        spans.append(" ".join(w[start : start + build.continuation_words]))
    return spans


def _shuffled(answer_words: list[str], count: int, rng) -> list[str] | None:
    """``count`` distinct re-orderings of the true continuation's words."""
    answer = " ".join(answer_words)
    spans: list[str] = []
    for _ in range(20 * count):
        if len(spans) == count:
            return spans
        candidate = " ".join(answer_words[int(i)] for i in rng.permutation(len(answer_words)))
        if candidate != answer and candidate not in spans:
            spans.append(candidate)
    return None


def _usable(context: str, answer: str, distractors: list[str], build: TaskBuild) -> bool:
    """Distinct choices, none of them or the context made of overly long words."""
    choices = [answer, *distractors]
    limit = MAX_CHARS_PER_WORD * build.continuation_words
    return (
        len(set(choices)) == len(choices)
        and len(context) <= MAX_CHARS_PER_WORD * build.context_words
        and all(len(c) <= limit for c in choices)
    )


def task_yaml(name: str, data_file: Path) -> str:
    """lm-eval task config: JSON data with an ABSOLUTE path (relative ones resolve against the
    evaluating process's cwd)."""
    return "\n".join(
        [
            f"task: {name}",
            f"tag: {GROUP}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(data_file.resolve()))}",
            "test_split: test",
            "output_type: multiple_choice",
            'doc_to_text: "{{context}}"',
            'doc_to_choice: "{{choices}}"',
            'doc_to_target: "{{label}}"',
            'target_delimiter: " "',
            "metric_list:",
            "  - {metric: acc, aggregation: mean, higher_is_better: true}",
            "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}",
            "metadata: {version: 1.0}",
            "",
        ]
    )


def build_tasks(
    corpus_files: list[str], out_dir: str, build: TaskBuild, seed: int, validation_bytes: int
) -> dict[str, Any]:
    """One task per domain (JSONL + YAML) in ``out_dir``, and ``tasks.json`` describing them."""
    from mixscale.tokens import split_corpus

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    _fresh_dir(tmp)
    manifest: dict[str, Any] = {"build": asdict(build), "data_seed": seed, "tasks": {}}
    for path in corpus_files:
        domain = Path(path).name.removesuffix(".jsonl")
        docs, training_docs = split_corpus(path, domain, seed, validation_bytes)
        n = min(OVERLAP_WORDS, build.context_words + build.continuation_words)
        training = ngram_hashes(training_docs, n)
        for kind in KINDS:
            item_seed = build.seed + _stable_hash(domain)
            items = continuation_items(docs, build, item_seed, kind, training)
            if len(items) < MIN_ITEMS:
                raise InputError(
                    path,
                    "downstream.embedded",
                    f"only {len(items)} {kind} items from {len(docs)} held-out documents",
                    "raise data.validation_bytes or lower downstream.embedded context/"
                    "continuation words",
                )
            name = task_name(domain, kind)
            lines = (json.dumps(item, ensure_ascii=False) for item in items)
            (tmp / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            final_data = out / f"{name}.jsonl"  # the YAML names where the data will live
            (tmp / f"{name}.yaml").write_text(task_yaml(name, final_data), encoding="utf-8")
            manifest["tasks"][name] = {
                "domain": domain,
                "kind": kind,
                "items": len(items),
                "held_out_documents": len(docs),
                "skipped_seen_in_training": _count_seen(docs, build, n, training),
                "chance": 1.0 / build.choices,
            }
    write_json(tmp / "tasks.json", manifest)
    _replace_dir(tmp, out)
    return manifest


def _count_seen(docs: list[str], build: TaskBuild, n: int, training: set[int]) -> int:
    """Windows of the held-out documents that share an n-gram with the training text."""
    span = build.context_words + build.continuation_words
    count = 0
    for doc in docs:
        w = doc.split()
        count += sum(_seen(w[s : s + span], n, training) for s in range(0, len(w) - span + 1, span))
    return count


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def _fresh_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _replace_dir(tmp: Path, out: Path) -> None:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


# --- evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEntry:
    """One evaluation job's task: an lm-eval task (or group) name and its number of shots."""

    name: str
    shots: int = 0
    metric: str = "acc"

    @property
    def id(self) -> str:
        """File-safe name of the entry: hellaswag-10shot, embedded-0shot."""
        return f"{self.name}-{self.shots}shot"


def entry_from(item: Any, field: str) -> TaskEntry:
    """A task entry from config: a name, or {name, shots, metric}."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not item.get("name"):
        raise InputError("config", field, "needs a task name", "e.g. {name: piqa, shots: 0}")
    if not all(c.isalnum() or c in "_-." for c in str(item["name"])):
        raise InputError(
            "config",
            f"{field}.name",
            f"'{item['name']}' is not a task name",
            "use letters, digits, '_', '-' and '.'",
        )
    entry = TaskEntry(str(item["name"]), int(item.get("shots", 0)), item.get("metric", "acc"))
    if not entry.metric.replace("_", "").isalnum():
        raise InputError(
            "config", f"{field}.metric", entry.metric, "an lm-eval metric: acc, acc_norm, ..."
        )
    return entry


def needs_generated_tasks(entry: TaskEntry) -> bool:
    """The embedded entry, or one generated task by name (mixscale_order_science)."""
    return entry.name == EMBEDDED or entry.name.startswith(TASK_PREFIX)


def task_entries(config: dict[str, Any]) -> list[TaskEntry]:
    """``downstream.tasks`` as entries: strings or {name, shots, metric} mappings."""
    entries = [
        entry_from(item, f"downstream.tasks[{i}]")
        for i, item in enumerate(config.get("downstream", {}).get("tasks", []))
    ]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise InputError(
            "config",
            "downstream.tasks",
            "a task is listed twice with the same shots",
            "list it once",
        )
    return entries


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
    return sorted(read_json(Path(include_path) / "tasks.json")["tasks"])


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
    manifest = read_json(manifest_path)
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
    results = [read_json(p) for p in paths]
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
            if metric not in task:
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
