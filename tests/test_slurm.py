"""The workflow on a real SLURM controller: the local single-node cluster of tests/slurm/start.sh
(.ci/run starts it as root and stops it afterwards). Skipped, with the reason, where no
controller answers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from conftest import run_snakemake as snakemake

BIN = str(Path(sys.executable).parent)

# A simulated sweep on two domains: 10 DDO runs + 2 verification runs, each a SLURM job of a
# few seconds; the aggregation rules run where Snakemake runs (localrules).
WORLD = {
    "name": "two",
    "domains": ["web", "code"],
    "skills": [
        {"name": "web", "beta": 45.0, "gamma": 0.22},
        {"name": "code", "beta": 60.0, "gamma": 0.3},
    ],
    "irreducible": 1.7,
}
SWEEP = {
    "experiment": "slurm-sim",
    "backend": "simulate",
    "world": "world.yaml",
    "eval_points": 5,
    "fit": {"form": "auto", "loss": "linear", "bootstrap": 20},
    "ddo": {
        "design": "algorithm1",
        "seeds": 1,
        "scales": [{"name": "1M", "tokens": 1.0e6}, {"name": "3M", "tokens": 3.0e6}],
    },
    "autoscale": {"targets": [3.0e7]},
    "verify": {"methods": ["autoscale", "uniform"]},
}
OUTPUTS = (
    "ddo/1M/weights.json",
    "ddo/3M/weights.json",
    "autoscale/3e+07.json",
    "verify/3e+07.json",
)


def controller_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "no SLURM client here (tests/slurm/start.sh installs one, as root, with apt)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return "no SLURM controller answers (start one with tests/slurm/start.sh as root)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A controller that answers, and the project's profile installed as users install it
    (`mixscale install-profile`), so every test runs the literal `snakemake --profile slurm`."""
    problem = controller_problem()
    if problem:
        pytest.skip(problem)
    config_home = tmp_path_factory.mktemp("xdg-config")
    before = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(config_home)
    installed = subprocess.run(
        [sys.executable, "-m", "mixscale", "install-profile", "--partition", "debug"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (config_home / "snakemake/slurm/config.yaml").is_file()
    yield
    if before is None:
        os.environ.pop("XDG_CONFIG_HOME")
    else:
        os.environ["XDG_CONFIG_HOME"] = before


SWEEPS: list[subprocess.Popen] = []
STOPPED: list[int] = []  # processes a test SIGSTOPped; killed if they outlive it


@pytest.fixture(autouse=True)
def leave_the_cluster_clean():
    """However a test ends: no sweep left running, none of its jobs queued, the node up."""
    yield
    for sweep in SWEEPS:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    SWEEPS.clear()
    for pid in STOPPED:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    STOPPED.clear()
    if controller_problem() is None:
        subprocess.run(["scancel", "--user", str(os.getuid())], check=False)
        node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
        if any(s in node_state(node) for s in ("DOWN", "DRAIN", "FAIL")):
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)


def slurm(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`snakemake --profile slurm` (the installed profile) plus the test overlay (partition, no
    account, short status delays)."""
    return snakemake(
        workdir,
        "--profile",
        "slurm",
        "--workflow-profile",
        str(ROOT / "tests/slurm/profile"),
        *args,
    )


def comparable(value):
    """A result without the fields that record time."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("seconds", "wall_time_s")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_sweep_through_slurm_equals_a_local_run(cluster, tmp_path):
    """Fault test 1: the sweep completes through the SLURM profile, every training run was a
    SLURM job, and the results equal a local-executor run of the same config."""
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for folder in (on_slurm, local):
        folder.mkdir()
        (folder / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
        (folder / "world.yaml").write_text(yaml.safe_dump(WORLD))
    res = slurm(on_slurm, "--configfile", str(on_slurm / "sweep.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    submitted = [line for line in res.stderr.splitlines() if "submitted with SLURM jobid" in line]
    planned = snakemake(local, "-n", "--configfile", str(local / "sweep.yaml"))
    trainings = re.findall(r"^rule train:$", planned.stdout + planned.stderr, flags=re.M)
    assert len([line for line in submitted if "rule_train/" in line]) == len(trainings) == 12
    res = snakemake(local, "-c2", "--configfile", str(local / "sweep.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    for name in OUTPUTS:
        got = json.loads((on_slurm / "results/slurm-sim" / name).read_text())
        want = json.loads((local / "results/slurm-sim" / name).read_text())
        assert comparable(got) == comparable(want), name


TORCH = {
    "experiment": "slurm-torch",
    "backend": "torch",
    "data": {
        "sources": {"books": "builtin", "legal": "builtin"},
        "max_bytes": 400000,
        "validation_bytes": 30000,
        "downloads": str(ROOT / "resources/downloads"),
        "tokenizer": {"vocab_size": 512},
    },
    "model": {"type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4},
    "train": {
        "seq_len": 32,
        "batch_sequences": 8,
        "micro_batch": 4,
        "eval_tokens": 1024,
        "checkpoint_every": 20,
        "precision": "fp32",
        "allow_repeat": True,  # LONG reads each domain more than once
    },
    "accelerator": {"gpus_per_run": 1, "mem_mb": 1000},
    "eval_points": 2,
    "ddo": {
        "seeds": 1,
        "scales": [{"name": "30k", "tokens": 3.0e4}, {"name": "150k", "tokens": 1.5e5}],
    },
    "autoscale": {"targets": [1.0e6]},
}
SHORT, LONG = "ddo-30k-base-s0", "ddo-150k-base-s0"


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A working directory where the local executor built TORCH's corpus, tokenizer and token
    stores, and finished the run SHORT: what an earlier, partial sweep leaves behind. (Session
    scope: built once whatever runs between; the tests using it also ask for cluster.)"""
    problem = controller_problem()
    if problem:
        pytest.skip(problem)
    workdir = tmp_path_factory.mktemp("slurm-prepared")
    config = workdir / "torch.yaml"
    config.write_text(yaml.safe_dump(TORCH))
    targets = [f"results/slurm-torch/runs/{SHORT}/metrics.json"]
    # targets first: --configfile takes every argument that follows it
    res = snakemake(workdir, *targets, "-c2", "--configfile", str(config))
    assert res.returncode == 0, res.stderr[-3000:]
    return workdir


def torch_sweep(workdir: Path, prepared: Path, finished_short: bool = True, **accelerator) -> Path:
    """Real training on two embedded domains: the 150k-token run LONG trains ~8 s on one core
    and checkpoints every 20 of its ~585 steps (the fault tests stop it mid-run: mid_run);
    SHORT (30k tokens) is done in a few seconds. With finished_short the workdir holds SHORT
    finished (and Snakemake's records of it), otherwise only the data."""
    if finished_short:
        shutil.copytree(prepared / "results", workdir / "results")
        shutil.copytree(prepared / ".snakemake", workdir / ".snakemake")
    else:
        data = "results/slurm-torch/data"
        shutil.copytree(prepared / data, workdir / data)
    config = {**TORCH, "accelerator": {**TORCH["accelerator"], **accelerator}}
    path = workdir / "torch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def short_mtime(workdir: Path) -> int:
    return (workdir / "results/slurm-torch/runs" / SHORT / "metrics.json").stat().st_mtime_ns


def wait_for(condition, timeout: float, what, sweep: subprocess.Popen | None = None):
    """Poll condition until it holds; fail at once if the sweep it waits on has ended. what
    names the awaited event (a string, or a function giving one when the wait fails)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if sweep is not None and sweep.poll() is not None:
            described = what() if callable(what) else what
            raise AssertionError(f"the sweep ended (exit {sweep.returncode}) before {described}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def start_sweep(workdir: Path, config: Path, *extra: str) -> subprocess.Popen:
    """The sweep of SHORT and LONG through the SLURM profile, in the background (only LONG is
    left to do); its output goes to workdir/snakemake.log."""
    targets = [f"results/slurm-torch/runs/{r}/metrics.json" for r in (SHORT, LONG)]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = [f"{BIN}/snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--profile", "slurm", "--workflow-profile", str(ROOT / "tests/slurm/profile")]
    with (workdir / "snakemake.log").open("a") as log:
        sweep = subprocess.Popen(
            [*command, *targets, *extra, "--configfile", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    SWEEPS.append(sweep)
    return sweep


def mid_run(workdir: Path, sweep: subprocess.Popen) -> int:
    """Wait until LONG has written two checkpoints, then stop its training process (SIGSTOP)
    and return its SLURM job id. Stopped, it cannot finish before the fault the test injects
    lands (seen in CI on a loaded machine: a scancelled job completed first, nothing to retry);
    SLURM's kill ends a stopped process like a running one."""
    log = workdir / "snakemake.log"
    checkpoints = workdir / "results/slurm-torch/runs" / LONG / "checkpoints"
    wait_for(lambda: len(list(checkpoints.glob("step-*.pt"))) >= 2, 300, "2 checkpoints", sweep)
    stop_training(LONG)
    newest = max(int(p.stem.split("-")[1]) for p in checkpoints.glob("step-*.pt"))
    assert newest < 580, f"LONG is at step {newest} of ~585: too late for a fault mid-run"
    job = re.search(rf"SLURM jobid (\d+) \(log: [^)]*{LONG}", log.read_text())
    assert job, log.read_text()[-2000:]
    assert f"rule_train/{SHORT}/" not in log.read_text()  # the finished run is not submitted
    return int(job.group(1))


def finished_and_resumed(workdir: Path, sweep: subprocess.Popen, finished_mtime: int) -> int:
    """The sweep ends well, LONG resumed from a checkpoint, SHORT was not recomputed."""
    try:
        code = sweep.wait(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert code == 0, (workdir / "snakemake.log").read_text()[-3000:]
    out = workdir / "results/slurm-torch"
    train_log = (out / "logs/train" / f"{LONG}.log").read_text()
    resumed = re.search(r"resumed from checkpoint at step (\d+) of (\d+)", train_log)
    assert resumed, train_log[-2000:]
    # from a checkpoint written before the fault, never from scratch (bit-exact mid-run
    # resumes: tests/test_trainer.py)
    assert 40 <= int(resumed.group(1)) < int(resumed.group(2))
    assert not any(alive(pid) for pid in STOPPED), "the faulted training process outlived it"
    metrics = json.loads((out / "runs" / LONG / "metrics.json").read_text())
    assert metrics["resumed_at_step"] == int(resumed.group(1))
    assert (out / "runs" / SHORT / "metrics.json").stat().st_mtime_ns == finished_mtime
    return int(resumed.group(1))


def test_scancelled_training_job_is_retried_and_resumes_from_its_checkpoint(
    cluster, prepared, tmp_path
):
    """Fault test 2: scancel a training job mid-run. The sweep still completes (Snakemake's
    retry), the job resumed from its checkpoint (the log says at which step), and a run that
    had finished is untouched."""
    config = torch_sweep(tmp_path, prepared)
    finished = short_mtime(tmp_path)
    sweep = start_sweep(tmp_path, config)
    job = mid_run(tmp_path, sweep)
    subprocess.run(["scancel", str(job)], check=True)
    finished_and_resumed(tmp_path, sweep, finished)


def test_node_down_mid_job_then_back(cluster, prepared, tmp_path):
    """Fault test 3: the node goes DOWN under a training job and comes back. SLURM requeues the
    job, which resumes from its checkpoint; nothing finished is recomputed."""
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    config = torch_sweep(tmp_path, prepared)
    finished = short_mtime(tmp_path)
    sweep = start_sweep(tmp_path, config)
    job = mid_run(tmp_path, sweep)
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=down", "reason=mixscale-test"],
            check=True,
        )
        # scontrol's State shows the flags too (DOWN+DRAIN reads "drained" in sinfo)
        seen: list[str] = []
        wait_for(lambda: "DOWN" in seen_state(node, seen), 120, lambda: f"node down (seen {seen})")
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)
    # SLURM requeued the job (same id) and holds it ~2 minutes (BeginTime) before it is
    # eligible again. The "dead" node's processes are still alive here: once the node is
    # back, slurmd reports them and they are killed. Then start the job, as an admin would, to
    # keep the suite short; started while a step of its stale copy is still on the node, it
    # clashes with it ("Duplicate jobid": the node drains and the job is held again), so wait
    # for those, and if it clashes all the same follow docs/slurm.md (resume, release).
    wait_for(lambda: job_field(job, "JobState") == "PENDING", 60, "the requeue", sweep)
    wait_for(lambda: not training_processes(LONG), 120, "the stale copy to be killed", sweep)
    deadline = time.monotonic() + 900
    while sweep.poll() is None and time.monotonic() < deadline:
        if job_field(job, "JobState") == "PENDING" and not job_steps_alive(job):
            reason = job_field(job, "Reason")
            if "DRAIN" in node_state(node):
                subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"])
            if "held" in reason:
                subprocess.run(["scontrol", "release", str(job)], check=False)
            if reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"])
        time.sleep(1)
    finished_and_resumed(tmp_path, sweep, finished)


def job_steps_alive(job: int) -> bool:
    """A slurmstepd of job (batch script or step) still runs on this node."""
    return subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{job}\."]).returncode == 0


def stop_training(run: str) -> list[int]:
    """SIGSTOP the processes training run (there is one per local GPU); their PIDs."""
    found = subprocess.run(
        ["pgrep", "-f", f"mixscale train .*{run}"], capture_output=True, text=True
    ).stdout.split()
    assert found, f"no process trains {run}"
    pids = [int(pid) for pid in found]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    STOPPED.extend(pids)
    return pids


def alive(pid: int) -> bool:
    """pid still runs (a zombie, reaped by nobody yet, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def training_processes(run: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"mixscale train .*{run}"], capture_output=True)
    return found.returncode == 0


def job_field(job: int, name: str) -> str:
    text = subprocess.run(
        ["scontrol", "show", "job", str(job)], capture_output=True, text=True
    ).stdout
    found = re.search(rf"\b{name}=(\S+)", text)
    return found.group(1) if found else ""


def node_state(node: str) -> str:
    """The node's State field with its flags (e.g. IDLE, MIXED+COMPLETING, DOWN+DRAIN); empty
    if the controller did not answer."""
    text = subprocess.run(["scontrol", "show", "node", node], capture_output=True, text=True).stdout
    found = re.search(r"\bState=(\S+)", text)
    return found.group(1) if found else ""


def seen_state(node: str, seen: list[str]) -> str:
    """node_state, remembering each new state in seen (for the message if a wait times out)."""
    state = node_state(node) or "(no answer)"
    if not seen or seen[-1] != state:
        seen.append(state)
    return state


def test_killed_controller_then_documented_recovery(cluster, prepared, tmp_path):
    """Fault test 4: SIGKILL the Snakemake controller mid-sweep. The recovery of docs/slurm.md
    (unlock, cancel the run's orphaned jobs by its SLURM job name, rerun) completes the sweep with
    no finished run recomputed and no output written twice."""
    config = torch_sweep(tmp_path, prepared)
    finished = short_mtime(tmp_path)
    sweep = start_sweep(tmp_path, config)
    mid_run(tmp_path, sweep)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    run_id = re.search(r"SLURM run ID: (\S+)", (tmp_path / "snakemake.log").read_text())
    assert run_id
    # the recovery procedure of docs/slurm.md
    orphans = squeue_names()
    assert run_id.group(1) in orphans  # the orphaned training job is still running
    subprocess.run(["scancel", f"--name={run_id.group(1)}"], check=True)
    wait_for(lambda: run_id.group(1) not in squeue_names(running_only=True), 120, "cancel")
    unlock = slurm(tmp_path, "--configfile", str(config), "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = start_sweep(tmp_path, config)
    finished_and_resumed(tmp_path, rerun, finished)
    rerun_part = (tmp_path / "snakemake.log").read_text().split("SLURM run ID")[-1]
    assert f"rule_train/{SHORT}/" not in rerun_part  # nothing submitted for the finished run


def squeue_names(running_only: bool = False) -> str:
    states = ["-t", "PENDING,RUNNING,CONFIGURING,COMPLETING"] if running_only else []
    return subprocess.run(
        ["squeue", "-h", "-o", "%j", *states], capture_output=True, text=True
    ).stdout


def test_two_gpu_job_launches_torchrun_with_its_gpus(cluster, prepared, tmp_path):
    """A run with accelerator.gpus_per_run: 2 asks SLURM for 2 (fake) GPUs and trains through
    torchrun with one process per GPU (DDP; on CPU here: the GPUs are device files)."""
    path = torch_sweep(tmp_path, prepared, finished_short=False, gpus_per_run=2)
    target = f"results/slurm-torch/runs/{SHORT}/metrics.json"
    res = slurm(tmp_path, target, "--configfile", str(path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "torchrun --standalone --nproc_per_node=2" in res.stderr + res.stdout
    hardware = json.loads(
        (tmp_path / "results/slurm-torch/runs" / SHORT / "metrics.json").read_text()
    )["hardware"]
    assert hardware["processes"] == 2
    assert hardware["cuda_visible_devices"] == "0,1"
