"""CPU training keeps its large freed blocks (mixscale.train.memory): fewer page faults, the
same numbers (tests/test_trainer.py trains with and without it), and the user's own malloc
settings win. Each case runs in a fresh process: malloc settings last for the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# allocate and free a 64 MB tensor (above glibc's 32 MB ceiling for its own threshold), touching
# every page, as a training step does with its logits; print the process's minor page faults
# over 12 allocations once the heap has settled (the first few grow it: torch asks for 64-byte
# aligned blocks, whose split-off remainders keep a freed block from merging at once)
FAULTS = """
import json, resource, sys, torch
from mixscale.train.memory import reuse_freed_memory
said = reuse_freed_memory() if sys.argv[1] == "reuse" else "not called"
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    torch.empty(16 << 20).fill_(1.0)
for _ in range(12):
    step()
before = faults()
for _ in range(12):
    step()
print(json.dumps({"said": said, "faults": faults() - before}))
"""


def run_python(code: str, *args: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MIXSCALE_"))}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, **env},
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_kept_blocks_are_not_faulted_in_again():
    default = run_python(FAULTS, "default")
    kept = run_python(FAULTS, "reuse")
    assert kept["said"] == "glibc, large blocks kept"
    pages = 12 * (64 << 20) // 4096  # every page of every allocation, faulted anew by default
    assert default["faults"] >= 0.9 * pages
    assert kept["faults"] < 0.05 * pages


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"MIXSCALE_CPU_MALLOC": "system"}, "system (MIXSCALE_CPU_MALLOC)"),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "system (MALLOC_TRIM_THRESHOLD_ set)"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "system (GLIBC_TUNABLES set)"),
        ({"LD_PRELOAD": ""}, "system (LD_PRELOAD set)"),
    ],
)
def test_the_users_own_malloc_settings_are_left_alone(env, said):
    code = (
        "import json; from mixscale.train.memory import reuse_freed_memory as r; "
        "print(json.dumps({'said': r()}))"
    )
    assert run_python(code, **env)["said"] == said
