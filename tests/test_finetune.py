"""Encoder fine-tuning: embedded task folders from held-out text, hub-task conversion, the
fine-tuning run (a tiny BERT) and its CLI. Metrics are fractions in [0, 1] throughout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import TEST_DOMAINS
from mixscale.data.finetune_tasks import build_embedded_tasks, prepare_hub_tasks, write_hub_task
from mixscale.data.tokens import split_corpus
from mixscale.errors import InputError
from mixscale.evaluate import finetune as ft

SEED = 0
VALIDATION_BYTES = 60_000  # ~10 held-out documents per test domain: enough for 150 + 48 items
ITEMS = {"train_items": 150, "eval_items": 48, "passage_words": 32}
TINY_RUN = {"lr": 2e-3, "epochs": 3, "batch_size": 8, "max_length": 64, "threads": 1}


def corpus_files(corpus_dir: Path) -> dict[str, str]:
    return {d: str(corpus_dir / f"{d}.jsonl") for d in TEST_DOMAINS}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def tasks_dir(corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "tasks"
    build_embedded_tasks(corpus_files(corpus_dir), str(out), SEED, VALIDATION_BYTES, **ITEMS)
    return out


@pytest.fixture(scope="session")
def tiny_bert(data_dir, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (masked LM) saved with the test tokenizer + <mask>."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = tmp_path_factory.mktemp("bert") / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(data_dir / "tokenizer"))
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


# --- embedded tasks -------------------------------------------------------------------------


def test_embedded_passages_come_only_from_held_out_documents(corpus_dir, tasks_dir):
    held_out, training_text = {}, []
    for domain, path in corpus_files(corpus_dir).items():
        held_out[domain], training = split_corpus(path, domain, SEED, VALIDATION_BYTES)
        training_text += training
    training_blob = "\x00".join(training_text)
    checked = 0
    for task in ("domain", "same_document"):
        for split in ("train", "validation"):
            for row in read_jsonl(tasks_dir / task / f"{split}.jsonl"):
                texts = [row["text"]] if task == "domain" else [row["text1"], row["text2"]]
                documents = [row["document"]] if task == "domain" else row["documents"]
                for text, document in zip(texts, documents, strict=True):
                    domain, index = document.split("/")
                    assert len(text.split()) == ITEMS["passage_words"]
                    assert text in held_out[domain][int(index)]  # verbatim from that document
                    assert text not in training_blob
                    checked += 1
    assert checked == 2 * (150 + 48) + 150 + 48


def test_embedded_labels_are_balanced_and_mean_what_they_say(tasks_dir):
    spec = json.loads((tasks_dir / "domain" / "task.json").read_text())
    assert spec["kind"] == "single" and spec["num_labels"] == 3 and spec["fields"] == ["text"]
    assert spec["label_names"] == sorted(TEST_DOMAINS)
    for split, items in (("train", 150), ("validation", 48)):
        rows = read_jsonl(tasks_dir / "domain" / f"{split}.jsonl")
        assert np.bincount([r["label"] for r in rows]).tolist() == [items // 3] * 3
        assert all(spec["label_names"][r["label"]] == r["domain"] for r in rows)

        pairs = read_jsonl(tasks_dir / "same_document" / f"{split}.jsonl")
        assert np.bincount([r["label"] for r in pairs]).tolist() == [items // 2] * 2
        for r in pairs:
            first, second = r["documents"]
            assert (first == second) == (r["label"] == 1)
            assert first.split("/")[0] == second.split("/")[0] == r["domain"]  # same domain
            assert r["text1"] != r["text2"]
        domains = [r["domain"] for r in pairs if r["label"] == 0]
        assert sorted(set(domains)) == sorted(TEST_DOMAINS)  # negatives from every domain


def test_embedded_train_and_validation_use_disjoint_documents(tasks_dir):
    def documents(split: str) -> set[str]:
        found = {r["document"] for r in read_jsonl(tasks_dir / "domain" / f"{split}.jsonl")}
        for r in read_jsonl(tasks_dir / "same_document" / f"{split}.jsonl"):
            found.update(r["documents"])
        return found

    train, validation = documents("train"), documents("validation")
    assert train and validation
    assert not train & validation


def test_embedded_tasks_are_deterministic_for_a_seed(corpus_dir, tasks_dir, tmp_path):
    files = corpus_files(corpus_dir)
    build_embedded_tasks(files, str(tmp_path / "again"), SEED, VALIDATION_BYTES, **ITEMS)
    build_embedded_tasks(files, str(tmp_path / "other"), SEED + 1, VALIDATION_BYTES, **ITEMS)
    for task in ("domain", "same_document"):
        for name in ("train.jsonl", "validation.jsonl", "task.json"):
            expected = (tasks_dir / task / name).read_bytes()
            assert (tmp_path / "again" / task / name).read_bytes() == expected
        other = (tmp_path / "other" / task / "train.jsonl").read_bytes()
        assert other != (tasks_dir / task / "train.jsonl").read_bytes()  # the seed matters


def test_embedded_tasks_with_too_few_held_out_documents_fail_naming_the_field(corpus_dir, tmp_path):
    files = corpus_files(corpus_dir)
    with pytest.raises(InputError) as few_documents:
        build_embedded_tasks(files, str(tmp_path / "a"), SEED, 2_000, **ITEMS)
    message = str(few_documents.value)
    assert len(message.splitlines()) == 1
    assert "data.validation_bytes" in message and "fix:" in message

    with pytest.raises(InputError) as too_many_items:
        build_embedded_tasks(
            files,
            str(tmp_path / "b"),
            SEED,
            30_000,
            train_items=3000,
            eval_items=30,
            passage_words=32,
        )
    assert too_many_items.value.field == "finetune.embedded.train_items"
    assert "lower finetune.embedded.train_items" in str(too_many_items.value)
    assert not (tmp_path / "b").exists()  # nothing half-written


# --- fine-tuning ----------------------------------------------------------------------------


def test_finetuning_beats_the_majority_floor_and_the_untrained_model(tiny_bert, tasks_dir):
    task = str(tasks_dir / "domain")
    untrained = ft.evaluate_without_finetuning(str(tiny_bert), task, TINY_RUN)
    tuned = ft.finetune(str(tiny_bert), task, TINY_RUN)
    again = ft.finetune(str(tiny_bert), task, TINY_RUN)

    assert tuned["majority"] == pytest.approx(1 / 3)
    assert tuned["value"] == tuned["metrics"]["accuracy"]
    assert tuned["value"] >= tuned["majority"] + 0.15
    assert tuned["value"] >= untrained["value"] + 0.15
    assert (tuned["train_items"], tuned["eval_items"], tuned["epochs"]) == (150, 48, 3)
    assert tuned["steps"] == 3 * math.ceil(150 / 8)
    assert untrained["steps"] == 0 and untrained["fine_tuned"] is False
    assert again["metrics"] == tuned["metrics"]  # same seed, same numbers


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"lr": 0}, "finetune.lr"),
        ({"epochs": 0}, "finetune.epochs"),
        ({"batch_size": 2.5}, "finetune.batch_size"),
        ({"warmup": 1.0}, "finetune.warmup"),
        ({"learning_rate": 1e-4}, "finetune.learning_rate"),
        ({"device": "gpu"}, "finetune.device"),
    ],
)
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(InputError) as error:
        ft.check_settings(settings)
    assert error.value.field == field


def test_a_folder_without_task_json_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as error:
        ft.load_task(str(tmp_path))
    assert error.value.field == "task.json"


def test_cli_finetune_end_to_end(cli, tiny_bert, tasks_dir, tmp_path):
    settings = {**TINY_RUN, "max_train_items": 24, "max_eval_items": 12, "epochs": 1}
    out = tmp_path / "result.json"
    done = cli(
        "finetune", "--model", str(tiny_bert), "--task", str(tasks_dir / "same_document"),
        "--settings", json.dumps(settings), "--name", "pairs", "--label", "ddo",
        "--target", "1e8", "--run-seed", "3", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert (result["task"], result["kind"], result["name"], result["label"]) == (
        "same_document", "pair", "pairs", "ddo",
    )  # fmt: skip
    assert (result["target"], result["run_seed"]) == ("1e8", 3)
    assert (result["train_items"], result["eval_items"], result["steps"]) == (24, 12, 3)
    assert 0 <= result["value"] <= 1 and set(result["metrics"]) == {"accuracy", "matthews", "f1"}

    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "task.json").write_text((tasks_dir / "same_document" / "task.json").read_text())
    rows = read_jsonl(tasks_dir / "same_document" / "train.jsonl")[:5]
    lines = [json.dumps({k: v for k, v in r.items() if k != "label"}) for r in rows]
    (unlabelled / "train.jsonl").write_text("\n".join(lines) + "\n")
    (unlabelled / "validation.jsonl").write_text(
        (tasks_dir / "same_document" / "validation.jsonl").read_text()
    )
    failed = cli("finetune", "--model", str(tiny_bert), "--task", str(unlabelled),
                 "--out", str(tmp_path / "no.json"))  # fmt: skip
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "train.jsonl: label:" in failed.stderr and "give every row a label" in failed.stderr
    assert not (tmp_path / "no.json").exists()


def test_cli_finetune_tasks_builds_the_same_folders(cli, corpus_dir, tasks_dir, tmp_path):
    done = cli(
        "finetune-tasks", "--corpus", *corpus_files(corpus_dir).values(),
        "--seed", str(SEED), "--validation-bytes", str(VALIDATION_BYTES),
        "--train-items", "150", "--eval-items", "48", "--passage-words", "32",
        "--out", str(tmp_path / "tasks"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for task in ("domain", "same_document"):
        for name in ("train.jsonl", "validation.jsonl"):
            expected = (tasks_dir / task / name).read_bytes()
            assert (tmp_path / "tasks" / task / name).read_bytes() == expected
    summary = json.loads((tmp_path / "tasks" / "tasks.json").read_text())
    assert summary["tasks"]["same_document"]["train_items"] == 150


# --- hub tasks ------------------------------------------------------------------------------


def _rows(**columns):
    keys = list(columns)
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def test_write_hub_task_converts_glue_and_squad_columns(tmp_path):
    sst2 = _rows(sentence=["good film", "bad film"], label=[1, 0], idx=[0, 1])
    mrpc = _rows(sentence1=["a b", "c d"], sentence2=["a b .", "e f"], label=[1, 0], idx=[0, 1])
    stsb = _rows(sentence1=["a", "b"], sentence2=["a", "c"], label=[5.0, 0.4], idx=[0, 1])
    squad = _rows(
        id=["1"], title=["t"], context=["The cat sat."], question=["Who sat?"],
        answers=[{"text": ["The cat", "cat"], "answer_start": [0, 4]}],
    )  # fmt: skip
    mnli = _rows(premise=["p"], hypothesis=["h"], label=[2], idx=[0])
    write_hub_task("glue/sst2", {"train": sst2, "validation": sst2[:1]}, str(tmp_path))
    write_hub_task("glue/mrpc", {"train": mrpc, "validation": mrpc}, str(tmp_path))
    write_hub_task("glue/stsb", {"train": stsb, "validation": stsb}, str(tmp_path))
    write_hub_task("squad", {"train": squad, "validation": squad}, str(tmp_path))
    summary = write_hub_task(
        "glue/mnli", {"train": mnli, "validation_matched": mnli, "test_matched": mnli},
        str(tmp_path),
    )  # fmt: skip
    assert summary["eval_items"] == 1

    def spec(name):
        return json.loads((tmp_path / name / "task.json").read_text())

    assert {k: spec("glue-sst2")[k] for k in ("kind", "num_labels", "metric", "fields")} == {
        "kind": "single", "num_labels": 2, "metric": "accuracy", "fields": ["sentence"],
    }  # fmt: skip
    assert (spec("glue-mrpc")["kind"], spec("glue-mrpc")["metric"]) == ("pair", "f1")
    assert spec("glue-mrpc")["fields"] == ["sentence1", "sentence2"]
    assert (spec("glue-stsb")["kind"], spec("glue-stsb")["num_labels"]) == ("regression", 1)
    assert spec("glue-stsb")["metric"] == "pearson"
    assert (spec("glue-mnli")["num_labels"], spec("glue-mnli")["fields"]) == (
        3, ["premise", "hypothesis"],
    )  # fmt: skip
    assert spec("squad") == {**spec("squad"), "kind": "span", "metric": "squad",
                             "fields": ["question", "context"], "label": "answers"}  # fmt: skip
    assert "num_labels" not in spec("squad")
    assert read_jsonl(tmp_path / "glue-sst2" / "validation.jsonl") == [
        {"sentence": "good film", "label": 1}
    ]
    assert read_jsonl(tmp_path / "glue-stsb" / "train.jsonl")[1]["label"] == 0.4
    assert read_jsonl(tmp_path / "squad" / "train.jsonl")[0]["answers"] == squad[0]["answers"]
    for name in ("glue-sst2", "glue-mrpc", "glue-stsb", "glue-mnli", "squad"):
        ft.load_task(str(tmp_path / name))  # each folder reads back as a task
        ft.read_rows(ft.load_task(str(tmp_path / name)), "validation", None)


def test_write_hub_task_rejects_unknown_names_and_missing_columns(tmp_path):
    with pytest.raises(InputError) as unknown:
        write_hub_task("glue/wnli", {"train": [], "validation": []}, str(tmp_path))
    assert "glue/cola" in str(unknown.value) and "squad" in str(unknown.value)
    with pytest.raises(InputError) as missing:
        write_hub_task(
            "glue/sst2", {"train": [{"text": "x", "label": 1}], "validation": []}, str(tmp_path)
        )
    assert missing.value.field == "sentence"
    assert not (tmp_path / "glue-sst2").exists()


def test_prepare_hub_tasks_fails_in_one_line_when_the_hub_is_unreachable(tmp_path):
    with pytest.raises(InputError) as unknown:
        prepare_hub_tasks(["glue/sst2", "glue/nope"], str(tmp_path))
    assert "glue/nope" in str(unknown.value)
    with pytest.raises(InputError) as offline:  # conftest sets HF_DATASETS_OFFLINE=1
        prepare_hub_tasks(["glue/sst2"], str(tmp_path / "out"), str(tmp_path / "cache"))
    assert len(str(offline.value).splitlines()) == 1
    assert "nyu-mll/glue" in str(offline.value) and "hub is reachable" in str(offline.value)


# --- span tasks and SQuAD's metrics ---------------------------------------------------------

WORDS = [
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "bird",
    "tree",
    "lake",
    "stone",
    "river",
    "hill",
    "road",
]


def _span_rows(count: int, rng: np.random.Generator) -> list[dict]:
    """Contexts of random words; the answer is the word after "key"."""
    rows = []
    for _ in range(count):
        words = [str(w) for w in rng.choice(WORDS, size=12)]
        at = int(rng.integers(0, 11))
        words[at] = "key"
        context = " ".join(words)
        start = len(" ".join(words[: at + 1])) + 1
        answer = words[at + 1]
        assert context[start : start + len(answer)] == answer
        rows.append({"question": "which word follows key?", "context": context,
                     "answers": {"text": [answer], "answer_start": [start]}})  # fmt: skip
    return rows


def test_span_finetuning_runs_and_skips_answers_cut_away(tiny_bert, tmp_path):
    rng = np.random.default_rng(0)
    train, validation = _span_rows(30, rng), _span_rows(10, rng)
    far = " ".join(["lake"] * 200) + " key dog"  # the answer lies beyond 64 tokens
    train.append({"question": "which word follows key?", "context": far,
                  "answers": {"text": ["dog"], "answer_start": [len(far) - 3]}})  # fmt: skip
    write_hub_task("squad", {"train": train, "validation": validation}, str(tmp_path))
    result = ft.finetune(str(tiny_bert), str(tmp_path / "squad"), TINY_RUN)
    assert (result["kind"], result["metric"], result["majority"]) == ("span", "squad", 0.0)
    assert (result["train_items"], result["skipped_train_items"]) == (30, 1)
    assert result["eval_items"] == 10
    assert set(result["metrics"]) == {"exact_match", "f1"}
    assert 0 <= result["metrics"]["exact_match"] <= result["metrics"]["f1"] <= 1
    assert result["value"] == result["metrics"]["f1"]


def test_best_span_respects_order_and_length_and_reads_the_text(monkeypatch):
    import torch

    context = "the cat sat on the mat"
    offsets = [(0, 3), (3, 7), (7, 11), (11, 14), (14, 18), (18, 22)]
    example = ft.Example(ids=[0] * 9, types=[0] * 9, context_start=2, offsets=offsets)
    start, end = torch.full((9,), -5.0), torch.full((9,), -5.0)
    start[2 + 1], end[2 + 2] = 3.0, 3.0  # "cat sat": 6
    end[2 + 0] = 9.0  # start 1, end 0 would score 12, but ends before it starts: not allowed
    start[0] = end[0] = 50.0  # the CLS position is outside the context: never predicted
    assert ft._best_span(start, end, example) == (1, 2)
    assert ft.span_text(context, offsets, (1, 2)) == "cat sat"

    end[2 + 2], end[2 + 5] = -5.0, 4.0  # "cat sat on the mat" (5 tokens) now scores 7
    assert ft._best_span(start, end, example) == (1, 5)
    monkeypatch.setattr(ft, "MAX_ANSWER_TOKENS", 3)
    assert ft._best_span(start, end, example) == (0, 0)  # 4: the best of at most 3 tokens


def test_squad_normalisation_exact_match_and_f1():
    assert ft.normalize_answer("The  Cat's hat!") == "cats hat"
    assert ft.normalize_answer("An apple, a day") == "apple day"
    assert ft.exact_match("An apple.", "apple") == 1.0
    assert ft.exact_match("apples", "apple") == 0.0
    assert ft.answer_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 1, R 2/3
    assert ft.answer_f1("cat cat", "cat") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert ft.answer_f1("dog", "cat") == 0.0
    assert ft.answer_f1("the", "a") == 1.0  # both normalise to nothing
    assert ft.answer_f1("the", "cat") == 0.0
    metrics = ft.squad_metrics(["cat sat", "dog"], [["the cat sat on", "cat"], ["bird"]])
    assert metrics == {"exact_match": 0.0, "f1": pytest.approx(0.4)}  # (max(0.8, 2/3) + 0) / 2
    assert ft.squad_metrics(["Cat"], [["dog", "the cat"]]) == {"exact_match": 1.0, "f1": 1.0}


def test_classification_and_regression_metrics_match_hand_values():
    metrics = ft.classification_metrics([1, 1, 0, 0], [1, 0, 0, 0], 2)
    assert metrics["accuracy"] == 0.75
    assert metrics["f1"] == pytest.approx(2 / 3)  # TP 1, FP 1, FN 0
    assert metrics["matthews"] == pytest.approx(2 / math.sqrt(12))  # (1*2 - 1*0)/sqrt(2*1*3*2)
    assert ft.classification_metrics([0, 0, 0], [0, 1, 2], 3)["matthews"] == 0.0  # constant
    three = ft.classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], 3)
    assert three["matthews"] == pytest.approx(
        (3 * 4 - (1 * 1 + 2 * 1 + 1 * 2)) / math.sqrt((16 - (1 + 1 + 4)) * (16 - (1 + 4 + 1)))
    )
    assert "f1" not in three
    assert ft.regression_metrics([1, 2, 3], [2, 4, 7])["spearman"] == pytest.approx(1.0)
    assert ft.regression_metrics([1, 2, 3], [2, 4, 6])["pearson"] == pytest.approx(1.0)
    assert ft.regression_metrics([1, 1, 1], [2, 4, 6]) == {"pearson": None, "spearman": None}


def test_regression_finetuning_reports_correlations(tiny_bert, tmp_path):
    rng = np.random.default_rng(1)
    rows = [
        {"sentence1": " ".join(rng.choice(WORDS, 5)), "sentence2": " ".join(rng.choice(WORDS, 5)),
         "label": float(rng.uniform(0, 5))}
        for _ in range(24)
    ]  # fmt: skip
    write_hub_task("glue/stsb", {"train": rows[:16], "validation": rows[16:]}, str(tmp_path))
    result = ft.finetune(str(tiny_bert), str(tmp_path / "glue-stsb"), TINY_RUN)
    assert (result["kind"], result["metric"], result["majority"]) == ("regression", "pearson", None)
    assert set(result["metrics"]) == {"pearson", "spearman"}
    assert result["value"] == result["metrics"]["pearson"]
    assert result["value"] is None or -1 <= result["value"] <= 1
