"""Supervised fine-tuning of a saved encoder on one task folder, scored on its validation split
(the AutoScale paper's Appendix D.4 and Table 6: AdamW, linear warmup and decay, 3 epochs,
128 tokens). Task folders: ``mixscale.data.finetune_tasks``.

Inputs are built by hand from the tokenizer's ids, not by the tokenizer's template: mixscale's
byte-level BPE has no CLS/SEP/PAD tokens, only ``<|endoftext|>``, which then stands in for all
three (a pretrained BERT tokenizer's own tokens are used when it has them). Sequences are
``CLS a SEP`` or ``CLS a SEP b SEP`` (token types 0 then 1 for models that have token types), or
``CLS question SEP context SEP`` for span tasks, always with an attention mask.

Every metric is a fraction in [0, 1], SQuAD's exact match and F1 included (the official script
prints them x100). Runs on CPU are deterministic for a seed: the head's initialisation, dropout
and the batch order all derive from it.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.errors import InputError
from mixscale.fileio import write_json
from mixscale.kinds import FINETUNE_TASK
from mixscale.shapes import read_kind

KINDS = ("single", "pair", "regression", "span")
METRICS = ("accuracy", "matthews", "f1", "pearson", "squad")
MAX_ANSWER_TOKENS = 30  # SQuAD's usual cap on a predicted span

DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 8,
    "lr": 2e-5,
    "weight_decay": 0.01,
    "warmup": 0.1,  # fraction of the steps
    "max_length": 128,
    "seed": 0,
    "threads": 0,  # 0: torch's default
    "device": "auto",
    "max_train_items": None,  # caps for smoke tests: the first N rows
    "max_eval_items": None,
}


# --- settings and task files ----------------------------------------------------------------


def _bad(key: str, value: Any, want: str) -> InputError:
    return InputError(
        "finetune settings", f"finetune.{key}", f"{value!r} is not {want}", f"give {want}"
    )


def check_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The settings with defaults filled in; an InputError naming the first bad one."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise InputError(
            "finetune settings",
            f"finetune.{unknown[0]}",
            "unknown setting",
            "use some of " + ", ".join(DEFAULTS),
        )
    out = {**DEFAULTS, **settings}
    integers = {"epochs": 1, "batch_size": 1, "max_length": 8, "seed": 0, "threads": 0}
    for key, least in integers.items():
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < least:
            raise _bad(key, out[key], f"an integer >= {least}")
    for key in ("max_train_items", "max_eval_items"):
        value = out[key]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise _bad(key, value, "an integer >= 1 (or null: all items)")
    for key, allowed, want in (
        ("lr", lambda v: v > 0, "a number > 0"),
        ("weight_decay", lambda v: v >= 0, "a number >= 0"),
        ("warmup", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ):
        value = out[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not allowed(value)
        ):
            raise _bad(key, value, want)
        out[key] = float(value)
    if not isinstance(out["device"], str) or not re.fullmatch(
        r"auto|cpu|cuda(:\d+)?|mps", out["device"]
    ):
        raise _bad("device", out["device"], "auto, cpu, cuda, cuda:N or mps")
    return out


@dataclass(frozen=True)
class Task:
    folder: Path
    name: str
    kind: str
    metric: str
    fields: tuple[str, ...]
    label: str
    num_labels: int  # 1 for regression, 0 for span


def load_task(task_dir: str) -> Task:
    path = Path(task_dir) / "task.json"
    if not path.is_file():
        raise InputError(
            task_dir,
            "task.json",
            "no task.json in the folder",
            "pass a folder made by `mixscale finetune-tasks` or `prepare-finetune`",
        )
    spec = read_kind(path, FINETUNE_TASK)
    kind, metric = spec.get("kind"), spec.get("metric")
    if kind not in KINDS:
        raise InputError(str(path), "kind", f"{kind!r} is unknown", "use " + ", ".join(KINDS))
    if metric not in METRICS:
        raise InputError(str(path), "metric", f"{metric!r} is unknown", "use " + ", ".join(METRICS))
    fields = spec.get("fields")
    count = 2 if kind in ("pair", "regression", "span") else 1
    if (
        not isinstance(fields, list)
        or len(fields) != count
        or not all(isinstance(f, str) for f in fields)
    ):
        raise InputError(
            str(path),
            "fields",
            f"a {kind} task needs {count} text field names",
            "list them in task.json",
        )
    num_labels = {"regression": 1, "span": 0}.get(kind, spec.get("num_labels"))
    if (
        isinstance(num_labels, bool)
        or not isinstance(num_labels, int)
        or (kind in ("single", "pair") and num_labels < 2)
    ):
        raise InputError(
            str(path),
            "num_labels",
            f"{num_labels!r} is not an integer >= 2",
            "give the number of classes",
        )
    label = spec.get("label", "answers" if kind == "span" else "label")
    return Task(
        Path(task_dir),
        str(spec.get("name", Path(task_dir).name)),
        kind,
        metric,
        tuple(fields),
        str(label),
        num_labels,
    )


def read_rows(task: Task, split: str, limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` rows of ``<split>.jsonl``, each checked for its fields and label."""
    path = task.folder / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(str(path), "", "file not found", "regenerate the task folder")
    rows = []
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if limit is not None and len(rows) == limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    str(path),
                    f"line {line_number}",
                    f"invalid JSON ({exc.msg})",
                    "regenerate the task folder",
                ) from exc
            rows.append(_checked_row(task, row, path, line_number))
    if not rows:
        raise InputError(str(path), "", "no rows", "give the task items")
    return rows


def _checked_row(task: Task, row: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InputError(str(path), f"line {line}", "not a JSON object", "one object a line")
    for field in task.fields:
        if not isinstance(row.get(field), str):
            raise InputError(
                str(path),
                field,
                f"line {line} has no text '{field}'",
                "give every row its text fields",
            )
    if task.label not in row:
        raise InputError(
            str(path),
            task.label,
            f"line {line} has no label '{task.label}'",
            "give every row a label",
        )
    value = row[task.label]
    if task.kind == "span":
        ok = (
            isinstance(value, dict)
            and isinstance(value.get("text"), list)
            and isinstance(value.get("answer_start"), list)
            and len(value["text"]) == len(value["answer_start"]) >= 1
        )
        want = '{"text": [...], "answer_start": [...]} with one or more answers'
    elif task.kind == "regression":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < task.num_labels
        want = f"an integer class in 0..{task.num_labels - 1}"
    if not ok:
        raise InputError(
            str(path), task.label, f"line {line}: {value!r} is not {want}", "give every row a label"
        )
    return row


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Specials:
    cls: int
    sep: int
    pad: int


def specials_of(tokenizer) -> Specials:
    eos = tokenizer.eos_token_id
    ids = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    if eos is None and None in ids:
        raise InputError(
            "tokenizer",
            "eos_token",
            "no EOS token to stand in for CLS/SEP/PAD",
            "save the model with mixscale's tokenizer or a BERT tokenizer",
        )
    return Specials(*(eos if i is None else i for i in ids))


@dataclass
class Example:
    ids: list[int]
    types: list[int]
    target: Any = None  # class, number, or (start, end) token positions
    context_start: int = 0  # span tasks: where the context's tokens begin in ``ids``
    offsets: list[tuple[int, int]] | None = None  # span tasks: the kept context tokens' chars


def _fit_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut the longer text first (the tokenizer's "longest_first") until both fit."""
    if len(a) + len(b) <= budget:
        return a, b
    half = budget // 2
    if len(a) <= half:
        return a, b[: budget - len(a)]
    if len(b) <= half:
        return a[: budget - len(b)], b
    return a[: budget - half], b[:half]


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_classification(tokenizer, task: Task, rows, max_length: int) -> list[Example]:
    sp = specials_of(tokenizer)
    texts = [_token_ids(tokenizer, [r[f] for r in rows]) for f in task.fields]
    examples = []
    for i, row in enumerate(rows):
        if len(texts) == 1:
            a = texts[0][i][: max_length - 2]
            ids, types = [sp.cls, *a, sp.sep], [0] * (len(a) + 2)
        else:
            a, b = _fit_pair(texts[0][i], texts[1][i], max_length - 3)
            ids = [sp.cls, *a, sp.sep, *b, sp.sep]
            types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        examples.append(Example(ids, types, row[task.label]))
    return examples


def _answer_tokens(offsets, start_char: int, end_char: int) -> tuple[int, int] | None:
    """First and last context token overlapping the answer's characters; None if cut away."""
    inside = [i for i, (s, e) in enumerate(offsets) if e > start_char and s < end_char]
    return (inside[0], inside[-1]) if inside else None


def encode_span(tokenizer, task: Task, rows, max_length: int, training: bool) -> list[Example]:
    """``CLS question SEP context SEP``; the context is cut to fit (no document stride). A
    training row whose answer was cut away is dropped: it would teach a wrong span."""
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            "tokenizer",
            "tokenizer.json",
            "span tasks need a fast tokenizer (character offsets)",
            "save the model with a tokenizer.json",
        )
    sp = specials_of(tokenizer)
    q_field, c_field = task.fields
    questions = _token_ids(tokenizer, [r[q_field] for r in rows])
    contexts = tokenizer(
        [r[c_field] for r in rows], add_special_tokens=False, return_offsets_mapping=True
    )
    examples = []
    for i, row in enumerate(rows):
        question = questions[i][: max_length // 2]
        budget = max_length - 3 - len(question)
        context = contexts["input_ids"][i][:budget]
        offsets = [tuple(o) for o in contexts["offset_mapping"][i][:budget]]
        start = len(question) + 2
        ids = [sp.cls, *question, sp.sep, *context, sp.sep]
        types = [0] * start + [1] * (len(context) + 1)
        target = None
        if training:
            answers = row[task.label]
            first = int(answers["answer_start"][0])
            found = _answer_tokens(offsets, first, first + len(answers["text"][0]))
            if found is None:
                continue
            target = (found[0] + start, found[1] + start)
        examples.append(Example(ids, types, target, start, offsets))
    return examples


def batches(
    examples: list[Example], order, size: int, pad: int, types: bool, device
) -> Iterator[tuple[list[Example], dict[str, Any]]]:
    """Padded tensors (to the longest of each batch) for ``size`` examples at a time."""
    import torch

    for begin in range(0, len(order), size):
        chunk = [examples[int(i)] for i in order[begin : begin + size]]
        width = max(len(e.ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        type_ids = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = 1
            type_ids[row, : len(e.types)] = torch.tensor(e.types)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types:  # GPT-2 would add token-type ids to its word embeddings: only BERT-likes
            inputs["token_type_ids"] = type_ids
        yield chunk, {k: v.to(device) for k, v in inputs.items()}


def _targets(task: Task, chunk: list[Example], device) -> dict[str, Any]:
    import torch

    if task.kind == "span":
        return {
            "start_positions": torch.tensor([e.target[0] for e in chunk], device=device),
            "end_positions": torch.tensor([e.target[1] for e in chunk], device=device),
        }
    dtype = torch.float32 if task.kind == "regression" else torch.long
    return {"labels": torch.tensor([e.target for e in chunk], dtype=dtype, device=device)}


# --- model ----------------------------------------------------------------------------------


def load_model(model_dir: str, task: Task, pad: int):
    """The saved encoder with a fresh task head (the pretraining head is dropped: expected)."""
    import transformers

    extra: dict[str, Any] = {}
    config = transformers.AutoConfig.from_pretrained(model_dir)
    if config.pad_token_id is None:  # GPT-2 finds each sequence's last token through it
        extra["pad_token_id"] = pad
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialised head" report
    transformers.logging.disable_progress_bar()
    try:
        if task.kind == "span":
            return transformers.AutoModelForQuestionAnswering.from_pretrained(model_dir, **extra)
        if task.kind == "regression":
            extra["problem_type"] = "regression"
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=task.num_labels, **extra
        )
    except ValueError as exc:  # an architecture without a classification/QA head
        raise InputError(
            model_dir,
            "config.json",
            f"cannot fine-tune it: {exc}".splitlines()[0],
            "use a BERT or GPT-2 model",
        ) from exc
    finally:
        transformers.logging.set_verbosity(verbosity)


def _positions(config) -> int | None:
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _optimizer(model, settings: dict[str, Any], total_steps: int):
    """AdamW without weight decay on biases and norm weights (as the Hugging Face Trainer),
    the learning rate rising linearly over the warmup steps, then falling linearly to 0."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings["weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings["lr"])
    warmup = math.ceil(settings["warmup"] * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(
    model,
    task: Task,
    examples: list[Example],
    settings: dict[str, Any],
    pad: int,
    types: bool,
    device,
) -> int:
    """Fine-tune in place; returns the optimiser steps taken."""
    import torch

    size = settings["batch_size"]
    total = math.ceil(len(examples) / size) * settings["epochs"]
    optimizer, schedule = _optimizer(model, settings, total)
    rng = np.random.default_rng(settings["seed"])
    model.train()
    steps = 0
    for _ in range(settings["epochs"]):
        order = rng.permutation(len(examples))
        for chunk, inputs in batches(examples, order, size, pad, types, device):
            loss = model(**inputs, **_targets(task, chunk, device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the Trainer's default
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
    return steps


def predict(
    model, task: Task, examples: list[Example], pad: int, types: bool, device, size: int
) -> list[Any]:
    """Classes, numbers, or (start, end) context token indices, one per example."""
    import torch

    model.eval()
    out: list[Any] = []
    with torch.inference_mode():
        for chunk, inputs in batches(examples, range(len(examples)), size, pad, types, device):
            result = model(**inputs)
            if task.kind == "span":
                out += [
                    _best_span(s, e, ex)
                    for s, e, ex in zip(
                        result.start_logits.cpu(), result.end_logits.cpu(), chunk, strict=True
                    )
                ]
            elif task.kind == "regression":
                out += result.logits[:, 0].float().cpu().tolist()
            else:
                out += result.logits.argmax(-1).cpu().tolist()
    return out


def _best_span(start_logits, end_logits, example: Example) -> tuple[int, int]:
    """The context span maximising start + end logit, start <= end, at most 30 tokens."""
    import torch

    lo, n = example.context_start, len(example.offsets or [])
    if n == 0:
        return (0, -1)
    scores = start_logits[lo : lo + n, None] + end_logits[None, lo : lo + n]
    allowed = torch.ones(n, n, dtype=torch.bool).triu().tril(MAX_ANSWER_TOKENS - 1)
    best = int(scores.masked_fill(~allowed, -math.inf).flatten().argmax())
    return divmod(best, n)


def span_text(context: str, offsets, span: tuple[int, int]) -> str:
    start, end = span
    if end < start:
        return ""
    return context[offsets[start][0] : offsets[end][1]].strip()


# --- metrics --------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_f1(prediction: str, gold: str) -> float:
    """SQuAD's token-overlap F1 of normalised answers (both empty: 1, one empty: 0)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """Exact match and F1, each the best over an item's gold answers, averaged (in [0, 1])."""
    em = [max(exact_match(p, g) for g in gs) for p, gs in zip(predictions, golds, strict=True)]
    f1 = [max(answer_f1(p, g) for g in gs) for p, gs in zip(predictions, golds, strict=True)]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}


def matthews(pred: np.ndarray, gold: np.ndarray, classes: int) -> float:
    """Matthews correlation (its multi-class form, Gorodkin 2004); 0 when undefined."""
    confusion = np.zeros((classes, classes))
    np.add.at(confusion, (gold, pred), 1)
    n, correct = confusion.sum(), np.trace(confusion)
    true, predicted = confusion.sum(1), confusion.sum(0)
    denominator = math.sqrt((n * n - predicted @ predicted) * (n * n - true @ true))
    return float((correct * n - true @ predicted) / denominator) if denominator else 0.0


def classification_metrics(pred, gold, classes: int) -> dict[str, float]:
    pred, gold = np.asarray(pred, dtype=int), np.asarray(gold, dtype=int)
    metrics = {"accuracy": float(np.mean(pred == gold)), "matthews": matthews(pred, gold, classes)}
    if classes == 2:  # F1 of the positive class, as GLUE reports it for MRPC and QQP
        tp = int(np.sum((pred == 1) & (gold == 1)))
        wrong = int(np.sum(pred != gold))
        metrics["f1"] = 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0
    return metrics


def regression_metrics(pred, gold) -> dict[str, float | None]:
    """Pearson and Spearman correlations; None when one side is constant (undefined)."""
    from scipy import stats

    pred, gold = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return {"pearson": None, "spearman": None}
    return {
        "pearson": float(stats.pearsonr(pred, gold)[0]),
        "spearman": float(stats.spearmanr(pred, gold)[0]),
    }


def majority_rate(task: Task, rows: list[dict[str, Any]]) -> float | None:
    """The chance floor: the share of the most common validation class (None: regression)."""
    if task.kind == "span":
        return 0.0
    if task.kind == "regression":
        return None
    counts = Counter(row[task.label] for row in rows)
    return max(counts.values()) / len(rows)


def score(
    task: Task, predictions: list[Any], examples: list[Example], rows: list[dict[str, Any]]
) -> dict[str, float | None]:
    if task.kind == "span":
        context = task.fields[1]
        texts = [
            span_text(r[context], e.offsets, p)
            for r, e, p in zip(rows, examples, predictions, strict=True)
        ]
        return squad_metrics(texts, [r[task.label]["text"] for r in rows])
    gold = [row[task.label] for row in rows]
    if task.kind == "regression":
        return regression_metrics(predictions, gold)
    return classification_metrics(predictions, gold, task.num_labels)


def headline(task: Task, metrics: dict[str, float | None]) -> float | None:
    return metrics["f1" if task.metric == "squad" else task.metric]


# --- the run --------------------------------------------------------------------------------


def finetune(
    model_dir: str, task_dir: str, settings: dict[str, Any] | None = None, out: str | None = None
) -> dict[str, Any]:
    """Fine-tune the saved model on the task's training split, score it on validation."""
    return _run(model_dir, task_dir, settings, out, fine_tune=True)


def evaluate_without_finetuning(
    model_dir: str, task_dir: str, settings: dict[str, Any] | None = None, out: str | None = None
) -> dict[str, Any]:
    """The same score with the freshly initialised head and no training: the floor that
    fine-tuning must beat (a task it does not beat taught the model nothing)."""
    return _run(model_dir, task_dir, settings, out, fine_tune=False)


def _run(
    model_dir: str, task_dir: str, settings: dict[str, Any] | None, out: str | None, fine_tune: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    settings = check_settings(settings)
    task = load_task(task_dir)
    train_rows = read_rows(task, "train", settings["max_train_items"]) if fine_tune else []
    eval_rows = read_rows(task, "validation", settings["max_eval_items"])
    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(
            model_dir,
            "",
            "no saved model here",
            "pass a folder written by save_pretrained (config.json, weights)",
        )
    import torch

    from mixscale.data.tokens import load_tokenizer

    if settings["threads"] > 0:
        torch.set_num_threads(settings["threads"])
    tokenizer = load_tokenizer(model_dir)
    pad = specials_of(tokenizer).pad
    torch.manual_seed(settings["seed"])  # the new head's initial weights, then dropout
    model = load_model(model_dir, task, pad)
    positions = _positions(model.config)
    settings["max_length"] = min(settings["max_length"], positions or settings["max_length"])
    device = _device(settings["device"])
    model.to(device=device, dtype=torch.float32)
    types = getattr(model.config, "type_vocab_size", 0) >= 2

    train_examples = encode(tokenizer, task, train_rows, settings["max_length"], training=True)
    if fine_tune and not train_examples:
        raise InputError(
            str(task.folder / "train.jsonl"),
            "",
            f"no training example fits max_length {settings['max_length']}",
            "raise finetune.max_length",
        )
    steps = train(model, task, train_examples, settings, pad, types, device) if fine_tune else 0
    eval_examples = encode(tokenizer, task, eval_rows, settings["max_length"], training=False)
    predictions = predict(
        model, task, eval_examples, pad, types, device, max(32, settings["batch_size"])
    )
    metrics = score(task, predictions, eval_examples, eval_rows)
    result = {
        "task": task.name,
        "kind": task.kind,
        "metric": task.metric,
        "value": headline(task, metrics),
        "metrics": metrics,
        "majority": majority_rate(task, eval_rows),
        "fine_tuned": fine_tune,
        "train_items": len(train_examples),
        "skipped_train_items": len(train_rows) - len(train_examples),
        "eval_items": len(eval_examples),
        "epochs": settings["epochs"] if fine_tune else 0,
        "steps": steps,
        "settings": settings,
        "model": str(model_dir),
        "task_dir": str(task_dir),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if out:
        write_json(out, result)
    return result


def encode(tokenizer, task: Task, rows, max_length: int, training: bool) -> list[Example]:
    if not rows:
        return []
    if task.kind == "span":
        return encode_span(tokenizer, task, rows, max_length, training)
    return encode_classification(tokenizer, task, rows, max_length)
