"""BERT (masked LM) in plain PyTorch, bit-identical to transformers' BertForMaskedLM (sdpa
attention): same parameter names, same initialisation from the same seed, same operations in
the same order, and saved in transformers' format (config.json + model.safetensors), which
transformers' classes load for fine-tuning.

Why it exists: as for GPT-2 (mixscale.train.gpt2), building transformers' BERT imports its
modelling stack (~3.5 s of CPU per training job on a 2-core machine). Configs this module does
not implement (dropout, padding ids, other activations, decoders, ...) are built by
transformers; tests/test_bert.py holds the two to the same numbers bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.bert import native_bert_config
from mixscale.train.saved import load_weights, save_folder, saved_native_config


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor


class Embeddings(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device).unsqueeze(0)
        # one segment: every token has type 0; added in transformers' order
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(
            torch.zeros_like(input_ids)
        )
        return self.LayerNorm(x + self.position_embeddings(positions))


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.head_dim = hidden // heads
        self.scaling = self.head_dim**-0.5
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = (*x.shape[:-1], -1, self.head_dim)
        query, key, value = (
            layer(x).view(heads).transpose(1, 2) for layer in (self.query, self.key, self.value)
        )
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=None, dropout_p=0.0, scale=self.scaling, is_causal=False
        )
        out = out.transpose(1, 2).contiguous()
        return out.reshape(*x.shape[:-1], -1).contiguous()


class DenseNorm(nn.Module):
    """dense, then LayerNorm of the sum with the residual (BertSelfOutput, BertOutput)."""

    def __init__(self, n_in: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.self = SelfAttention(hidden, config["num_attention_heads"])
        self.output = DenseNorm(hidden, hidden, config["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden, inner = config["hidden_size"], config["intermediate_size"]
        self.attention = Attention(config)
        self.intermediate = Intermediate(hidden, inner)
        self.output = DenseNorm(inner, hidden, config["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config["num_hidden_layers"]))


class BertModel(nn.Module):
    """The encoder without a pooler (as BertForMaskedLM builds it)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x)
        return x


class Transform(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class TiedDecoder(nn.Module):
    """The output projection: the word embeddings' weight and the head's own bias."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)  # nn.Linear's operation


class Predictions(nn.Module):
    def __init__(self, config: dict[str, Any], word_embeddings: nn.Parameter) -> None:
        super().__init__()
        self.transform = Transform(config)
        _draw_untied_decoder(config["vocab_size"], config["hidden_size"])
        self.bias = nn.Parameter(torch.zeros(config["vocab_size"]))
        self.decoder = TiedDecoder(word_embeddings, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class Head(nn.Module):
    def __init__(self, config: dict[str, Any], word_embeddings: nn.Parameter) -> None:
        super().__init__()
        self.predictions = Predictions(config, word_embeddings)


class BertForMaskedLM(nn.Module):
    """Called as transformers' model is: ``model(input_ids=...).logits``.

    Built in transformers' order, random draws included: the encoder, its initialisation
    (BertModel's own), then the head and its initialisation. The same draws in the same order
    give the same numbers after ``torch.manual_seed``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        std = config["initializer_range"]
        self.bert = BertModel(config)
        _init_encoder(self.bert, std)
        self.cls = Head(config, self.bert.embeddings.word_embeddings.weight)
        _init_head(self.cls.predictions, config, std)

    def forward(self, input_ids: torch.Tensor, **_: Any) -> MaskedLMOutput:
        return MaskedLMOutput(logits=self.cls.predictions(self.bert(input_ids)))


@torch.no_grad()
def _init_encoder(bert: BertModel, std: float) -> None:
    """BertModel's initialisation: embeddings, then every linear layer N(0, std), biases 0."""
    for module in bert.modules():
        if isinstance(module, nn.Embedding | nn.Linear):
            module.weight.normal_(0.0, std)
        if isinstance(module, nn.Linear):
            module.bias.zero_()


def _draw_untied_decoder(vocab: int, hidden: int) -> None:
    """transformers builds the decoder as nn.Linear(hidden, vocab) before tying it: its
    default initialisation draws are taken, then discarded."""
    weight, bias = torch.empty(vocab, hidden), torch.empty(vocab)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    bound = 1 / math.sqrt(hidden)
    nn.init.uniform_(bias, -bound, bound)


@torch.no_grad()
def _init_head(predictions: Predictions, config: dict[str, Any], std: float) -> None:
    """BertForMaskedLM's initialisation of what BertModel's left: the transform, then the
    decoder's own weight (a draw discarded by the tie)."""
    predictions.transform.dense.weight.normal_(0.0, std)
    predictions.transform.dense.bias.zero_()
    torch.empty(config["vocab_size"], config["hidden_size"]).normal_(0.0, std)


def build_bert(config: dict[str, Any], seed: int) -> BertForMaskedLM:
    """A new model, initialised as transformers initialises BERT after manual_seed(seed)."""
    torch.manual_seed(seed)
    return BertForMaskedLM(config)


# --- saved as transformers saves it -------------------------------------------------------------


TIED = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}


def save_bert(model: BertForMaskedLM, folder: Path, transformers_version: str) -> None:
    """config.json and model.safetensors as save_pretrained writes them (the tied decoder is
    not stored: transformers ties it again on load)."""
    config = {**model.config, "architectures": ["BertForMaskedLM"], "model_type": "bert"}
    save_folder(folder, config, model, TIED, transformers_version)


def load_bert(folder: Path) -> BertForMaskedLM | None:
    """A saved BERT masked LM this module implements, or None when transformers must load it
    (other fields, or another head such as a fine-tuned classifier's)."""
    config = saved_native_config(folder, "bert", _masked_lm_config)
    if config is None:
        return None
    with torch.random.fork_rng(devices=[]):  # the weights come from the file: no draws kept
        model = BertForMaskedLM(config)
    return model if load_weights(model, folder, TIED) else None


def _masked_lm_config(saved: dict[str, Any]) -> dict[str, Any] | None:
    if saved.get("architectures") not in (None, ["BertForMaskedLM"]):
        return None
    return native_bert_config(saved)
