"""Seed noise of real training, design by design: can the mixture decision be measured?

For each design (the embedded default's data and model with some settings changed, listed in
benchmarks/noise_designs.yaml), this trains the uniform mixture at the DDO scales and at the
target with several seeds, and each domain x3 and /3 at the largest DDO scale (Algorithm 1's
design, paired by seed), then reports per design:

- the seed sd of each domain's loss and of the objective (mean perplexity over the domains), as a
  share of the objective's mean, at every scale;
- the x3 and /3 effects on a domain's own loss, in units of that loss's seed sd;
- the drop ratio r = (L(/3) - L(base)) / (L(base) - L(x3)) of each domain's own loss (DDO's power
  law needs r > 1; its shifted form 1/3 < r);
- CPU-seconds per run (the jobs' own rusage, so other load on the machine moves them little).

Runs are real `python -m mixscale train` jobs; finished ones are kept (rerunning resumes the study).
A design may also hold the initial weights or the batch order fixed across seeds
(`train.init_seed` / `train.data_seed`): that is how the seed's spread is split into its causes.

    python benchmarks/noise_study.py                   # every design, 2 jobs at a time
    python benchmarks/noise_study.py --only lr1e-3     # one design
    python benchmarks/noise_study.py --smoke           # tiny sizes, seconds (the test suite)

Writes benchmarks/results/noise_study.json and .md (and docs/figures/noise_study.png).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "benchmarks/noise_designs.yaml"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    wanted = sorted(f for f in flags if f.startswith(("avx", "amx")))
    return f"{model}; {os.cpu_count()} cores; {' '.join(wanted)}"


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def experiment_config(common: dict, design: dict) -> dict:
    """The config whose data stage builds this design's token stores."""
    config = yaml.safe_load((ROOT / common["base_config"]).read_text())
    data = merged(config["data"], design.get("data", {}))
    vocab = data["tokenizer"]["vocab_size"]
    name = f"noise-data-v{vocab}"
    config = merged(config, {"experiment": name, "data": data})
    config.pop("anneal", None)
    return config


def build_stores(config: dict, workdir: Path, domains: list[str]) -> Path:
    """Tokenizer and token stores through the workflow's own data rules (cached per vocab)."""
    relative = Path("results") / config["experiment"] / "data"  # Snakemake's targets
    out = ROOT / relative
    if all((out / "stores" / d / "meta.json").exists() for d in domains):
        return out
    path = workdir / f"{config['experiment']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    targets = [str(relative / "stores" / d) for d in domains]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_CONF": "/dev/null"}
    subprocess.run(
        # targets first: --configfile takes every word after it
        [str(bin_dir / "snakemake"), *targets, "--profile", "profiles/local", "--configfile",
         str(path)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


def run_list(design: dict, domains: list[str]) -> list[dict]:
    """Every run of a design: uniform at each scale and seed, x3 and /3 at the largest DDO
    scale paired by seed."""
    seeds = range(design["seeds"])
    runs = []
    for total in [*design["scales"], design["target"]]:
        share = total / len(domains)
        for s in seeds:
            runs.append({"kind": "base", "total": total, "seed": s, "domain": None,
                         "tokens": dict.fromkeys(domains, share)})  # fmt: skip
    largest = max(design["scales"])
    for d in domains if design.get("perturb", True) else []:
        for kind, factor in (("up", design["factor"]), ("down", 1 / design["factor"])):
            for s in range(design.get("perturb_seeds", design["seeds"])):
                tokens = {e: largest / len(domains) for e in domains}
                tokens[d] *= factor
                runs.append({"kind": kind, "total": largest, "seed": s, "domain": d,
                             "tokens": tokens})  # fmt: skip
    return runs


def run_id(run: dict) -> str:
    tag = "base" if run["domain"] is None else f"{run['domain']}-{run['kind']}"
    return f"{int(run['total'])}-{tag}-s{run['seed']}"


def train(run: dict, settings: dict, folder: Path) -> dict:
    """One real training job; its metrics and the CPU-seconds it used (kept if already run)."""
    out = folder / run_id(run) / "metrics.json"
    if out.exists():
        return json.loads(out.read_text())
    spec = {"id": run_id(run), "stage": "noise", "seed": run["seed"],
            "total_tokens": float(sum(run["tokens"].values())), "tokens": run["tokens"],
            "method": "uniform", "perturbed": run["domain"], "factor": 1.0}  # fmt: skip
    cmd = [sys.executable, "-m", "mixscale", "train", "--backend", "torch", "--tracking", "none",
           "--spec", json.dumps(spec), "--settings", json.dumps(settings), "--threads", "1",
           "--out", str(out)]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{run_id(run)} failed: {proc.stderr.read()[-2000:]}")
    metrics = json.loads(out.read_text())
    metrics["study"] = {"cpu_seconds": usage.ru_utime + usage.ru_stime,
                        "wall_seconds": time.perf_counter() - start}  # fmt: skip
    out.write_text(json.dumps(metrics))
    return metrics


def final_losses(metrics: dict) -> dict[str, float]:
    return metrics["curve"][-1]["losses"]


def objective(losses: dict[str, float]) -> float:
    """The AutoScale paper's Eq. 1: mean perplexity over the domains."""
    return float(np.mean([math.exp(v) for v in losses.values()]))


def summarise(design: dict, runs: list[dict], results: list[dict], domains: list[str]) -> dict:
    by_key = {run_id(r): (r, m) for r, m in zip(runs, results, strict=True)}
    seeds = range(design["seeds"])
    scales = {}
    for total in [*design["scales"], design["target"]]:
        losses = np.array(
            [
                [final_losses(by_key[f"{int(total)}-base-s{s}"][1])[d] for d in domains]
                for s in seeds
            ]
        )
        objectives = np.array([objective(dict(zip(domains, row, strict=True))) for row in losses])
        scales[str(int(total))] = {
            "objective": objectives.tolist(),
            "objective_mean": float(objectives.mean()),
            "objective_sd_pct": float(100 * objectives.std(ddof=1) / objectives.mean()),
            "loss_sd": dict(zip(domains, losses.std(axis=0, ddof=1).tolist(), strict=True)),
            "loss_mean": dict(zip(domains, losses.mean(axis=0).tolist(), strict=True)),
        }
    summary = {"scales": scales, "effects": {}}
    if design.get("perturb", True):
        largest = int(max(design["scales"]))
        sd = scales[str(largest)]["loss_sd"]
        for d in domains:
            pairs = []
            for s in range(design.get("perturb_seeds", design["seeds"])):
                base = final_losses(by_key[f"{largest}-base-s{s}"][1])[d]
                up = final_losses(by_key[f"{largest}-{d}-up-s{s}"][1])[d]
                down = final_losses(by_key[f"{largest}-{d}-down-s{s}"][1])[d]
                pairs.append((base - up, down - base))
            gain, loss = np.mean(pairs, axis=0)
            summary["effects"][d] = {
                "x3_gain_sd": float(gain / sd[d]) if sd[d] > 0 else math.inf,
                "div3_loss_sd": float(loss / sd[d]) if sd[d] > 0 else math.inf,
                "drop_ratio": float(loss / gain) if gain != 0 else math.nan,
            }
        ratios = [e["drop_ratio"] for e in summary["effects"].values()]
        summary["drop_ratios_in_0_1"] = int(sum(0 < r < 1 for r in ratios))
        summary["drop_ratios_above_1"] = int(sum(r > 1 for r in ratios))
    cpu = [m["study"]["cpu_seconds"] for m in results if "study" in m]
    target = [by_key[f"{int(design['target'])}-base-s{s}"][1] for s in seeds]
    target_cpu = [m["study"]["cpu_seconds"] for m in target if "study" in m]
    summary["cpu_seconds_target_run"] = float(np.median(target_cpu)) if target_cpu else math.nan
    summary["cpu_seconds_total"] = float(sum(cpu))
    summary["runs"] = len(results)
    summary["params"] = results[0].get("params")
    return summary


def study(name: str, design: dict, common: dict, jobs: int, workdir: Path) -> dict:
    config = experiment_config(common, design)
    domains = list(config["data"]["sources"])[: common.get("domains", 6)]
    data = build_stores(config, workdir, domains)
    settings = {
        "stores": str(data / "stores"),
        "tokenizer": str(data / "tokenizer"),
        "model": merged(config["model"], design.get("model", {})),
        "train": merged({**config["train"], "threads": 1}, design.get("train", {})),
        "domains": domains,
    }
    runs = run_list(design, domains)
    folder = workdir / name
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda r: train(r, settings, folder), runs))
    summary = summarise(design, runs, results, domains)
    summary["settings"] = {"model": settings["model"], "train": settings["train"],
                           "vocab": config["data"]["tokenizer"]["vocab_size"]}  # fmt: skip
    return summary


def table(report: dict) -> str:
    lines = [
        f"Recorded {report['date']} on {report['machine']}.",
        "",
        "| design | params | seed sd of objective % (scales ... target) | target objective |"
        " x3 gain / seed sd (median) | drop ratio in (0,1) | CPU-s per target run | CPU-s all |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["designs"].items():
        sds = " / ".join(f"{v['objective_sd_pct']:.1f}" for v in s["scales"].values())
        target = list(s["scales"].values())[-1]["objective_mean"]
        gains = [e["x3_gain_sd"] for e in s["effects"].values()]
        gain = f"{np.median(gains):.1f}" if gains else "-"
        in01 = f"{s['drop_ratios_in_0_1']}/{len(gains)}" if gains else "-"
        lines.append(
            f"| {name} | {s['params']} | {sds} | {target:.1f} | {gain} | {in01} | "
            f"{s['cpu_seconds_target_run']:.0f} | {s['cpu_seconds_total']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", default=str(DESIGNS))
    parser.add_argument("--only", action="append", help="run only these designs")
    parser.add_argument("--jobs", type=int, default=2, help="training jobs at once")
    parser.add_argument("--workdir", default=str(ROOT / "results/noise-study"))
    parser.add_argument("--out", help="results stem (default: benchmarks/results/noise_study)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one design: seconds")
    args = parser.parse_args()
    spec = yaml.safe_load(Path(args.designs).read_text())
    common, designs = spec["common"], spec["designs"]
    if args.smoke:  # never over the recorded results
        designs = {"smoke": merged(next(iter(designs.values())), spec["smoke"])}
        common = {**common, "domains": 2}
        args.out = args.out or str(Path(args.workdir) / "smoke")
    args.out = args.out or str(ROOT / "benchmarks/results/noise_study")
    names = args.only or list(designs)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": cpu_flags(), "designs": {}}
    previous = Path(args.out + ".json")
    if previous.exists() and not args.smoke:
        report["designs"] = json.loads(previous.read_text())["designs"]
    for name in names:
        design = merged(common.get("design", {}), designs[name])
        print(f"{name}: {design}", file=sys.stderr)
        report["designs"][name] = study(name, design, common, args.jobs, Path(args.workdir))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    Path(args.out + ".md").write_text(table(report))
    print(table(report))


if __name__ == "__main__":
    main()
