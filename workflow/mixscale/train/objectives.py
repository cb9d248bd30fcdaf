"""What a run learns to predict: the next token (causal LM, decoders such as GPT-2) or masked
tokens (masked LM, encoders such as BERT).

A run's batch is a function of (seed, step) alone (the sampler), and so are its masks: the
masking draws are taken for the whole step's batch from a generator seeded by (seed, step) and
then cut to a process's rows and micro-batches, so a resumed run, a run on more GPUs or with
other micro-batches masks exactly the same positions. Held-out text is masked with a fixed seed
per window, the same for every run, so MLM losses of different runs compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.model import MASKED, objective_of
from mixscale.data.tokens import MixtureSampler, mask_token_id
from mixscale.errors import InputError
from mixscale.train.model import next_token_loss

IGNORE = -100  # the label of a position the loss skips (torch's and transformers' convention)
MASK_STREAM = 0x4D4C4D  # "MLM": keeps masking draws apart from every other seeded stream
EVAL_MASK_SEED = 0x4556414C  # "EVAL": the held-out masks, fixed for every run
# BERT's replacement of a chosen position: 80% the mask token, 10% a random token, 10% kept
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1


@dataclass(frozen=True)
class MaskDraws:
    """Uniform draws for every position of a batch: whether it is chosen, how it is replaced,
    and the random token it would get."""

    choose: np.ndarray  # (sequences, positions) in [0, 1)
    action: np.ndarray  # (sequences, positions) in [0, 1)
    random_tokens: np.ndarray  # (sequences, positions) in [0, vocab)

    @classmethod
    def draw(cls, seed_words: tuple[int, ...], shape: tuple[int, int], vocab: int) -> MaskDraws:
        rng = np.random.default_rng(seed_words)
        return cls(rng.random(shape), rng.random(shape), rng.integers(0, vocab, shape))

    def rows(self, part: slice) -> MaskDraws:
        return MaskDraws(self.choose[part], self.action[part], self.random_tokens[part])


@dataclass(frozen=True)
class Masking:
    """BERT's masking: ``rate`` of the positions are predicted (special tokens never are)."""

    mask_id: int
    vocab: int
    rate: float = 0.15
    keep_ids: tuple[int, ...] = ()  # never chosen: the document separator

    def apply(self, tokens: np.ndarray, draws: MaskDraws) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels): labels hold the original token at chosen positions, IGNORE
        elsewhere."""
        chosen = draws.choose < self.rate
        if self.keep_ids:
            chosen &= ~np.isin(tokens, self.keep_ids)
        inputs = tokens.copy()
        inputs[chosen & (draws.action < MASK_SHARE)] = self.mask_id
        swap = chosen & (draws.action >= MASK_SHARE) & (draws.action < MASK_SHARE + RANDOM_SHARE)
        inputs[swap] = draws.random_tokens[swap]
        labels = np.where(chosen, tokens, IGNORE)
        return inputs, labels


class CausalLM:
    """Predict tokens 1..L of a window of L + 1 tokens from tokens 0..L-1."""

    kind = "causal"
    metric = "perplexity"  # exp of the mean next-token cross-entropy

    def batch(
        self, sampler: MixtureSampler, step: int, batch_sequences: int, part: slice, seed: int
    ) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(sampler.batch(step, batch_sequences, part)),)

    def loss(self, model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
        return next_token_loss(model, windows)

    def token_losses(
        self, model: torch.nn.Module, windows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every predicted token's cross-entropy (sequences x positions), and which count."""
        logits = model(input_ids=windows[:, :-1], use_cache=False).logits
        flat = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            windows[:, 1:].reshape(-1),
            reduction="none",
        )
        losses = flat.reshape(windows.size(0), -1)
        return losses, torch.ones_like(losses, dtype=torch.bool)

    def eval_batch(
        self, windows: np.ndarray, first_index: int, stride: int = 1
    ) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(windows),)

    def summed_loss(self, model: torch.nn.Module, windows: torch.Tensor) -> tuple[float, int]:
        """(summed cross-entropy, predicted tokens) of held-out windows."""
        logits = model(input_ids=windows[:, :-1], use_cache=False).logits
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), windows[:, 1:].reshape(-1), reduction="sum"
        )
        return nll.item(), windows[:, 1:].numel()


class MaskedLM:
    """Predict the masked tokens of a window of L tokens (the sampler's L + 1 minus the last)."""

    kind = "masked"
    metric = "exp(MLM loss)"  # the AutoScale paper's report of BERT runs

    def __init__(self, masking: Masking):
        self.masking = masking

    def batch(
        self, sampler: MixtureSampler, step: int, batch_sequences: int, part: slice, seed: int
    ) -> tuple[torch.Tensor, ...]:
        windows = sampler.batch(step, batch_sequences, part)[:, :-1]
        shape = (batch_sequences, windows.shape[1])
        draws = MaskDraws.draw((seed, step, MASK_STREAM), shape, self.masking.vocab).rows(part)
        inputs, labels = self.masking.apply(windows, draws)
        return torch.from_numpy(inputs), torch.from_numpy(labels)

    def loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Mean cross-entropy over the masked positions (fp32 reduction)."""
        return _masked_cross_entropy(model, inputs, labels, "mean")

    def token_losses(
        self, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flat = _masked_cross_entropy(model, inputs, labels, "none")
        return flat.reshape(labels.shape), labels != IGNORE

    def eval_batch(
        self, windows: np.ndarray, first_index: int, stride: int = 1
    ) -> tuple[torch.Tensor, ...]:
        """Held-out windows masked with the fixed evaluation seed of each window's index in
        the held-out block (``first_index``, then every ``stride``-th: a process's share)."""
        tokens = windows[:, :-1]
        parts = [
            self.masking.apply(row[None, :], self._eval_draws(first_index + i * stride, len(row)))
            for i, row in enumerate(tokens)
        ]
        inputs = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(inputs), torch.from_numpy(labels)

    def _eval_draws(self, index: int, length: int) -> MaskDraws:
        return MaskDraws.draw((EVAL_MASK_SEED, index), (1, length), self.masking.vocab)

    def summed_loss(
        self, model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[float, int]:
        nll = _masked_cross_entropy(model, inputs, labels, "sum")
        return nll.item(), int((labels != IGNORE).sum())


def _masked_cross_entropy(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, reduction: str
) -> torch.Tensor:
    """Cross-entropy at the labelled (masked) positions, fp32, reduced as asked."""
    logits = model(input_ids=inputs).logits
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction=reduction,
    )


Objective = CausalLM | MaskedLM


def make_objective(
    model_spec: dict, tokenizer_dir: str, vocab: int, eos_id: int | None, mask_rate: float
) -> Objective:
    """The objective of a run's model: masked LM for encoders (its mask token from the
    experiment's tokenizer), causal LM otherwise."""
    if objective_of(model_spec) != MASKED:
        return CausalLM()
    mask_id = mask_token_id(tokenizer_dir)
    if mask_id is None:
        raise InputError(
            tokenizer_dir,
            "mask_token",
            "the tokenizer has no mask token, which masked LM needs",
            "let mixscale train the tokenizer of an encoder experiment (it adds <mask>), or "
            "give data.tokenizer.pretrained a tokenizer with one",
        )
    keep = (eos_id,) if eos_id is not None else ()
    return MaskedLM(Masking(int(mask_id), vocab, mask_rate, keep))
