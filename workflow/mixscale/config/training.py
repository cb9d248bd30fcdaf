"""Training hyperparameters (config ``train:``), validated without importing torch, so a bad
key fails when Snakemake reads the config, before any job is submitted."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mixscale.errors import InputError


@dataclass
class TrainSettings:
    """Hyperparameters of a run (config ``train:``), sized to the run by the trainer."""

    seq_len: int = 128
    batch_sequences: int = 8  # sequences per optimizer step, over all processes
    micro_batch: int = 8  # sequences per forward pass per process
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: float = 0.05  # fraction of the run's steps
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    precision: str = "auto"  # auto | bf16 | fp32
    seed: int = 0
    # noise studies: hold the initial weights or the batch order (and masks) fixed across a
    # run's seeds, to tell which one the seed's spread comes from (None: the run's seed)
    init_seed: int | None = None
    data_seed: int | None = None
    eval_points: int = 10
    eval_tokens: int = 20000  # held-out tokens per domain at each evaluation
    eval_batch: int = 16
    checkpoint_every: int = 100  # steps; 0 = only at the end of training
    allow_repeat: bool = False
    threads: int = 0  # torch intra-op threads per process; 0 = torch's default
    save_model: bool = True
    max_steps: int = 0  # 0 = one pass over the mixture; > 0 stops early (benchmarks)
    # torch.compile forward + loss: faster steps after a one-off compile. auto: only for runs
    # long enough to pay the compile back (mixscale.train.compiling); true | false
    compile: bool | str = "auto"
    # several processes: ddp (a full model copy per GPU) or fsdp (parameters, gradients and
    # optimizer state sharded across GPUs: what a 7B model needs on 80 GB GPUs)
    parallel: str = "ddp"
    # masked LM (encoders): the share of tokens hidden and predicted (BERT's 15%, the paper's)
    mask_rate: float = 0.15

    @property
    def weights_seed(self) -> int:
        """The seed of the model's initial weights."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def order_seed(self) -> int:
        """The seed of the batch order (and of masked LM's masks)."""
        return self.seed if self.data_seed is None else self.data_seed

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                "config",
                f"train.{unknown[0]}",
                "unknown key",
                f"use one of {', '.join(sorted(known))}",
            )
        values = {
            name: _typed(name, value, cls.__dataclass_fields__[name].type)
            for name, value in data.items()
        }
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        positive = ("seq_len", "batch_sequences", "micro_batch", "eval_tokens", "eval_batch")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise InputError(
                    "config", f"train.{name}", "must be > 0", "give a positive integer"
                )
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise InputError(
                "config", "train.lr", f"{self.lr} is not a learning rate", "e.g. 3.0e-3"
            )
        if self.schedule not in ("cosine", "linear", "constant"):
            raise InputError(
                "config", "train.schedule", f"unknown '{self.schedule}'", "cosine|linear|constant"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InputError(
                "config", "train.precision", f"unknown '{self.precision}'", "auto|bf16|fp32"
            )
        if self.parallel not in ("ddp", "fsdp"):
            raise InputError("config", "train.parallel", f"unknown '{self.parallel}'", "ddp|fsdp")
        if not 0 < self.mask_rate < 1:
            raise InputError(
                "config",
                "train.mask_rate",
                f"{self.mask_rate} is not a share of the tokens",
                "use 0 < mask_rate < 1, e.g. 0.15 (BERT's)",
            )
        if not 0 <= self.warmup < 1:
            raise InputError(
                "config", "train.warmup", "is a fraction of the run", "use 0 <= warmup < 1"
            )
        self._check_ranges()

    # (field, lowest, highest, fix): values outside train without complaint but mean nothing,
    # or make a job run for ever
    RANGES: ClassVar[tuple[tuple[str, float, float, str], ...]] = (
        ("min_lr_ratio", 0.0, 1.0, "a fraction of train.lr in [0, 1]"),
        ("weight_decay", 0.0, 10.0, "e.g. 0.1 (0 turns it off)"),
        ("grad_clip", 0.0, math.inf, "a gradient norm > 0, or 0 for none"),
        ("checkpoint_every", 0, math.inf, "steps between checkpoints, 0 = only at the end"),
        ("eval_points", 1, 10_000, "evaluations along the run, e.g. 10"),
        ("threads", 0, 4096, "torch threads per process, 0 = torch's default"),
        ("max_steps", 0, math.inf, "0 = one pass over the mixture"),
        ("seq_len", 1, 1 << 20, "the context length, e.g. 1024"),
        # memory and time grow with these: a slip of the exponent is refused, not allocated
        ("batch_sequences", 1, 1 << 20, "sequences per optimizer step, e.g. 512"),
        ("micro_batch", 1, 1 << 20, "sequences per forward pass, e.g. 8"),
        ("eval_tokens", 1, 1e9, "held-out tokens per domain and evaluation, e.g. 20000"),
        ("eval_batch", 1, 1 << 16, "sequences per evaluation pass, e.g. 16"),
        # a learning rate changes neither memory nor time: an absurd one stops the run in one
        # line at its first non-finite loss, with its last good checkpoint kept
        ("lr", 0, 1e30, "a learning rate, e.g. 3.0e-3"),
    )

    @classmethod
    def range_of(cls, name: str) -> tuple[float, float]:
        """The lowest and highest value of a field of RANGES (command-line options read it)."""
        return next((low, high) for field, low, high, _ in cls.RANGES if field == name)

    def _check_ranges(self) -> None:
        for name, low, high, fix in self.RANGES:
            value = getattr(self, name)
            if not (low <= value <= high) or not math.isfinite(value):
                raise InputError(
                    "config", f"train.{name}", f"{value} is outside [{low:g}, {high:g}]", fix
                )
        if not all(0 <= beta < 1 for beta in self.betas):
            raise InputError(
                "config",
                "train.betas",
                f"{list(self.betas)} are not Adam betas",
                "two numbers in [0, 1), e.g. [0.9, 0.95]",
            )


def _typed(name: str, value: Any, kind: str) -> Any:
    """Config values as the field's type (YAML 1.1 reads 3e-3 as a string), or a clear error."""
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == "bool | str":  # a switch with an automatic setting
            if value is True or value is False or value == "auto":
                return value
            raise ValueError
        if kind == "int | None" and value is None:
            return None
        if kind in ("int", "int | None"):
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
        if kind == "float":
            return float(value)
        if kind.startswith("tuple"):
            if isinstance(value, str) or len(value) != 2:
                raise ValueError
            return tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(.inf)
        if kind == "bool | str":
            raise InputError(
                "config", f"train.{name}", f"{value!r} is not a switch", "auto, true or false"
            ) from None
        raise InputError(
            "config",
            f"train.{name}",
            f"{value!r} is not {_article(kind)} {kind}",
            f"give {_article(kind)} {kind}",
        ) from None
    return value


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


# --- experiment tracking (config ``tracking:``) ---

TRACKERS = ("tensorboard", "wandb", "mlflow")
# the library each tracker needs (tensorboard is a dependency; the others the [tracking] extra)
MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(names: list[str]) -> None:
    """Unknown trackers and missing libraries, in one line each, before any run starts."""
    for name in names:
        if name not in TRACKERS:
            raise InputError(
                "config", "tracking", f"unknown tracker '{name}'", f"use any of {list(TRACKERS)}"
            )
        if importlib.util.find_spec(MODULES[name]) is None:
            raise InputError(
                "config",
                "tracking",
                f"'{name}' is not installed",
                "pip install 'mixscale[tracking]', or remove it from tracking",
            )
