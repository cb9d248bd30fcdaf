"""Encoders (BERT, masked LM) on real text: deterministic masking, exact resume after kill -9,
the MLM loss by hand, saved models, evaluation-only domains, and bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEST_DOMAINS, kill_once_checkpointed, run_cli_watching_imports, tiny_settings
from mixscale.data.tokens import MASK, open_store
from mixscale.train.objectives import EVAL_MASK_SEED, IGNORE, MaskDraws, MaskedLM, Masking
from mixscale.train.validation import held_out_windows

TINY_BERT = {
    "type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
MIX = {"books": 24_000, "code": 16_000}  # legal: evaluated only


@pytest.fixture(scope="session")
def mlm_data(corpus_dir, tmp_path_factory) -> Path:
    """A tokenizer with <mask> (vocab 512) and token stores of the test domains."""
    from mixscale.data.tokens import build_store, train_tokenizer

    out = tmp_path_factory.mktemp("mlm-data")
    files = {d: str(corpus_dir / f"{d}.jsonl") for d in TEST_DOMAINS}
    train_tokenizer(
        {d: files[d] for d in MIX}, str(out / "tokenizer"), 512, 0, 30_000, mask_token=True
    )
    for d in TEST_DOMAINS:
        build_store(d, files[d], str(out / "tokenizer"), str(out / "stores" / d), 0, 30_000)
    return out


def settings_for(mlm_data: Path, **train) -> dict:
    settings = tiny_settings(mlm_data, **train)
    settings["model"] = TINY_BERT
    settings["domains"] = list(MIX)
    settings["eval_domains"] = [*MIX, "legal"]
    return settings


def train_cmd(out: Path, settings: dict) -> list[str]:
    spec = {"id": "r", "stage": "ddo", "seed": 3, "total_tokens": 40_000, "tokens": MIX}
    return [
        sys.executable,
        *("-m", "mixscale", "train", "--backend", "torch", "--eval-points", "4"),
        *("--spec", json.dumps(spec), "--settings", json.dumps(settings)),
        *("--out", str(out / "metrics.json")),
    ]


def run_train(out: Path, settings: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(train_cmd(out, settings), capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def reference(mlm_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlm-reference")
    result = run_train(out, settings_for(mlm_data))
    assert result.returncode == 0, result.stderr
    return out


def masked_objective(mlm_data: Path, rate: float = 0.15) -> MaskedLM:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mlm_data / "tokenizer")
    return MaskedLM(Masking(tok.mask_token_id, len(tok), rate, (tok.eos_token_id,)))


def test_masks_are_a_function_of_seed_and_step_alone(mlm_data):
    """The same (seed, step) masks the same positions whichever rows a process or micro-batch
    takes; another step or seed masks others; the shares are BERT's 15% and 80/10/10."""
    from mixscale.data.tokens import MixtureSampler

    stores = {d: open_store(mlm_data / "stores" / d, d) for d in MIX}
    sampler = MixtureSampler(stores, MIX, 32, 3)
    objective = masked_objective(mlm_data)
    whole = objective.batch(sampler, 5, 8, slice(None), 3)
    halves = [objective.batch(sampler, 5, 8, part, 3) for part in (slice(0, 4), slice(4, 8))]
    for k in range(2):
        assert torch.equal(torch.cat([h[k] for h in halves]), whole[k])
    again = objective.batch(sampler, 5, 8, slice(None), 3)
    assert all(torch.equal(a, b) for a, b in zip(again, whole, strict=True))
    assert not torch.equal(objective.batch(sampler, 6, 8, slice(None), 3)[1], whole[1])
    assert not torch.equal(objective.batch(sampler, 5, 8, slice(None), 4)[1], whole[1])

    tokens = np.random.default_rng(0).integers(2, 500, (400, 128))
    tokens[:, ::16] = objective.masking.keep_ids[0]  # document separators
    draws = MaskDraws.draw((1, 2, 3), tokens.shape, 512)
    inputs, labels = objective.masking.apply(tokens, draws)
    chosen = labels != IGNORE
    eligible = tokens != objective.masking.keep_ids[0]
    assert not chosen[~eligible].any()  # a separator is never predicted
    assert chosen[eligible].mean() == pytest.approx(0.15, abs=0.005)
    assert (labels[chosen] == tokens[chosen]).all()
    masked = inputs[chosen] == objective.masking.mask_id
    kept = inputs[chosen] == tokens[chosen]
    assert masked.mean() == pytest.approx(0.8, abs=0.01)
    assert kept.mean() == pytest.approx(0.1 + 0.1 / 512, abs=0.01)  # 10% kept (+ random hits)
    assert (inputs[~chosen] == tokens[~chosen]).all()


def test_mlm_loss_per_domain_matches_a_hand_computation(mlm_data):
    """evaluate() of a masked model = the mean over masked held-out positions of
    -log softmax(logits)[true token], computed here position by position."""
    from mixscale.config.training import TrainSettings
    from mixscale.train.distributed import Dist
    from mixscale.train.model import build_model
    from mixscale.train.validation import evaluate

    objective = masked_objective(mlm_data)
    model = build_model(TINY_BERT, objective.masking.vocab, 32, 0).eval()
    store = open_store(mlm_data / "stores" / "legal", "legal")
    settings = TrainSettings(seq_len=32, eval_tokens=96, eval_batch=2)
    got = evaluate(
        model, objective, {"legal": store}, settings, Dist(0, 1, 0, torch.device("cpu")), _no
    )
    total, count = 0.0, 0
    for index, window in enumerate(held_out_windows(store, 96, 32)):
        tokens = window[None, :-1]
        draws = MaskDraws.draw((EVAL_MASK_SEED, index), tokens.shape, objective.masking.vocab)
        inputs, labels = objective.masking.apply(tokens, draws)
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(inputs)).logits[0].double()
        for position in np.flatnonzero(labels[0] != IGNORE):
            log_probs = torch.log_softmax(logits[position], dim=-1)
            total -= float(log_probs[labels[0, position]])
            count += 1
    assert count > 5
    assert got["legal"] == pytest.approx(total / count, rel=1e-5)
    assert 5.0 < got["legal"] < 7.5  # about ln(513) for a model that has learnt nothing


def _no():
    return torch.autocast("cpu", enabled=False)


def test_run_trains_an_encoder_and_evaluates_a_non_training_domain(reference):
    m = json.loads((reference / "metrics.json").read_text())
    assert m["training_objective"] == "masked" and m["metric"] == "exp(MLM loss)"
    assert set(m["final_losses"]) == {"books", "code", "legal"}  # legal: evaluation only
    assert set(m["tokens"]) == set(MIX)
    first, last = m["curve"][0]["losses"], m["final_losses"]
    assert all(last[d] < first[d] for d in last)  # it learns, the held-out domain included
    assert m["objective"] == pytest.approx(np.mean(list(last.values())))


def test_a_masked_lm_job_never_imports_transformers_models_or_dynamo(mlm_data, tmp_path):
    """mixscale's own BERT (mixscale.train.bert) and AdamW (mixscale.train.eager), and the
    mask token read without transformers: 2.6 s per test-sized job instead of 6.3 s."""
    settings = settings_for(mlm_data)
    result, loaded = run_cli_watching_imports(*train_cmd(tmp_path, settings)[3:])
    assert result.returncode == 0, result.stderr[-2000:]
    assert loaded == []
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["training_objective"] == "masked" and metrics["steps"] > 0


def test_kill_9_then_resume_is_bit_identical(reference, mlm_data, tmp_path):
    """SIGKILL at two points (one fresh run each); the rerun resumes from its checkpoint and
    ends with the uninterrupted run's losses and weights, byte for byte."""
    settings = settings_for(mlm_data)
    want = json.loads((reference / "metrics.json").read_text())
    weights = (reference / "model" / "model.safetensors").read_bytes()
    for k, kill_after in enumerate((6, want["steps"] // 2 + 3)):
        out = tmp_path / f"k{k}"
        kill_once_checkpointed(train_cmd(out, settings), out, kill_after)
        result = run_train(out, settings)
        assert result.returncode == 0, result.stderr
        got = json.loads((out / "metrics.json").read_text())
        assert got["resumed_at_step"] >= kill_after
        assert got["curve"] == want["curve"] and got["final_losses"] == want["final_losses"]
        assert (out / "model" / "model.safetensors").read_bytes() == weights


def test_saved_encoder_loads_as_a_masked_lm_and_reproduces_its_loss(reference, mlm_data):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mixscale.config.training import TrainSettings
    from mixscale.train.distributed import Dist
    from mixscale.train.validation import evaluate

    model = AutoModelForMaskedLM.from_pretrained(reference / "model").eval()
    tok = AutoTokenizer.from_pretrained(reference / "model")
    assert tok.mask_token == MASK and len(tok) == model.config.vocab_size
    m = json.loads((reference / "metrics.json").read_text())
    store = open_store(mlm_data / "stores" / "legal", "legal")
    settings = TrainSettings(seq_len=32, eval_tokens=1024)
    got = evaluate(
        model,
        masked_objective(mlm_data),
        {"legal": store},
        settings,
        Dist(0, 1, 0, torch.device("cpu")),
        _no,
    )
    assert got["legal"] == pytest.approx(m["final_losses"]["legal"], abs=1e-5)


def test_doremi_proxy_runs_on_masked_lm(reference, mlm_data, tmp_path):
    """DoReMi's Group DRO loss counts only the masked positions of an encoder's batch."""
    settings = settings_for(mlm_data)
    spec = {
        "id": "p",
        "stage": "proxy",
        "seed": 3,
        "total_tokens": 40_000,
        "tokens": MIX,
        "doremi": {"reference_model": str(reference / "model")},
    }
    cmd = train_cmd(tmp_path, settings)
    cmd[cmd.index("--spec") + 1] = json.dumps(spec)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    weights = m["doremi"]["weights"]
    assert set(weights) == set(MIX) and sum(weights.values()) == pytest.approx(1.0)
    assert all(0 < w < 1 for w in weights.values())


def encoder_config(tmp_path: Path, **changes) -> Path:
    """tests/configs/bert-tiny.yaml with changes (dotted keys)."""
    import yaml

    from conftest import ROOT

    config = yaml.safe_load((ROOT / "tests/configs/bert-tiny.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def unlabelled_task(tmp_path: Path) -> str:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({"name": "mine", "kind": "single", "label": "y"}))
    (folder / "train.jsonl").write_text('{"text": "a", "y": 0}\n{"text": "b"}\n')
    (folder / "validation.jsonl").write_text('{"text": "c", "y": 1}\n')
    return str(folder)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {
                "model": {
                    "type": "gpt2",
                    "n_layer": 1,
                    "n_embd": 32,
                    "n_head": 2,
                    "objective": "masked",
                }
            },
            "model.objective",
            "gpt2 is a decoder",
        ),
        ({"model.objective": "causal"}, "model.objective", "bert is an encoder"),
        ({"train.mask_rate": 1.0}, "train.mask_rate", "0 < mask_rate < 1"),
        ({"train.mask_rate": 0}, "train.mask_rate", "0 < mask_rate < 1"),
        ({"downstream.tasks": ["embedded"]}, "downstream.tasks", "lm-eval scores causal LMs"),
        ({"finetune.tasks": ["glue/nope"]}, "finetune.tasks[0]", "unknown task 'glue/nope'"),
        ({"finetune.tasks": "UNLABELLED"}, "finetune.tasks[0].path", "line 2 has no label 'y'"),
    ],
)
def test_bad_encoder_settings_stop_before_any_job(tmp_path, cli, changes, field, words):
    if changes.get("finetune.tasks") == "UNLABELLED":
        changes = {"finetune.tasks": [{"name": "mine", "path": unlabelled_task(tmp_path)}]}
    path = encoder_config(tmp_path, **changes)
    result = cli("check", "--configfile", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f": {field}: " in lines[0] and words in lines[0]
    assert "(fix: " in lines[0]


def test_snakemake_stops_on_an_unlabelled_task_before_any_job(tmp_path):
    from conftest import run_snakemake

    tasks = [{"name": "mine", "path": unlabelled_task(tmp_path)}]
    path = encoder_config(tmp_path, **{"finetune.tasks": tasks})
    result = run_snakemake(tmp_path, "-c1", "--configfile", str(path))
    assert result.returncode == 2
    assert "finetune.tasks[0].path" in result.stderr and "give every row a label" in result.stderr
    assert not (tmp_path / "results").exists()  # nothing ran
