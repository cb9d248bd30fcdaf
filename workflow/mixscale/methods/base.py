"""What a mixture method is: a named way to turn an experiment's proxy results into the weights
a verification run at a target scale trains on.

A method says three things, each optional:

- ``check``: what it needs from the config (fails before any job, one line);
- ``fixed_weights``: a mixture known from the config alone (uniform, reference weights...);
- ``weights_file``: otherwise, the file (written by the workflow's rules) that holds its weights
  for a target scale.

Methods that need their own proxy runs (beyond the shared DDO sweep) list them with
``proxy_runs``; the plan gives them ids and trains them like any other run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mixscale.config.typed import Config


@dataclass(frozen=True)
class Layout:
    """Where an experiment's outputs are: what a method needs to name its weights file."""

    out: str  # results/<experiment>
    scales: tuple[str, ...]  # DDO scale names, smallest first


@dataclass(frozen=True)
class ProxyRun:
    """A training run a method needs: a name unique within the method, a mixture, a seed."""

    name: str
    tokens: dict[str, float]
    seed: int = 0
    labels: dict[str, Any] = field(default_factory=dict)
    doremi: dict[str, Any] = field(default_factory=dict)  # a DoReMi proxy run's settings


class Method:
    """Base class of every entry of the registry (``mixscale.methods.REGISTRY``)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_ddo: ClassVar[bool] = False  # reads the DDO optima of the experiment's scales

    def check(self, config: Config, domains: list[str]) -> None:
        """Raise InputError (source "config") if the config cannot serve this method."""

    def fixed_weights(self, config: Config, domains: list[str]) -> dict[str, float] | None:
        return None

    def weights_file(self, layout: Layout, target: str) -> str | None:
        return None

    def proxy_runs(
        self, config: Config, domains: list[str], budget: float | None = None
    ) -> list[ProxyRun]:
        """``budget``: in compute-matched mode (methods.proxy_tokens), the proxy tokens this
        method may spend, its own way; None: its own settings."""
        return []

    def uses_run(self, spec: dict[str, Any], layout: Layout) -> bool:
        """Whether the planned run ``spec`` is proxy compute of this method (its own proxy
        runs; for DDO-based methods, the sweep runs they read): the report's compute column."""
        return spec["stage"] == "proxy" and spec["scale"] == self.name
