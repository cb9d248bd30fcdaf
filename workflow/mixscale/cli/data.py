"""Data preparation: corpus, tokenizer, token stores, embedded downstream tasks."""

from __future__ import annotations

import argparse

from mixscale.cli.args import Number, json_or_file
from mixscale.cli.paths import input_path, output_folder, output_parent
from mixscale.config.check import schema_default
from mixscale.errors import InputError, say

VALIDATION_BYTES = schema_default("data.validation_bytes")
SEED = Number.schema("data.seed")
HELD_OUT = Number.schema("data.validation_bytes")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="real text domains as JSONL (embedded or your own)")
    p.add_argument(
        "--out", type=output_parent, required=True, help="folder for <domain>.jsonl + provenance"
    )
    p.add_argument("--domains", help="comma-separated built-in domains (default: all six)")
    p.add_argument(
        "--source",
        action="append",
        help="DOMAIN=SPEC: a built-in name, or JSON {path: ...} / {hf: ...} (repeatable)",
    )
    p.add_argument(
        "--max-bytes",
        type=Number.schema("data.max_bytes"),
        help="cap per domain (seeded document subset)",
    )
    p.add_argument("--cache", default=schema_default("data.downloads"), help="pinned downloads")
    p.add_argument("--seed", type=SEED, default=schema_default("data.seed"))
    p.set_defaults(handler=cmd_corpus)

    p = sub.add_parser("tokenizer", help="train a byte-level BPE, or save a pretrained one")
    p.add_argument(
        "--corpus", type=input_path, nargs="*", default=[], help="<domain>.jsonl files to train on"
    )
    p.add_argument(
        "--vocab-size",
        type=Number.schema("data.tokenizer.vocab_size"),
        default=schema_default("data.tokenizer.vocab_size"),
    )
    p.add_argument("--pretrained", type=input_path, help="a named tokenizer instead (cluster)")
    p.add_argument("--mask-token", action="store_true", help="add <mask> (masked-LM encoders)")
    p.add_argument(
        "--seed", type=SEED, default=schema_default("data.seed"), help="document shuffle"
    )
    p.add_argument("--validation-bytes", type=HELD_OUT, default=VALIDATION_BYTES)
    p.add_argument("--out", type=output_folder, required=True, help="tokenizer folder")
    p.set_defaults(handler=cmd_tokenizer)

    p = sub.add_parser("tokens", help="one domain's token store (train.bin, val.bin)")
    p.add_argument("--corpus", type=input_path, required=True, help="<domain>.jsonl")
    p.add_argument("--domain", help="domain name (default: from the file name)")
    p.add_argument("--tokenizer", type=input_path, required=True)
    p.add_argument("--seed", type=SEED, default=schema_default("data.seed"))
    p.add_argument("--validation-bytes", type=HELD_OUT, default=VALIDATION_BYTES)
    p.add_argument("--out", type=output_folder, required=True, help="store folder")
    p.set_defaults(handler=cmd_tokens)

    p = sub.add_parser(
        "derive",
        help="a candidate source made from a domain's training text (curated, pool, rephrased)",
    )
    p.add_argument("--source", required=True, help='NAME=JSON, e.g. cur={"derive":"science",...}')
    p.add_argument(
        "--corpus-dir", type=input_path, required=True, help="folder of the domains' <domain>.jsonl"
    )
    p.add_argument("--seed", type=SEED, default=schema_default("data.seed"))
    p.add_argument("--validation-bytes", type=HELD_OUT, default=VALIDATION_BYTES)
    p.add_argument("--out", type=output_parent, required=True, help="folder for <NAME>.jsonl")
    p.set_defaults(handler=cmd_derive)

    p = sub.add_parser("tasks", help="embedded lm-eval tasks from each domain's held-out text")
    p.add_argument(
        "--corpus", type=input_path, nargs="+", required=True, help="<domain>.jsonl files"
    )
    p.add_argument(
        "--seed", type=SEED, default=schema_default("data.seed"), help="the held-out split"
    )
    p.add_argument("--validation-bytes", type=HELD_OUT, default=VALIDATION_BYTES)
    p.add_argument(
        "--build",
        type=input_path,
        help="JSON: items, choices, context_words, continuation_words, seed",
    )
    p.add_argument(
        "--out", type=output_folder, required=True, help="task folder (JSONL + YAML + tasks.json)"
    )
    p.set_defaults(handler=cmd_tasks)


def _source_name(name: str, flag: str) -> str:
    """A domain or source name becomes a file name (``<name>.jsonl``): a config name, so that
    ``../x`` or ``/etc/x`` cannot write outside ``--out``."""
    from mixscale.shapes import NAME_RULE, is_name, shown

    if not is_name(name):
        raise InputError(flag, shown(name), "is not a domain or source name", f"use {NAME_RULE}")
    return name


def cmd_corpus(args: argparse.Namespace) -> None:
    """Build domains as JSONL documents; print what was built and how long it took."""
    import time

    from mixscale.data.corpus import BUILTINS, build_domain

    # --domains picks built-ins; without it, all built-ins unless --source names the domains
    default = [] if args.source else list(BUILTINS)
    sources = dict.fromkeys(args.domains.split(",") if args.domains else default)
    for item in args.source or []:
        name, _, spec = item.partition("=")
        sources[_source_name(name, "--source")] = (
            json_or_file(spec) if spec.lstrip().startswith("{") else spec
        )
    rows = []
    for domain, spec in sources.items():
        start = time.perf_counter()
        built = build_domain(domain, spec, args.out, args.cache, args.max_bytes, args.seed)
        rows.append((domain, built.documents, built.bytes, time.perf_counter() - start))
        say(
            f"{domain:14s} {built.documents:8d} docs {built.bytes / 1e6:8.2f} MB "
            f"{rows[-1][3]:6.1f} s"
        )


def cmd_derive(args: argparse.Namespace) -> None:
    """Held-out blocks split off exactly as the stores split them, then the derived source."""
    from pathlib import Path

    from mixscale.data.derived import write_derived

    name, _, text = args.source.partition("=")
    name = _source_name(name, "--source")
    built = write_derived(
        name, json_or_file(text), Path(args.corpus_dir), Path(args.out), args.seed,
        args.validation_bytes,
    )  # fmt: skip
    say(f"{name}: {built['documents']} docs, {built['bytes'] / 1e6:.2f} MB")


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.data.tokens import pretrained_tokenizer, train_tokenizer

    if args.pretrained:
        info = pretrained_tokenizer(args.pretrained, args.out, args.mask_token)
    elif not args.corpus:
        raise InputError(
            "tokenizer", "--corpus", "no files", "give <domain>.jsonl files or --pretrained"
        )
    else:
        files = {Path(f).name.removesuffix(".jsonl"): f for f in args.corpus}
        info = train_tokenizer(
            files, args.out, args.vocab_size, args.seed, args.validation_bytes, args.mask_token
        )
    say(f"tokenizer: {info['kind']}, vocabulary {info['vocab_size']}")


def cmd_tokens(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.data.tokens import build_store

    domain = args.domain or Path(args.corpus).name.removesuffix(".jsonl")
    meta = build_store(
        domain, args.corpus, args.tokenizer, args.out, args.seed, args.validation_bytes
    )
    say(
        f"{domain}: {meta['train_tokens']} training + {meta['val_tokens']} held-out tokens "
        f"({meta['bytes_per_token']:.2f} bytes/token)"
    )


def cmd_tasks(args: argparse.Namespace) -> None:

    from mixscale.config.tasks import TaskBuild
    from mixscale.data.tasks import build_tasks

    build = TaskBuild.from_dict(json_or_file(args.build) if args.build else None)
    manifest = build_tasks(args.corpus, args.out, build, args.seed, args.validation_bytes)
    for name, task in manifest["tasks"].items():
        say(f"{name:32s} {task['items']:5d} items")
