"""When does ``torch.compile`` pay for itself? The break-even behind ``train.compile: auto``.

Usage: python benchmarks/compile_breakeven.py [--rounds 3] [--steps 60]

For two models (the embedded demo's 2x96 GPT-2 on batches of 8x128, and the trainer
benchmark's 4x256 GPT-2 on 16x256), each round trains the same run twice in fresh processes,
once uncompiled and once with ``train.compile: true``, each with an empty inductor cache (a
first compile, as a job on a cluster node sees it). From the runs' metrics: the steady step time
of each (after the first 3 steps), the compile time (the probe: compile + one forward/backward),
and the break-even: the steps, and the training FLOPs (6 x parameters x tokens), from which the
compiled run finishes first. Medians over rounds. Precision: this machine's ``auto`` (bf16 only
with native bf16), and fp32 too where they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mixscale.train.distributed import cpu_supports_bf16, resolve_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_throughput import (  # the benchmark's own stores and model
    DOMAINS,
    MODEL,
    TOKENS_PER_DOMAIN,
    WORK,
    prepare,
)

DEMO = {
    "name": "demo 2x96, vocab 8192, batch 8x128",
    "model": {"type": "gpt2", "n_layer": 2, "n_embd": 96, "n_head": 4},
    "seq": 128,
    "batch": 8,
}
BENCH = {"name": "bench 4x256, vocab 8192, batch 16x256", "model": MODEL, "seq": 256, "batch": 16}


def one_run(case: dict, steps: int, compiled: bool, precision: str, threads: int) -> dict:
    """A fresh process, a fresh inductor cache: one training run's metrics."""
    train = {
        "seq_len": case["seq"],
        "batch_sequences": case["batch"],
        "micro_batch": case["batch"],
        "lr": 1e-3,
        "warmup": 0.0,
        "schedule": "constant",
        "eval_points": 1,
        "eval_tokens": case["seq"],
        "checkpoint_every": 0,
        "threads": threads,
        "save_model": False,
        "max_steps": steps,
        "precision": precision,
        "compile": compiled,
    }
    settings = {
        "stores": str(WORK / "stores"),
        "tokenizer": str(WORK / "tokenizer"),
        "model": case["model"],
        "train": train,
        "domains": list(DOMAINS),
    }
    tokens = dict.fromkeys(DOMAINS, TOKENS_PER_DOMAIN)
    spec = {
        "id": "b",
        "stage": "bench",
        "seed": 0,
        "total_tokens": sum(tokens.values()),
        "tokens": tokens,
    }
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        cmd = [
            *(sys.executable, "-m", "mixscale", "train", "--backend", "torch"),
            *("--spec", json.dumps(spec), "--settings", json.dumps(settings)),
            *("--tracking", "none", "--out", f"{out}/metrics.json"),
        ]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        return json.loads(Path(out, "metrics.json").read_text())


def measure(case: dict, steps: int, rounds: int, precision: str, threads: int) -> dict:
    step_plain, step_compiled, compile_s, params = [], [], [], 0
    for _ in range(rounds):
        plain = one_run(case, steps, False, precision, threads)
        fast = one_run(case, steps, True, precision, threads)
        assert fast["compile"]["compiled"], fast["compile"]
        tokens = case["batch"] * case["seq"]
        step_plain.append(tokens / plain["tokens_per_s_steady"])
        step_compiled.append(tokens / fast["tokens_per_s_steady"])
        compile_s.append(fast["compile"]["compile_seconds"])
        params = plain["params"]
    e, c, k = (statistics.median(v) for v in (step_plain, step_compiled, compile_s))
    saving = e - c
    steps_even = k / saving if saving > 0 else float("inf")
    flops_even = 6 * params * case["batch"] * case["seq"] * steps_even
    return {
        "case": case["name"],
        "precision": precision,
        "params": params,
        "step_ms": 1e3 * e,
        "step_compiled_ms": 1e3 * c,
        "speedup": e / c,
        "compile_s": k,
        "break_even_steps": steps_even,
        "break_even_flops": flops_even,
        "rounds": {
            "step_s": step_plain,
            "step_compiled_s": step_compiled,
            "compile_s": compile_s,
        },
    }


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in wanted if f" {f}" in flags) or "none of avx2/avx512/amx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    prepare()
    auto = resolve_precision("auto", torch.device("cpu"))
    precisions = [auto] if auto == "fp32" else ["fp32", auto]
    print(
        f"# compile break-even, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{os.cpu_count()} cores, CPU flags: {cpu_flags()} (native bf16: {cpu_supports_bf16()})"
    )
    print(f"# {args.steps} steps per run, {args.rounds} rounds, {args.threads} thread(s); medians")
    print(f"{'case':38s} prec   step_ms  compiled  speedup  compile_s  break-even steps  FLOPs")
    for case in (DEMO, BENCH):
        for precision in precisions:
            r = measure(case, args.steps, args.rounds, precision, args.threads)
            print(
                f"{r['case']:38s} {precision:5s} {r['step_ms']:8.1f} {r['step_compiled_ms']:9.1f} "
                f"{r['speedup']:8.2f} {r['compile_s']:10.1f} {r['break_even_steps']:17.0f}  "
                f"{r['break_even_flops']:.2e}"
            )
            print(f"#   rounds: {json.dumps(r['rounds'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
