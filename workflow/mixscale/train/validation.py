"""Per-domain held-out loss during a run, and the steps at which it is measured."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixscale.config.training import TrainSettings
from mixscale.data.tokens import TokenStore, open_store
from mixscale.errors import InputError
from mixscale.train.distributed import Dist
from mixscale.train.objectives import Objective


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    objective: Objective,
    stores: dict[str, TokenStore],
    settings: TrainSettings,
    dist: Dist,
    autocast: Any,
) -> dict[str, float]:
    """Token-weighted mean loss per domain on the first ``eval_tokens`` of its held-out block
    (causal LM: every next token; masked LM: the masked tokens, the same masks for every run)."""
    model.eval()
    losses = {}
    for domain, store in stores.items():
        windows = held_out_windows(store, settings.eval_tokens, settings.seq_len)
        mine = windows[dist.rank :: dist.world]
        total = torch.zeros(2, dtype=torch.float64)
        # every rank runs the same number of forward passes (an FSDP forward is collective);
        # a rank out of windows repeats one and does not count it
        per_rank = math.ceil(len(windows) / dist.world)
        for start in range(0, per_rank, settings.eval_batch):
            part = mine[start : start + settings.eval_batch]
            # the window's index in the domain's held-out block: its evaluation mask
            first = dist.rank + start * dist.world
            rows = objective.eval_batch(np.stack(part or windows[:1]), first, dist.world)
            with autocast():
                nll, count = objective.summed_loss(model, *(t.to(dist.device) for t in rows))
            if not part:
                continue
            total += torch.tensor([nll, count], dtype=torch.float64)
        if dist.world > 1:
            torch.distributed.all_reduce(total)
        losses[domain] = float(total[0] / total[1])
    model.train()
    return losses


def held_out_windows(store: TokenStore, tokens: int, seq_len: int) -> list[np.ndarray]:
    """The first ``tokens`` held-out tokens (rounded down to whole windows) as L + 1 windows."""
    count = max(1, tokens // seq_len)
    if len(store.val) < count * seq_len + 1:
        raise InputError(
            store.meta.get("corpus", store.domain),
            "validation",
            f"{store.domain} holds {len(store.val)} held-out tokens, evaluation asks {tokens}",
            "lower train.eval_tokens or raise data.validation_bytes",
        )
    block = np.asarray(store.val[: count * seq_len + 1], dtype=np.int64)
    return [block[i * seq_len : (i + 1) * seq_len + 1] for i in range(count)]


def eval_steps(total_steps: int, points: int) -> list[int]:
    """Steps (1-based counts of finished steps) after which the run is evaluated."""
    points = max(1, min(points, total_steps))
    return sorted({max(1, round(k * total_steps / points)) for k in range(1, points + 1)})


def eval_store(stores_dir: str, domain: str) -> TokenStore:
    """An evaluation-only domain's store (not part of the run's mixture)."""
    path = Path(stores_dir) / domain
    if not (path / "meta.json").is_file():
        raise InputError(
            "evaluation", domain, "no token store", "build it (name it in data.sources)"
        )
    return open_store(path, domain)
