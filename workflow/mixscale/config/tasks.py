"""Downstream task entries of a config (`downstream.tasks`, `downstream.embedded`):
what to evaluate, checked when the config is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mixscale.errors import InputError

if TYPE_CHECKING:
    from mixscale.config.typed import Config

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


def task_entries(config: Config) -> list[TaskEntry]:
    """``downstream.tasks`` as entries: strings or {name, shots, metric} mappings."""
    entries = [
        entry_from(item, f"downstream.tasks[{i}]") for i, item in enumerate(config.downstream.tasks)
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
