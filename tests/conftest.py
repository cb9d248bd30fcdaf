"""Shared helpers: synthetic run tables from worlds whose answers are known exactly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from mixscale.runtable import RunTable

ROOT = Path(__file__).resolve().parents[1]


def alg1_mixtures(base: np.ndarray, factor: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """Algorithm 1's design: base, then each domain x factor and / factor, others unchanged."""
    runs = [("base", base.copy())]
    for j in range(len(base)):
        for f, tag in ((factor, "up"), (1 / factor, "down")):
            n = base.copy()
            n[j] *= f
            runs.append((f"d{j}_{tag}", n))
    return runs


def fixed_total_mixtures(base: np.ndarray, factor: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """Section 2.2's design: domain j's share x factor or / factor, the rest rescaled."""
    total = base.sum()
    runs = [("base", base.copy())]
    for j in range(len(base)):
        for f, tag in ((factor, "up"), (1 / factor, "down")):
            n = base.copy()
            n[j] = base[j] * f
            rest = np.delete(np.arange(len(base)), j)
            n[rest] = base[rest] * (total - n[j]) / base[rest].sum()
            runs.append((f"d{j}_{tag}", n))
    return runs


def make_table(
    mixtures: Sequence[tuple[str, np.ndarray]],
    loss: Callable[[np.ndarray], float],
    seeds: int = 1,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    domains: Sequence[str] | None = None,
) -> RunTable:
    rng = rng or np.random.default_rng(0)
    m = len(mixtures[0][1])
    domains = list(domains or [f"d{j}" for j in range(m)])
    tokens, losses, ids, seed_ids = [], [], [], []
    for name, n in mixtures:
        for s in range(seeds):
            tokens.append(n)
            losses.append([loss(n) + (rng.normal(0, noise) if noise else 0.0)])
            ids.append(f"{name}_s{s}")
            seed_ids.append(str(s))
    return RunTable(
        source="synthetic",
        train_domains=domains,
        eval_domains=["all"],
        tokens=np.array(tokens, dtype=float),
        losses=np.array(losses),
        run_ids=ids,
        seeds=seed_ids,
    )


def power_world(a: np.ndarray, b: np.ndarray, c: float = 2.0) -> Callable[[np.ndarray], float]:
    return lambda n: float(c + np.sum(a * n**-b))


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mixscale", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli
