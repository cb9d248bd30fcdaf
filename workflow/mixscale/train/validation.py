"""Per-domain held-out loss during a run, and the steps at which it is measured."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.training import TrainSettings
from mixscale.data.tokens import TokenStore
from mixscale.errors import InputError
from mixscale.train.distributed import Dist


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    stores: dict[str, TokenStore],
    settings: TrainSettings,
    dist: Dist,
    autocast: Any,
) -> dict[str, float]:
    """Token-weighted mean loss per domain on the first ``eval_tokens`` of its held-out block."""
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
            batch = torch.from_numpy(np.stack(part or windows[:1])).to(dist.device)
            with autocast():
                logits = model(input_ids=batch[:, :-1], use_cache=False).logits
            if not part:
                continue
            nll = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            )
            total += torch.tensor([nll.item(), batch[:, 1:].numel()], dtype=torch.float64)
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


def known_domain(domain: str, stores: dict[str, TokenStore]) -> bool:
    if domain not in stores:
        raise InputError("evaluation", domain, "no token store", f"use one of {', '.join(stores)}")
    return True
