"""Candidate data sources made from the corpus itself, for the data-source utility experiment.

A team deciding which data to buy for a target domain faces sources of different kinds; these
builders make realistic stand-ins from a domain's text without a hub (config
``data.sources.<name>: {derive: <domain>, kind: ...}``):

- ``curated``: a small, clean in-domain set (``bytes`` of the target's text). Annealing budgets
  beyond its size repeat it (several epochs): its value per token falls as the budget grows.
- ``pool``: a larger, noisier in-domain pool: ``bytes`` of the target's text interleaved with
  other domains' documents (``noise``), which make up ``noise_share`` of the pool's text, as a
  weak domain classifier's crawl would.
- ``rephrased``: the target's text rewritten by a fixed template (``rephrase``): each document
  becomes a "study summary" with its first sentence as the main point and the rest as bullet
  points, lower-cased; the content stays, the form changes, as synthetic rephrasings do.

Every source is built from the target domain's *training* documents only (the held-out block
that measures the target is split off first, exactly as the token store splits it), and the
three kinds draw from disjoint thirds of those documents (a document's lane is fixed by a hash
of its text), so no two sources share a document and none holds held-out text. Everything is a
function of the documents and the seed: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.config.sources import KINDS, Derivation
from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text, protect_inputs, reading_inputs, write_json

LANES = {kind: k for k, kind in enumerate(KINDS)}  # a document's lane: which kind may use it


def lane(text: str) -> int:
    """Which kind may use this document: a hash of its text, so the same document always falls
    in the same lane, whatever else is in the corpus."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") % len(KINDS)


def take_bytes(docs: list[str], limit: float, seed: int) -> list[str]:
    """Documents in a seeded order until ``limit`` bytes of UTF-8 (all of them without a limit)."""
    order = np.random.default_rng(seed).permutation(len(docs))
    out, size = [], 0
    for i in order:
        if limit and size >= limit:
            break
        out.append(docs[i])
        size += len(docs[i].encode("utf-8"))
    return out


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def rephrase(text: str) -> str:
    """The fixed template: a "study summary" whose main point is the first sentence and whose
    details are the other sentences as bullet points, lower-cased."""
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
    if not sentences:
        return ""
    lines = ["study summary.", f"main point: {sentences[0].lower()}"]
    if len(sentences) > 1:
        lines.append("details:")
        lines += [f"- {s.lower()}" for s in sentences[1:]]
    return "\n".join(lines)


def derive_documents(
    derivation: Derivation,
    parent_training: list[str],
    noise_training: dict[str, list[str]],
    seed: int,
) -> list[str]:
    """The derived source's documents from the parent's and the noise domains' training
    documents (held-out blocks already removed)."""
    mine = [d for d in parent_training if lane(d) == LANES[derivation.kind]]
    picked = take_bytes(mine, derivation.bytes, seed)
    if not picked:
        raise InputError(
            "config",
            f"data.sources.{derivation.name}",
            f"no {derivation.parent} training text left for it",
            "give the parent domain more text",
        )
    if derivation.kind == "curated":
        return picked
    if derivation.kind == "rephrased":
        return [r for r in (rephrase(d) for d in picked) if r]
    own = sum(len(d.encode("utf-8")) for d in picked)
    wanted = own * derivation.noise_share / (1 - derivation.noise_share)
    per_domain = wanted / len(derivation.noise)
    noise = [
        doc
        for k, domain in enumerate(derivation.noise)
        for doc in take_bytes(noise_training[domain], per_domain, seed + 1 + k)
    ]
    pool = picked + noise
    order = np.random.default_rng(seed + 97).permutation(len(pool))
    return [pool[i] for i in order]


@reading_inputs
def write_derived(
    name: str,
    spec: dict[str, Any],
    corpus_dir: Path,
    out_dir: Path,
    seed: int,
    validation_bytes: int,
) -> dict[str, Any]:
    """``<out_dir>/<name>.jsonl`` and its provenance: the derived source, from the corpus files
    of its parent and noise domains, each split into held-out and training documents as its
    token store is (so held-out text never enters a source)."""
    from mixscale.data.tokens import split_corpus

    domains = [p.stem for p in corpus_dir.glob("*.jsonl")]
    derivation = Derivation.from_spec(name, spec, domains)

    def training(domain: str) -> list[str]:
        path = corpus_dir / f"{domain}.jsonl"
        protect_inputs([path])  # <name>.jsonl may not land on a file it is derived from
        return split_corpus(str(path), domain, seed, validation_bytes)[1]

    noise = {d: training(d) for d in derivation.noise}
    docs = derive_documents(derivation, training(derivation.parent), noise, seed)
    lines = [
        json.dumps({"id": f"{name}/{i:06d}", "text": d}, ensure_ascii=False)
        for i, d in enumerate(docs)
    ]
    body = "\n".join(lines) + "\n"
    provenance = {
        "domain": name,
        "kind": "derived",
        "derivation": {**spec, "name": name},
        "documents": len(docs),
        "bytes": len(body.encode("utf-8")),
        "seed": seed,
        "held_out_removed": {"validation_bytes": validation_bytes},
        "jsonl_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
    }
    atomic_write_text(out_dir / f"{name}.jsonl", body)
    write_json(out_dir / f"{name}.provenance.json", provenance)
    return provenance
