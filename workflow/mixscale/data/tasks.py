"""Embedded lm-eval tasks built from each domain's held-out documents (see docs/downstream.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.config.tasks import GROUP, KINDS, MIN_ITEMS, TaskBuild, task_name
from mixscale.data.tokens import split_corpus
from mixscale.errors import InputError
from mixscale.fileio import atomic_folder, write_json

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
    evaluating process's cwd). Text, choices and label are named as the data's fields, which
    lm-eval reads as they are; a Jinja template ("{{context}}") gives the same values but is
    compiled anew for every document and field (~2 s of a demo lm-eval job's 14)."""
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
            "doc_to_text: context",
            "doc_to_choice: choices",
            "doc_to_target: label",
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

    out = Path(out_dir)
    with atomic_folder(out) as tmp:
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
