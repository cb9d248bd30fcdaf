"""Time `mixscale fit`'s design search on run tables of many distinct mixtures.

Usage: python benchmarks/fit_rows.py [--rows 2000,8000,32000] [--shapes all] [--fit-rows 32000]
       python benchmarks/fit_rows.py --smoke        # tiny sizes, one shape each: seconds

Design detection finds the base run whose perturbations match the most other mixtures. It
classified every mixture against every candidate base: 8,000 unrelated mixtures took 21 s,
32,000 over 150 s (issue 36). It now bounds each base's matches with grids over log tokens
and classifies only the pairs a grid puts together, so its work is about linear in the
mixtures, plus the pairs that really are (near-)perturbations of each other.

Per table shape and number of mixtures it prints the design search's CPU seconds (in this
process), the (base, mixture) pairs it classified (the quantity tests/test_fit_scale.py
bounds; every pair would be mixtures^2), and for --fit-rows the whole `mixscale fit` command
in a fresh process (wall and CPU seconds of the child; "refused": a table with no base run
at all, refused in one line after the same search).

Shapes whose mixtures are dense in two or three domains (two domains of random size, three
domains at a fixed total) have a number of true matches that grows with the square of the
mixtures: every base perturbs thousands of others. There the search costs what those pairs
cost; the table says so rather than hiding it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixscale.core import design
from mixscale.core.runtable import RunTable


def _alg1(n: int, rng: np.random.Generator) -> np.ndarray:
    """Algorithm 1's design over (n - 1) / 2 domains: the base last."""
    m = max(1, (n - 1) // 2)
    base = rng.uniform(0.5, 2.0, m) * 1e6
    rows = [base]
    for j in range(m):
        for factor in (3.0, 1 / 3):
            t = base.copy()
            t[j] *= factor
            rows.append(t)
    return np.array(rows[::-1])


SHAPES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "sampled, 6 domains, fixed total": lambda n, rng: rng.dirichlet(np.ones(6), n) * 1e8 + 1,
    "sampled, 7 domains": lambda n, rng: rng.uniform(0.5, 2.0, (n, 7)) * 1e6,
    "sampled, 3 domains": lambda n, rng: rng.uniform(0.5, 2.0, (n, 3)) * 1e6,
    "one domain": lambda n, rng: rng.uniform(0.5, 2.0, (n, 1)) * 1e6,
    "Algorithm 1 design, base last": _alg1,
    "dense: 3 domains, fixed total": lambda n, rng: rng.dirichlet(np.ones(3), n) * 1e7 + 1,
    "dense: 2 domains": lambda n, rng: rng.uniform(0.5, 2.0, (n, 2)) * 1e6,
}


# Shapes whose number of domains grows with the rows, and the most rows run for them.
DOMAINS_GROW = {"Algorithm 1 design, base last"}
MAX_DESIGN_ROWS = 8001


def table(tokens: np.ndarray, rng: np.random.Generator) -> RunTable:
    n, m = tokens.shape
    losses = 2.0 + (tokens**-0.3).sum(axis=1) * 10 + rng.normal(0.0, 1e-3, n)
    ids = [f"r{i}" for i in range(n)]
    domains = [f"d{j}" for j in range(m)]
    return RunTable("benchmark", domains, ["all"], tokens, losses[:, None], ids, ["0"] * n)


def design_search(runs: RunTable) -> tuple[float, int, str, int]:
    """(CPU seconds, pairs classified, design kind, perturbations) of one detection."""
    pairs = [0]
    classify_many = design._classify_many

    def counting(base, other, base_sum, other_sum):
        pairs[0] += max(np.atleast_2d(base).shape[0], np.atleast_2d(other).shape[0])
        return classify_many(base, other, base_sum, other_sum)

    design._classify_many = counting
    try:
        start = time.process_time()
        found = design.detect_design(runs)
        cpu = time.process_time() - start
    finally:
        design._classify_many = classify_many
    return cpu, pairs[0], found.kind, len(found.perturbations)


def fit_command(path: Path, out: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of `mixscale fit` in a fresh process. Exit 2 is
    a one-line refusal (a table with no base run at all), after the same design search."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, "-m", "mixscale", "fit", "--runs", str(path), "--out", str(out)]
    proc = subprocess.run(command, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 2) or "Traceback" in proc.stderr:
        raise SystemExit(f"mixscale fit failed on {path}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def cpu_header() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"CPU {platform.processor() or 'unknown'}"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "")
    flags = sorted(set(re.findall(r"\bavx[0-9a-z_]*", text)))
    return f"CPU {name or 'unknown'} ({os.cpu_count()} cores), CPU flags: {' '.join(flags) or '-'}"


def ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=ints, default=[2000, 8000, 32000])
    parser.add_argument("--shapes", default="all", help="shape names separated by ;, or all")
    parser.add_argument("--fit-rows", type=ints, default=[32000], help="also time `mixscale fit`")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    args = parser.parse_args()
    shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(";")
    if args.smoke:
        args.rows, args.fit_rows = [200, 400], [400]
    print(
        f"# fit rows: {datetime.date.today()}, {cpu_header()}, python "
        f"{platform.python_version()}, numpy {np.__version__}; load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("# design search: CPU s in process; pairs = (base, mixture) pairs classified")
    print(
        f"{'shape':<32} {'mixtures':>8} {'search_cpu_s':>12} {'pairs':>11} {'pairs/mix':>9} "
        f"{'design':>11} {'perts':>6} {'fit_wall_s':>10} {'fit_cpu_s':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for n in args.rows:
                if shape in DOMAINS_GROW and n > MAX_DESIGN_ROWS:
                    continue  # (n - 1) / 2 domains: a 32,000-row design is a 4 GB table
                rng = np.random.default_rng(0)
                runs = table(SHAPES[shape](n, rng), rng)
                cpu, pairs, kind, perts = design_search(runs)
                fit_wall = fit_cpu = "-"
                if runs.n_runs in args.fit_rows or n in args.fit_rows:
                    path = Path(tmp) / "runs.tsv"
                    runs.save(path)
                    wall, child, code = fit_command(path, Path(tmp) / "fit.json")
                    refused = "" if code == 0 else " (refused)"
                    fit_wall, fit_cpu = f"{wall:.2f}", f"{child:.2f}{refused}"
                print(
                    f"{shape:<32} {runs.n_runs:>8} {cpu:>12.2f} {pairs:>11} "
                    f"{pairs / runs.n_runs:>9.1f} {kind:>11} {perts:>6} {fit_wall:>10} "
                    f"{fit_cpu:>9}",
                    flush=True,
                )
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
