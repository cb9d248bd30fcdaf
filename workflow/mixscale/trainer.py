"""One training run: a causal LM on a mixture of token stores, evaluated per domain.

A plain loop a reader can follow top to bottom (model, optimizer, schedule, batches, evaluation,
checkpoints), the same code path on one CPU process, one GPU, or several under ``torchrun``
(DDP). Checkpoints go to a side folder that is not a Snakemake output; a restarted run resumes
from the newest complete one and, because batches and learning rates are functions of the step
alone, ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.errors import InputError
from mixscale.fileio import write_json
from mixscale.settings import TrainSettings
from mixscale.tokens import MixtureSampler, TokenStore, load_tokenizer, open_store

KEEP_CHECKPOINTS = 2
WARMUP_STEPS = 3  # excluded from the steady-state tokens/s


@dataclass
class Dist:
    """Where this process sits: rank and world size (1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

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
    return Dist(rank=rank, world=world, local_rank=local, device=device)


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


# ---------------------------------------------------------------------------------------------
# model and optimizer


def build_model(
    model_spec: dict[str, Any], vocab_size: int, seq_len: int, seed: int, eos_id: int | None = None
):
    """A transformers causal LM from a config dict (``type`` + its fields) or a checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(model_spec)
    if spec.get("checkpoint"):
        path = spec["checkpoint"]
        if not Path(path).is_dir():
            raise InputError(
                "config",
                "model.checkpoint",
                f"{path} is not a folder",
                "train the base model first",
            )
        return AutoModelForCausalLM.from_pretrained(
            path, attn_implementation="sdpa", dtype=torch.float32
        )
    model_type = spec.pop("type", None)
    if not model_type:
        raise InputError("config", "model.type", "missing", "e.g. gpt2 or llama")
    for key in ("params", "proxy_params"):  # cost-model fields, not architecture
        spec.pop(key, None)
    if model_type == "gpt2":
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            spec.setdefault(key, 0.0)  # no dropout: one-epoch pretraining, and exact resumes
        spec.setdefault("n_positions", seq_len)
    else:
        spec.setdefault("max_position_embeddings", seq_len)
    if eos_id is not None:  # the tokenizer's, not the architecture's default (GPT-2: 50256)
        spec.setdefault("eos_token_id", eos_id)
        spec.setdefault("bos_token_id", eos_id)
    try:
        config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **spec)
    except (ValueError, TypeError) as exc:
        raise InputError(
            "config", "model", str(exc).splitlines()[0], "see transformers' config docs"
        ) from exc
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only; fused kernels where this torch has them."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, foreach=True)


def learning_rate(step: int, total: int, s: TrainSettings) -> float:
    """Linear warmup, then cosine or linear decay to ``min_lr_ratio`` at the last step."""
    warm = round(s.warmup * total)
    if step < warm:
        return s.lr * (step + 1) / warm
    if s.schedule == "constant" or total <= warm + 1:
        return s.lr
    progress = (step - warm) / (total - warm - 1)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if s.schedule == "cosine" else 1 - progress
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * shape)


def next_token_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting tokens 1..L from 0..L-1 (fp32 reduction)."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))


def compiled_loss(model: torch.nn.Module):
    """Forward and loss compiled as one graph, so the cross-entropy fuses with the output layer."""

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return next_token_loss(model, batch)

    return torch.compile(loss)


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    stores: dict[str, TokenStore],
    settings: TrainSettings,
    dist: Dist,
    autocast: Any,
) -> dict[str, float]:
    """Token-weighted mean loss per domain on the first ``eval_tokens`` of its held-out block."""
    model.eval()
    losses = {}
    for domain, store in stores.items():
        windows = held_out_windows(store, settings.eval_tokens, settings.seq_len)
        mine = windows[dist.rank :: dist.world]
        total = torch.zeros(2, dtype=torch.float64)
        # every rank runs the same number of forward passes (an FSDP forward is collective);
        # a rank out of windows repeats one and does not count it
        per_rank = math.ceil(len(windows) / dist.world)
        for start in range(0, per_rank, settings.eval_batch):
            part = mine[start : start + settings.eval_batch]
            batch = torch.from_numpy(np.stack(part or windows[:1])).to(dist.device)
            with autocast():
                logits = model(input_ids=batch[:, :-1], use_cache=False).logits
            if not part:
                continue
            nll = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            )
            total += torch.tensor([nll.item(), batch[:, 1:].numel()], dtype=torch.float64)
        if dist.world > 1:
            torch.distributed.all_reduce(total)
        losses[domain] = float(total[0] / total[1])
    model.train()
    return losses


def held_out_windows(store: TokenStore, tokens: int, seq_len: int) -> list[np.ndarray]:
    """The first ``tokens`` held-out tokens (rounded down to whole windows) as L + 1 windows."""
    count = max(1, tokens // seq_len)
    if len(store.val) < count * seq_len + 1:
        raise InputError(
            store.meta.get("corpus", store.domain),
            "validation",
            f"{store.domain} holds {len(store.val)} held-out tokens, evaluation asks {tokens}",
            "lower train.eval_tokens or raise data.validation_bytes",
        )
    block = np.asarray(store.val[: count * seq_len + 1], dtype=np.int64)
    return [block[i * seq_len : (i + 1) * seq_len + 1] for i in range(count)]


def eval_steps(total_steps: int, points: int) -> list[int]:
    """Steps (1-based counts of finished steps) after which the run is evaluated."""
    points = max(1, min(points, total_steps))
    return sorted({max(1, round(k * total_steps / points)) for k in range(1, points + 1)})


# ---------------------------------------------------------------------------------------------
# checkpoints


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
    tmp = folder / f".step-{step:09d}.pt.tmp"
    torch.save(state, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    for old in sorted(folder.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return final


def newest_checkpoint(folder: Path, fingerprint: str, log) -> dict[str, Any] | None:
    """The newest checkpoint that loads and belongs to this run; others are reported and skipped."""
    for path in sorted(folder.glob("step-*.pt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a torn or corrupt file: fall back to the previous one
            log(
                f"checkpoint {path.name} unreadable ({exc.__class__.__name__}); trying an older one"
            )
            continue
        if state.get("fingerprint") != fingerprint:
            log(f"checkpoint {path.name} belongs to another version of this run; starting fresh")
            return None
        return state
    return None


# ---------------------------------------------------------------------------------------------
# the run


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


def train_run(
    stores_dir: str,
    tokenizer_dir: str,
    model_spec: dict[str, Any],
    tokens: dict[str, float],
    settings: TrainSettings,
    out_dir: str,
    eval_domains: list[str] | None = None,
    log=print,
    progress: bool = True,
    labels: dict[str, Any] | None = None,
    metrics_name: str = "metrics.json",
    domains: list[str] | None = None,
    skip: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Train one run and write ``metrics.json`` (and the model) into ``out_dir``.
    ``skip``: tokens per domain an earlier stage used (annealing reads fresh text)."""
    dist = setup_distributed()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    names = domains or sorted(_store_names(stores_dir))
    stores = {d: open_store(Path(stores_dir) / d, d) for d in names}
    sampler = MixtureSampler(
        stores, tokens, settings.seq_len, settings.seed, settings.allow_repeat, skip
    )
    eval_stores = {d: stores[d] for d in (eval_domains or list(stores)) if _known(d, stores)}
    per_rank = settings.batch_sequences // dist.world
    if settings.batch_sequences % (dist.world * settings.micro_batch):
        raise InputError(
            "config",
            "train.batch_sequences",
            f"{settings.batch_sequences} is not a multiple of processes ({dist.world}) x "
            f"micro_batch ({settings.micro_batch})",
            "make batch_sequences a multiple of gpus x micro_batch",
        )
    accum = per_rank // settings.micro_batch
    total_steps = sampler.steps(settings.batch_sequences)
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    if total_steps <= 0:
        raise InputError(
            "mixture",
            "tokens",
            f"{sampler.total_sequences} sequences make zero steps of {settings.batch_sequences}",
            "raise the run's tokens or lower train.batch_sequences",
        )
    first = next(iter(stores.values())).meta
    vocab, eos_id = int(first["vocab_size"]), first.get("eos_id")
    precision = resolve_precision(settings.precision, dist.device)

    def autocast():
        return torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    model = build_model(model_spec, vocab, settings.seq_len, settings.seed, eos_id).to(dist.device)
    fsdp = dist.world > 1 and settings.parallel == "fsdp"
    if fsdp:
        shard_model(model)
    optimizer = make_optimizer(model, settings)
    fingerprint = run_fingerprint(
        {
            "tokens": sampler.tokens,
            "model": model_spec,
            "settings": asdict(settings),
            "stores": stores_dir,
            **({"skip": sampler.skipped} if any(sampler.skipped.values()) else {}),
        }
    )
    state = newest_checkpoint(ckpt_dir, fingerprint, log) if ckpt_dir.is_dir() else None
    step, curve, elapsed, train_time, resumed_at = 0, [], 0.0, 0.0, None
    if state is not None:
        load_training_state(model, optimizer, state, fsdp)
        torch.set_rng_state(state["rng"])
        step, curve = state["step"], state["curve"]
        elapsed, train_time = state["elapsed"], state["train_time"]
        resumed_at = step
        log(f"resumed from checkpoint at step {step} of {total_steps}")
    ddp = model
    if dist.world > 1 and not fsdp:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    loss_of = compiled_loss(ddp) if settings.compile else partial(next_token_loss, ddp)
    evals = set(eval_steps(total_steps, settings.eval_points))
    every = settings.checkpoint_every or total_steps
    batch_tokens = settings.batch_sequences * settings.seq_len
    rank_part = slice(dist.rank * per_rank, (dist.rank + 1) * per_rank)
    bar = _progress(total_steps, step, progress and dist.main)
    session_start = time.perf_counter()
    session_train = 0.0
    # steady-state speed: the first steps of a process pay for allocation (and compilation)
    steady_from, steady_time, steady_steps = step + WARMUP_STEPS, 0.0, 0
    model.train()
    while step < total_steps:
        t0 = time.perf_counter()
        lr = learning_rate(step, total_steps, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(sampler.batch(step, settings.batch_sequences, rank_part))
        batch = batch.to(dist.device, non_blocking=True)
        loss_sum = 0.0
        for k in range(accum):
            micro = batch[k * settings.micro_batch : (k + 1) * settings.micro_batch]
            # DDP / FSDP reduce gradients only on the last micro-batch of the step
            last = k == accum - 1
            if fsdp:
                model.set_requires_gradient_sync(last)
            context = ddp.no_sync() if (dist.world > 1 and not fsdp and not last) else nullcontext()
            with context:
                with autocast():
                    loss = loss_of(micro) / accum
                loss.backward()
            loss_sum += loss.item()
        if not math.isfinite(loss_sum):
            raise InputError(
                "training",
                "loss",
                f"diverged at step {step + 1} (loss {loss_sum})",
                f"lower train.lr or lengthen warmup; the last good checkpoint is in {ckpt_dir}",
            )
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_time = time.perf_counter() - t0
        session_train += step_time
        if step > steady_from:
            steady_time += step_time
            steady_steps += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", refresh=False)
        if step in evals:
            losses = evaluate(model, eval_stores, settings, dist, autocast)
            curve.append(
                {
                    "step": step,
                    "fraction": step / total_steps,
                    "tokens_seen": step * batch_tokens,
                    "train_loss": loss_sum,
                    "losses": losses,
                    "objective": float(np.mean(list(losses.values()))),
                }
            )
        if step % every == 0 or step == total_steps:
            weights, moments = training_state(model, optimizer, fsdp)  # collective under FSDP
            now = time.perf_counter() - session_start
            if not dist.main:
                continue
            save_checkpoint(
                ckpt_dir,
                step,
                {
                    "fingerprint": fingerprint,
                    "step": step,
                    "model": weights,
                    "optimizer": moments,
                    "rng": torch.get_rng_state(),
                    "curve": curve,
                    "elapsed": elapsed + now,
                    "train_time": train_time + session_train,
                },
            )
    bar.close()
    wall = elapsed + time.perf_counter() - session_start
    train_time += session_train
    final = curve[-1]["losses"]
    params = sum(p.numel() for p in model.parameters())
    seen = total_steps * batch_tokens
    metrics = {
        "backend": "torch",
        "seed": settings.seed,
        "total_tokens": float(sum(sampler.tokens.values())),
        "tokens": {d: float(sampler.tokens.get(d, 0)) for d in tokens},
        "weights": {d: sampler.tokens.get(d, 0) / sum(sampler.tokens.values()) for d in tokens},
        "requested_tokens": {d: float(v) for d, v in tokens.items()},
        "epochs": sampler.epochs,
        "steps": total_steps,
        "tokens_seen": seen,
        "final_losses": final,
        "objective": float(np.mean(list(final.values()))),
        "curve": curve,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "tokens_per_s": seen / train_time if train_time else None,  # training steps only
        "tokens_per_s_steady": steady_steps * batch_tokens / steady_time if steady_time else None,
        "params": params,
        "flops": 6 * params * seen
        + 2 * params * settings.eval_tokens * len(eval_stores) * len(curve),
        "resumed_at_step": resumed_at,
        "hardware": hardware(dist, precision, settings.parallel),
        "settings": asdict(settings),
        "model": model_spec,
        **(labels or {}),
    }
    if settings.save_model:
        plain = model
        if fsdp:  # gather the full weights (collective), then save an ordinary model
            weights, _ = training_state(model, None, fsdp)
            if dist.main:
                plain = build_model(model_spec, vocab, settings.seq_len, settings.seed, eos_id)
                plain.load_state_dict(weights)
        if dist.main:
            save_model(plain, tokenizer_dir, out / "model")
    if dist.main:
        write_json(out / metrics_name, metrics)
    if dist.world > 1:
        torch.distributed.barrier()
    return metrics


def save_initial_model(
    stores_dir: str,
    tokenizer_dir: str,
    model_spec: dict[str, Any],
    seq_len: int,
    seed: int,
    out: str,
) -> int:
    """The architecture as initialised before step 0 (a run's seed gives the same weights):
    the floor that downstream scores of trained models are read against. Returns parameters."""
    names = sorted(_store_names(stores_dir))
    if not names:
        raise InputError(stores_dir, "", "no token stores", "build the stores first")
    meta = open_store(Path(stores_dir) / names[0], names[0]).meta
    model = build_model(model_spec, int(meta["vocab_size"]), seq_len, seed, meta.get("eos_id"))
    save_model(model, tokenizer_dir, Path(out))
    return sum(p.numel() for p in model.parameters())


def save_model(model: torch.nn.Module, tokenizer_dir: str, target: Path) -> None:
    """safetensors + config + tokenizer, loadable by AutoModelForCausalLM and lm-eval's hf model."""
    import shutil

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    load_tokenizer(tokenizer_dir).save_pretrained(str(tmp))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _store_names(stores_dir: str) -> list[str]:
    root = Path(stores_dir)
    if not root.is_dir():
        raise InputError(
            stores_dir, "", "token stores not found", "build them with `mixscale tokens`"
        )
    return [p.name for p in root.iterdir() if (p / "meta.json").is_file()]


def _known(domain: str, stores: dict[str, TokenStore]) -> bool:
    if domain not in stores:
        raise InputError("evaluation", domain, "no token store", f"use one of {', '.join(stores)}")
    return True


def _progress(total: int, initial: int, enabled: bool):
    """A tqdm bar on stdout (the job log); stderr stays for errors, one line each."""
    import sys

    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        mininterval=5.0,
        file=sys.stdout,
    )
