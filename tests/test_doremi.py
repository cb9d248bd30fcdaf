"""DoReMi in the trainer: the Group DRO update against a hand-computed step, and a real proxy run
(tiny GPT-2 on real text, against a trained reference model) that learns weights, checkpoints
them, and resumes after kill -9 bit-identically."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time

import numpy as np
import pytest
from test_trainer import run_train, spec, train_cmd

from conftest import tiny_settings
from mixscale.train.doremi import update_weights


def test_update_against_a_hand_computed_step():
    weights = np.array([0.5, 0.3, 0.2])
    excess = np.array([0.0, 1.0, 0.5])  # domain 0 absent or no excess
    # log w + eta * excess, softmax, then (1 - c) w + c / m, by hand
    raw = [0.5 * math.exp(0.0), 0.3 * math.exp(1.0), 0.2 * math.exp(0.5)]
    total = sum(raw)
    expected = [(1 - 1e-3) * r / total + 1e-3 / 3 for r in raw]
    assert update_weights(weights, excess, eta=1.0, smoothing=1e-3) == pytest.approx(
        expected, rel=1e-12
    )
    # eta scales the step; no excess leaves the weights (up to smoothing) unchanged
    assert update_weights(weights, np.zeros(3), 1.0, 0.0) == pytest.approx(weights)
    strong = update_weights(weights, excess, eta=10.0, smoothing=0.0)
    assert strong.argmax() == 1 and strong.sum() == pytest.approx(1.0)


@pytest.fixture(scope="session")
def reference_model(data_dir, tmp_path_factory):
    """DoReMi's reference: a tiny model trained on the uniform proxy mixture."""
    out = tmp_path_factory.mktemp("doremi-reference")
    res = run_train(out, tiny_settings(data_dir), spec(run="reference"))
    assert res.returncode == 0, res.stderr[-3000:]
    return out / "model"


def doremi_spec(reference_model, eta: float = 1.0) -> dict:
    return {
        **spec(run="doremi"),
        "doremi": {"reference_model": str(reference_model), "eta": eta, "smoothing": 1e-3},
    }


def test_proxy_run_learns_weights_and_resumes_bit_identically(reference_model, data_dir, tmp_path):
    settings = tiny_settings(data_dir, checkpoint_every=5)
    run_spec = doremi_spec(reference_model, eta=5.0)
    whole = tmp_path / "whole"
    res = run_train(whole, settings, run_spec)
    assert res.returncode == 0, res.stderr[-3000:]
    want = json.loads((whole / "metrics.json").read_text())
    learned = want["doremi"]
    assert learned["steps"] == want["steps"]
    assert sum(learned["weights"].values()) == pytest.approx(1.0)
    assert set(learned["weights"]) == set(want["tokens"])
    # the proxy starts as a fresh model against a trained one: excess losses move the weights
    assert max(abs(w - 1 / 3) for w in learned["final_weights"].values()) > 1e-3
    # kill -9 after a checkpoint mid-run, then resume: same weights and losses, bit for bit
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cmd(out, settings, run_spec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while proc.poll() is None and not list((out / "checkpoints").glob("step-*.pt"))[1:]:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "killed too late: the run had finished"
    res = run_train(out, settings, run_spec)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((out / "metrics.json").read_text())
    assert got["resumed_at_step"] and "resumed from checkpoint" in res.stdout
    assert got["doremi"] == learned
    assert got["curve"] == want["curve"] and got["final_losses"] == want["final_losses"]


def test_uniform_reference_of_itself_is_a_plain_run(reference_model, data_dir, tmp_path):
    """eta 0 on a uniform mixture: the weights never move and each sequence weighs
    alpha_d / p_d = 1, the ordinary mean loss: the same model as a run without DoReMi."""
    settings = tiny_settings(data_dir)
    uniform = {"books": 16_000, "code": 16_000, "legal": 16_000}
    plain = tmp_path / "plain"
    assert run_train(plain, settings, spec(uniform, run="doremi")).returncode == 0
    zero = tmp_path / "zero"
    run_spec = {**doremi_spec(reference_model, eta=0.0), "tokens": uniform}
    run_spec["total_tokens"] = sum(uniform.values())
    res = run_train(zero, settings, run_spec)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((plain / "metrics.json").read_text())
    b = json.loads((zero / "metrics.json").read_text())
    assert b["doremi"]["weights"] == pytest.approx(dict.fromkeys(a["tokens"], 1 / 3), abs=1e-12)
    assert b["final_losses"] == pytest.approx(a["final_losses"], rel=1e-5)
