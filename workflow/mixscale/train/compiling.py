"""Whether a run trains through ``torch.compile``, and the loss function it trains with.

``train.compile: auto`` (the default) compiles a run when the time compiling saves over the run
pays back the one-off compile. The decision is a function of the run alone (its training FLOPs
and the device type), never of a timing, so the same config compiles or not on every machine
and a resumed run takes the same path as the run it resumes. Measured on a 2-core AVX2 CPU in
fp32 (``benchmarks/compile_breakeven.py``, ``benchmarks/results/compile_breakeven.txt``): the
first compile costs 18-25 s and saves 11-24% of a step, so it pays from 2.8e12 (a 2x96 GPT-2)
to 1.3e13 (a 4x256 GPT-2) training FLOPs on; ``auto`` compiles CPU runs from 1.5e13, above both,
so it never makes a run finish later. On a GPU, compiles take about a minute and steps are
~1,000x faster: from 1e16 (a 124M-parameter model's first 13M tokens), an estimate not measured
here. Cluster runs compile; the embedded demo's runs (at most 1.8e12) do not.

A compile that fails (no C++ compiler for inductor on a compute node, an unsupported model or
torch version) falls back to the plain loop with one line in the log, and the run's metrics say
so: the probe compiles forward, loss and backward on the first batch before the first step and
discards the gradients, so a failure never leaves a half-taken step behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

# training FLOPs (6 x parameters x tokens) from which `auto` compiles, per device type
BREAK_EVEN_FLOPS = {"cpu": 1.5e13, "cuda": 1.0e16}


@dataclass
class CompileChoice:
    setting: Any  # auto | True | False, as configured
    compiled: bool
    reason: str
    seconds: float | None = None  # the probe's wall time: the compile, and one step's work

    def to_json(self) -> dict[str, Any]:
        out = {"setting": self.setting, "compiled": self.compiled, "reason": self.reason}
        return out if self.seconds is None else {**out, "compile_seconds": self.seconds}


def choose(setting: Any, device: torch.device, train_flops: float, doremi: bool) -> CompileChoice:
    """Whether this run compiles (before its fingerprint is taken: it changes the numbers)."""
    if doremi:
        return CompileChoice(setting, False, "a DoReMi proxy run weights its loss per sequence")
    if setting is True or setting is False:
        return CompileChoice(setting, setting, "train.compile")
    threshold = BREAK_EVEN_FLOPS.get(device.type, BREAK_EVEN_FLOPS["cuda"])
    pays = train_flops >= threshold
    comparison = ">=" if pays else "<"
    return CompileChoice(
        setting,
        pays,
        f"auto: {train_flops:.3g} training FLOPs {comparison} {threshold:.0e} on {device.type}",
    )


def loss_function(model: torch.nn.Module, loss, choice: CompileChoice, probe, log):
    """The step's ``loss(model, *batch)``: compiled when chosen and the probe succeeds, the
    plain function otherwise. ``probe(fn)`` runs forward + backward of the first batch with
    ``fn`` and discards the gradients."""
    eager = partial(loss, model)
    if not choice.compiled:
        return eager
    compiled = torch.compile(eager)
    start = time.perf_counter()
    try:
        probe(compiled)
        choice.seconds = time.perf_counter() - start
    except Exception as exc:  # any compiler failure: train uncompiled
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        choice.compiled = False
        choice.reason = f"torch.compile failed ({type(exc).__name__}: {first}): uncompiled"
        log(f"warning: {choice.reason}")
        torch._dynamo.reset()
        return eager
    return compiled
