"""Training throughput: mixscale's trainer vs a bare PyTorch loop vs HF Trainer, same process.

Usage: python benchmarks/trainer_throughput.py [--rounds 5] [--steps 30] [--peak-tflops X]

On a CUDA machine the same script runs on the GPU and also prints each contender's model FLOPs
utilisation, MFU = 6 x parameters x tokens/s / the GPU's peak (``--peak-tflops``, e.g. 312 for
an A100's bf16; 989 for an H100 SXM). Precisions: fp32, and bf16 where the hardware has it
natively (an AVX512-BF16/AMX CPU, or a GPU), each measured in the same run.

All three train the same GPT-2 (4 layers, 256 wide, 4 heads, context 256, vocabulary 8192 BPE
trained on the embedded corpus) on the same real-text batches of 16 sequences, same learning
rate and clipping, same precision, same torch threads. Each round runs every contender for
``--steps`` optimizer steps from a fresh model, in a rotated order; tokens/s = steps x 16 x
256 / time spent in training steps after the first 3 (allocation, compilation), the same rule
for every contender; model build, data preparation, evaluation and checkpoints are excluded for
all. mixscale runs twice: uncompiled (``train.compile: false``, what ``auto`` picks for runs
this short) and with ``train.compile: true`` (forward + loss compiled as one graph; the one-off
compile is not counted: benchmarks/compile_breakeven.py measures it). Medians over rounds and
the ratios are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from mixscale.config.training import TrainSettings
from mixscale.data.corpus import build_domain
from mixscale.data.tokens import MixtureSampler, build_store, open_store, train_tokenizer
from mixscale.train.distributed import cpu_supports_bf16
from mixscale.train.loop import train_run
from mixscale.train.model import build_model

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "resources" / "bench"
DOMAINS = ("books", "code", "legal")
MODEL = {"type": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4}
SEQ, BATCH, VOCAB = 256, 16, 8192
TOKENS_PER_DOMAIN = 200_000


def prepare() -> Path:
    """Corpus -> tokenizer (8192) -> stores, built once under resources/bench."""
    stores = WORK / "stores"
    if (stores / DOMAINS[-1] / "meta.json").is_file():
        return stores
    corpus = WORK / "corpus"
    for d in DOMAINS:
        build_domain(d, None, corpus, ROOT / "resources" / "downloads", 3e6, 0)
    files = {d: str(corpus / f"{d}.jsonl") for d in DOMAINS}
    train_tokenizer(files, str(WORK / "tokenizer"), VOCAB, 0, 100_000)
    for d in DOMAINS:
        build_store(d, files[d], str(WORK / "tokenizer"), str(stores / d), 0, 100_000)
    return stores


def settings(steps: int, threads: int) -> TrainSettings:
    return TrainSettings(
        seq_len=SEQ,
        batch_sequences=BATCH,
        micro_batch=BATCH,
        lr=1e-3,
        warmup=0.0,
        schedule="constant",
        eval_points=1,
        eval_tokens=SEQ,
        checkpoint_every=0,
        threads=threads,
        save_model=False,
        max_steps=steps,
    )


WARMUP = 3  # first steps of every contender are not timed (allocation, compilation)


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_mixscale(stores: Path, s: TrainSettings) -> float:
    with tempfile.TemporaryDirectory() as out:
        metrics = train_run(
            str(stores),
            str(WORK / "tokenizer"),
            MODEL,
            dict.fromkeys(DOMAINS, TOKENS_PER_DOMAIN),
            s,
            out,
            log=lambda *_: None,
            progress=False,
        )
    return metrics["tokens_per_s_steady"]


def _sampler(stores: Path, s: TrainSettings) -> MixtureSampler:
    opened = {d: open_store(stores / d, d) for d in DOMAINS}
    return MixtureSampler(opened, dict.fromkeys(DOMAINS, TOKENS_PER_DOMAIN), SEQ, s.seed)


def run_bare(stores: Path, s: TrainSettings, precision: str) -> float:
    """The loop every tutorial writes: forward, cross-entropy, backward, clip, AdamW step."""
    sampler = _sampler(stores, s)
    model = build_model(MODEL, VOCAB, SEQ, s.seed).to(DEVICE)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)
    batches = [torch.from_numpy(sampler.batch(k, BATCH)).to(DEVICE) for k in range(s.max_steps)]
    elapsed = 0.0
    for k, batch in enumerate(batches):
        _sync()
        t0 = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync()
        if k >= WARMUP:
            elapsed += time.perf_counter() - t0
    return (s.max_steps - WARMUP) * BATCH * SEQ / elapsed


def run_hf_trainer(stores: Path, s: TrainSettings, precision: str) -> float:
    """transformers.Trainer with its defaults for this setup (no logging, no saving)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    sampler = _sampler(stores, s)
    rows = [
        {"input_ids": seq[:-1], "labels": seq[:-1]}  # same 256 positions as the others
        for k in range(s.max_steps)
        for seq in torch.from_numpy(sampler.batch(k, BATCH))
    ]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.elapsed, self.t0, self.steps = 0.0, 0.0, 0

        def on_step_begin(self, *args, **kwargs):
            _sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            _sync()
            self.steps += 1
            if self.steps > WARMUP:
                self.elapsed += time.perf_counter() - self.t0

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            max_steps=s.max_steps,
            learning_rate=s.lr,
            lr_scheduler_type="constant",
            weight_decay=s.weight_decay,
            max_grad_norm=s.grad_clip,
            adam_beta1=s.betas[0],
            adam_beta2=s.betas[1],
            bf16=precision == "bf16",
            use_cpu=DEVICE.type == "cpu",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=s.seed,
        )
        model = build_model(MODEL, VOCAB, SEQ, s.seed)
        with contextlib.redirect_stdout(sys.stderr):  # its summary line: not a result
            Trainer(model=model, args=args, train_dataset=rows, callbacks=[timer]).train()
    return (s.max_steps - WARMUP) * BATCH * SEQ / timer.elapsed


def _sync() -> None:
    """Wait for the GPU before reading the clock (a no-op on CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in wanted if f" {f}" in text) or "none of avx2/avx512/amx"


def precisions() -> list[str]:
    """fp32 always; bf16 too where the hardware has it natively."""
    if DEVICE.type == "cuda":
        return ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]
    return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


def contenders(stores: Path, args, precision: str) -> dict:
    plain = settings(args.steps, args.threads)
    plain.precision, plain.compile = precision, False
    compiled = settings(args.steps, args.threads)
    compiled.precision, compiled.compile = precision, True
    return {
        "mixscale": lambda: run_mixscale(stores, plain),
        "mixscale_compiled": lambda: run_mixscale(stores, compiled),
        "bare_loop": lambda: run_bare(stores, plain, precision),
        "hf_trainer": lambda: run_hf_trainer(stores, plain, precision),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--peak-tflops", type=float, help="GPU peak, for MFU (CUDA only)")
    args = parser.parse_args()
    # every contender runs in this one process and malloc settings last for the process: glibc's
    # defaults for all of them (mixscale's kept large blocks would serve the bare loop and HF
    # Trainer too); benchmarks/cpu_memory.py measures those in fresh processes
    os.environ.setdefault("MIXSCALE_CPU_MALLOC", "system")
    stores = prepare()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"CPU flags: {cpu_flags()}"
    params = sum(p.numel() for p in build_model(MODEL, VOCAB, SEQ, 0).parameters())
    print(f"# trainer throughput, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {where}")
    print(
        f"# GPT-2 4x256 ({params / 1e6:.2f}M parameters), ctx {SEQ}, vocab {VOCAB}, batch {BATCH}, "
        f"{args.steps} steps x {args.rounds} rounds (order rotated), {args.threads} threads; "
        "tokens/s after 3 warm-up steps, medians"
    )
    for precision in precisions():
        runs = contenders(stores, args, precision)
        results: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order between rounds
                results[name].append(runs[name]())
                print(
                    f"{precision} round {r + 1} {name:18s} {results[name][-1]:8.0f} tok/s",
                    file=sys.stderr,
                )
        med = {name: statistics.median(v) for name, v in results.items()}
        print(f"## precision {precision}")
        for name, values in results.items():
            rounds = ", ".join(f"{v:.0f}" for v in values)
            mfu = ""
            if args.peak_tflops and DEVICE.type == "cuda":
                mfu = f"   MFU {100 * 6 * params * med[name] / (args.peak_tflops * 1e12):.1f}%"
            print(f"{name:18s} median {med[name]:8.0f} tok/s{mfu}   rounds: {rounds}")
        for name in ("mixscale", "mixscale_compiled"):
            for other in ("hf_trainer", "bare_loop"):
                print(f"{name} / {other} = {med[name] / med[other]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
