"""Shared helpers: synthetic run tables from worlds whose answers are known exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from mixscale.core.runtable import RunTable

ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may come from a hub: any attempt fails instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


def alg1_mixtures(base: np.ndarray, factor: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """Algorithm 1's design: base, then each domain x factor and / factor, others unchanged."""
    runs = [("base", base.copy())]
    for j in range(len(base)):
        for f, tag in ((factor, "up"), (1 / factor, "down")):
            n = base.copy()
            n[j] *= f
            runs.append((f"d{j}_{tag}", n))
    return runs


def fixed_total_mixtures(base: np.ndarray, factor: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """Section 2.2's design: domain j's share x factor or / factor, the rest rescaled."""
    total = base.sum()
    runs = [("base", base.copy())]
    for j in range(len(base)):
        for f, tag in ((factor, "up"), (1 / factor, "down")):
            n = base.copy()
            n[j] = base[j] * f
            rest = np.delete(np.arange(len(base)), j)
            n[rest] = base[rest] * (total - n[j]) / base[rest].sum()
            runs.append((f"d{j}_{tag}", n))
    return runs


def make_table(
    mixtures: Sequence[tuple[str, np.ndarray]],
    loss: Callable[[np.ndarray], float],
    seeds: int = 1,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    domains: Sequence[str] | None = None,
) -> RunTable:
    rng = rng or np.random.default_rng(0)
    m = len(mixtures[0][1])
    domains = list(domains or [f"d{j}" for j in range(m)])
    tokens, losses, ids, seed_ids = [], [], [], []
    for name, n in mixtures:
        for s in range(seeds):
            tokens.append(n)
            losses.append([loss(n) + (rng.normal(0, noise) if noise else 0.0)])
            ids.append(f"{name}_s{s}")
            seed_ids.append(str(s))
    return RunTable(
        source="synthetic",
        train_domains=domains,
        eval_domains=["all"],
        tokens=np.array(tokens, dtype=float),
        losses=np.array(losses),
        run_ids=ids,
        seeds=seed_ids,
    )


def power_world(a: np.ndarray, b: np.ndarray, c: float = 2.0) -> Callable[[np.ndarray], float]:
    return lambda n: float(c + np.sum(a * n**-b))


def with_defaults(config: dict):
    """A config as every stage sees it: validated, the schema's defaults filled in, typed
    (errors name the source "config", as for a config built in memory)."""
    import copy

    from mixscale.config.check import validate_schema
    from mixscale.config.typed import Config

    return Config.from_dict(validate_schema(copy.deepcopy(config), "config"))


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mixscale", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def run_snakemake(
    workdir: Path, *args: str, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """The workflow as users run it, in workdir, with this venv's tools on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if not any(arg == "slurm" or "profiles/slurm" in arg for arg in args):
        # Runs without the SLURM profile never need the SLURM plugin's start-up query, which
        # waits 9 s where a SLURM client is installed and no controller answers (docs/slurm.md).
        env["SLURM_CONF"] = "/dev/null"
    return subprocess.run(
        [f"{bin_dir}/snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )


def job_counts(stdout: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a (dry) run as {rule: jobs}, without the total."""
    counts, started = {}, False
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            started = True
        elif started and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif started and parts[:1] == ["total"]:
            break
    return counts


def adamw_losses(model, inputs, targets, steps: int) -> list[float]:
    """Losses of ``steps`` AdamW steps on one batch (cross-entropy of ``model(input_ids=
    inputs).logits`` against ``targets``, -100 ignored): what two implementations of one
    model must agree on bit for bit."""
    import torch
    from torch.nn import functional as F  # noqa: N812 - the usual name

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    losses = []
    model.train()
    for _ in range(steps):
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


HEAVY_MODULES = ("transformers.modeling_utils", "torch._dynamo")


def run_cli_watching_imports(
    *args: str, watch: Sequence[str] = HEAVY_MODULES
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``python -m mixscale ARGS``, and which of ``watch`` it had imported when it exited."""
    probe = (
        "import atexit, json, runpy, sys\n"
        f"watch = {list(watch)!r}\n"
        "loaded = lambda: json.dumps([m for m in watch if m in sys.modules])\n"
        "atexit.register(lambda: print('LOADED', loaded()))\n"
        "sys.argv = ['mixscale', *sys.argv[1:]]\n"
        "runpy.run_module('mixscale', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("LOADED ")]
    return result, (json.loads(lines[-1][len("LOADED ") :]) if lines else list(watch))


@pytest.fixture
def cli():
    return run_cli


# --- real text: a small slice of the embedded corpus, built once per test session -------------

DOWNLOADS = ROOT / "resources" / "downloads"  # shared with `make demo`: downloads happen once
TEST_DOMAINS = ("books", "code", "legal")
TINY_MODEL = {"type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4}


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    from mixscale.data.corpus import build_domain

    out = tmp_path_factory.mktemp("corpus")
    for domain in TEST_DOMAINS:
        build_domain(domain, None, out, DOWNLOADS, max_bytes=250_000, seed=0)
    return out


@pytest.fixture(scope="session")
def data_dir(corpus_dir, tmp_path_factory) -> Path:
    """Tokenizer (vocab 512) and token stores of the test domains: <dir>/tokenizer, <dir>/stores."""
    from mixscale.data.tokens import build_store, train_tokenizer

    out = tmp_path_factory.mktemp("data")
    files = {d: str(corpus_dir / f"{d}.jsonl") for d in TEST_DOMAINS}
    train_tokenizer(files, str(out / "tokenizer"), 512, 0, 30_000)
    for d in TEST_DOMAINS:
        build_store(d, files[d], str(out / "tokenizer"), str(out / "stores" / d), 0, 30_000)
    return out


def suite_config(name: str, workdir: Path) -> Path:
    """tests/configs/<name>.yaml with its download cache shared with the rest of the suite."""
    import yaml

    config = yaml.safe_load((ROOT / "tests" / "configs" / f"{name}.yaml").read_text())
    config["data"]["downloads"] = str(DOWNLOADS)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def kill_once_checkpointed(cmd: list[str], out: Path, kill_after: int) -> None:
    """Start a training command, SIGKILL it once a checkpoint at or after ``kill_after``
    exists in ``out``; the run must not have finished."""
    import signal
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not _checkpoint_at_least(out, kill_after):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "killed too late: the run had finished"


def _checkpoint_at_least(out: Path, step: int) -> bool:
    return any(int(p.stem.split("-")[1]) >= step for p in (out / "checkpoints").glob("step-*.pt"))


def tiny_settings(data_dir: Path, **train: object) -> dict[str, object]:
    """Training settings for a model that trains at ~25k tokens/s on one CPU thread."""
    base = {
        "seq_len": 32,
        "batch_sequences": 8,
        "micro_batch": 4,
        "eval_tokens": 1024,
        "checkpoint_every": 5,
        "threads": 1,
        "precision": "fp32",
    }
    return {
        "stores": str(data_dir / "stores"),
        "tokenizer": str(data_dir / "tokenizer"),
        "model": TINY_MODEL,
        "train": {**base, **train},
    }


# `make test` runs pytest-xdist with --dist loadgroup: every test is scheduled on its own,
# except the files below, whose fixtures (a local cluster, trained models) are built once and
# so keep all their tests on one worker (the SLURM tests also share one node: run side by side,
# one's node-down test failed the other's jobs). The longest go first: the SLURM tests, which
# mostly wait on the scheduler, overlap the CPU-bound ones instead of trailing.
KEEP_TOGETHER = (
    "test_slurm.py",
    "test_trainer.py",
    "test_doremi.py",
    "test_downstream.py",
    "test_tracking.py",
    "test_properties.py",
    "test_bad_inputs.py",
    "test_encoder.py",
    "test_finetune.py",
)
FIRST = (
    "test_slurm.py",
    "test_workflow.py",
    "test_encoder_workflow.py",
    "test_trainer.py",
    "test_compile.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order inside a file is kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadgroup with KEEP_TOGETHER's files as the groups. xdist's own grouping reads
    xdist_group marks into the test ids, which pytest 9 no longer lets it change (xdist 3.8
    writes an attribute pytest 9 ignores), so the marks grouped nothing."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class KeepTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if Path(path).name in KEEP_TOGETHER else nodeid

    return KeepTogether(config, log)
