"""train.compile: auto decides from the run alone, a compiled run trains like an uncompiled one,
and a compiler that fails (no C++ compiler on the node) falls back to the plain loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_settings
from mixscale.config.training import TrainSettings
from mixscale.errors import InputError
from mixscale.train.compiling import BREAK_EVEN_FLOPS, choose

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_auto_compiles_only_runs_that_pay_it_back():
    below, above = 0.5 * BREAK_EVEN_FLOPS["cpu"], 2 * BREAK_EVEN_FLOPS["cpu"]
    assert not choose("auto", CPU, below, doremi=False).compiled
    assert choose("auto", CPU, above, doremi=False).compiled
    # a GPU's break-even is higher (faster steps, a longer compile), in the reason
    assert not choose("auto", CUDA, above, doremi=False).compiled
    assert "on cuda" in choose("auto", CUDA, above, doremi=False).reason
    assert choose(True, CPU, 1.0, doremi=False).compiled  # an explicit setting wins
    assert not choose(False, CPU, 1e30, doremi=False).compiled
    assert not choose(True, CPU, 1e30, doremi=True).compiled  # DoReMi's own loss


def test_bad_compile_setting_is_one_line():
    with pytest.raises(InputError) as err:
        TrainSettings.from_dict({"compile": "sometimes"})
    assert err.value.field == "train.compile" and "auto, true or false" in err.value.one_line()
    assert TrainSettings.from_dict({}).compile == "auto"


def _train(out: Path, data_dir: Path, compile_setting, env: dict | None = None) -> dict:
    spec = {"id": "c", "stage": "ddo", "seed": 0, "total_tokens": 12_000}
    spec["tokens"] = {"books": 6_000, "code": 6_000}
    settings = tiny_settings(data_dir, compile=compile_setting, save_model=False)
    cmd = [
        *(sys.executable, "-m", "mixscale", "train", "--backend", "torch"),
        *("--spec", json.dumps(spec), "--settings", json.dumps(settings)),
        *("--eval-points", "2", "--tracking", "none", "--out", str(out / "metrics.json")),
    ]
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(out / "inductor")}
    result = subprocess.run(
        cmd, env={**os.environ, **cache, **(env or {})}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["log"] = result.stdout + result.stderr
    return metrics


@pytest.mark.slow
def test_compiled_run_trains_like_the_plain_loop_and_a_failed_compile_falls_back(
    data_dir, tmp_path
):
    plain = _train(tmp_path / "plain", data_dir, "auto")  # a tiny run: auto leaves it plain
    assert plain["compile"]["compiled"] is False and "auto:" in plain["compile"]["reason"]
    fast = _train(tmp_path / "fast", data_dir, True)
    assert fast["compile"]["compiled"] is True and fast["compile"]["compile_seconds"] > 0
    # same data, same initialisation: fused kernels change rounding, not the training
    for domain, loss in plain["final_losses"].items():
        assert fast["final_losses"][domain] == pytest.approx(loss, rel=2e-3)
    broken = _train(tmp_path / "broken", data_dir, True, env={"CXX": "/bin/false"})
    assert broken["compile"]["compiled"] is False
    assert "torch.compile failed" in broken["compile"]["reason"]
    assert "warning: torch.compile failed" in broken["log"]
    # the fallback is the plain loop, bit for bit: the probe left no trace
    assert broken["final_losses"] == plain["final_losses"]
