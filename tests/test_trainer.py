"""The trainer on real text with a tiny GPT-2: exact resume, saved models, DDP, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import kill_once_checkpointed, tiny_settings
from mixscale.config.training import TrainSettings
from mixscale.data.tokens import open_store
from mixscale.train.model import learning_rate
from mixscale.train.validation import eval_steps, held_out_windows

MIX = {"books": 24_000, "code": 16_000, "legal": 8_000}


def spec(tokens=None, seed=1, run="r"):
    tokens = MIX if tokens is None else tokens
    return {
        "id": run,
        "stage": "ddo",
        "seed": seed,
        "total_tokens": sum(tokens.values()),
        "tokens": tokens,
    }


def train_cmd(out: Path, settings: dict, run_spec: dict | None = None, launcher=None) -> list[str]:
    args = [
        "-m",
        "mixscale",
        "train",
        "--backend",
        "torch",
        "--spec",
        json.dumps(run_spec or spec()),
        "--settings",
        json.dumps(settings),
        "--eval-points",
        "4",
        "--out",
        str(out / "metrics.json"),
    ]
    return [*(launcher or [sys.executable]), *args]


def run_train(out: Path, settings: dict, run_spec: dict | None = None, launcher=None):
    return subprocess.run(
        train_cmd(out, settings, run_spec, launcher), capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="session")
def reference(data_dir, tmp_path_factory) -> Path:
    """One uninterrupted run that the other tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    result = run_train(out, tiny_settings(data_dir))
    assert result.returncode == 0, result.stderr
    return out


def test_metrics_describe_the_run(reference):
    m = json.loads((reference / "metrics.json").read_text())
    assert m["tokens"] == {d: float(v) for d, v in MIX.items()}
    assert sum(m["weights"].values()) == pytest.approx(1.0)
    assert m["steps"] == sum(MIX.values()) // 32 // 8
    assert m["tokens_seen"] == m["steps"] * 8 * 32
    assert [p["step"] for p in m["curve"]] == eval_steps(m["steps"], 4)
    assert set(m["final_losses"]) == {"books", "code", "legal"}
    assert m["objective"] == pytest.approx(np.mean(list(m["final_losses"].values())))
    assert m["curve"][-1]["objective"] < m["curve"][0]["objective"]  # it learns
    assert max(m["epochs"].values()) < 1 and m["tokens_per_s"] > 0 and m["flops"] > 0
    assert m["hardware"]["precision"] == "fp32" and m["resumed_at_step"] is None


def test_kill_9_at_random_steps_then_resume_is_bit_identical(reference, data_dir, tmp_path):
    """SIGKILL at 6 random steps (one fresh run each, two at a time); every rerun resumes from
    its checkpoint and ends bit-identical to the uninterrupted run: 6/6 (the encoder's masked
    LM is killed at two more points in test_encoder.py)."""
    settings = tiny_settings(data_dir)
    want = json.loads((reference / "metrics.json").read_text())
    rng = np.random.default_rng(7)
    kill_points = sorted(rng.choice(np.arange(6, want["steps"] - 5), 6, replace=False))
    with ThreadPoolExecutor(max_workers=2) as pool:
        trials = [
            pool.submit(_kill_then_resume, tmp_path / f"k{k}", settings, int(kill_after))
            for k, kill_after in enumerate(kill_points)
        ]
        results = [t.result() for t in trials]
    weights = (reference / "model" / "model.safetensors").read_bytes()
    for kill_after, (got, stdout, out) in zip(kill_points, results, strict=True):
        assert got["resumed_at_step"] and got["resumed_at_step"] >= kill_after
        assert f"resumed from checkpoint at step {got['resumed_at_step']}" in stdout
        assert got["curve"] == want["curve"] and got["final_losses"] == want["final_losses"]
        assert (out / "model" / "model.safetensors").read_bytes() == weights
    resumed = [got["resumed_at_step"] for got, _, _ in results]
    assert len(resumed) == 6 and len(set(resumed)) >= 5  # really different kill points


def _kill_then_resume(out: Path, settings: dict, kill_after: int) -> tuple[dict, str, Path]:
    """Train, SIGKILL once a checkpoint at or after kill_after exists, train again."""
    kill_once_checkpointed(train_cmd(out, settings), out, kill_after)
    result = run_train(out, settings)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "metrics.json").read_text()), result.stdout, out


def test_retraining_from_scratch_is_bit_identical(reference, data_dir, tmp_path, monkeypatch):
    """Same settings, precision and thread count: a second run from nothing reproduces the
    first one's loss curve, final losses and saved weights byte for byte, also with glibc's
    default malloc instead of the kept large blocks (mixscale.train.memory)."""
    monkeypatch.setenv("MIXSCALE_CPU_MALLOC", "system")
    result = run_train(tmp_path, tiny_settings(data_dir))
    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["resumed_at_step"] is None
    if sys.platform.startswith("linux"):
        assert want["hardware"]["cpu_malloc"] == "glibc, large blocks kept"
    assert got["hardware"]["cpu_malloc"] == "system (MIXSCALE_CPU_MALLOC)"
    assert got["curve"] == want["curve"] and got["final_losses"] == want["final_losses"]
    weights = (tmp_path / "model" / "model.safetensors").read_bytes()
    assert weights == (reference / "model" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("native_bf16", [True, False])
def test_demo_precision_gives_the_same_losses_whatever_the_cpu(
    native_bf16, reference, data_dir, tmp_path, monkeypatch
):
    """The embedded default pins its precision, so a CPU with native bf16 and one without train
    the same numbers: both answers of the bf16 detection give the reference run's losses."""
    import yaml

    from mixscale.cli.main import main
    from mixscale.train import distributed

    demo = yaml.safe_load(Path("config/config.yaml").read_text())["train"]["precision"]
    monkeypatch.setattr(distributed, "cpu_supports_bf16", lambda: native_bf16)
    assert distributed.resolve_precision(demo, torch.device("cpu")) == "fp32"  # as the reference
    argv = train_cmd(tmp_path, tiny_settings(data_dir, precision=demo))[3:]  # after -m mixscale
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # the trainer set its own in this process
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["hardware"]["precision"] == "fp32"
    assert got["curve"] == want["curve"] and got["final_losses"] == want["final_losses"]


def test_saved_model_loads_and_reproduces_the_final_loss(reference, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(reference / "model").eval()
    tok = AutoTokenizer.from_pretrained(reference / "model")
    assert len(tok) == model.config.vocab_size == 512
    m = json.loads((reference / "metrics.json").read_text())
    store = open_store(data_dir / "stores" / "code")
    windows = torch.from_numpy(np.stack(held_out_windows(store, 1024, 32)))
    with torch.no_grad():
        out = model(input_ids=windows[:, :-1], labels=None)
        loss = torch.nn.functional.cross_entropy(
            out.logits.reshape(-1, 512), windows[:, 1:].reshape(-1)
        )
    assert float(loss) == pytest.approx(m["final_losses"]["code"], abs=1e-5)


def test_two_process_ddp_matches_one_process(reference, data_dir, tmp_path):
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    result = run_train(tmp_path, tiny_settings(data_dir), launcher=torchrun)
    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["hardware"]["processes"] == 2
    for d, loss in want["final_losses"].items():  # same batches, gradients averaged by DDP
        assert got["final_losses"][d] == pytest.approx(loss, abs=1e-4)


def test_divergence_stops_with_the_last_good_checkpoint(data_dir, tmp_path):
    settings = tiny_settings(data_dir, lr=1e30, warmup=0.0, checkpoint_every=1)
    result = run_train(tmp_path, settings)
    assert result.returncode == 2
    assert "diverged at step" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "checkpoints").glob("step-*.pt"))
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    ("tokens", "train", "message"),
    [
        ({"poetry": 1000}, {}, "no token store"),
        ({"books": 10**9}, {}, "the domain holds"),
        ({"books": 64}, {}, "zero steps"),
        (MIX, {"eval_tokens": 10**8}, "held-out tokens"),
        (MIX, {"batch_sequences": 6}, "not a multiple"),
        (MIX, {"learning_rate": 1e-3}, "unknown key"),
        (MIX, {"seq_len": 0}, "must be > 0"),
    ],
)
def test_bad_input_gives_one_line_errors(data_dir, tmp_path, tokens, train, message):
    result = run_train(tmp_path, tiny_settings(data_dir, **train), spec(tokens))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert message in result.stderr and len(lines) == 1, result.stderr


def test_schedule_warms_up_then_decays_to_the_floor():
    s = TrainSettings(lr=1.0, warmup=0.1, min_lr_ratio=0.1)
    lrs = [learning_rate(k, 100, s) for k in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(0.1)
    assert eval_steps(10, 4) == [2, 5, 8, 10] and eval_steps(3, 10) == [1, 2, 3]


def test_edited_run_moves_old_checkpoints_aside_and_keeps_its_own(reference, data_dir, tmp_path):
    """A run whose mixture was edited (same id) never resumes another version's checkpoints;
    they are moved aside, not deleted, and no longer outrank (or get pruned instead of) the
    run's own: here the old ones have higher step numbers than the whole edited run."""
    import shutil

    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    old = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*.pt"))
    smaller = {"books": 8_000, "code": 8_000, "legal": 8_000}  # fewer steps than the old run
    result = run_train(tmp_path, tiny_settings(data_dir), spec(smaller))
    assert result.returncode == 0, result.stderr
    assert "belongs to another version of this run: moved to" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_at_step"] is None
    aside = sorted(p.name for p in (tmp_path / "checkpoints/other-versions").glob("*.pt"))
    assert aside == old
    own = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    assert own and int(own[-1].stem.split("-")[1]) == metrics["steps"]
    # and the edited run resumes from its own checkpoints
    (tmp_path / "metrics.json").unlink()
    again = run_train(tmp_path, tiny_settings(data_dir), spec(smaller))
    assert again.returncode == 0, again.stderr
    assert f"resumed from checkpoint at step {metrics['steps']}" in again.stdout
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed["final_losses"] == metrics["final_losses"]


class _Payload:
    """What an attacker plants: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_checkpoint_cannot_run_code(data_dir, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    planted = folder / "step-999999999.pt"
    torch.save({"fingerprint": "x", "payload": _Payload(marker)}, planted)
    torch.save([1, 2, 3], folder / "step-999999998.pt")  # the wrong object: not a checkpoint
    result = run_train(tmp_path / "run", tiny_settings(data_dir))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "step-999999999.pt holds objects other than tensors and plain data" in result.stdout
    assert "step-999999998.pt not a mixscale checkpoint" in result.stdout
    unreadable = sorted(p.name for p in (folder / "unreadable").iterdir())
    assert unreadable == ["step-999999998.pt", "step-999999999.pt"]
    assert json.loads((tmp_path / "run/metrics.json").read_text())["resumed_at_step"] is None


def test_llama_family_trains_from_config(data_dir, tmp_path):
    llama = {
        "type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    settings = {**tiny_settings(data_dir, max_steps=20), "model": llama}
    result = run_train(tmp_path, settings)
    assert result.returncode == 0, result.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["steps"] == 20 and m["curve"][-1]["objective"] < m["curve"][0]["objective"]
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "model").model_type == "llama"


def test_training_from_a_checkpoint_starts_where_the_base_model_is(reference, data_dir, tmp_path):
    """Annealing starts from saved weights: its first evaluation is near the base model's
    final loss, far below a fresh model's first evaluation."""
    base = json.loads((reference / "metrics.json").read_text())
    settings = {
        **tiny_settings(data_dir, max_steps=8, lr=1e-4),
        "model": {"checkpoint": str(reference / "model")},
    }
    result = run_train(tmp_path, settings, spec(seed=5))
    assert result.returncode == 0, result.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["curve"][0]["objective"] < base["curve"][0]["objective"] - 0.2
    assert abs(m["curve"][0]["objective"] - base["objective"]) < 0.1


def test_two_process_fsdp_matches_one_process_and_resumes(reference, data_dir, tmp_path):
    """FSDP2 (what a 7B model needs) on 2 CPU processes: same losses as one process, and a run
    killed mid-way resumes from its full-state checkpoint to the same result."""
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    settings = tiny_settings(data_dir, parallel="fsdp")
    result = run_train(tmp_path, settings, launcher=torchrun)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["hardware"]["processes"] == 2 and got["hardware"]["parallel"] == "fsdp"
    assert got["params"] == want["params"]
    for d, loss in want["final_losses"].items():
        assert got["final_losses"][d] == pytest.approx(loss, abs=1e-4)
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model")  # an ordinary model
    assert sum(p.numel() for p in saved.parameters()) == want["params"]
    # resume: drop the final checkpoint and metrics, rerun, same final losses
    checkpoints = sorted((tmp_path / "checkpoints").glob("step-*.pt"))
    checkpoints[-1].unlink()
    (tmp_path / "metrics.json").unlink()
    again = run_train(tmp_path, settings, launcher=torchrun)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed["resumed_at_step"] is not None
    for d, loss in got["final_losses"].items():
        assert resumed["final_losses"][d] == pytest.approx(loss, abs=1e-6)
