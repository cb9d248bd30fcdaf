"""The model: built from a config or a checkpoint, its optimizer, learning-rate schedule and
loss, saved for transformers and lm-eval."""

from __future__ import annotations

import math
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.model import MASKED, architecture, objective_of
from mixscale.config.training import TrainSettings
from mixscale.data.tokens import load_tokenizer, open_store
from mixscale.errors import InputError
from mixscale.fileio import atomic_folder, check_output_folder, protect_inputs, reading_inputs
from mixscale.train.eager import EagerAdamW

# written by transformers' tokenizer save_pretrained; mixscale's own metadata stays behind
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_model(
    model_spec: dict[str, Any], vocab_size: int, seq_len: int, seed: int, eos_id: int | None = None
):
    """A causal LM (decoders) or masked LM (encoders) from a config dict (``type`` + its
    fields) or a checkpoint: mixscale's own GPT-2 or BERT where it implements the config (the
    same numbers as transformers', without importing its modelling stack), transformers
    otherwise."""
    masked = objective_of(model_spec) == MASKED
    spec = architecture(model_spec)
    if spec.get("checkpoint"):
        return _load_checkpoint(spec["checkpoint"], masked)
    model_type = spec.pop("type", None)
    if not model_type:
        raise InputError("config", "model.type", "missing", "e.g. gpt2 or llama")
    if masked:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            spec.setdefault(key, 0.0)  # as for GPT-2 below
        spec.setdefault("max_position_embeddings", seq_len)  # L tokens, not the L + 1 window
        # BERT's default pad id 0 is this tokenizer's EOS: its embedding would never train
        spec.setdefault("pad_token_id", None)
    elif model_type == "gpt2":
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            spec.setdefault(key, 0.0)  # no dropout: one-epoch pretraining, and exact resumes
        spec.setdefault("n_positions", seq_len)
    else:
        spec.setdefault("max_position_embeddings", seq_len)
    if eos_id is not None:  # the tokenizer's, not the architecture's default (GPT-2: 50256)
        spec.setdefault("eos_token_id", eos_id)
        spec.setdefault("bos_token_id", eos_id)
    if model_type == "gpt2" and not masked:
        native = _native_gpt2({**spec, "vocab_size": vocab_size}, seed)
        if native is not None:
            return native
    if model_type == "bert" and masked:
        native = _native_bert({**spec, "vocab_size": vocab_size}, seed)
        if native is not None:
            return native
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **spec)
    except (ValueError, TypeError) as exc:
        raise InputError(
            "config", "model", str(exc).splitlines()[0], "see transformers' config docs"
        ) from exc
    torch.manual_seed(seed)
    return _auto_class(masked).from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def _native_gpt2(fields: dict[str, Any], seed: int):
    from mixscale.train.gpt2 import build_gpt2, native_config

    try:
        config = native_config(fields)
    except ValueError as exc:
        raise InputError(
            "config", "model", str(exc).splitlines()[0], "make n_embd a multiple of n_head"
        ) from exc
    return None if config is None else build_gpt2(config, seed)


def _native_bert(fields: dict[str, Any], seed: int):
    from mixscale.config.bert import native_bert_config
    from mixscale.train.bert import build_bert

    try:
        config = native_bert_config(fields)
    except ValueError as exc:
        raise InputError(
            "config",
            "model",
            str(exc).splitlines()[0],
            "make hidden_size a multiple of num_attention_heads",
        ) from exc
    return None if config is None else build_bert(config, seed)


def _load_checkpoint(path: str, masked: bool):
    """A saved model folder: mixscale's GPT-2 when it implements the saved config, else
    transformers' class for it (safetensors either way: loading runs no code)."""
    if not Path(path).is_dir():
        raise InputError(
            "config",
            "model.checkpoint",
            f"{path} is not a folder",
            "train the base model first",
        )
    if masked:
        from mixscale.train.bert import load_bert as load_native
    else:
        from mixscale.train.gpt2 import load_gpt2 as load_native
    native = load_native(Path(path))
    if native is not None:
        return native
    return _auto_class(masked).from_pretrained(
        path, attn_implementation="sdpa", dtype=torch.float32
    )


def _auto_class(masked: bool):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    return AutoModelForMaskedLM if masked else AutoModelForCausalLM


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only; fused kernels where this torch has them
    (without torch's compiler wrappers when the run compiles nothing: mixscale.train.eager)."""
    adamw = torch.optim.AdamW if settings.compile else EagerAdamW
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        return adamw(groups, lr=settings.lr, betas=settings.betas, fused=True)
    except (RuntimeError, TypeError):
        return adamw(groups, lr=settings.lr, betas=settings.betas, foreach=True)


def learning_rate(step: int, total: int, s: TrainSettings) -> float:
    """Linear warmup, then cosine or linear decay to ``min_lr_ratio`` at the last step."""
    warm = round(s.warmup * total)
    if step < warm:
        return s.lr * (step + 1) / warm
    if s.schedule == "constant" or total <= warm + 1:
        return s.lr
    progress = (step - warm) / (total - warm - 1)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if s.schedule == "cosine" else 1 - progress
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * shape)


def next_token_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting tokens 1..L from 0..L-1 (fp32 reduction)."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))


@reading_inputs
def save_initial_model(
    stores_dir: str,
    tokenizer_dir: str,
    model_spec: dict[str, Any],
    seq_len: int,
    seed: int,
    out: str,
) -> int:
    """The architecture as initialised before step 0 (a run's seed gives the same weights):
    the floor that downstream scores of trained models are read against. Returns parameters."""
    protect_inputs([stores_dir, tokenizer_dir])  # --out may not replace what it is made of
    check_output_folder(out)  # before the model is built
    names = sorted(store_names(stores_dir))
    if not names:
        raise InputError(stores_dir, "", "no token stores", "build the stores first")
    meta = open_store(Path(stores_dir) / names[0], names[0]).meta
    model = build_model(model_spec, int(meta["vocab_size"]), seq_len, seed, meta.get("eos_id"))
    save_model(model, tokenizer_dir, Path(out))
    return sum(p.numel() for p in model.parameters())


def save_model(model: torch.nn.Module, tokenizer_dir: str, target: Path) -> None:
    """safetensors + config + tokenizer, loadable by AutoModelForCausalLM (or MaskedLM) and
    lm-eval's hf model."""
    from mixscale.train.bert import BertForMaskedLM, save_bert
    from mixscale.train.gpt2 import GPT2LMHeadModel, save_gpt2

    with atomic_folder(target) as tmp:
        if isinstance(model, GPT2LMHeadModel):
            save_gpt2(model, tmp, version("transformers"))
            copy_tokenizer(tokenizer_dir, tmp)
        elif isinstance(model, BertForMaskedLM):
            save_bert(model, tmp, version("transformers"))
            copy_tokenizer(tokenizer_dir, tmp)
        else:
            model.save_pretrained(str(tmp), safe_serialization=True)
            load_tokenizer(tokenizer_dir).save_pretrained(str(tmp))


def copy_tokenizer(tokenizer_dir: str, target: Path) -> None:
    """The tokenizer's transformers files (what loading and saving it again would write)."""
    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():  # a name, not a folder
        load_tokenizer(tokenizer_dir).save_pretrained(str(target))
        return
    for name in TOKENIZER_FILES:
        source = Path(tokenizer_dir) / name
        if source.is_file():
            shutil.copyfile(source, target / name)


def store_names(stores_dir: str) -> list[str]:
    root = Path(stores_dir)
    if not root.is_dir():
        raise InputError(
            stores_dir, "", "token stores not found", "build them with `mixscale tokens`"
        )
    # hidden names are never stores: a folder being built or swapped out (.mixscale-*)
    return [
        p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "meta.json").is_file()
    ]
