"""The ``simulate`` training backend: a run's metrics computed from a world, in milliseconds.

Same inputs and the same metrics.json shape as a real training run. The loss curve evaluates the
world at the data seen so far (a fraction t of the run's mixture), which is how a data-limited
run of one epoch behaves in the world's model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mixscale.core.world import World
from mixscale.errors import InputError


def simulate_run(
    world: World, tokens: dict[str, float], seed: int, eval_points: int = 10
) -> dict[str, Any]:
    start = time.perf_counter()
    unknown = [d for d in tokens if d not in world.domains]
    if unknown:
        raise InputError(
            "mixture",
            unknown[0],
            f"not a domain of world {world.name}",
            f"use {', '.join(world.domains)}",
        )
    n = np.array([float(tokens.get(d, 0.0)) for d in world.domains])
    total = float(n.sum())
    curve = []
    for k in range(1, eval_points + 1):
        t = k / eval_points
        losses = world.eval_losses(n * t, seed=seed)
        curve.append(
            {
                "fraction": t,
                "tokens_seen": total * t,
                "losses": losses,
                "objective": float(np.mean(list(losses.values()))),
            }
        )
    final = curve[-1]["losses"]
    return {
        "backend": "simulate",
        "world": world.name,
        "seed": seed,
        "total_tokens": total,
        "tokens": dict(zip(world.domains, map(float, n), strict=True)),
        "weights": dict(zip(world.domains, map(float, n / total), strict=True)),
        "final_losses": final,
        "objective": float(np.mean(list(final.values()))),
        "true_loss": world.loss(n),
        "curve": curve,
        "wall_time_s": time.perf_counter() - start,
    }
