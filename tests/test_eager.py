"""mixscale.train.eager.EagerAdamW against torch's AdamW: the same updates bit for bit, the
same state dicts both ways, and no torch._dynamo import (the reason it exists)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from mixscale.train.eager import EagerAdamW


def model_and_batch(seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Embedding(50, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 50)
    )
    return model, torch.randint(0, 50, (4, 12))


def optimizer(cls, model: torch.nn.Module, **kwargs) -> torch.optim.Optimizer:
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}]
    return cls(groups, lr=3e-3, betas=(0.9, 0.95), **kwargs)


def steps(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: torch.Tensor, n: int):
    losses = []
    for _ in range(n):
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), batch[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kernel", [{"fused": True}, {"foreach": True}, {"foreach": False}])
def test_updates_and_state_equal_torchs_adamw_bit_for_bit(kernel):
    ours_model, batch = model_and_batch(0)
    theirs_model, _ = model_and_batch(0)
    ours = optimizer(EagerAdamW, ours_model, **kernel)
    theirs = optimizer(torch.optim.AdamW, theirs_model, **kernel)
    assert steps(ours_model, ours, batch, 5) == steps(theirs_model, theirs, batch, 5)
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        assert torch.equal(a, b)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    for key, state in torchs["state"].items():
        for name, value in state.items():
            assert torch.equal(mine["state"][key][name], value)


def test_state_dicts_load_both_ways_and_continue_identically():
    """A checkpoint of one resumes in the other: the runs go on bit for bit."""
    model_a, batch = model_and_batch(1)
    opt_a = optimizer(torch.optim.AdamW, model_a, foreach=True)
    steps(model_a, opt_a, batch, 3)
    model_b, _ = model_and_batch(1)
    model_b.load_state_dict(model_a.state_dict())
    opt_b = optimizer(EagerAdamW, model_b, foreach=True)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from a checkpoint file
    assert steps(model_a, opt_a, batch, 3) == steps(model_b, opt_b, batch, 3)
    back = optimizer(torch.optim.AdamW, model_b, foreach=True)
    back.load_state_dict(copy.deepcopy(opt_b.state_dict()))
    assert back.state_dict()["state"][0]["exp_avg"].equal(opt_b.state_dict()["state"][0]["exp_avg"])


def test_differentiable_steps_are_refused():
    model, _ = model_and_batch(0)
    with pytest.raises(ValueError, match="differentiate"):
        optimizer(EagerAdamW, model, differentiable=True).step()


def test_training_with_it_never_imports_dynamo():
    code = (
        "import sys, torch\n"
        "from mixscale.train.eager import EagerAdamW\n"
        "m = torch.nn.Linear(4, 2)\n"
        "o = EagerAdamW(m.parameters(), lr=0.1, fused=True)\n"
        "m(torch.ones(3, 4)).sum().backward(); o.step(); o.zero_grad()\n"
        "o.load_state_dict(o.state_dict())\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'none')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"
