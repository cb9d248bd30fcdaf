"""mixscale's own BERT (masked LM) against transformers' BertForMaskedLM: the same weights
from the same seed, the same logits and updates bit for bit, the same saved files (which
transformers loads, also as a classifier for fine-tuning), and a masked-LM training job that
never imports transformers' modelling stack (the reason the module exists)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import adamw_losses
from mixscale.config.bert import bert_params, native_bert_config
from mixscale.errors import InputError
from mixscale.plan.budget import _count_params
from mixscale.train import bert
from mixscale.train.model import build_model, save_model

TRAINING = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "pad_token_id": None}
CONFIGS = [
    {"vocab_size": 513, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
     "intermediate_size": 128, "max_position_embeddings": 32},
    {"vocab_size": 300, "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 3,
     "intermediate_size": 100, "max_position_embeddings": 17, "type_vocab_size": 1},
]  # fmt: skip


def transformers_bert(fields: dict, seed: int):
    from transformers import AutoModelForMaskedLM, BertConfig

    torch.manual_seed(seed)
    return AutoModelForMaskedLM.from_config(
        BertConfig(**fields), attn_implementation="sdpa", dtype=torch.float32
    )


@pytest.mark.parametrize("fields", CONFIGS)
def test_same_seed_same_weights_and_the_same_training_bit_for_bit(fields):
    fields = {**fields, **TRAINING}
    theirs = transformers_bert(fields, seed=7)
    ours = bert.build_bert(native_bert_config(fields), seed=7)
    decoder = ours.cls.predictions.decoder
    assert decoder.weight is ours.bert.embeddings.word_embeddings.weight  # tied, as theirs
    assert decoder.bias is ours.cls.predictions.bias
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert bert_params(native_bert_config(fields)) == sum(p.numel() for p in theirs.parameters())
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    assert set(ours.state_dict()) == set(before)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in before.items())
    generator = torch.Generator().manual_seed(1)
    shape = (4, fields["max_position_embeddings"])
    inputs = torch.randint(0, fields["vocab_size"], shape, generator=generator)
    labels = torch.where(torch.rand(shape, generator=generator) < 0.3, inputs, -100)
    assert torch.equal(ours(input_ids=inputs).logits, theirs(input_ids=inputs).logits)
    assert adamw_losses(ours, inputs, labels, 4) == adamw_losses(theirs, inputs, labels, 4)
    after = theirs.state_dict()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in after.items())
    assert not torch.equal(after["cls.predictions.bias"], before["cls.predictions.bias"])


def test_configs_it_does_not_implement_are_built_by_transformers():
    base = {"type": "bert", "num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
            "intermediate_size": 64, "objective": "masked"}  # fmt: skip
    assert isinstance(build_model(base, 64, 8, 0, 0), bert.BertForMaskedLM)
    for other in ({"hidden_dropout_prob": 0.1}, {"hidden_act": "relu"}, {"pad_token_id": 0}):
        model = build_model({**base, **other}, 64, 8, 0, 0)
        assert not isinstance(model, bert.BertForMaskedLM), other
        assert type(model).__name__ == "BertForMaskedLM"
    with pytest.raises(InputError, match="not a multiple of the number of attention heads"):
        build_model({**base, "num_attention_heads": 3}, 64, 8, 0, 0)


def test_saved_folder_is_what_transformers_saves_and_both_load_it(data_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    fields = {**CONFIGS[0], **TRAINING, "vocab_size": 512, "eos_token_id": 0, "bos_token_id": 0}
    ours = bert.build_bert(native_bert_config(fields), seed=3)
    theirs = transformers_bert(fields, seed=3)
    save_model(ours, str(data_dir / "tokenizer"), tmp_path / "ours")
    theirs.save_pretrained(str(tmp_path / "theirs"), safe_serialization=True)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
    batch = torch.randint(0, 512, (2, 32))
    expected = ours(input_ids=batch).logits
    reloaded = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "ours")).eval()
    assert torch.equal(reloaded(input_ids=batch).logits, expected)
    again = bert.load_bert(tmp_path / "theirs")
    assert isinstance(again, bert.BertForMaskedLM)
    assert torch.equal(again(input_ids=batch).logits, expected)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        str(tmp_path / "ours"), num_labels=3
    )  # fine-tuning starts from the saved encoder
    encoder = classifier.bert.embeddings.word_embeddings.weight
    assert torch.equal(encoder, ours.bert.embeddings.word_embeddings.weight)


def test_a_folder_it_cannot_load_goes_to_transformers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "pad_token_id": 0}))
    assert bert.load_bert(tmp_path) is None
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    assert bert.load_bert(tmp_path) is None


def test_loading_draws_nothing_from_the_global_generator(tmp_path):
    fields = {**CONFIGS[1], **TRAINING}
    bert.save_bert(bert.build_bert(native_bert_config(fields), 0), tmp_path, "5.23.0")
    torch.manual_seed(11)
    bert.load_bert(tmp_path)
    after_load = torch.rand(3)
    torch.manual_seed(11)
    assert torch.equal(torch.rand(3), after_load)


def test_parameter_counts_match_transformers():
    native = {"type": "bert", "num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 4,
              "intermediate_size": 200, "objective": "masked"}  # fmt: skip
    for model in (native, {**native, "hidden_act": "relu"}):  # ours, then transformers'
        what = json.dumps({"model": model, "vocab": 1024, "train": {"seq_len": 128}})
        spec = {k: v for k, v in model.items() if k not in ("type", "objective")}
        with torch.device("meta"):
            theirs = transformers_bert(
                {**spec, "vocab_size": 1024, "max_position_embeddings": 128, "eos_token_id": 0}, 0
            )
        assert _count_params(what) == sum(p.numel() for p in theirs.parameters())
