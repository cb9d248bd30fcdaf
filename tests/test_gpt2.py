"""mixscale's own GPT-2 against transformers': the same weights from the same seed, the same
losses and updates bit for bit, the same saved files, and a training job that never imports
transformers' modelling stack (the reason the module exists: ~3.5 s per process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import adamw_losses, run_cli_watching_imports, tiny_settings
from mixscale.config.gpt2 import gpt2_params
from mixscale.errors import InputError
from mixscale.plan.budget import _count_params
from mixscale.train import gpt2
from mixscale.train.model import build_model, save_model

NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
CONFIGS = [
    {"vocab_size": 512, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 32},
    {"vocab_size": 300, "n_embd": 48, "n_layer": 3, "n_head": 3, "n_positions": 17, "n_inner": 100},
]


def transformers_gpt2(fields: dict, seed: int):
    from transformers import AutoModelForCausalLM, GPT2Config

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(
        GPT2Config(**fields), attn_implementation="sdpa", dtype=torch.float32
    )


def next_token(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return batch[:, :-1], batch[:, 1:]


@pytest.mark.parametrize("fields", CONFIGS)
def test_same_seed_same_weights_and_the_same_training_bit_for_bit(fields):
    fields = {**fields, **NO_DROPOUT}
    theirs = transformers_gpt2(fields, seed=7)
    ours = gpt2.build_gpt2(gpt2.native_config(fields), seed=7)
    assert ours.lm_head.weight is ours.transformer.wte.weight  # tied, as theirs
    counted = sum(p.numel() for p in theirs.parameters())
    assert gpt2_params(gpt2.native_config(fields)) == counted  # what the budget counts
    before = theirs.state_dict()
    assert set(ours.state_dict()) == set(before)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in before.items())
    batch = torch.randint(0, fields["vocab_size"], (4, fields["n_positions"] + 1))
    assert adamw_losses(ours, *next_token(batch), 4) == adamw_losses(theirs, *next_token(batch), 4)
    after = theirs.state_dict()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in after.items())
    assert not torch.equal(after["transformer.h.0.attn.c_attn.weight"], before["lm_head.weight"])


def test_configs_it_does_not_implement_are_built_by_transformers():
    base = {"type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}
    assert isinstance(build_model(base, 64, 8, 0, 0), gpt2.GPT2LMHeadModel)
    for other in ({"resid_pdrop": 0.1}, {"activation_function": "relu"}, {"n_ctx": 8}):
        model = build_model({**base, **other}, 64, 8, 0, 0)
        assert not isinstance(model, gpt2.GPT2LMHeadModel), other
        assert type(model).__name__ == "GPT2LMHeadModel"
    with pytest.raises(InputError, match="divisible by num_heads"):
        build_model({**base, "n_head": 3}, 64, 8, 0, 0)


def test_saved_folder_is_what_transformers_saves_and_both_load_it(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    fields = {**CONFIGS[0], **NO_DROPOUT, "eos_token_id": 0, "bos_token_id": 0}
    ours = gpt2.build_gpt2(gpt2.native_config(fields), seed=3)
    theirs = transformers_gpt2(fields, seed=3)
    save_model(ours, str(data_dir / "tokenizer"), tmp_path / "ours")
    theirs.save_pretrained(str(tmp_path / "theirs"), safe_serialization=True)
    for name in ("model.safetensors", "config.json", "generation_config.json"):
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
    batch = torch.randint(0, 512, (2, 32))
    expected = ours(input_ids=batch).logits
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ours")).eval()
    assert torch.equal(reloaded(input_ids=batch).logits, expected)
    again = gpt2.load_gpt2(tmp_path / "theirs")
    assert isinstance(again, gpt2.GPT2LMHeadModel)
    assert torch.equal(again(input_ids=batch).logits, expected)
    assert again.lm_head.weight is again.transformer.wte.weight
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "ours")).encode("the law") != []


def test_a_folder_it_cannot_load_goes_to_transformers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "resid_pdrop": 0.1}))
    assert gpt2.load_gpt2(tmp_path) is None
    (tmp_path / "config.json").write_text("not json")
    assert gpt2.load_gpt2(tmp_path) is None


def test_parameter_counts_match_transformers():
    native = {"type": "gpt2", "n_layer": 2, "n_embd": 96, "n_head": 4}
    for model in (native, {**native, "resid_pdrop": 0.1}):  # ours, then transformers'
        what = json.dumps({"model": model, "vocab": 1024, "train": {"seq_len": 128}})
        spec = {k: v for k, v in model.items() if k != "type"}
        with torch.device("meta"):
            theirs = transformers_gpt2(
                {**spec, "vocab_size": 1024, "n_positions": 128, "eos_token_id": 0}, 0
            )
        assert _count_params(what) == sum(p.numel() for p in theirs.parameters())


def test_a_gpt2_training_job_never_imports_transformers_models_or_dynamo(data_dir, tmp_path):
    """Neither transformers' modelling stack nor torch's compiler (mixscale.train.eager) is
    imported by an uncompiled GPT-2 job (3.3 s and 1.1 s of CPU; the job takes 2.8 s)."""
    settings = tiny_settings(data_dir)
    spec = {"id": "r", "stage": "ddo", "seed": 0, "total_tokens": 2000, "tokens": {"books": 2000}}
    out = tmp_path / "run" / "metrics.json"
    args = ["train", "--backend", "torch", "--spec", json.dumps(spec), "--out", str(out)]
    result, loaded = run_cli_watching_imports(*args, "--settings", json.dumps(settings))
    assert result.returncode == 0, result.stderr[-2000:]
    assert loaded == []
    assert json.loads(out.read_text())["steps"] > 0
    assert Path(out.parent / "model" / "model.safetensors").is_file()
