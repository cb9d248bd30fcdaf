"""Which GPT-2 configs mixscale builds itself (``mixscale.train.gpt2``, bit-identical to
transformers' GPT2LMHeadModel) and their parameter count, decided without importing torch or
transformers: the budget counts parameters when Snakemake starts."""

from __future__ import annotations

from typing import Any

from mixscale.config.native import full_native_config

# GPT2Config's defaults (transformers 5), as written to config.json
DEFAULTS: dict[str, Any] = {
    "activation_function": "gelu_new",
    "add_cross_attention": False,
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "n_embd": 768,
    "n_head": 12,
    "n_inner": None,
    "n_layer": 12,
    "n_positions": 1024,
    "pad_token_id": None,
    "reorder_and_upcast_attn": False,
    "resid_pdrop": 0.1,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "tie_word_embeddings": True,
    "use_cache": True,
    "vocab_size": 50257,
}
# the values this implementation computes; any other value goes to transformers
NATIVE_ONLY = {
    "activation_function": "gelu_new",
    "add_cross_attention": False,
    "attn_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "resid_pdrop": 0.0,
    "reorder_and_upcast_attn": False,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "tie_word_embeddings": True,
}
SIZES = ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size")


def native_config(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The full GPT-2 config for ``fields`` if this module implements it, else None (build it
    with transformers). Values are checked as transformers would, with the same messages."""
    config = full_native_config(
        fields,
        DEFAULTS,
        NATIVE_ONLY,
        (*SIZES, "n_inner"),
        ("layer_norm_epsilon", "initializer_range"),
    )
    if config is None:
        return None
    if config["n_embd"] % config["n_head"]:
        raise ValueError(
            f"`embed_dim` must be divisible by num_heads (got `embed_dim`: {config['n_embd']} "
            f"and `num_heads`: {config['n_head']})."
        )
    return config


def gpt2_params(config: dict[str, Any]) -> int:
    """Parameters of the GPT-2 ``native_config`` returned (the head is tied to the embedding)."""
    e, inner = config["n_embd"], config["n_inner"] or 4 * config["n_embd"]
    embeddings = (config["vocab_size"] + config["n_positions"]) * e
    attention = e * 3 * e + 3 * e + e * e + e
    mlp = e * inner + inner + inner * e + e
    block = 2 * 2 * e + attention + mlp  # two layer norms
    return embeddings + config["n_layer"] * block + 2 * e
