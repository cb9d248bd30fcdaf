"""What a test-sized job costs, and what mixscale's own models and optimizer save of it.

Usage: python benchmarks/job_startup.py [--rounds 3]

The jobs of the test suite and of the demo are small: most of a test-sized training job is
starting up (torch's import, transformers' modelling stack, ``torch._dynamo``), not training.
Each round runs every variant below as its own ``python -m mixscale`` process, in a rotated
order, on the same stores; the table gives the median wall time and CPU (user + system) per
job, and checks that every variant of a job writes the same result (loss curve and model bytes;
the store's bytes):

- GPT-2 DDO run (2 layers, 64 wide, 58 steps of 8x32 tokens): as shipped (mixscale's GPT-2,
  ``EagerAdamW``); with torch's AdamW; with transformers' GPT-2 and torch's AdamW (before both);
- BERT masked-LM run (the same sizes): as shipped; with transformers' BERT and torch's AdamW;
- token store of one domain: the tokenizer read by the ``tokenizers`` library (as shipped), or
  through transformers' wrapper.

The variants patch mixscale in the job's process before the command runs (benchmark only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_throughput import cpu_flags  # noqa: E402 - the benchmarks' shared helper

DOWNLOADS = ROOT / "resources" / "downloads"
DOMAINS = ("books", "code", "legal")
TRAIN = {
    "seq_len": 32,
    "batch_sequences": 8,
    "micro_batch": 8,
    "lr": 3e-3,
    "eval_tokens": 1024,
    "checkpoint_every": 20,
    "precision": "fp32",
}
GPT2 = {"type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4}
BERT = {
    "type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
TORCH_ADAMW = "import torch, mixscale.train.model as m; m.EagerAdamW = torch.optim.AdamW\n"
TRANSFORMERS_GPT2 = "import mixscale.train.model as m; m._native_gpt2 = lambda *a: None\n"
TRANSFORMERS_BERT = "import mixscale.train.model as m; m._native_bert = lambda *a: None\n"
TRANSFORMERS_TOKENIZER = "import mixscale.data.tokens as t; t._own_tokenizer = lambda d: None\n"


def prepare(work: Path) -> dict[str, Path]:
    """Corpus slices, a tokenizer (with a mask token for BERT) and stores per model kind."""
    from mixscale.data.corpus import build_domain
    from mixscale.data.tokens import build_store, train_tokenizer

    corpus = work / "corpus"
    for domain in DOMAINS:
        build_domain(domain, None, corpus, DOWNLOADS, max_bytes=250_000, seed=0)
    files = {d: str(corpus / f"{d}.jsonl") for d in DOMAINS}
    data = {}
    for kind, mask in (("gpt2", False), ("bert", True)):
        out = work / kind
        train_tokenizer(files, str(out / "tokenizer"), 512, 0, 30_000, mask_token=mask)
        for d in DOMAINS:
            build_store(d, files[d], str(out / "tokenizer"), str(out / "stores" / d), 0, 30_000)
        data[kind] = out
    data["corpus"] = corpus
    return data


def train_args(data: Path, model: dict, out: Path) -> list[str]:
    spec = {
        "id": "r",
        "stage": "ddo",
        "seed": 0,
        "total_tokens": 15000.0,
        "tokens": dict.fromkeys(DOMAINS, 5000.0),
    }
    settings = {
        "stores": str(data / "stores"),
        "tokenizer": str(data / "tokenizer"),
        "model": model,
        "train": TRAIN,
        "domains": list(DOMAINS),
    }
    return [
        "train",
        "--spec",
        json.dumps(spec),
        "--backend",
        "torch",
        "--settings",
        json.dumps(settings),
        "--eval-points",
        "4",
        "--threads",
        "1",
        "--out",
        str(out / "metrics.json"),
    ]


def tokens_args(data: dict[str, Path], out: Path) -> list[str]:
    return [
        "tokens",
        "--domain",
        "legal",
        "--seed",
        "0",
        "--validation-bytes",
        "30000",
        "--corpus",
        str(data["corpus"] / "legal.jsonl"),
        "--tokenizer",
        str(data["gpt2"] / "tokenizer"),
        "--out",
        str(out / "store"),
    ]


def run_job(patch: str, args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of ``python -m mixscale ARGS`` after ``patch`` ran in its process."""
    code = patch + "import runpy, sys\nsys.argv = ['mixscale', *sys.argv[1:]]\n"
    code += "runpy.run_module('mixscale', run_name='__main__')\n"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def result_of(out: Path) -> tuple:
    """What a job wrote, to compare variants: the curve and model bytes, or the store bytes."""
    if (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
        return metrics["curve"], (out / "model" / "model.safetensors").read_bytes()
    store = out / "store"
    return tuple((store / name).read_bytes() for name in ("train.bin", "val.bin"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare(work)
        jobs = {
            "GPT-2 run": [
                ("as shipped", ""),
                ("torch's AdamW", TORCH_ADAMW),
                ("transformers' GPT-2, torch's AdamW", TORCH_ADAMW + TRANSFORMERS_GPT2),
            ],
            "BERT run": [
                ("as shipped", ""),
                ("transformers' BERT, torch's AdamW", TORCH_ADAMW + TRANSFORMERS_BERT),
            ],
            "token store": [
                ("as shipped", ""),
                ("transformers' tokenizer", TRANSFORMERS_TOKENIZER),
            ],
        }
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        results: dict[tuple[str, str], tuple] = {}
        for r in range(args.rounds):
            for job, variants in jobs.items():
                shift = r % len(variants)
                for name, patch in variants[shift:] + variants[:shift]:
                    out = work / "runs" / f"{job}-{name}-{r}".replace(" ", "_").replace("'", "")
                    if job == "token store":
                        command = tokens_args(data, out)
                    else:
                        kind = "gpt2" if job.startswith("GPT-2") else "bert"
                        command = train_args(data[kind], GPT2 if kind == "gpt2" else BERT, out)
                    times.setdefault((job, name), []).append(run_job(patch, command))
                    results.setdefault((job, name), result_of(out))
        print(
            f"# mixscale job start-up, {time.strftime('%Y-%m-%d')}, {sys.platform}, "
            f"CPU flags: {cpu_flags()}; median of {args.rounds} rounds, fresh processes"
        )
        print("| job | variant | wall s | CPU s | same result as shipped |")
        print("|---|---|---|---|---|")
        for job, variants in jobs.items():
            shipped = results[(job, variants[0][0])]
            for name, _ in variants:
                walls, cpus = zip(*times[(job, name)], strict=True)
                same = "yes" if results[(job, name)] == shipped else "NO"
                print(
                    f"| {job} | {name} | {statistics.median(walls):.2f} | "
                    f"{statistics.median(cpus):.2f} | {same} |"
                )


if __name__ == "__main__":
    main()
