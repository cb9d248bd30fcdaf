"""Checkpoints of a run in its side folder: full state dicts, loaded without running code,
tied to one exact run by a fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from mixscale.fileio import TEMP_PREFIX, naming_the_file

KEEP_CHECKPOINTS = 2


def run_fingerprint(spec: dict[str, Any]) -> str:
    """A checkpoint belongs to one exact run: same mixture, model, settings and data."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_model(model: torch.nn.Module) -> None:
    """FSDP2: shard every transformer block, then the rest (embeddings, head)."""
    from torch.distributed.fsdp import fully_shard

    blocks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    for layer in blocks[0] if blocks else []:
        fully_shard(layer)
    fully_shard(model)


def training_state(model, optimizer, fsdp: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Full (unsharded) model and optimizer state dicts, on the CPU under FSDP; every rank
    must call it under FSDP (it gathers the shards)."""
    if not fsdp:
        return model.state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def load_training_state(model, optimizer, state: dict[str, Any], fsdp: bool) -> None:
    """Checkpoints hold full state dicts: an FSDP run may resume on another number of GPUs."""
    if not fsdp:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=StateDictOptions(full_state_dict=True),
    )


def save_checkpoint(folder: Path, step: int, state: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:09d}.pt"
    # a fresh temporary (mkstemp: created, never opened through a name already there, such as
    # a symlink planted in the folder), renamed over the step's name: this side folder is
    # mixscale's own, so the checkpoint replaces whatever holds that name, never writes through
    with naming_the_file(final):
        fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{final.name}.", suffix=".tmp", dir=folder)
    tmp = Path(name)
    try:
        with naming_the_file(final), os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)  # through a Python file: a full disk raises OSError
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)  # the checkpoints before it stay the ones to resume from
        raise
    for old in sorted(folder.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return final


# what a checkpoint holds; anything else is not one of ours
STATE_KEYS = ("fingerprint", "step", "model", "optimizer", "rng", "curve", "elapsed", "train_time")
OTHER_VERSIONS = "other-versions"  # checkpoints of an edited run, moved aside (not deleted)
UNREADABLE = "unreadable"


def newest_checkpoint(folder: Path, fingerprint: str, log) -> dict[str, Any] | None:
    """The newest checkpoint that loads and belongs to this run.

    Loaded with ``weights_only=True``: tensors and plain containers only, so a file planted in
    the folder cannot run code. A file that is torn, not a checkpoint, or refused is moved to
    ``unreadable/``; one written by another version of this run (its tokens, model or settings
    were edited) to ``other-versions/``. Either way it no longer outranks, or gets pruned
    instead of, this run's own checkpoints, and nothing is deleted."""
    for path in sorted(folder.glob("step-*.pt"), reverse=True):
        state, problem = _load_state(path)
        if problem:
            _move_aside(path, folder / UNREADABLE, log, f"{problem}; trying an older one")
            continue
        if state["fingerprint"] != fingerprint:
            _move_aside(
                path, folder / OTHER_VERSIONS, log, "belongs to another version of this run"
            )
            continue
        return state
    return None


def _load_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return None, "holds objects other than tensors and plain data (refused: could run code)"
    except Exception as exc:  # a torn or corrupt file
        return None, f"unreadable ({exc.__class__.__name__})"
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        return None, "not a mixscale checkpoint"
    return state, None


def _move_aside(path: Path, where: Path, log, why: str) -> None:
    where.mkdir(exist_ok=True)
    target = where / path.name
    for number in range(1, 1000):  # one moved aside before under that name stays too
        if not os.path.lexists(target):
            break
        target = where / f"{path.name}.{number}"
    os.replace(path, target)
    log(f"checkpoint {path.name} {why}: moved to {target}")
