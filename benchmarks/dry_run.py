"""How long a dry run takes: the project's configs and a 2,000-run sweep against an empty
Snakefile, in one run, so the difference is what mixscale's own planning costs.

Usage: python benchmarks/dry_run.py [--rounds 3]

Each case runs ``snakemake -n`` in a fresh empty working directory (nothing finished, so every
job is planned), ``--rounds`` times, and reports the median wall time, the jobs Snakemake
listed, and the time over the empty Snakefile's. The sweep is the simulated RedPajama world
(7 domains) with 10 DDO scales x 13 seeds (1,950 DDO runs) plus verification: about 2,000
training runs. The header says whether a SLURM client is on PATH and whether its controller
answers: where ``sinfo`` exists but no controller answers, the SLURM executor plugin's
``scontrol show config`` (10 s timeout) runs when Snakemake imports its plugins, and every
call pays it (docs/slurm.md says how to avoid it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def sweep_config(path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config/examples/simulated-redpajama.yaml").read_text())
    data["experiment"] = "sweep"
    data["ddo"]["seeds"] = 13
    data["ddo"]["scales"] = [{"name": f"s{k}", "tokens": float(3e7 * 1.5**k)} for k in range(10)]
    data["model"] = {"params": 1.0e8}
    path.write_text(yaml.safe_dump(data))
    return path


def dry_run(snakefile: Path, config: Path | None, env: dict[str, str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as work:
        cmd = [SNAKEMAKE, "-n", "-s", str(snakefile), "--directory", work, "-c1"]
        if config is not None:
            cmd += ["--configfile", str(config)]
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{snakefile} {config}: {result.stderr.strip().splitlines()[-1]}")
    total = re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE)
    return elapsed, int(total.group(1)) if total else 0


def slurm_state() -> str:
    if shutil.which("sinfo") is None:
        return "no SLURM client on PATH (the plugin skips scontrol)"
    try:
        subprocess.run(["scontrol", "ping"], capture_output=True, timeout=15, check=True)
        return "SLURM client on PATH, controller answers"
    except (subprocess.SubprocessError, OSError):
        return "SLURM client on PATH, NO controller answers (scontrol waits)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "Snakefile"
        empty.write_text("rule all:\n    input: []\n")
        cases = [
            ("empty Snakefile", empty, None),
            ("embedded demo (config/config.yaml)", ROOT / "Snakefile", ROOT / "config/config.yaml"),
            (
                "gpt2-large-redpajama.yaml",
                ROOT / "Snakefile",
                ROOT / "config/examples/gpt2-large-redpajama.yaml",
            ),
            (
                "anneal-medical-7b.yaml",
                ROOT / "Snakefile",
                ROOT / "config/examples/anneal-medical-7b.yaml",
            ),
            ("2,000-run sweep", ROOT / "Snakefile", sweep_config(Path(scratch) / "sweep.yaml")),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        jobs: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, snakefile, config in cases:
                elapsed, jobs[name] = dry_run(snakefile, config, env)
                times[name].append(elapsed)
    print(
        f"# dry runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, snakemake "
        f"{subprocess.run([SNAKEMAKE, '--version'], capture_output=True, text=True).stdout.strip()}"
        f"; {slurm_state()}; median of {args.rounds}"
    )
    base = statistics.median(times["empty Snakefile"])
    print(f"{'case':36s} {'jobs':>6s} {'wall_s':>7s} {'over empty':>11s}   rounds")
    for name, values in times.items():
        med = statistics.median(values)
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:36s} {jobs[name]:6d} {med:7.2f} {med - base:+11.2f}   {rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
