"""DoReMi (Xie et al. 2023, arXiv 2305.10429): domain weights learned online by Group DRO while a
proxy model trains against a frozen reference model.

Each step, per domain i in the batch: the excess loss lambda_i = mean over its tokens of
max(loss_proxy - loss_reference, 0); then (Algorithm 1, and the authors' code)

    log alpha <- log alpha + eta * lambda;  alpha <- softmax(log alpha)
    alpha <- (1 - c) alpha + c / m          (smoothing c)

The proxy's loss is sum_i alpha_i L_i: each sequence's mean token loss weighted by
alpha_d / p_d (p_d: its domain's share of the proxy run's sampled mixture, the reference
weights), so a uniform alpha on a uniform mixture is the ordinary mean loss. The method's
output is alpha averaged over the steps. Defaults: eta 1, c 1e-3 (the paper's).

One difference, for gradient accumulation: the weights a step's loss uses are those after the
previous step's update (the authors update first, then weight the same batch; with micro-batches
that would hold every micro-batch's graph at once). With several processes the per-domain sums
are all-reduced, so every rank holds the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ETA = 1.0
SMOOTHING = 1e-3


def update_weights(
    weights: np.ndarray, excess: np.ndarray, eta: float = ETA, smoothing: float = SMOOTHING
) -> np.ndarray:
    """One exponentiated-gradient step on the clipped per-domain excess losses, then smoothing
    towards uniform. Domains absent from the batch have excess 0."""
    log_w = np.log(weights) + eta * excess
    log_w -= log_w.max()
    w = np.exp(log_w)
    w /= w.sum()
    return (1.0 - smoothing) * w + smoothing / len(w)


@dataclass
class DoReMi:
    domains: list[str]  # the proxy run's domains, in the sampler's order
    shares: np.ndarray  # p_d: each domain's share of the sampled mixture
    reference: torch.nn.Module  # frozen
    # (model, *batch) -> (per-position losses, which positions count): the run's objective's
    token_losses: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    eta: float = ETA
    smoothing: float = SMOOTHING
    weights: np.ndarray = field(init=False)
    weight_sum: np.ndarray = field(init=False)
    steps: int = 0
    # this step's per-domain sums of clipped excess token loss, and token counts
    _excess: np.ndarray = field(init=False)
    _tokens: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        m = len(self.domains)
        self.weights = np.full(m, 1.0 / m)
        self.weight_sum = np.zeros(m)
        self._excess = np.zeros(m)
        self._tokens = np.zeros(m)
        self.reference.eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)

    def loss(self, model: torch.nn.Module, micro, domain_ids: np.ndarray):
        """The micro-batch's Group DRO loss (mean over its sequences of alpha_d / p_d x the
        sequence's loss); records its per-domain excess losses for the step's update.
        ``micro``: the objective's batch tensors (windows, or masked inputs and labels)."""
        losses, counted = self.token_losses(model, *micro)
        with torch.no_grad():
            reference, _ = self.token_losses(self.reference, *micro)
            excess = (torch.clamp(losses.detach() - reference, min=0) * counted).sum(dim=1)
        tokens = counted.sum(dim=1)
        ids = np.asarray(domain_ids)
        np.add.at(self._excess, ids, excess.double().cpu().numpy())
        np.add.at(self._tokens, ids, tokens.double().cpu().numpy())
        scale = torch.as_tensor(
            (self.weights / self.shares)[ids], dtype=losses.dtype, device=losses.device
        )
        per_sequence = (losses * counted).sum(dim=1) / tokens.clamp(min=1)
        return (per_sequence * scale).mean()

    def end_step(self, reduce=None) -> None:
        """Update the weights from the step's excess losses (``reduce`` all-reduces the sums
        across processes), and add them to the running average."""
        sums = np.stack([self._excess, self._tokens])
        if reduce is not None:
            sums = reduce(sums)
        excess = np.divide(sums[0], sums[1], out=np.zeros(len(self.domains)), where=sums[1] > 0)
        self.weights = update_weights(self.weights, excess, self.eta, self.smoothing)
        self.weight_sum += self.weights
        self.steps += 1
        self._excess[:] = 0
        self._tokens[:] = 0

    def state(self) -> dict[str, Any]:
        """Plain lists and numbers: checkpoints load with weights_only=True."""
        return {
            "weights": self.weights.tolist(),
            "weight_sum": self.weight_sum.tolist(),
            "steps": self.steps,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.weights = np.array(state["weights"], dtype=float)
        self.weight_sum = np.array(state["weight_sum"], dtype=float)
        self.steps = int(state["steps"])

    def metrics(self) -> dict[str, Any]:
        average = self.weight_sum / max(self.steps, 1)
        return {
            "weights": dict(zip(self.domains, map(float, average), strict=True)),
            "final_weights": dict(zip(self.domains, map(float, self.weights), strict=True)),
            "steps": self.steps,
            "eta": self.eta,
            "smoothing": self.smoothing,
        }
