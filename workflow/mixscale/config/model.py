"""The model's training objective (config ``model:``), decided without importing torch or
transformers, so a wrong pairing fails when Snakemake reads the config.

Decoders (GPT-2, Llama, ...) learn causal LM: the next token. Encoders (BERT, RoBERTa, ...)
learn masked LM: ``train.mask_rate`` of the tokens hidden and predicted, as the AutoScale paper's
BERT runs do. ``model.objective`` may say it explicitly; otherwise the type decides (and a
checkpoint folder's config.json, read as JSON, never as code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixscale.errors import InputError

CAUSAL, MASKED = "causal", "masked"
# transformers model types that are encoders only: trained with masked LM
ENCODER_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "megatron-bert",
        "mobilebert",
        "modernbert",
        "mpnet",
        "nomic_bert",
        "rembert",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
    }
)
# model-spec keys that are mixscale's, not fields of the transformers config
NOT_ARCHITECTURE = ("name", "params", "proxy_params", "objective")


def objective_of(model: dict[str, Any]) -> str:
    """``causal`` or ``masked`` for a model spec; a pairing that cannot train stops here."""
    model_type = model.get("type") or checkpoint_type(model.get("checkpoint"))
    encoder = model_type in ENCODER_TYPES
    wanted = model.get("objective")
    if wanted is None:
        return MASKED if encoder else CAUSAL
    if wanted not in (CAUSAL, MASKED):
        raise InputError(
            "config", "model.objective", f"unknown '{wanted}'", "causal (decoders) or masked"
        )
    if wanted == MASKED and model_type and not encoder:
        raise InputError(
            "config",
            "model.objective",
            f"masked LM needs an encoder, and {model_type} is a decoder",
            "use model.type: bert (or roberta, ...), or objective: causal",
        )
    if wanted == CAUSAL and encoder:
        raise InputError(
            "config",
            "model.objective",
            f"{model_type} is an encoder: it learns masked LM, not the next token",
            "use objective: masked, or a decoder type (gpt2, llama, ...)",
        )
    return wanted


def checkpoint_type(path: str | None) -> str | None:
    """The model type in a checkpoint folder's config.json (None when it is not there yet: a
    base model the workflow trains first has the experiment's own type)."""
    if not path:
        return None
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def architecture(model: dict[str, Any]) -> dict[str, Any]:
    """The spec without mixscale's own keys: what goes to transformers."""
    return {k: v for k, v in model.items() if k not in NOT_ARCHITECTURE}
