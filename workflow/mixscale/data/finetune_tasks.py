"""Fine-tuning tasks for encoder models, as folders ``evaluate/finetune.py`` reads.

A task folder holds ``task.json`` (name, kind, num_labels, metric, text fields, label field,
source), ``train.jsonl`` and ``validation.jsonl``. Kinds: ``single`` (one text, a class),
``pair`` (two texts, a class), ``regression`` (two texts, a number), ``span`` (question and
context, SQuAD's answers). Two sources:

- Embedded tasks, built from each domain's held-out documents (the pretraining and the tokenizer
  never see them), so they run anywhere:
  ``domain`` (single): which domain a passage comes from, balanced across domains;
  ``same_document`` (pair): are two passages from the same document? The other passage of a
  negative pair comes from another document of the SAME domain, so topic alone does not answer.
  Training and validation items come from disjoint documents: a model cannot pass validation by
  recognising a document it was fine-tuned on.
- The AutoScale paper's suite (GLUE's eight tasks and SQuAD, Appendix D.4), converted from the
  Hugging Face hub (on a node that reaches it) into the same format.

Passages are ``passage_words`` consecutive whitespace words cut from non-overlapping windows of a
document, kept verbatim (a substring of the document, line breaks included). Windows sharing a
13-word sequence with any domain's training documents are skipped (licences and boilerplate
repeat across documents: such a passage was seen in pretraining).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.data.tasks import OVERLAP_WORDS, ngram_hashes
from mixscale.data.tokens import first_line, split_corpus
from mixscale.errors import InputError
from mixscale.fileio import atomic_folder, write_json

VALIDATION_SHARE = 0.3  # of each domain's held-out documents: the validation items' documents
MIN_DOCUMENTS_PER_SPLIT = 2  # a negative same_document pair needs two documents of a domain

# the config fields a user changes when a domain runs out of passages
FIELDS = {
    "train": "finetune.embedded.train_items",
    "validation": "finetune.embedded.eval_items",
}


# --- embedded tasks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    domain: str
    document: str  # "<domain>/<index in the held-out list>": provenance, and the pairing key
    text: str


def word_windows(doc: str, words: int) -> list[tuple[int, int]]:
    """Character spans of the non-overlapping windows of ``words`` whitespace words."""
    spans = [m.span() for m in re.finditer(r"\S+", doc)]
    return [(spans[s][0], spans[s + words - 1][1]) for s in range(0, len(spans) - words + 1, words)]


def split_documents_for_tasks(count: int, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices of a domain's held-out documents: a seeded shuffle."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(count)]
    n_validation = max(MIN_DOCUMENTS_PER_SPLIT, round(VALIDATION_SHARE * count))
    return order[n_validation:], order[:n_validation]


def domain_passages(
    domain: str, docs: list[str], indices: list[int], words: int, seen: set[int]
) -> tuple[dict[str, list[Passage]], int]:
    """{document: its passages} of the given held-out documents, and how many windows were
    skipped for sharing an n-gram with training text."""
    n = min(OVERLAP_WORDS, words)
    by_document: dict[str, list[Passage]] = {}
    skipped = 0
    for index in indices:
        name = f"{domain}/{index}"
        by_document[name] = []
        for start, end in word_windows(docs[index], words):
            text = docs[index][start:end]
            tokens = text.split()
            if any(hash(tuple(tokens[i : i + n])) in seen for i in range(len(tokens) - n + 1)):
                skipped += 1
                continue
            by_document[name].append(Passage(domain, name, text))
    return by_document, skipped


class PassagePool:
    """One domain's passages of one split, drawn without replacement (seeded)."""

    def __init__(
        self, by_document: dict[str, list[Passage]], rng: np.random.Generator, source: str
    ):
        self.rng = rng
        self.source = source
        self.left = {
            d: [ps[int(i)] for i in rng.permutation(len(ps))] for d, ps in by_document.items()
        }

    def total(self) -> int:
        return sum(len(p) for p in self.left.values())

    def _pick_documents(self, count: int, minimum: int) -> list[str] | None:
        """``count`` distinct documents holding >= ``minimum`` passages each, chosen with
        probability proportional to the passages they have left (long documents last longer)."""
        names = sorted(d for d, ps in self.left.items() if len(ps) >= minimum)
        if len(names) < count:
            return None
        weights = np.array([len(self.left[d]) for d in names], dtype=float)
        chosen = self.rng.choice(len(names), size=count, replace=False, p=weights / weights.sum())
        return [names[int(i)] for i in chosen]

    def one(self) -> Passage | None:
        names = self._pick_documents(1, 1)
        return self.left[names[0]].pop() if names else None

    def same_document(self) -> tuple[Passage, Passage] | None:
        names = self._pick_documents(1, 2)
        return (self.left[names[0]].pop(), self.left[names[0]].pop()) if names else None

    def different_documents(self) -> tuple[Passage, Passage] | None:
        names = self._pick_documents(2, 1)
        return (self.left[names[0]].pop(), self.left[names[1]].pop()) if names else None


def _balanced(items: int, groups: int) -> list[int]:
    """``items`` spread over ``groups``: counts differing by at most one."""
    return [items // groups + (g < items % groups) for g in range(groups)]


def _exhausted(pool: PassagePool, split: str, domain: str, items: int, words: int) -> InputError:
    return InputError(
        pool.source,
        FIELDS[split],
        f"the {split} documents of domain '{domain}' have too few unused {words}-word passages "
        f"for {items} {split} items",
        f"lower {FIELDS[split]} (or finetune.embedded.passage_words), or raise "
        "data.validation_bytes",
    )


def domain_rows(
    pools: dict[str, PassagePool], split: str, items: int, words: int
) -> list[dict[str, Any]]:
    """Items of the ``domain`` task: a passage, labelled by its domain (sorted order)."""
    rows = []
    for label, (domain, count) in enumerate(zip(pools, _balanced(items, len(pools)), strict=True)):
        for _ in range(count):
            passage = pools[domain].one()
            if passage is None:
                raise _exhausted(pools[domain], split, domain, items, words)
            rows.append(
                {
                    "text": passage.text,
                    "label": label,
                    "domain": domain,
                    "document": passage.document,
                }
            )
    return rows


def same_document_rows(
    pools: dict[str, PassagePool], split: str, items: int, words: int
) -> list[dict[str, Any]]:
    """Items of the ``same_document`` task: label 1 for two passages of one document, 0 for
    passages of two documents of the same domain; half each, spread over the domains."""
    domains = list(pools)
    rows = []
    for i in range(items):
        label, domain = (i + 1) % 2, domains[(i // 2) % len(domains)]
        pool = pools[domain]
        pair = pool.same_document() if label else pool.different_documents()
        if pair is None:
            raise _exhausted(pool, split, domain, items, words)
        rows.append(
            {
                "text1": pair[0].text,
                "text2": pair[1].text,
                "label": label,
                "domain": domain,
                "documents": [pair[0].document, pair[1].document],
            }
        )
    return rows


def _shuffled(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Rows in a seeded order: labels are not grouped (a truncated file stays balanced-ish)."""
    return [rows[int(i)] for i in rng.permutation(len(rows))]


def _check_counts(train_items: int, eval_items: int, passage_words: int, domains: int) -> None:
    for field, value, least in (
        ("finetune.embedded.train_items", train_items, 2 * domains),
        ("finetune.embedded.eval_items", eval_items, 2 * domains),
        ("finetune.embedded.passage_words", passage_words, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(
                "finetune-tasks",
                field,
                f"{value!r} is not an integer >= {least}",
                f"give an integer >= {least}",
            )


def build_embedded_tasks(
    corpus_files: Mapping[str, str],
    out_dir: str,
    seed: int,
    validation_bytes: int,
    train_items: int,
    eval_items: int,
    passage_words: int,
    task_seed: int | None = None,
) -> dict[str, Any]:
    """The ``domain`` and ``same_document`` task folders (and ``tasks.json``, this summary) in
    ``out_dir``, from the held-out documents of ``corpus_files`` ({domain: <domain>.jsonl}).
    ``seed`` and ``validation_bytes`` are the data split's (the held-out documents must be the
    ones the pretraining never saw); ``task_seed`` (default: ``seed``) draws the documents'
    train/validation split and the items."""
    if len(corpus_files) < 2:
        raise InputError(
            "finetune-tasks",
            "--corpus",
            "the domain task needs two or more domains",
            "pass the <domain>.jsonl of every domain",
        )
    _check_counts(train_items, eval_items, passage_words, len(corpus_files))
    domains = sorted(corpus_files)
    task_seed = seed if task_seed is None else task_seed
    held_out, seen = {}, set()
    for domain in domains:
        held_out[domain], training = split_corpus(
            corpus_files[domain], domain, seed, validation_bytes
        )
        seen |= ngram_hashes(training, min(OVERLAP_WORDS, passage_words))
    summary: dict[str, Any] = {
        "seed": seed,
        "task_seed": task_seed,
        "validation_bytes": validation_bytes,
        "passage_words": passage_words,
        "domains": domains,
        "documents": {},
        "skipped_seen_in_training": 0,
        "tasks": {},
    }
    passages: dict[str, dict[str, dict[str, list[Passage]]]] = {"train": {}, "validation": {}}
    for domain in domains:
        docs = held_out[domain]
        if len(docs) < 2 * MIN_DOCUMENTS_PER_SPLIT:
            raise InputError(
                corpus_files[domain],
                "data.validation_bytes",
                f"domain '{domain}' has {len(docs)} held-out documents; the fine-tuning tasks "
                f"need >= {2 * MIN_DOCUMENTS_PER_SPLIT} (training and validation items come "
                "from different documents)",
                "raise data.validation_bytes",
            )
        domain_seed = task_seed + zlib.crc32(domain.encode("utf-8"))
        train_idx, validation_idx = split_documents_for_tasks(len(docs), domain_seed)
        summary["documents"][domain] = {"train": len(train_idx), "validation": len(validation_idx)}
        for split, indices in (("train", train_idx), ("validation", validation_idx)):
            found, skipped = domain_passages(domain, docs, indices, passage_words, seen)
            passages[split][domain] = found
            summary["skipped_seen_in_training"] += skipped

    builders = {"domain": domain_rows, "same_document": same_document_rows}
    with atomic_folder(out_dir) as tmp:
        for number, (name, build) in enumerate(builders.items()):
            counts = {}
            for split, items in (("train", train_items), ("validation", eval_items)):
                rng = np.random.default_rng([task_seed, number, int(split == "train")])
                pools = {d: PassagePool(passages[split][d], rng, corpus_files[d]) for d in domains}
                rows = _shuffled(build(pools, split, items, passage_words), rng)
                write_jsonl(tmp / name / f"{split}.jsonl", rows)
                counts[split] = len(rows)
            spec = embedded_task_spec(name, domains)
            write_json(tmp / name / "task.json", spec)
            summary["tasks"][name] = {
                **spec,
                "train_items": counts["train"],
                "eval_items": counts["validation"],
            }
        write_json(tmp / "tasks.json", summary)
    return summary


def embedded_task_spec(name: str, domains: list[str]) -> dict[str, Any]:
    if name == "domain":
        return {
            "name": "domain",
            "kind": "single",
            "num_labels": len(domains),
            "metric": "accuracy",
            "fields": ["text"],
            "label": "label",
            "label_names": domains,
            "source": "embedded: held-out documents of " + ", ".join(domains),
        }
    return {
        "name": "same_document",
        "kind": "pair",
        "num_labels": 2,
        "metric": "accuracy",
        "fields": ["text1", "text2"],
        "label": "label",
        "label_names": ["different documents", "same document"],
        "source": "embedded: held-out documents of " + ", ".join(domains),
    }


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rows as JSON lines (inside a folder being built atomically: no temp file needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# --- the paper's suite from the hub ------------------------------------------------------------


@dataclass(frozen=True)
class HubTask:
    path: str  # the hub dataset
    config: str | None
    kind: str
    num_labels: int | None
    metric: str
    fields: tuple[str, ...]
    label: str
    validation_split: str = "validation"


def _glue(config: str, kind: str, labels: int, metric: str, *fields: str, **kw) -> HubTask:
    return HubTask("nyu-mll/glue", config, kind, labels, metric, fields, "label", **kw)


HUB_TASKS: dict[str, HubTask] = {
    "glue/cola": _glue("cola", "single", 2, "matthews", "sentence"),
    "glue/sst2": _glue("sst2", "single", 2, "accuracy", "sentence"),
    "glue/mrpc": _glue("mrpc", "pair", 2, "f1", "sentence1", "sentence2"),
    "glue/qqp": _glue("qqp", "pair", 2, "f1", "question1", "question2"),
    "glue/stsb": _glue("stsb", "regression", 1, "pearson", "sentence1", "sentence2"),
    "glue/mnli": _glue(
        "mnli",
        "pair",
        3,
        "accuracy",
        "premise",
        "hypothesis",
        validation_split="validation_matched",
    ),
    "glue/qnli": _glue("qnli", "pair", 2, "accuracy", "question", "sentence"),
    "glue/rte": _glue("rte", "pair", 2, "accuracy", "sentence1", "sentence2"),
    "squad": HubTask(
        "rajpurkar/squad", None, "span", None, "squad", ("question", "context"), "answers"
    ),
}


def hub_task(name: str) -> HubTask:
    if name not in HUB_TASKS:
        raise InputError(
            "prepare-finetune",
            "--tasks",
            f"unknown task '{name}'",
            "use some of " + ", ".join(HUB_TASKS),
        )
    return HUB_TASKS[name]


def task_folder_name(name: str) -> str:
    """glue/sst2 -> glue-sst2 (the workflow looks for prepared tasks under this name)."""
    return name.replace("/", "-")


def _hub_row(name: str, spec: HubTask, row: Mapping[str, Any], split: str, line: int):
    missing = [f for f in (*spec.fields, spec.label) if f not in row]
    if missing:
        raise InputError(
            f"{name} ({split})",
            missing[0],
            f"row {line} has no column '{missing[0]}'",
            "pass the dataset with its hub column names",
        )
    out = {f: str(row[f]) for f in spec.fields}
    value = row[spec.label]
    if spec.kind == "span":
        out["answers"] = {
            "text": [str(t) for t in value["text"]],
            "answer_start": [int(s) for s in value["answer_start"]],
        }
    elif spec.kind == "regression":
        out["label"] = float(value)
    else:
        out["label"] = int(value)
    return out


def write_hub_task(
    name: str, splits: Mapping[str, Iterable[Mapping[str, Any]]], out_dir: str
) -> dict[str, Any]:
    """One loaded hub dataset ({split: datasets.Dataset or list of row dicts}, GLUE/SQuAD column
    names) as the task folder ``out_dir/<name, / as ->`` (glue-sst2). The validation split is
    the hub's (MNLI: ``validation_matched``; a split called ``validation`` also works)."""
    spec = hub_task(name)
    wanted = {"train": "train", "validation": spec.validation_split}
    if spec.validation_split not in splits:
        wanted["validation"] = "validation"
    folder = Path(out_dir) / task_folder_name(name)
    counts = {}
    with atomic_folder(folder) as tmp:
        for split, hub_split in wanted.items():
            if hub_split not in splits:
                raise InputError(
                    name, "splits", f"no '{hub_split}' split", "pass train and validation"
                )
            rows = [
                _hub_row(name, spec, row, hub_split, line)
                for line, row in enumerate(splits[hub_split], start=1)
            ]
            rows = [r for r in rows if r.get("label") != -1]  # GLUE marks unlabelled rows -1
            write_jsonl(tmp / f"{split}.jsonl", rows)
            counts[split] = len(rows)
        task = {
            "name": name,
            "kind": spec.kind,
            "metric": spec.metric,
            "fields": list(spec.fields),
            "label": spec.label,
            "source": f"hub: {spec.path}" + (f" ({spec.config})" if spec.config else ""),
        }
        if spec.num_labels is not None:
            task["num_labels"] = spec.num_labels
        write_json(tmp / "task.json", task)
    return {
        "name": name,
        "folder": str(folder),
        "train_items": counts["train"],
        "eval_items": counts["validation"],
    }


def prepare_hub_tasks(
    names: list[str], out_dir: str, cache_dir: str | None = None
) -> dict[str, Any]:
    """Download (or read from ``cache_dir``) the named tasks and write their folders under
    ``out_dir``. Needs the hub: run it on a login node, then fine-tune anywhere."""
    specs = {name: hub_task(name) for name in names}  # every name checked before any download
    import datasets

    summary: dict[str, Any] = {"tasks": {}}
    for name, spec in specs.items():
        try:
            loaded = datasets.load_dataset(spec.path, spec.config, cache_dir=cache_dir)
        except OSError as exc:  # ConnectionError when offline, not found in the cache
            raise InputError(
                name,
                "",
                f"could not load {spec.path}"
                + (f" ({spec.config})" if spec.config else "")
                + f": {first_line(exc)}",
                "run prepare-finetune where the Hugging Face hub is reachable (a login node), "
                "with HF_DATASETS_OFFLINE unset",
            ) from exc
        summary["tasks"][name] = write_hub_task(name, loaded, out_dir)
    return summary
