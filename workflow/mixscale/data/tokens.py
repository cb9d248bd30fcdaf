"""Tokenize once, sample many: tokenizer, per-domain token stores, exact mixture sampling.

A domain's documents are shuffled once (seeded). The leading documents, up to
``validation_bytes`` of text, form the held-out validation block; the rest are the training
order. The tokenizer is trained on the training documents only, and a token store holds
``train.bin`` and ``val.bin`` (uint16 when the vocabulary fits) plus ``meta.json``.

A mixture asks for n_i tokens of domain i. It gets the first n_i tokens of the domain's
training order, cut into sequences of ``seq_len`` tokens; perturbed runs therefore share their
data with the base run and differ only where they should. The order in which the sequences are
visited is a seeded permutation, so the batch at any step is a function of (seed, step) alone and
a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.data.corpus import read_documents
from mixscale.errors import InputError
from mixscale.fileio import atomic_folder, atomic_write_text, write_json
from mixscale.kinds import TOKEN_STORE
from mixscale.shapes import read_kind

EOS = "<|endoftext|>"
MASK = "<mask>"  # masked-LM encoders only: a causal experiment's vocabulary stays as it was
ENCODE_CHUNK_DOCS = 2000
OWN_KIND = "byte-level BPE"  # mixscale_tokenizer.json's kind for a tokenizer trained here


def split_documents(
    docs: list[str], seed: int, validation_bytes: int
) -> tuple[list[str], list[str]]:
    """(validation, training) documents: a seeded shuffle, the leading ones held out."""
    order = np.random.default_rng(seed).permutation(len(docs))
    cut, size = 0, 0
    while cut < len(order) and size < validation_bytes:
        size += len(docs[order[cut]].encode("utf-8"))
        cut += 1
    validation = [docs[i] for i in order[:cut]]
    training = [docs[i] for i in order[cut:]]
    return validation, training


# ---------------------------------------------------------------------------------------------
# tokenizer


def split_corpus(
    corpus_path: str, domain: str, seed: int, validation_bytes: int
) -> tuple[list[str], list[str]]:
    """(held-out, training) documents of a domain, exactly as the store and tokenizer split them."""
    docs = read_documents(corpus_path)
    return split_documents(docs, _domain_seed(seed, domain), validation_bytes)


def train_tokenizer(
    corpus_files: dict[str, str],
    out_dir: str,
    vocab_size: int,
    seed: int,
    validation_bytes: int,
    mask_token: bool = False,
) -> dict[str, Any]:
    """A byte-level BPE trained on the training documents of the given domains (with a mask
    token for masked-LM encoders)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise InputError(
            "config", "data.tokenizer.vocab_size", f"{vocab_size} is too small", "use >= 300"
        )

    def training_text():
        for domain, path in corpus_files.items():
            _, training = split_documents(
                read_documents(path), _domain_seed(seed, domain), validation_bytes
            )
            yield from training

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, MASK] if mask_token else [EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        **({"mask_token": MASK} if mask_token else {}),
    )
    fast.model_max_length = 1 << 30
    info = {"vocab_size": len(fast), "domains": list(corpus_files), "kind": OWN_KIND}
    with atomic_folder(out_dir) as tmp:
        fast.save_pretrained(str(tmp))
        write_json(tmp / "mixscale_tokenizer.json", info)
    return info


def pretrained_tokenizer(name: str, out_dir: str, mask_token: bool = False) -> dict[str, Any]:
    """A named tokenizer (hub or local folder; on a cluster), saved as the experiment's own.
    Encoders' tokenizers (BERT's) separate documents with [SEP] where decoders' use EOS."""
    tokenizer = load_tokenizer(name, field="data.tokenizer.pretrained")
    if tokenizer.eos_token_id is None and tokenizer.sep_token_id is None:
        raise InputError(
            name, "eos_token", "the tokenizer has no EOS or SEP token", "pick another one"
        )
    if mask_token and tokenizer.mask_token_id is None:
        raise InputError(
            "config",
            "data.tokenizer.pretrained",
            f"{name} has no mask token, which masked LM needs",
            "pick an encoder's tokenizer (e.g. bert-base-uncased)",
        )
    info = {"vocab_size": len(tokenizer), "pretrained": name, "kind": "pretrained"}
    with atomic_folder(out_dir) as tmp:
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "mixscale_tokenizer.json", info)
    return info


def load_tokenizer(name_or_dir: str, field: str = "tokenizer"):
    from transformers import AutoTokenizer

    path = Path(name_or_dir)
    if path.exists() and not (path / "tokenizer.json").is_file():
        raise InputError(
            str(path), "tokenizer", "no tokenizer.json in the folder", "train it first"
        )
    try:
        return AutoTokenizer.from_pretrained(name_or_dir)
    except OSError as exc:  # not on the hub, the hub unreachable (offline node), not in cache
        raise InputError(
            "config" if field != "tokenizer" else name_or_dir,
            field,
            f"could not load '{name_or_dir}': {first_line(exc)}",
            "give a local folder holding tokenizer.json, or fetch the tokenizer once where the "
            "hub is reachable (it is cached; HF_HUB_OFFLINE=1 then reads the cache)",
        ) from exc


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _domain_seed(seed: int, domain: str) -> int:
    """Each domain's shuffle has its own stream, stable when domains are added or removed."""
    return int.from_bytes(domain.encode("utf-8"), "little") % (2**31) ^ seed


# ---------------------------------------------------------------------------------------------
# token stores


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def store_encoder(tokenizer_dir: str):
    """(Rust tokenizer, vocabulary size, document separator id) of a tokenizer folder."""
    own = _own_tokenizer(tokenizer_dir)
    if own is not None:
        return own, own.get_vocab_size(with_added_tokens=True), own.token_to_id(EOS)
    tokenizer = load_tokenizer(tokenizer_dir)
    return tokenizer.backend_tokenizer, len(tokenizer), document_separator(tokenizer)


def mask_token_id(tokenizer_dir: str) -> int | None:
    """The mask token's id (masked LM)."""
    own = _own_tokenizer(tokenizer_dir)
    return own.token_to_id(MASK) if own is not None else load_tokenizer(tokenizer_dir).mask_token_id


def _own_tokenizer(tokenizer_dir: str):
    """mixscale's own byte-level BPE, read with the ``tokenizers`` library alone, or None.

    Loading it through transformers costs 1.2 s of imports per job and gives the same ids (its
    fast tokenizer wraps this very object; tests/test_data.py compares the stores byte for
    byte). A pretrained tokenizer goes through transformers, which may adjust it on load."""
    own = Path(tokenizer_dir) / "mixscale_tokenizer.json"
    try:
        kind = json.loads(own.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    if kind != OWN_KIND or not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))


def _encode_to_file(encoder, eos: int, docs: list[str], path: Path, dtype: np.dtype) -> int:
    """Encode documents (Rust batch encoder, all cores), each followed by EOS; append to path."""
    count = 0
    with path.open("wb") as fh:
        for start in range(0, len(docs), ENCODE_CHUNK_DOCS):
            encodings = encoder.encode_batch(
                docs[start : start + ENCODE_CHUNK_DOCS], add_special_tokens=False
            )
            ids = [np.asarray([*e.ids, eos], dtype=dtype) for e in encodings]
            block = np.concatenate(ids) if ids else np.zeros(0, dtype)
            block.tofile(fh)
            count += block.size
    return count


def document_separator(tokenizer) -> int:
    """The token between documents: EOS (decoders' tokenizers), or SEP (BERT's, which has no
    EOS)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise InputError("tokenizer", "eos_token", "missing", "use a tokenizer with an EOS token")


def build_store(
    domain: str,
    corpus_file: str,
    tokenizer_dir: str,
    out_dir: str,
    seed: int,
    validation_bytes: int,
) -> dict[str, Any]:
    """``<out_dir>/{train.bin,val.bin,meta.json}`` for one domain; the folder appears atomically."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    docs = read_documents(corpus_file)
    validation, training = split_documents(docs, _domain_seed(seed, domain), validation_bytes)
    if not training:
        raise InputError(
            corpus_file,
            "documents",
            f"all {len(docs)} documents are held out for validation",
            "lower data.validation_bytes or add text to the domain",
        )
    encoder, vocab_size, separator = store_encoder(tokenizer_dir)
    dtype = token_dtype(vocab_size)
    with atomic_folder(out_dir) as tmp:
        meta = {
            "domain": domain,
            "dtype": dtype.name,
            "vocab_size": vocab_size,
            "eos_id": separator,
            "seed": seed,
            "validation_bytes": validation_bytes,
            "train_documents": len(training),
            "val_documents": len(validation),
            "train_tokens": _encode_to_file(encoder, separator, training, tmp / "train.bin", dtype),
            "val_tokens": _encode_to_file(encoder, separator, validation, tmp / "val.bin", dtype),
            "train_bytes": sum(len(d.encode("utf-8")) for d in training),
            "tokenizer": str(tokenizer_dir),
            "corpus": str(corpus_file),
        }
        meta["bytes_per_token"] = meta["train_bytes"] / max(1, meta["train_tokens"])
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass
class TokenStore:
    domain: str
    train: np.ndarray
    val: np.ndarray
    meta: dict[str, Any]


def open_store(path: str | Path, domain: str | None = None) -> TokenStore:
    root = Path(path)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise InputError(
            str(root), "meta.json", "not a token store", "build it with `mixscale tokens`"
        )
    meta = read_kind(meta_path, TOKEN_STORE)
    dtype = np.dtype(meta["dtype"])

    def array(name: str) -> np.ndarray:
        file = root / name
        if file.stat().st_size == 0:
            return np.zeros(0, dtype)
        return np.memmap(file, dtype=dtype, mode="r")

    return TokenStore(domain or meta["domain"], array("train.bin"), array("val.bin"), meta)


# ---------------------------------------------------------------------------------------------
# mixtures


class MixtureSampler:
    """The sequences of one run's mixture and the batch at every step.

    Domain i contributes k_i = round(n_i / seq_len) sequences: sequence j is the window
    [j L, j L + L + 1) of its training order (inputs and shifted targets). With repetition
    allowed a domain asked for more than it holds wraps around; its epochs are reported.
    ``skip`` (tokens per domain) starts a domain's windows after tokens an earlier stage used:
    an annealing run then reads fresh text, not what its base model was trained on.
    """

    def __init__(
        self,
        stores: dict[str, TokenStore],
        tokens: dict[str, float],
        seq_len: int,
        seed: int,
        allow_repeat: bool = False,
        skip: dict[str, float] | None = None,
    ) -> None:
        self.seq_len = seq_len
        self.seed = seed
        self.domains = [d for d in tokens if tokens[d] > 0]
        self.stores = stores
        unknown = [d for d in tokens if d not in stores]
        if unknown:
            raise InputError(
                "mixture",
                unknown[0],
                "no token store for this domain",
                f"use one of {', '.join(stores)} or add the domain to data.sources",
            )
        if not self.domains:
            raise InputError("mixture", "tokens", "every domain has 0 tokens", "give a mixture")
        self.available = {}
        self.sequences = {}
        self.skipped = {d: math.ceil(float((skip or {}).get(d, 0)) / seq_len) for d in self.domains}
        for d in self.domains:
            available = (len(stores[d].train) - 1) // seq_len - self.skipped[d]
            if available <= 0 and self.skipped[d]:
                raise InputError(
                    "mixture",
                    d,
                    f"nothing left after the {self.skipped[d] * seq_len} tokens an earlier "
                    "stage used",
                    "add text to the domain or lower the base run's share of it",
                )
            if available <= 0:
                raise InputError(
                    stores[d].meta.get("corpus", d),
                    d,
                    f"empty domain: fewer than {seq_len + 1} training tokens",
                    "add text to the domain or drop it",
                )
            wanted = round(tokens[d] / seq_len)
            if wanted > available and not allow_repeat:
                raise InputError(
                    "mixture",
                    d,
                    f"asks {tokens[d]:.0f} tokens, the domain holds {available * seq_len}",
                    "lower the scale or this domain's weight, add data, "
                    "or set train.allow_repeat: true (epochs are then reported)",
                )
            self.available[d] = available
            self.sequences[d] = wanted
        counts = np.array([self.sequences[d] for d in self.domains], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.total_sequences = int(self.offsets[-1])
        self.order = np.random.default_rng(seed).permutation(self.total_sequences)

    @property
    def tokens(self) -> dict[str, int]:
        return {d: self.sequences[d] * self.seq_len for d in self.domains}

    @property
    def epochs(self) -> dict[str, float]:
        return {d: self.sequences[d] / self.available[d] for d in self.domains}

    def steps(self, batch_sequences: int) -> int:
        return self.total_sequences // batch_sequences

    def sequence(self, index: int) -> np.ndarray:
        """Global sequence ``index`` (position in the run's order) as seq_len + 1 token ids."""
        g = int(self.order[index])
        k = int(np.searchsorted(self.offsets, g, side="right")) - 1
        domain = self.domains[k]
        j = (g - int(self.offsets[k])) % self.available[domain] + self.skipped[domain]
        start = j * self.seq_len
        return np.asarray(
            self.stores[domain].train[start : start + self.seq_len + 1], dtype=np.int64
        )

    def batch(self, step: int, batch_sequences: int, part: slice = slice(None)) -> np.ndarray:
        """The step's batch (or a slice of it: a micro-batch, a rank's share)."""
        first = step * batch_sequences
        indices = range(first, first + batch_sequences)[part]
        return np.stack([self.sequence(i) for i in indices])

    def batch_domains(self, step: int, batch_sequences: int, part: slice = slice(None)):
        """Each sequence's domain (index into ``domains``) of the step's batch, as ``batch``."""
        first = step * batch_sequences
        indices = range(first, first + batch_sequences)[part]
        g = self.order[np.asarray(indices, dtype=np.int64)]
        return np.searchsorted(self.offsets, g, side="right") - 1

    def domain_of(self, index: int) -> str:
        g = int(self.order[index])
        return self.domains[int(np.searchsorted(self.offsets, g, side="right")) - 1]
