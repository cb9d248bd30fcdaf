"""GPT-2 in plain PyTorch, bit-identical to transformers' GPT2LMHeadModel (sdpa attention):
same parameter names, same initialisation from the same seed, same operations in the same order,
and saved in transformers' format (config.json + model.safetensors) for lm-eval.

Why it exists: a training job that builds transformers' GPT-2 imports transformers' modelling
stack (torch._dynamo, torch.distributed.tensor, sympy, scipy.optimize: ~3.5 s of CPU per process
on a 2-core machine), more than the whole training of a small proxy run. Configs this module
does not implement (dropout, other activations, cross-attention, untied heads, ...) are built by
transformers instead; tests/test_gpt2.py holds the two to the same numbers bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.gpt2 import native_config
from mixscale.train.saved import load_weights, save_folder, saved_native_config


@dataclass
class CausalLMOutput:
    logits: torch.Tensor


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = bias + x @ weight."""

    def __init__(self, n_out: int, n_in: int) -> None:
        super().__init__()
        self.n_out = n_out
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)  # drawn as transformers does (see _init_gpt2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], self.n_out)


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_embd, self.head_dim = n_embd, n_embd // n_head
        self.scaling = self.head_dim**-0.5
        self.c_attn = Conv1D(3 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self.c_attn(x).split(self.n_embd, dim=2)
        heads = (*x.shape[:-1], -1, self.head_dim)
        query, key, value = (t.view(heads).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=None, dropout_p=0.0, scale=self.scaling,
            is_causal=query.shape[2] > 1,
        )  # fmt: skip
        out = out.transpose(1, 2).contiguous()
        return self.c_proj(out.reshape(*out.shape[:-2], -1).contiguous())


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU as transformers writes it (F.gelu's tanh differs in the last bit)."""
    return (
        0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    )


class MLP(nn.Module):
    def __init__(self, n_embd: int, n_inner: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(n_inner, n_embd)
        self.c_proj = Conv1D(n_embd, n_inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        n_embd, eps = config["n_embd"], config["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = Attention(n_embd, config["n_head"])
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd, config["n_inner"] or 4 * n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.ln_1(x)) + x
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.wte = nn.Embedding(config["vocab_size"], config["n_embd"])
        self.wpe = nn.Embedding(config["n_positions"], config["n_embd"])
        self.h = nn.ModuleList(Block(config) for _ in range(config["n_layer"]))
        self.ln_f = nn.LayerNorm(config["n_embd"], eps=config["layer_norm_epsilon"])


class TiedHead(nn.Module):
    """The output projection, sharing wte's weight: no draw here (transformers draws the
    head's default init later), and no meta-device construction (``skip_init`` imports
    torch's meta registrations, 0.5 s)."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # nn.Linear without bias


class GPT2LMHeadModel(nn.Module):
    """Called as transformers' model is: ``model(input_ids=...).logits``."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)
        self.lm_head = TiedHead(self.transformer.wte.weight)

    def forward(self, input_ids: torch.Tensor, **_: Any) -> CausalLMOutput:
        t = self.transformer
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device).unsqueeze(0)
        x = t.wte(input_ids) + t.wpe(positions)
        for block in t.h:
            x = block(x)
        return CausalLMOutput(logits=self.lm_head(t.ln_f(x)))


def build_gpt2(config: dict[str, Any], seed: int) -> GPT2LMHeadModel:
    """A new model, initialised as transformers initialises GPT-2 after manual_seed(seed)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    _init_gpt2(model, config)
    return model


@torch.no_grad()
def _init_gpt2(model: GPT2LMHeadModel, config: dict[str, Any]) -> None:
    """transformers' sequence of random draws, after construction (embeddings N(0, 1), Conv1D
    weights N(0, 0.02), drawn above): every weight again N(0, range), the residual projections
    then N(0, range / sqrt(2 n_layer)), then the head's two draws, discarded when it is tied.
    Drawing the same tensors in the same order gives the same numbers."""
    std = config["initializer_range"]
    t = model.transformer
    t.wte.weight.normal_(0.0, std)
    t.wpe.weight.normal_(0.0, std)
    residual_std = std / math.sqrt(2 * config["n_layer"])
    for block in t.h:
        for layer in (block.attn, block.mlp):
            first = layer.c_attn if layer is block.attn else layer.c_fc
            first.weight.normal_(0.0, std)
            layer.c_proj.weight.normal_(0.0, std)
            layer.c_proj.weight.normal_(0.0, residual_std)
    head = torch.empty_like(t.wte.weight)  # drawn before the tie replaces it with wte
    nn.init.kaiming_uniform_(head, a=math.sqrt(5))
    head.normal_(0.0, std)


# --- saved as transformers saves it -------------------------------------------------------------


TIED = {"lm_head.weight"}


def save_gpt2(model: GPT2LMHeadModel, folder: Path, transformers_version: str) -> None:
    """config.json, generation_config.json and model.safetensors as save_pretrained writes them
    (the tied head is not stored: transformers ties it again on load)."""
    config = {**model.config, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    config = save_folder(folder, config, model, TIED, transformers_version)
    generation = {
        "_from_model_config": True,
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "output_attentions": False,
        "output_hidden_states": False,
        "transformers_version": transformers_version,
        "use_cache": True,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def load_gpt2(folder: Path) -> GPT2LMHeadModel | None:
    """A saved GPT-2 this module implements, or None when transformers must load it."""
    config = saved_native_config(folder, "gpt2", native_config)
    if config is None:
        return None
    model = GPT2LMHeadModel(config)
    return model if load_weights(model, folder, TIED) else None
