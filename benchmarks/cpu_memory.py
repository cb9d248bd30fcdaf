"""CPU training jobs with glibc's default malloc and with large freed blocks kept
(mixscale.train.memory), side by side.

Usage: python benchmarks/cpu_memory.py [--rounds 3]

Every job is a real ``python -m mixscale train`` process on real text; ``MIXSCALE_CPU_MALLOC=
system`` gives glibc's defaults. Rounds alternate the order. Cases:

- the demo's model (GPT-2 2 x 96, vocabulary 1,024, batch 8 x 128), 150k tokens: one job alone,
  and two at once on the two cores (as ``make demo`` runs its jobs);
- the trainer benchmark's model (GPT-2 4 x 256, vocabulary 8,192, batch 16 x 256: 134 MB of
  logits, above glibc's 32 MB ceiling for its dynamic threshold), 12 steps.

Per case the median over rounds of: the time in training steps (``train_time_s`` in
metrics.json), the job's wall time and CPU, the page faults of the job (minor faults), and a
check that both variants wrote the same loss curve and model bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_startup import result_of  # noqa: E402 - the benchmarks' shared helpers
from trainer_throughput import cpu_flags  # noqa: E402

DOWNLOADS = ROOT / "resources" / "downloads"
DOMAINS = ("books", "code", "legal")
DEMO = {
    "model": {"type": "gpt2", "n_layer": 2, "n_embd": 96, "n_head": 4},
    "train": {"seq_len": 128, "batch_sequences": 8, "micro_batch": 8, "lr": 3e-3},
    "vocab": 1024,
    "tokens": 150_000,
}
BENCH = {
    "model": {"type": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4},
    "train": {"seq_len": 256, "batch_sequences": 16, "micro_batch": 16, "lr": 1e-3},
    "vocab": 8192,
    "tokens": 12 * 16 * 256,
}
VARIANTS = {"glibc default": "system", "large blocks kept": ""}


def prepare(work: Path) -> dict[int, Path]:
    """A corpus slice per domain; a tokenizer and stores per vocabulary size."""
    from mixscale.data.corpus import build_domain
    from mixscale.data.tokens import build_store, train_tokenizer

    corpus = work / "corpus"
    for domain in DOMAINS:
        build_domain(domain, None, corpus, DOWNLOADS, max_bytes=1_500_000, seed=0)
    files = {d: str(corpus / f"{d}.jsonl") for d in DOMAINS}
    data = {}
    for vocab in (DEMO["vocab"], BENCH["vocab"]):
        out = work / f"vocab{vocab}"
        train_tokenizer(files, str(out / "tokenizer"), vocab, 0, 50_000)
        for d in DOMAINS:
            build_store(d, files[d], str(out / "tokenizer"), str(out / "stores" / d), 0, 50_000)
        data[vocab] = out
    return data


def train_command(case: dict, data: Path, out: Path) -> list[str]:
    spec = {
        "id": "r",
        "stage": "ddo",
        "seed": 0,
        "total_tokens": float(case["tokens"]),
        "tokens": dict.fromkeys(DOMAINS, case["tokens"] / len(DOMAINS)),
    }
    train = {
        **case["train"],
        "eval_tokens": 8192,
        "checkpoint_every": 1000,
        "precision": "fp32",
    }
    settings = {
        "stores": str(data / "stores"),
        "tokenizer": str(data / "tokenizer"),
        "model": case["model"],
        "train": train,
        "domains": list(DOMAINS),
    }
    return [
        sys.executable,
        *("-m", "mixscale", "train", "--spec", json.dumps(spec), "--backend", "torch"),
        *("--settings", json.dumps(settings), "--eval-points", "1", "--threads", "1"),
        *("--out", str(out / "metrics.json")),
    ]


def run_together(commands: list[list[str]], malloc: str) -> tuple[float, float, int]:
    """Start the jobs at once; (wall s, CPU s, minor page faults) of all of them."""
    env = {**os.environ, "MIXSCALE_CPU_MALLOC": malloc}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    jobs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in commands]
    if any(job.wait() for job in jobs):
        raise SystemExit("a training job failed")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, after.ru_minflt - before.ru_minflt


def same(results: list[tuple]) -> str:
    return "yes" if all(r == results[0] for r in results) else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "demo model, 1 job": (DEMO, 1),
        "demo model, 2 jobs at once": (DEMO, 2),
        "benchmark model (134 MB logits), 1 job": (BENCH, 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare(work)
        rows: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
        results: dict[str, list[tuple]] = {}  # every job's curve and model bytes, per case
        for r in range(args.rounds):
            for case_name, (case, jobs) in cases.items():
                order = list(VARIANTS.items())
                for variant, malloc in order[r % 2 :] + order[: r % 2]:
                    outs = [work / "runs" / f"{case_name}-{variant}-{r}-{j}" for j in range(jobs)]
                    commands = [train_command(case, data[case["vocab"]], out) for out in outs]
                    wall, cpu, faults = run_together(commands, malloc)
                    metrics = [json.loads((o / "metrics.json").read_text()) for o in outs]
                    steps = statistics.mean(m["train_time_s"] for m in metrics)
                    rows.setdefault((case_name, variant), []).append((steps, wall, cpu, faults))
                    results.setdefault(case_name, []).extend(result_of(o) for o in outs)
        print(
            f"# CPU malloc, {time.strftime('%Y-%m-%d')}, {sys.platform}, CPU flags: "
            f"{cpu_flags()}; median of {args.rounds} rounds, fresh processes, 1 thread per job"
        )
        header = ("case", "malloc", "time in steps s", "job wall s", "CPU s", "page faults", "same")
        print("| " + " | ".join(header) + " |")
        print("|---" * len(header) + "|")
        for case_name in cases:
            for variant in VARIANTS:
                steps, wall, cpu, faults = (
                    statistics.median(v) for v in zip(*rows[(case_name, variant)], strict=True)
                )
                print(
                    f"| {case_name} | {variant} | {steps:.2f} | {wall:.2f} | {cpu:.2f} | "
                    f"{faults:,.0f} | {same(results[case_name])} |"
                )


if __name__ == "__main__":
    main()
