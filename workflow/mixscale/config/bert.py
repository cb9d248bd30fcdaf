"""Which BERT configs mixscale builds itself (``mixscale.train.bert``, bit-identical to
transformers' BertForMaskedLM) and their parameter count, decided without importing torch or
transformers: the budget counts parameters when Snakemake starts."""

from __future__ import annotations

from typing import Any

from mixscale.config.native import full_native_config

# BertConfig's defaults (transformers 5), as save_pretrained writes them to config.json
DEFAULTS: dict[str, Any] = {
    "add_cross_attention": False,
    "attention_probs_dropout_prob": 0.1,
    "bos_token_id": None,
    "classifier_dropout": None,
    "eos_token_id": None,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "is_decoder": False,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "tie_word_embeddings": True,
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
# the values this implementation computes; any other value goes to transformers (mixscale's
# encoders have no padding: documents are packed, so no embedding row is frozen as padding)
NATIVE_ONLY = {
    "add_cross_attention": False,
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "is_decoder": False,
    "pad_token_id": None,
    "tie_word_embeddings": True,
}
SIZES = (
    "hidden_size",
    "intermediate_size",
    "max_position_embeddings",
    "num_attention_heads",
    "num_hidden_layers",
    "type_vocab_size",
    "vocab_size",
)


def native_bert_config(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The full BERT config for ``fields`` if this module implements it, else None (build it
    with transformers). Values are checked as transformers would, with its message."""
    config = full_native_config(
        fields, DEFAULTS, NATIVE_ONLY, SIZES, ("layer_norm_eps", "initializer_range")
    )
    if config is None:
        return None
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ValueError(
            f"The hidden size ({config['hidden_size']}) is not a multiple of the number of "
            f"attention heads ({config['num_attention_heads']})"
        )
    return config


def bert_params(config: dict[str, Any]) -> int:
    """Parameters of the BERT ``native_bert_config`` returned (the decoder is tied to the
    word embeddings; its bias is the head's own)."""
    h, inner = config["hidden_size"], config["intermediate_size"]
    embeddings = (
        config["vocab_size"] + config["max_position_embeddings"] + config["type_vocab_size"]
    ) * h + 2 * h
    attention = 4 * (h * h + h) + 2 * h
    feed_forward = h * inner + inner + inner * h + h + 2 * h
    head = h * h + h + 2 * h + config["vocab_size"]
    return embeddings + config["num_hidden_layers"] * (attention + feed_forward) + head
