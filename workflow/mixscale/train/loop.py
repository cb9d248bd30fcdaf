"""One training run: a causal or masked LM on a mixture of token stores, evaluated per domain.

``train_run`` reads top to bottom as the steps of a run: ``prepare`` (stores, sampler, model,
optimizer), ``resume`` (the newest checkpoint of this exact run), then per step ``train_step``,
``record_evaluation`` at the evaluation points and ``save_progress`` at the checkpoint points,
and ``finish`` (metrics.json and the saved model). The same code path runs on one CPU process,
one GPU, or several under ``torchrun`` (DDP or FSDP2). Checkpoints go to a side folder that is
not a Snakemake output; because batches and learning rates are functions of the step alone, a
resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixscale.config.training import TrainSettings
from mixscale.data.tokens import MixtureSampler, TokenStore, open_store
from mixscale.errors import InputError
from mixscale.fileio import write_json
from mixscale.train.checkpoints import (
    load_training_state,
    newest_checkpoint,
    run_fingerprint,
    save_checkpoint,
    shard_model,
    training_state,
)
from mixscale.train.compiling import CompileChoice, choose, loss_function
from mixscale.train.distributed import (
    Dist,
    all_reduce_sum,
    hardware,
    resolve_precision,
    setup_distributed,
)
from mixscale.train.doremi import ETA, SMOOTHING, DoReMi
from mixscale.train.model import (
    build_model,
    learning_rate,
    make_optimizer,
    save_model,
    store_names,
)
from mixscale.train.objectives import Objective, make_objective
from mixscale.train.tracking import Trackers, open_trackers
from mixscale.train.validation import eval_steps, eval_store, evaluate

WARMUP_STEPS = 3  # excluded from the steady-state tokens/s


@dataclass
class Prepared:
    """Everything a run needs before its first step; fixed for the whole run."""

    dist: Dist
    settings: TrainSettings
    model_spec: dict[str, Any]
    stores_dir: str
    tokenizer_dir: str
    out: Path
    stores: dict[str, TokenStore]
    eval_stores: dict[str, TokenStore]
    sampler: MixtureSampler
    per_rank: int  # sequences per process per step
    accum: int  # micro-batches per process per step
    total_steps: int
    vocab: int
    eos_id: int | None
    precision: str
    model: torch.nn.Module
    fsdp: bool
    optimizer: torch.optim.Optimizer
    fingerprint: str
    compile: CompileChoice
    objective: Objective  # what the model learns to predict: next or masked tokens
    doremi: DoReMi | None = None  # a DoReMi proxy run: online domain weights

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def batch_tokens(self) -> int:
        return self.settings.batch_sequences * self.settings.seq_len

    def autocast(self):
        return torch.autocast(
            self.dist.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )


@dataclass
class Progress:
    """What changes as the run goes: saved in every checkpoint, restored on resume."""

    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # wall time of earlier sessions of this run
    train_time: float = 0.0  # time in training steps of earlier sessions
    resumed_at: int | None = None
    session_start: float = field(default_factory=time.perf_counter)
    session_train: float = 0.0
    # steady-state speed: the first steps of a process pay for allocation (and compilation)
    steady_from: int = 0
    steady_time: float = 0.0
    steady_steps: int = 0
    last_step_time: float = 0.0  # the latest step's wall time (tracked as tokens/s)


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
    doremi: dict[str, Any] | None = None,
    tracking: list[str] | None = None,
) -> dict[str, Any]:
    """Train one run and write ``metrics.json`` (and the model) into ``out_dir``.
    ``skip``: tokens per domain an earlier stage used (annealing reads fresh text).
    ``doremi``: a DoReMi proxy run ({reference_model, eta, smoothing}).
    ``tracking``: experiment trackers (tensorboard, wandb, mlflow) writing into the run folder."""
    run = prepare(
        stores_dir,
        tokenizer_dir,
        model_spec,
        tokens,
        settings,
        out_dir,
        eval_domains,
        domains,
        skip,
        doremi,
    )
    state = resume(run, log)
    trackers = _open_trackers(run, state, tracking, labels)
    wrapped = distributed_model(run)
    loss_of = loss_function(
        wrapped, run.objective.loss, run.compile, partial(_probe, run, state), log
    )
    evals = set(eval_steps(run.total_steps, settings.eval_points))
    every = settings.checkpoint_every or run.total_steps
    bar = _progress(run.total_steps, state.step, progress and run.dist.main)
    run.model.train()
    while state.step < run.total_steps:
        loss_sum, lr = train_step(run, state, wrapped, loss_of)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", refresh=False)
        trackers.log(state.step, step_scalars(run, state, loss_sum, lr))
        if state.step in evals:
            record_evaluation(run, state, loss_sum)
            trackers.log(state.step, evaluation_scalars(run, state))
        if state.step % every == 0 or state.step == run.total_steps:
            save_progress(run, state)
    bar.close()
    trackers.close()
    return finish(run, state, tokens, labels, metrics_name)


def _open_trackers(
    run: Prepared, state: Progress, tracking: list[str] | None, labels: dict[str, Any] | None
) -> Trackers:
    config = {
        "run": (labels or {}).get("run") or run.out.name,
        "model": run.model_spec,
        "train": asdict(run.settings),
        "tokens": dict(run.sampler.tokens),
        "precision": run.precision,
        "objective": run.objective.kind,
    }
    return open_trackers(
        tracking or [],
        run.out,
        config["run"],
        run.fingerprint,
        config,
        state.resumed_at,
        run.dist.main,
    )


def step_scalars(run: Prepared, state: Progress, loss: float, lr: float) -> dict[str, float]:
    """What every step logs: its training loss, learning rate and speed."""
    speed = run.batch_tokens / state.last_step_time if state.last_step_time else 0.0
    return {"train/loss": loss, "train/lr": lr, "train/tokens_per_s": speed}


def evaluation_scalars(run: Prepared, state: Progress) -> dict[str, float]:
    """What an evaluation point logs: held-out loss per domain, the objective, and the mixture
    (a DoReMi proxy run's current online weights, the run's fixed shares otherwise)."""
    point = state.curve[-1]
    scalars = {f"eval/{d}": float(v) for d, v in point["losses"].items()}
    scalars["eval/objective"] = float(point["objective"])
    if run.doremi is not None:
        weights = dict(zip(run.doremi.domains, run.doremi.weights, strict=True))
    else:
        total = sum(run.sampler.tokens.values())
        weights = {d: v / total for d, v in run.sampler.tokens.items()}
    scalars.update({f"mixture/{d}": float(w) for d, w in weights.items()})
    return scalars


def prepare(
    stores_dir: str,
    tokenizer_dir: str,
    model_spec: dict[str, Any],
    tokens: dict[str, float],
    settings: TrainSettings,
    out_dir: str,
    eval_domains: list[str] | None,
    domains: list[str] | None,
    skip: dict[str, float] | None,
    doremi: dict[str, Any] | None = None,
) -> Prepared:
    """Stores, the mixture's sampler, step counts, model and optimizer; checks the batch fits."""
    dist = setup_distributed()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    names = domains or sorted(store_names(stores_dir))
    stores = {d: open_store(Path(stores_dir) / d, d) for d in names}
    sampler = MixtureSampler(
        stores, tokens, settings.seq_len, settings.order_seed, settings.allow_repeat, skip
    )
    eval_stores = {d: stores.get(d) or eval_store(stores_dir, d) for d in eval_domains or stores}
    if settings.batch_sequences % (dist.world * settings.micro_batch):
        raise InputError(
            "config",
            "train.batch_sequences",
            f"{settings.batch_sequences} is not a multiple of processes ({dist.world}) x "
            f"micro_batch ({settings.micro_batch})",
            "make batch_sequences a multiple of gpus x micro_batch",
        )
    per_rank = settings.batch_sequences // dist.world
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
    model = build_model(model_spec, vocab, settings.seq_len, settings.weights_seed, eos_id)
    model = model.to(dist.device)
    objective = make_objective(model_spec, tokenizer_dir, vocab, eos_id, settings.mask_rate)
    params = sum(p.numel() for p in model.parameters())
    train_flops = 6.0 * params * total_steps * settings.batch_sequences * settings.seq_len
    compiling = choose(settings.compile, dist.device, train_flops, bool(doremi))
    # the decision, not the setting, is what changes the numbers: fingerprinted (a run that
    # `auto` leaves uncompiled resumes checkpoints of `compile: false`, and the reverse)
    settings = dataclasses.replace(settings, compile=compiling.compiled)
    fsdp = dist.world > 1 and settings.parallel == "fsdp"
    if fsdp:
        shard_model(model)
    fingerprint = run_fingerprint(
        {
            "tokens": sampler.tokens,
            "model": model_spec,
            "settings": asdict(settings),
            "stores": stores_dir,
            **({"skip": sampler.skipped} if any(sampler.skipped.values()) else {}),
            **({"doremi": doremi} if doremi else {}),
        }
    )
    return Prepared(
        dist=dist,
        settings=settings,
        model_spec=model_spec,
        stores_dir=stores_dir,
        tokenizer_dir=tokenizer_dir,
        out=Path(out_dir),
        stores=stores,
        eval_stores=eval_stores,
        sampler=sampler,
        per_rank=per_rank,
        accum=per_rank // settings.micro_batch,
        total_steps=total_steps,
        vocab=vocab,
        eos_id=eos_id,
        precision=resolve_precision(settings.precision, dist.device),
        model=model,
        fsdp=fsdp,
        optimizer=make_optimizer(model, settings),
        fingerprint=fingerprint,
        compile=compiling,
        objective=objective,
        doremi=_doremi(doremi, sampler, vocab, settings, eos_id, dist.device, objective),
    )


def _doremi(
    spec, sampler: MixtureSampler, vocab, settings, eos_id, device, objective: Objective
) -> DoReMi | None:
    """The DoReMi state of a proxy run: its frozen reference model and domain shares."""
    if not spec:
        return None
    reference = build_model(
        {"checkpoint": spec["reference_model"]}, vocab, settings.seq_len, settings.seed, eos_id
    ).to(device)
    shares = np.array([sampler.tokens[d] for d in sampler.domains], dtype=float)
    return DoReMi(
        domains=list(sampler.domains),
        shares=shares / shares.sum(),
        reference=reference,
        eta=float(spec.get("eta", ETA)),
        smoothing=float(spec.get("smoothing", SMOOTHING)),
        token_losses=objective.token_losses,
    )


def resume(run: Prepared, log) -> Progress:
    """Progress restored from the newest checkpoint of this exact run, or a fresh start."""
    found = (
        newest_checkpoint(run.checkpoints, run.fingerprint, log)
        if run.checkpoints.is_dir()
        else None
    )
    if found is None:
        return Progress(steady_from=WARMUP_STEPS)
    load_training_state(run.model, run.optimizer, found, run.fsdp)
    torch.set_rng_state(found["rng"])
    if run.doremi is not None:
        run.doremi.load(found["doremi"])
    step = found["step"]
    log(f"resumed from checkpoint at step {step} of {run.total_steps}")
    return Progress(
        step=step,
        curve=found["curve"],
        elapsed=found["elapsed"],
        train_time=found["train_time"],
        resumed_at=step,
        steady_from=step + WARMUP_STEPS,
    )


def _probe(run: Prepared, state: Progress, loss_of) -> None:
    """Forward, loss and backward of this process's first micro-batch with ``loss_of``, the
    gradients and RNG state then restored: what a compile must survive before the first step."""
    s = run.settings
    mine = slice(run.dist.rank * run.per_rank, run.dist.rank * run.per_rank + s.micro_batch)
    batch = run.objective.batch(run.sampler, state.step, s.batch_sequences, mine, s.order_seed)
    rng = torch.get_rng_state()
    with run.autocast():
        loss = loss_of(*(t.to(run.dist.device) for t in batch))
    loss.backward()
    run.optimizer.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)


def distributed_model(run: Prepared) -> torch.nn.Module:
    """The module the forward pass goes through: DDP's wrapper with several processes (FSDP
    shards the model in place), the model itself otherwise."""
    if run.dist.world > 1 and not run.fsdp:
        device = run.dist.device
        return torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return run.model


def train_step(
    run: Prepared, state: Progress, wrapped: torch.nn.Module, loss_of
) -> tuple[float, float]:
    """One optimizer step over this process's share of the step's batch (gradient accumulation
    over micro-batches); returns the step's training loss and learning rate."""
    s, dist = run.settings, run.dist
    t0 = time.perf_counter()
    lr = learning_rate(state.step, run.total_steps, s)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    mine = slice(dist.rank * run.per_rank, (dist.rank + 1) * run.per_rank)
    batch = run.objective.batch(run.sampler, state.step, s.batch_sequences, mine, s.order_seed)
    batch = [t.to(dist.device, non_blocking=True) for t in batch]
    if run.doremi is not None:
        ids = run.sampler.batch_domains(state.step, s.batch_sequences, mine)
    loss_sum = 0.0
    for k in range(run.accum):
        part = slice(k * s.micro_batch, (k + 1) * s.micro_batch)
        micro = [t[part] for t in batch]
        # DDP / FSDP reduce gradients only on the last micro-batch of the step
        last = k == run.accum - 1
        if run.fsdp:
            run.model.set_requires_gradient_sync(last)
        ddp_defer = dist.world > 1 and not run.fsdp and not last
        with wrapped.no_sync() if ddp_defer else nullcontext():
            with run.autocast():
                if run.doremi is not None:
                    loss = run.doremi.loss(wrapped, micro, ids[part]) / run.accum
                else:
                    loss = loss_of(*micro) / run.accum
            loss.backward()
        loss_sum += loss.item()
    if not math.isfinite(loss_sum):
        raise InputError(
            "training",
            "loss",
            f"diverged at step {state.step + 1} (loss {loss_sum})",
            f"lower train.lr or lengthen warmup; the last good checkpoint is in {run.checkpoints}",
        )
    if s.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), s.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.doremi is not None:
        run.doremi.end_step(all_reduce_sum if dist.world > 1 else None)
    state.step += 1
    step_time = time.perf_counter() - t0
    state.last_step_time = step_time
    state.session_train += step_time
    if state.step > state.steady_from:
        state.steady_time += step_time
        state.steady_steps += 1
    return loss_sum, lr


def record_evaluation(run: Prepared, state: Progress, train_loss: float) -> None:
    """Held-out loss per domain at this step, appended to the loss curve."""
    losses = evaluate(
        run.model, run.objective, run.eval_stores, run.settings, run.dist, run.autocast
    )
    state.curve.append(
        {
            "step": state.step,
            "fraction": state.step / run.total_steps,
            "tokens_seen": state.step * run.batch_tokens,
            "train_loss": train_loss,
            "losses": losses,
            "objective": float(np.mean(list(losses.values()))),
        }
    )


def save_progress(run: Prepared, state: Progress) -> None:
    """A checkpoint of model, optimizer, RNG and progress (written by the main process)."""
    weights, moments = training_state(run.model, run.optimizer, run.fsdp)  # collective (FSDP)
    now = time.perf_counter() - state.session_start
    if not run.dist.main:
        return
    save_checkpoint(
        run.checkpoints,
        state.step,
        {
            "fingerprint": run.fingerprint,
            "step": state.step,
            "model": weights,
            "optimizer": moments,
            "rng": torch.get_rng_state(),
            "curve": state.curve,
            "elapsed": state.elapsed + now,
            "train_time": state.train_time + state.session_train,
            **({"doremi": run.doremi.state()} if run.doremi is not None else {}),
        },
    )


def finish(
    run: Prepared,
    state: Progress,
    tokens: dict[str, float],
    labels: dict[str, Any] | None,
    metrics_name: str,
) -> dict[str, Any]:
    """The run's metrics (written last: its presence means the run finished) and its model."""
    s, dist, sampler = run.settings, run.dist, run.sampler
    wall = state.elapsed + time.perf_counter() - state.session_start
    train_time = state.train_time + state.session_train
    final = state.curve[-1]["losses"]
    params = sum(p.numel() for p in run.model.parameters())
    seen = run.total_steps * run.batch_tokens
    total = sum(sampler.tokens.values())
    metrics = {
        "backend": "torch",
        "seed": s.seed,
        **({"init_seed": s.init_seed} if s.init_seed is not None else {}),
        **({"data_seed": s.data_seed} if s.data_seed is not None else {}),
        "total_tokens": float(total),
        "tokens": {d: float(sampler.tokens.get(d, 0)) for d in tokens},
        "weights": {d: sampler.tokens.get(d, 0) / total for d in tokens},
        "requested_tokens": {d: float(v) for d, v in tokens.items()},
        "epochs": sampler.epochs,
        "steps": run.total_steps,
        "tokens_seen": seen,
        "final_losses": final,
        "objective": float(np.mean(list(final.values()))),
        "curve": state.curve,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "tokens_per_s": seen / train_time if train_time else None,  # training steps only
        "tokens_per_s_steady": (
            state.steady_steps * run.batch_tokens / state.steady_time if state.steady_time else None
        ),
        "params": params,
        "flops": 6 * params * seen
        + 2 * params * s.eval_tokens * len(run.eval_stores) * len(state.curve),
        "resumed_at_step": state.resumed_at,
        "hardware": hardware(dist, run.precision, s.parallel),
        "compile": run.compile.to_json(),
        "training_objective": run.objective.kind,
        "metric": run.objective.metric,
        "settings": asdict(s),
        "model": run.model_spec,
        **({"doremi": run.doremi.metrics()} if run.doremi is not None else {}),
        **(labels or {}),
    }
    if s.save_model:
        _save_final_model(run)
    if dist.main:
        write_json(run.out / metrics_name, metrics)
    if dist.world > 1:
        torch.distributed.barrier()
    return metrics


def _save_final_model(run: Prepared) -> None:
    plain = run.model
    if run.fsdp:  # gather the full weights (collective), then save an ordinary model
        weights, _ = training_state(run.model, None, run.fsdp)
        if run.dist.main:
            plain = build_model(
                run.model_spec,
                run.vocab,
                run.settings.seq_len,
                run.settings.weights_seed,
                run.eos_id,
            )
            plain.load_state_dict(weights)
    if run.dist.main:
        save_model(plain, run.tokenizer_dir, run.out / "model")


def _progress(total: int, initial: int, enabled: bool):
    """A tqdm bar on stdout (the job log); stderr stays for errors, one line each."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        mininterval=5.0,
        file=sys.stdout,
    )
