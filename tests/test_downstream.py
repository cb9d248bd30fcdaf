"""Downstream evaluation: embedded tasks built from held-out text, scored through the real
lm-eval call on a saved model, offline with the network disabled; tables and budget."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import TEST_DOMAINS, TINY_MODEL, with_defaults
from mixscale.config.tasks import KINDS, TaskBuild, TaskEntry, task_entries
from mixscale.data.tasks import build_tasks, continuation_items
from mixscale.data.tokens import split_corpus
from mixscale.errors import InputError
from mixscale.evaluate.downstream import downstream_tables, evaluate

SMALL = TaskBuild(items=30, choices=4, context_words=8, continuation_words=4, seed=0)


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails: the evaluation must not need the internet."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hf_env(monkeypatch):
    """evaluate() points the HF caches at the job's folder; undo that after the test."""
    import datasets.config

    for key in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "1"))
    for attr in ("HF_DATASETS_CACHE", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setattr(datasets.config, attr, getattr(datasets.config, attr))


@pytest.fixture(scope="session")
def tasks_dir(corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tasks") / "tasks"
    files = [str(corpus_dir / f"{d}.jsonl") for d in TEST_DOMAINS]
    build_tasks(files, str(out), SMALL, 0, 30_000)
    return out


@pytest.fixture(scope="session")
def model_dir(data_dir, tmp_path_factory) -> Path:
    """The tiny GPT-2 as initialised, with a context long enough for the items."""
    from mixscale.train.model import save_initial_model

    out = tmp_path_factory.mktemp("model") / "model"
    save_initial_model(
        str(data_dir / "stores"), str(data_dir / "tokenizer"), TINY_MODEL, 128, 0, str(out)
    )
    return out


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_items_are_true_continuations_of_held_out_documents(corpus_dir):
    path = str(corpus_dir / "books.jsonl")
    docs, _ = split_corpus(path, "books", 0, 30_000)
    texts = [" ".join(d.split()) for d in docs]
    for kind in KINDS:
        items = continuation_items(docs, SMALL, 7, kind)
        assert len(items) == SMALL.items
        assert items == continuation_items(docs, SMALL, 7, kind)  # deterministic
        assert items != continuation_items(docs, SMALL, 8, kind)
        for item in items:
            answer = item["choices"][item["label"]]
            assert f"{item['context']} {answer}" in texts[item["document"]]
            assert len(set(item["choices"])) == SMALL.choices
            assert all(len(c.split()) == SMALL.continuation_words for c in item["choices"])
            for choice in item["choices"]:
                if choice == answer:
                    continue
                if kind == "order":  # the same words in another order
                    assert sorted(choice.split()) == sorted(answer.split())
                else:  # a span of another held-out document
                    assert choice not in texts[item["document"]]
                    assert any(choice in t for t in texts)
        labels = np.bincount([i["label"] for i in items], minlength=SMALL.choices)
        assert labels.min() > 0  # the answer is not always in the same place


def test_tasks_hold_only_held_out_text(corpus_dir, data_dir, tasks_dir):
    """No item comes from a document the tokenizer or the model trained on."""
    manifest = json.loads((tasks_dir / "tasks.json").read_text())
    assert set(manifest["tasks"]) == {f"mixscale_{k}_{d}" for k in KINDS for d in TEST_DOMAINS}
    for domain in TEST_DOMAINS:
        _, training = split_corpus(str(corpus_dir / f"{domain}.jsonl"), domain, 0, 30_000)
        train_text = "\n".join(" ".join(d.split()) for d in training)
        for kind in KINDS:
            for item in read_items(tasks_dir / f"mixscale_{kind}_{domain}.jsonl"):
                passage = f" {item['context']} {item['choices'][item['label']]} "
                assert passage not in train_text
    assert manifest["tasks"]["mixscale_next_legal"]["skipped_seen_in_training"] > 0  # licences
    for domain in TEST_DOMAINS:
        yaml_text = (tasks_dir / f"mixscale_next_{domain}.yaml").read_text()
        assert str(tasks_dir.resolve() / f"mixscale_next_{domain}.jsonl") in yaml_text


def test_too_little_held_out_text_names_the_fix(corpus_dir, tmp_path):
    with pytest.raises(InputError, match="validation_bytes"):
        build_tasks([str(corpus_dir / "books.jsonl")], str(tmp_path / "t"), SMALL, 0, 500)
    assert not (tmp_path / "t").exists()


def own_loglikelihood_accuracy(model_dir: Path, items: list[dict]) -> float:
    """The same multiple-choice decision computed here, without lm-eval: argmax over choices of
    sum log p(choice tokens | context), the choice encoded after a space as lm-eval does."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    correct = 0
    for item in items:
        context = tok(item["context"])["input_ids"]
        scores = []
        for choice in item["choices"]:
            whole = tok(item["context"] + " " + choice)["input_ids"]
            ids = torch.tensor([whole])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
            target = whole[len(context) :]
            positions = range(len(context) - 1, len(whole) - 1)
            scores.append(sum(logp[p, t].item() for p, t in zip(positions, target, strict=True)))
        correct += int(np.argmax(scores) == item["label"])
    return correct / len(items)


def test_lm_eval_scores_a_generated_task_offline(
    model_dir, tasks_dir, tmp_path, no_network, hf_env
):
    result = evaluate(
        str(model_dir),
        TaskEntry("embedded"),
        include_path=str(tasks_dir),
        limit=None,
        batch_size=8,
        cache_dir=str(tmp_path / "hf"),
    )
    assert set(result["tasks"]) == {f"mixscale_{k}_{d}" for k in KINDS for d in TEST_DOMAINS}
    assert (tmp_path / "hf" / "datasets").is_dir()  # caches stay inside the job's folder
    name = "mixscale_next_books"
    scores = result["tasks"][name]
    assert scores["samples"] == SMALL.items and scores["chance"] == 0.25
    mine = own_loglikelihood_accuracy(model_dir, read_items(tasks_dir / f"{name}.jsonl"))
    assert scores["acc"] == pytest.approx(mine, abs=1e-9)


def test_unknown_task_fails_with_one_line(model_dir, tasks_dir, tmp_path, no_network, hf_env):
    with pytest.raises(InputError, match="'no_such_task' is not an lm-eval task"):
        evaluate(
            str(model_dir),
            TaskEntry("no_such_task"),
            include_path=str(tasks_dir),
            cache_dir=str(tmp_path / "hf"),
        )


def test_missing_dataset_names_the_task_and_the_offline_fix(
    model_dir, tmp_path, no_network, hf_env
):
    """A real lm-eval task whose dataset is not in the (empty) cache, with the hub off."""
    with pytest.raises(InputError) as err:
        evaluate(str(model_dir), TaskEntry("arc_easy"), limit=4, cache_dir=str(tmp_path / "hf"))
    text = err.value.one_line()
    assert "arc_easy" in text and "dataset not available" in text and "offline" in text
    assert "\n" not in text


def result(label, target, seed, scores, shots=0, metric="acc"):
    return {
        "label": label,
        "target": target,
        "run_seed": seed,
        "shots": shots,
        "metric": metric,
        "tasks": {
            name: {"acc": v, "acc_stderr": 0.03, "acc_norm": v / 2, "chance": 0.25}
            for name, v in scores.items()
        },
    }


def test_tables_average_seeds_and_show_the_untrained_floor_at_every_target(tmp_path):
    files = {
        "a": result("uniform", "1000", 0, {"mixscale_order_x": 0.6, "piqa": 0.5}),
        "b": result("uniform", "1000", 1, {"mixscale_order_x": 0.8, "piqa": 0.7}),
        "c": result("autoscale", "1000", 0, {"mixscale_order_x": 0.9, "piqa": 0.4}),
        "d": result("uniform", "3000", 0, {"mixscale_order_x": 0.9}),
        "e": result("untrained", None, None, {"mixscale_order_x": 0.2, "piqa": 0.3}),
        "f": result("autoscale", "1000", 0, {"hellaswag": 0.3}, shots=10, metric="acc_norm"),
    }
    paths = []
    for name, data in files.items():
        paths.append(str(tmp_path / f"{name}.json"))
        Path(paths[-1]).write_text(json.dumps(data))
    tables = downstream_tables(paths)
    assert list(tables) == ["1000", "3000"]
    small = tables["1000"]
    assert small["columns"] == ["hellaswag (10-shot)", "order_x", "piqa"]
    assert small["rows"]["uniform"]["scores"]["order_x"] == pytest.approx(0.7)
    assert small["rows"]["uniform"]["stderr"]["order_x"] == pytest.approx(0.03 / np.sqrt(2))
    assert small["rows"]["autoscale"]["scores"]["hellaswag (10-shot)"] == pytest.approx(0.15)
    assert small["rows"]["autoscale"]["average"] == pytest.approx((0.15 + 0.9 + 0.4) / 3)
    assert small["rows"]["uniform"]["average"] is None  # hellaswag missing: no average
    assert list(small["rows"])[-1] == "untrained"
    assert "untrained" in tables["3000"]["rows"]


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        (["piqa", "piqa"], "downstream.tasks"),
        ([{"shots": 2}], "downstream.tasks[0]"),
        ([{"name": "a/b"}], "downstream.tasks[0].name"),
        ([{"name": "piqa", "metric": "f1 score"}], "downstream.tasks[0].metric"),
    ],
)
def test_bad_task_lists_name_the_field(tasks, field):
    listed = SimpleNamespace(downstream=SimpleNamespace(tasks=tasks))  # the entries alone
    with pytest.raises(InputError) as err:
        task_entries(listed)
    assert f"config: {field}" in err.value.one_line()


def test_budget_prices_evaluation():
    from mixscale.plan.budget import (
        TASK_SIZES,
        budget_table,
        downstream_resources,
        downstream_tokens,
    )

    config = with_defaults(
        {
            "experiment": "x",
            "backend": "torch",
            "domains": ["a", "b"],
            "data": {"sources": {"a": "builtin", "b": "builtin"}},
            "model": {"type": "gpt2", "params": 1.0e9, "proxy_params": 1.0e8},
            "accelerator": {"peak_tflops": 100, "utilisation": 0.5, "gpus_per_run": 8},
            "ddo": {"scales": [{"name": "s", "tokens": 1.0e8}, {"name": "s2", "tokens": 3.0e8}]},
            "autoscale": {"targets": [1.0e9]},
            "verify": {"methods": ["uniform"], "seeds": 2},
            "downstream": {"tasks": [{"name": "hellaswag", "shots": 10}, "piqa"]},
        }
    )
    hellaswag = TaskEntry("hellaswag", 10)
    items, choices, tokens = TASK_SIZES["hellaswag"]
    assert downstream_tokens(config, hellaswag) == items * choices * tokens * 11
    stage = budget_table(config)["stages"]["downstream (lm-eval)"]
    assert stage["runs"] == (2 + 1) * 2  # two seeds + the untrained model, two entries
    expected = 3 * 2 * 1.0e9 * (downstream_tokens(config, hellaswag) + 1838 * 2 * 60)
    assert stage["flops"] == pytest.approx(expected)
    first, second = (downstream_resources(config, hellaswag, a)["runtime"] for a in (1, 2))
    assert second > first >= 10
