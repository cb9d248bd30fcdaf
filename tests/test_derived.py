"""Derived candidate sources (curated, pool, rephrased) for the data-source utility experiment:
deterministic, disjoint, never holding held-out text; bad specs refused in one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixscale.config.sources import Derivation
from mixscale.data.corpus import read_documents
from mixscale.data.derived import LANES, lane, rephrase, write_derived
from mixscale.data.tokens import split_corpus
from mixscale.errors import InputError

SPECS = {
    "curated": {"derive": "books", "kind": "curated", "bytes": 20_000},
    "rephrased": {"derive": "books", "kind": "rephrased", "bytes": 30_000},
    "pool": {
        "derive": "books",
        "kind": "pool",
        "bytes": 30_000,
        "noise": ["code", "legal"],
        "noise_share": 0.5,
    },
}
VALIDATION = 30_000


def build(corpus_dir: Path, out: Path, seed: int = 0) -> dict[str, list[str]]:
    for name, spec in SPECS.items():
        write_derived(name, spec, corpus_dir, out, seed, VALIDATION)
    return {name: read_documents(out / f"{name}.jsonl") for name in SPECS}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(corpus_dir, tmp_path):
    build(corpus_dir, tmp_path / "a")
    build(corpus_dir, tmp_path / "b")
    build(corpus_dir, tmp_path / "c", seed=1)
    for name in SPECS:
        assert sha(tmp_path / "a" / f"{name}.jsonl") == sha(tmp_path / "b" / f"{name}.jsonl")
    assert sha(tmp_path / "a/curated.jsonl") != sha(tmp_path / "c/curated.jsonl")


def test_held_out_target_text_never_enters_a_source(corpus_dir, tmp_path):
    built = build(corpus_dir, tmp_path)
    held_out, training = split_corpus(str(corpus_dir / "books.jsonl"), "books", 0, VALIDATION)
    assert held_out and training
    for name, docs in built.items():
        text = "\n".join(docs)
        for doc in held_out:
            # no held-out document, nor any long passage of one, is in any source
            assert doc not in docs, name
            for start in range(0, max(1, len(doc) - 200), 400):
                assert doc[start : start + 200].lower() not in text.lower(), name
    noise_held = {
        d: split_corpus(str(corpus_dir / f"{d}.jsonl"), d, 0, VALIDATION)[0]
        for d in ("code", "legal")
    }
    assert not any(doc in built["pool"] for docs in noise_held.values() for doc in docs)


def test_sources_are_disjoint_and_sized(corpus_dir, tmp_path):
    built = build(corpus_dir, tmp_path)
    training = set(split_corpus(str(corpus_dir / "books.jsonl"), "books", 0, VALIDATION)[1])
    curated = set(built["curated"])
    assert curated <= training and all(lane(d) == LANES["curated"] for d in curated)
    pool_books = {d for d in built["pool"] if d in training}
    assert pool_books and not (pool_books & curated)
    assert all(lane(d) == LANES["pool"] for d in pool_books)
    size = sum(len(d.encode()) for d in built["curated"])
    longest = max(len(d.encode()) for d in built["curated"])
    assert 20_000 <= size < 20_000 + longest  # taken until the size is reached
    noise = [d for d in built["pool"] if d not in training]
    share = sum(len(d.encode()) for d in noise) / sum(len(d.encode()) for d in built["pool"])
    assert 0.4 < share < 0.6  # noise_share 0.5
    assert all(d.startswith("study summary.\nmain point: ") for d in built["rephrased"])


def test_rephrase_template_keeps_the_content():
    text = "Aspirin lowers fever. It was tested in 40 patients (n = 40). Results held."
    assert rephrase(text) == (
        "study summary.\nmain point: aspirin lowers fever.\ndetails:\n"
        "- it was tested in 40 patients (n = 40).\n- results held."
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"derive": "books", "kind": "copied"}, "data.sources.x.kind"),
        ({"derive": "nowhere", "kind": "curated"}, "data.sources.x.derive"),
        ({"derive": "books", "kind": "pool"}, "data.sources.x.noise"),
        ({"derive": "books", "kind": "pool", "noise": ["books"]}, "data.sources.x.noise"),
        (
            {"derive": "books", "kind": "pool", "noise": ["code"], "noise_share": 1.0},
            "data.sources.x.noise_share",
        ),
    ],
)
def test_bad_derivations_name_the_field(spec, field):
    with pytest.raises(InputError) as err:
        Derivation.from_spec("x", spec, ["books", "code"])
    assert err.value.field == field and "\n" not in err.value.one_line()


def test_derive_cli_writes_the_source_and_its_provenance(corpus_dir, tmp_path):
    spec = json.dumps(SPECS["curated"])
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mixscale", "derive", "--source", f"cur={spec}"),
            *("--corpus-dir", str(corpus_dir), "--validation-bytes", str(VALIDATION)),
            *("--out", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    provenance = json.loads((tmp_path / "cur.provenance.json").read_text())
    assert provenance["jsonl_sha256"] == sha(tmp_path / "cur.jsonl")
    assert provenance["derivation"]["kind"] == "curated"
