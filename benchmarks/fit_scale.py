"""Time `python -m mixscale ddo` on Algorithm-1 run tables with many domains.

Usage: python benchmarks/fit_scale.py [--sizes 10,100,1000] [--bootstraps 0,200] [--repeats 3]

Each table is Algorithm 1's design over m domains (one base run, then per domain a x3 and a /3
run, 2m + 1 mixtures) of a power-law world a_j n^-b_j + 2 with 2 seeds and seeded noise, so the
bootstrap has replicates. Prints, per (m, bootstrap), the median over repeats of the command's
wall time and of its CPU time (user + sys of the child; steadier than wall time when another job
shares the cores), and the time per bootstrap replicate, from the bootstrap-0 run of the same m.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixscale.core.runtable import RunTable


def alg1_table(m: int, seeds: int = 2, seed: int = 0) -> RunTable:
    """Algorithm 1's design over m domains of a power-law world (each domain ~3/m nats at the
    base run, drops of ~1e-3 nats at m = 1,000), noise 1e-7 nats per run."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 2.0, m) * 1e6
    b = rng.uniform(0.2, 0.6, m)
    a = rng.uniform(0.5, 1.5, m) * 3.0 / m * base**b
    mixtures = [base]
    for j in range(m):
        for factor in (3.0, 1 / 3):
            n = base.copy()
            n[j] *= factor
            mixtures.append(n)
    tokens = np.repeat(np.array(mixtures), seeds, axis=0)
    losses = 2.0 + (a * tokens**-b).sum(axis=1) + rng.normal(0.0, 1e-7, len(tokens))
    ids = [f"mix{i // seeds}_s{i % seeds}" for i in range(len(tokens))]
    return RunTable(
        source="benchmark",
        train_domains=[f"d{j}" for j in range(m)],
        eval_domains=["all"],
        tokens=tokens,
        losses=losses[:, None],
        run_ids=ids,
        seeds=[str(i % seeds) for i in range(len(tokens))],
    )


def run_ddo(table: Path, bootstrap: int, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `mixscale ddo` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, "-m", "mixscale", "ddo", "--runs", str(table), "--tokens", "1e9"]
    command += ["--bootstrap", str(bootstrap), "--out", str(out)]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cpu_name() -> tuple[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", False
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "")
    return name or "unknown", "avx512_bf16" in text


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=ints, default=[10, 100, 1000])
    parser.add_argument("--bootstraps", type=ints, default=[0, 200])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    name, bf16 = cpu_name()
    print(
        f"# fit scale: {datetime.date.today()}, CPU {name} ({os.cpu_count()} cores, "
        f"avx512_bf16: {'yes' if bf16 else 'no'}), python {platform.python_version()}, "
        f"numpy {np.__version__}; load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"# median of {args.repeats} runs of `mixscale ddo --tokens 1e9 --bootstrap B`")
    print(
        f"{'m':>6} {'runs':>6} {'bootstrap':>9} {'wall_s':>8} {'cpu_s':>8} {'cpu_ms/replicate':>17}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.sizes:
            table = alg1_table(m)
            path = Path(tmp) / f"runs_{m}.tsv"
            table.save(path)
            cpu_at_zero = None
            for bootstrap in args.bootstraps:
                times = [
                    run_ddo(path, bootstrap, Path(tmp) / "w.json") for _ in range(args.repeats)
                ]
                wall = statistics.median(t[0] for t in times)
                cpu = statistics.median(t[1] for t in times)
                if bootstrap == 0:
                    cpu_at_zero = cpu
                per = "-"
                if bootstrap and cpu_at_zero is not None:
                    per = f"{(cpu - cpu_at_zero) / bootstrap * 1e3:.1f}"
                print(
                    f"{m:>6} {table.n_runs:>6} {bootstrap:>9} {wall:>8.2f} {cpu:>8.2f} {per:>17}",
                    flush=True,
                )
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
