"""Downstream by supervised fine-tuning (config ``finetune:``): the AutoScale paper's reading
of encoder models (GLUE's eight tasks and SQuAD), and embedded tasks built from held-out text
that run offline. Checked when Snakemake reads the config: a task without labels stops here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixscale.config.typed import Config
from mixscale.errors import InputError

EMBEDDED = ("domain", "same_document")  # built from held-out text: mixscale.data.finetune_tasks
GLUE = tuple(f"glue/{t}" for t in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"))
HUB = (*GLUE, "squad")  # prepared once where the hub is reachable (prepare-finetune)
GROUPS = {"embedded": EMBEDDED, "glue": GLUE}
# (train, validation) examples of the hub tasks (GLUE's MNLI: validation_matched): the budget
SIZES = {
    "glue/cola": (8551, 1043),
    "glue/sst2": (67349, 872),
    "glue/mrpc": (3668, 408),
    "glue/qqp": (363846, 40430),
    "glue/stsb": (5749, 1500),
    "glue/mnli": (392702, 9815),
    "glue/qnli": (104743, 5463),
    "glue/rte": (2490, 277),
    "squad": (87599, 10570),
}
KNOWN = ", ".join(["embedded", *EMBEDDED, "glue", *GLUE, "squad", "{name, path}"])


@dataclass(frozen=True)
class FinetuneTask:
    name: str  # as configured: domain, glue/sst2, squad, or a user's own name
    folder: str | None  # a user's own task folder (task.json, train.jsonl, validation.jsonl)

    @property
    def id(self) -> str:
        """The file name of its results: glue/sst2 -> glue-sst2."""
        return self.name.replace("/", "-")

    @property
    def embedded(self) -> bool:
        return self.folder is None and self.name in EMBEDDED

    def sizes(self, config: Config) -> tuple[int, int]:
        """(train, validation) examples: what the budget prices."""
        if self.embedded:
            build = config.finetune.embedded
            return int(build["train_items"]), int(build["eval_items"])
        if self.folder:
            return tuple(_rows(Path(self.folder) / f"{s}.jsonl") for s in ("train", "validation"))
        return SIZES[self.name]

    def path(self, tasks_dir: str, prepared: str) -> str:
        """Where the task's folder is: built in the workflow, prepared, or the user's own."""
        if self.folder:
            return self.folder
        return f"{tasks_dir}/{self.name}" if self.embedded else f"{prepared}/{self.id}"


def finetune_tasks(config: Config) -> list[FinetuneTask]:
    """The configured tasks, groups expanded, each checked."""
    tasks: list[FinetuneTask] = []
    for i, item in enumerate(config.finetune.tasks if config.finetune else []):
        field = f"finetune.tasks[{i}]"
        if isinstance(item, dict):
            tasks.append(_own_task(item, field))
        elif item in GROUPS:
            tasks += [FinetuneTask(name, None) for name in GROUPS[item]]
        elif item in EMBEDDED or item in HUB:
            tasks.append(FinetuneTask(item, None))
        else:
            raise InputError("config", field, f"unknown task '{item}'", f"use one of {KNOWN}")
    ids = [t.id for t in tasks]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputError("config", "finetune.tasks", f"'{repeated[0]}' twice", "name it once")
    return tasks


def _own_task(item: dict[str, Any], field: str) -> FinetuneTask:
    """A user's task folder: its task.json names a label field every row must have."""
    name, folder = str(item["name"]), str(item["path"])
    spec_file = Path(folder) / "task.json"
    if not spec_file.is_file():
        raise InputError(
            "config", f"{field}.path", f"{spec_file} not found", "give a folder with task.json"
        )
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            "config", f"{field}.path", f"{spec_file} is not JSON", "fix the file"
        ) from exc
    label = spec.get("label") if isinstance(spec, dict) else None
    if not label:
        raise InputError(
            "config",
            f"{field}.path",
            f"{spec_file} names no label field",
            'add "label": "<field>" (a fine-tuning task needs labels)',
        )
    for split in ("train", "validation"):
        _check_labels(Path(folder) / f"{split}.jsonl", label, field)
    return FinetuneTask(name, folder)


def _rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _check_labels(path: Path, label: str, field: str) -> None:
    if not path.is_file():
        raise InputError("config", f"{field}.path", f"{path} not found", "add the split")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(
                    "config", f"{field}.path", f"{path} line {number} is not JSON", "fix it"
                ) from exc
            if not isinstance(row, dict) or row.get(label) is None:
                raise InputError(
                    "config",
                    f"{field}.path",
                    f"{path} line {number} has no label '{label}'",
                    "give every row a label (a fine-tuning task without labels cannot train)",
                )
