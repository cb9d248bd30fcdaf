"""Where a training process runs: rank, device, precision, and what hardware the run records."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixscale.train.memory import reuse_freed_memory


@dataclass
class Dist:
    """Where this process sits: rank and world size (1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cpu_malloc: str = "system"  # how host memory is allocated (mixscale.train.memory)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    # a CPU step's large tensors come back every step: keep them instead of re-faulting them
    malloc = reuse_freed_memory() if device.type == "cpu" else "system"
    return Dist(rank=rank, world=world, local_rank=local, device=device, cpu_malloc=malloc)


def cpu_supports_bf16() -> bool:
    """bf16 autocast pays off on CPUs with native bf16 (AVX512-BF16, AMX); elsewhere it crawls."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def hardware(dist: Dist, precision: str, parallel: str = "ddp") -> dict[str, Any]:
    info = {
        "device": dist.device.type,
        "processes": dist.world,
        "parallel": parallel if dist.world > 1 else None,
        # what the scheduler handed this job (SLURM sets it from the gres allocation)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "threads_per_process": torch.get_num_threads(),
        "precision": precision,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_malloc": dist.cpu_malloc,
    }
    if dist.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dist.device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def all_reduce_sum(values):
    """A numpy array summed over every process (float64 on the run's device)."""
    import numpy as np

    device = (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    )
    tensor = torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.cpu().numpy()
