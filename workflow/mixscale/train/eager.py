"""torch's AdamW for runs that compile nothing, without importing ``torch._dynamo``.

torch wraps the optimizer's methods so that a compiled graph never traces into them: each
wrapper imports ``torch._dynamo`` on its first call, and ``step`` calls
``torch._dynamo.graph_break()`` on every call. That import costs 1.1 s of CPU, a quarter of
a test-sized training job on a 2-core CPU (docs/training.md). Code that runs eagerly is never
traced, so there the methods can call what torch wraps directly: the same functions, the same
numbers and state dicts (tests/test_eager.py compares them with torch's AdamW bit for bit).
A compiled run keeps torch's own AdamW."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

_OPTIMIZER = torch.optim.Optimizer


def _unwrapped(method: Callable[..., Any]) -> Callable[..., Any]:
    return inspect.unwrap(method)  # through torch's dynamo and profiler wrappers


class EagerAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` without the dynamo wrappers around its methods."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _unwrapped(_OPTIMIZER.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _unwrapped(_OPTIMIZER.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _unwrapped(_OPTIMIZER.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _unwrapped(_OPTIMIZER.load_state_dict)(self, state_dict)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if self.defaults["differentiable"]:
            raise ValueError("EagerAdamW does not differentiate through its step")
        with torch.no_grad():  # what torch's wrapper sets around Adam.step, minus graph breaks
            return _unwrapped(torch.optim.Adam.step)(self, closure)
