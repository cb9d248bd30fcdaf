"""The fixed-total design's bootstrap: cold multi-start refits vs warm starts from the point fit.

Usage: python benchmarks/joint_bootstrap.py [--bootstrap 200] [--repeats 3]

The table: Section 2.2's fixed-total design over the 6 domains of a simulated world drawn at
random (``random:1`` of the method study), base 3e8 tokens, each domain's share x3 and /3 at a
fixed total, 2 seeds, run noise 0.004 shared + 0.002 per domain (the shipped world's). Every
perturbed run moves all six domains, so the domains are fitted jointly (13 parameters) by
bounded nonlinear least squares, and ``mixscale ddo --bootstrap B`` refits B resampled tables.

Timed in one process, for each way of refitting: ``cold`` (what mixscale did before 2026-12-04:
every replicate from three cold starts plus the form search, finite-difference Jacobian) and
``warm`` (each replicate from the point fit's forms and parameters, closed-form Jacobian, the
default since). Prints the median time over repeats and the 90% weight intervals both give.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import mixscale.core.fit as fit_module
from mixscale.core.ddo import optimize, weight_intervals
from mixscale.core.fit import bootstrap_fits, fit_runs
from mixscale.core.runtable import RunTable
from mixscale.core.study import random_world, sweep_table

TOTAL = 3e8


def fixed_total_table(seeds: int = 2) -> RunTable:
    world = dataclasses.replace(random_world(1), sigma=0.004, sigma_domain=0.002)
    return sweep_table(world, TOTAL, 3.0, seeds, trial=0, design="fixed_total")


class _FiniteDifferences:
    """The finite-difference Jacobian the joint fit used before (for ``cold``)."""

    def __enter__(self):
        self.saved = fit_module._nls

        def nls(residual_fn, starts, lower, upper, loss, f_scale, jac="2-point"):
            return self.saved(residual_fn, starts, lower, upper, loss, f_scale, jac="2-point")

        fit_module._nls = nls
        return self

    def __exit__(self, *exc):
        fit_module._nls = self.saved


def run(table: RunTable, boots: int, how: str) -> tuple[float, dict]:
    start = time.perf_counter()
    if how == "cold":
        with _FiniteDifferences():
            point = fit_runs(table)
            fits = bootstrap_fits(table, boots, seed=0)
    else:
        point = fit_runs(table)
        fits = bootstrap_fits(table, boots, seed=0, warm=point)
    intervals = weight_intervals(fits, TOTAL)
    elapsed = time.perf_counter() - start
    weights = optimize(point, TOTAL)["weights"]
    return elapsed, {"weights": weights, "intervals": intervals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = fixed_total_table()
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    found: dict[str, dict] = {}
    for _ in range(args.repeats):
        for how in times:
            elapsed, found[how] = run(table, args.bootstrap, how)
            times[how].append(elapsed)
    flags = _cpu_flags()
    print(
        f"# joint bootstrap, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"CPU flags: {flags}; 6 domains, fixed-total design, {table.n_runs} runs, "
        f"{args.bootstrap} resamples, median of {args.repeats}"
    )
    for how, values in times.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"{how:5s} median {statistics.median(values):7.1f} s   rounds: {rounds}")
    ratio = statistics.median(times["cold"]) / statistics.median(times["warm"])
    print(f"cold / warm = {ratio:.1f}x")
    print("domain  weight(cold)  weight(warm)  90% interval (cold)   90% interval (warm)")
    for d in table.train_domains:
        c, w = found["cold"], found["warm"]
        ci, wi = c["intervals"][d], w["intervals"][d]
        print(
            f"{d:6s}  {c['weights'][d]:12.4f}  {w['weights'][d]:12.4f}  "
            f"[{ci['low']:.4f}, {ci['high']:.4f}]      [{wi['low']:.4f}, {wi['high']:.4f}]"
        )
    return 0


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            text = info.read().split("flags", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in wanted if f" {f}" in text)


if __name__ == "__main__":
    raise SystemExit(main())
