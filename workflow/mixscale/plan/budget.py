"""Price the plan before anything runs: tokens, FLOPs and GPU-hours per stage.

FLOPs of a training run = 6 x parameters x tokens (forward + backward), plus evaluation
(2 x parameters x evaluated tokens per evaluation point). GPU-hours = FLOPs / (peak x utilisation)
/ 3600. The proxy overhead is the DDO cost as a share of the verification (target) training.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixscale.config.bert import bert_params, native_bert_config
from mixscale.config.domains import config_domains
from mixscale.config.finetune import FinetuneTask, finetune_tasks
from mixscale.config.gpt2 import gpt2_params, native_config
from mixscale.config.model import MASKED, architecture, objective_of
from mixscale.config.tasks import EMBEDDED, KINDS, TaskBuild, entry_from, task_entries
from mixscale.config.training import TrainSettings
from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.fileio import atomic_write_text
from mixscale.methods import Layout, method
from mixscale.plan.specs import run_specs

# Every function here reads a config checked by mixscale.plan.check: the schema's defaults are
# filled in (accelerator, eval_points, downstream), so none is written again here.


def model_params(config: Config, key: str) -> float:
    model = config.model
    value = model.get(key, model.get("params"))
    if not value and config.backend == "torch" and model.get("type"):
        what = {"model": model, "vocab": config.data.tokenizer.vocab_size, "train": config.train}
        return float(architecture_params(json.dumps(what, sort_keys=True, default=str)))
    if not value:
        raise InputError("config", f"model.{key}", "missing", "give the parameter count")
    return float(value)


# Bounds checked before the architecture is built: building allocates a module per layer (about
# 2 ms each, even on the meta device), so a layer count of 1e30 would hang the check. The largest
# published models have ~130 layers; every other size field fits a 64-bit tensor dimension.
MAX_LAYERS = 1024
MAX_SIZE = 2**40


def check_architecture_sizes(spec: dict[str, Any]) -> None:
    """Refuse, in one line, a size field of the model that no machine could build."""
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        limit = MAX_LAYERS if "layer" in key else MAX_SIZE
        if value > limit:
            raise InputError(
                "config", f"model.{key}", f"{value:g} is too large", f"at most {limit:,}"
            )


@lru_cache(maxsize=8)
def architecture_params(what_json: str) -> int:
    """Exact parameter count of the configured architecture (built on the meta device: no memory,
    no weights). ``what_json``: the model fields, the tokenizer's vocabulary and the training
    settings, as JSON (a cache key). Counting imports torch and transformers (~6 s, paid by every
    Snakemake start, and by every job's own Snakemake on SLURM), so counts are also kept in a
    small JSON file in the user's cache folder (``params_cache_file``)."""
    key = hashlib.sha256(what_json.encode()).hexdigest()
    cached = _read_params_cache().get(key)
    if isinstance(cached, int) and cached > 0:
        return cached
    params = _count_params(what_json)
    _write_params_cache(key, params)
    return params


def params_cache_file() -> Path:
    """``$MIXSCALE_CACHE`` or ``$XDG_CACHE_HOME/mixscale`` (default ``~/.cache/mixscale``)."""
    root = os.environ.get("MIXSCALE_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "mixscale"
    )
    return Path(root) / "architecture-params.json"


def _read_params_cache() -> dict[str, Any]:
    """The cached counts; an unreadable or damaged file is ignored (counted again)."""
    try:
        data = json.loads(params_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_params_cache(key: str, params: int) -> None:
    """Add one count; a cache that cannot be written (read-only home) is skipped silently."""
    try:
        data = {**_read_params_cache(), key: params}
        params_cache_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(params_cache_file(), json.dumps(data, sort_keys=True))
    except (OSError, InputError):
        pass


def _count_params(what_json: str) -> int:
    what = json.loads(what_json)
    masked = objective_of(what["model"]) == MASKED
    spec = architecture(what["model"])
    model_type = spec.pop("type")
    vocab = spec.pop("vocab_size", what["vocab"])
    seq_len = TrainSettings.from_dict({**what["train"], "seed": 0}).seq_len
    key = "n_positions" if model_type == "gpt2" else "max_position_embeddings"
    spec.setdefault(key, seq_len)
    spec.setdefault("eos_token_id", 0)  # the architecture's default may lie outside the vocabulary
    spec.setdefault("bos_token_id", 0)
    check_architecture_sizes({**spec, "vocab_size": vocab})
    native = _native_params(model_type, masked, {**spec, "vocab_size": vocab})
    if native is not None:
        return native
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    try:
        arch = AutoConfig.for_model(model_type, vocab_size=vocab, **spec)
        with torch.device("meta"):
            net = (AutoModelForMaskedLM if masked else AutoModelForCausalLM).from_config(arch)
    except Exception as exc:  # transformers raises many kinds for a bad config, all input errors
        field = "model.type" if "Unrecognized model" in str(exc) else "model"
        raise InputError(
            "config",
            field,
            " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])[:200],
            "a transformers model type (gpt2, llama, bert, ...) and fields of its config",
        ) from exc
    return sum(p.numel() for p in net.parameters())


def _native_params(model_type: str, masked: bool, fields: dict[str, Any]) -> int | None:
    """Parameters of a GPT-2 or BERT that mixscale builds itself (no transformers import), or
    None. Dropout and padding change no count: set as training sets them."""
    try:
        if model_type == "gpt2" and not masked:
            config = native_config({**dict.fromkeys(GPT2_DROPOUT, 0.0), **fields})
            return None if config is None else gpt2_params(config)
        if model_type == "bert" and masked:
            config = native_bert_config({**BERT_TRAINING, **fields})
            return None if config is None else bert_params(config)
    except ValueError:
        return None  # transformers words the error
    return None


GPT2_DROPOUT = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
BERT_TRAINING = {
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "pad_token_id": None,
}


def run_flops(config: Config, spec: dict[str, Any]) -> float:
    key = "proxy_params" if spec["stage"] in ("ddo", "proxy") else "params"
    params = model_params(config, key)
    evaluation = config.evaluation or {}
    per_domain = config.train.get("eval_tokens", evaluation.get("tokens_per_domain", 0))
    eval_tokens = float(per_domain) * len(config_domains(config))
    points = stage_eval_points(config, spec["stage"])
    # a DoReMi proxy run also runs its reference model forward on every token
    forward = 2 * params * float(spec["total_tokens"]) if spec.get("doremi") else 0.0
    return 6 * params * float(spec["total_tokens"]) + forward + 2 * params * eval_tokens * points


def stage_eval_points(config: Config, stage: str) -> int:
    """Evaluations along a run: DDO and annealing runs may evaluate less often (their fits use
    only the final losses)."""
    # a method's proxy runs, like DDO's, are fitted on their final losses
    own = {"ddo": config.ddo, "proxy": config.ddo, "anneal": config.anneal}.get(stage)
    return (
        own.eval_points if own is not None and own.eval_points is not None else config.eval_points
    )


def flops_per_gpu_hour(config: Config) -> float:
    acc = config.accelerator
    return acc.peak_tflops * 1e12 * acc.utilisation * 3600


def train_resources(config: Config, spec: dict[str, Any], attempt: int) -> dict[str, Any]:
    """SLURM resources of one training job from the cost model.

    runtime = GPU-hours / GPUs x safety factor x attempt (a retry after a timeout gets more),
    at least 10 minutes; simulated runs need no GPU and a few minutes.
    """
    if config.backend != "torch":
        return {"runtime": 10 * attempt, "gpu": 0, "mem_mb": 2000}
    acc = config.accelerator
    hours = run_flops(config, spec) / flops_per_gpu_hour(config) / acc.gpus_per_run
    minutes = hours * 60 * acc.runtime_safety * attempt
    return {"runtime": max(10, round(minutes)), "gpu": acc.gpus_per_run, "mem_mb": acc.mem_mb}


# Evaluated size of the paper's tasks (lm-eval 0.4 splits): items, choices, tokens of one
# example. Estimates for the budget only: each choice is one forward pass over the context
# (which holds the few-shot examples too) plus the choice.
TASK_SIZES = {
    "truthfulqa_mc2": (817, 7, 500),  # its prompt carries six fixed QA pairs
    "pubmedqa": (1000, 3, 400),
    "piqa": (1838, 2, 60),
    "hellaswag": (10042, 4, 120),
    "crows_pairs_english": (1677, 2, 40),
    "boolq": (3270, 2, 150),
    "arc_easy": (2376, 4, 50),
}
DEFAULT_TASK_TOKENS = 5.0e6  # an unknown task without downstream.tasks[].tokens
TOKENS_PER_WORD = 2.0  # embedded tasks on a small BPE vocabulary (measured ~1.6-2.2)


def downstream_tokens(config: Config, entry) -> float:
    """Tokens one model reads for one task entry (see TASK_SIZES)."""

    listed = next(
        (
            t
            for i, t in enumerate(config.downstream.tasks)
            if isinstance(t, dict) and entry_from(t, f"downstream.tasks[{i}]").id == entry.id
        ),
        {},
    )
    if listed.get("tokens"):
        return float(listed["tokens"])
    if entry.name == EMBEDDED:
        build = TaskBuild.from_dict(config.downstream.embedded)
        words = build.context_words + build.continuation_words
        per_domain = len(KINDS) * build.items * build.choices * words * TOKENS_PER_WORD
        return per_domain * len(config_domains(config))
    if entry.name in TASK_SIZES:
        items, choices, tokens = TASK_SIZES[entry.name]
        return float(items * choices * tokens * (1 + entry.shots))
    return DEFAULT_TASK_TOKENS


def downstream_flops(config: Config, entry) -> float:
    return 2 * model_params(config, "params") * downstream_tokens(config, entry)


def downstream_resources(config: Config, entry, attempt: int) -> dict[str, Any]:
    """One GPU (if training uses GPUs) for the estimated time, plus 10 minutes to load the
    model and prepare the dataset."""
    acc = config.accelerator
    hours = downstream_flops(config, entry) / flops_per_gpu_hour(config)
    minutes = hours * 60 * acc.runtime_safety * attempt + 10
    return {"runtime": round(minutes), "gpu": 1 if acc.gpus_per_run else 0}


# the paper's Table 6 defaults, where finetune.settings does not say
FINETUNE_DEFAULTS = {"epochs": 3, "max_length": 128}


def finetune_flops(config: Config, task: FinetuneTask) -> tuple[float, float]:
    """(tokens, FLOPs) of fine-tuning one model on one task: every example at max_length
    tokens (an upper bound), forward + backward for each epoch, then one forward pass over
    the validation split."""
    settings = {**FINETUNE_DEFAULTS, **config.finetune.settings}
    train, validation = task.sizes(config)
    train = min(train, settings.get("max_train_items", train))
    validation = min(validation, settings.get("max_eval_items", validation))
    length = settings["max_length"]
    train_tokens = train * length * settings["epochs"]
    eval_tokens = validation * length
    params = model_params(config, "params")
    return train_tokens + eval_tokens, 6 * params * train_tokens + 2 * params * eval_tokens


def finetune_resources(config: Config, task: FinetuneTask, attempt: int) -> dict[str, Any]:
    """As a downstream job: one GPU (if training uses GPUs), the estimate plus 10 minutes."""
    acc = config.accelerator
    hours = finetune_flops(config, task)[1] / flops_per_gpu_hour(config)
    minutes = hours * 60 * acc.runtime_safety * attempt + 10
    return {"runtime": round(minutes), "gpu": 1 if acc.gpus_per_run else 0}


def _finetune_stage(config: Config) -> dict[str, float] | None:
    tasks = finetune_tasks(config) if config.backend == "torch" else []
    models = sum(1 for s in run_specs(config).values() if s["stage"] == "verify")
    if not tasks or not models:
        return None
    models += 1 if config.finetune.untrained else 0
    costs = [finetune_flops(config, t) for t in tasks]
    return {
        "runs": models * len(tasks),
        "tokens": models * sum(c[0] for c in costs),
        "flops": models * sum(c[1] for c in costs),
    }


def _downstream_stage(config: Config) -> dict[str, float] | None:

    entries = task_entries(config)
    if config.backend != "torch" or not entries:
        return None
    models = sum(1 for s in run_specs(config).values() if s["stage"] == "verify")
    if not models:
        return None
    models += 1 if config.downstream.untrained else 0
    tokens = sum(downstream_tokens(config, e) for e in entries)
    return {
        "runs": models * len(entries),
        "tokens": models * tokens,
        "flops": models * sum(downstream_flops(config, e) for e in entries),
    }


def budget_table(config: Config) -> dict[str, Any]:
    acc = config.accelerator.as_dict()
    per_gpu_hour = flops_per_gpu_hour(config)
    stages: dict[str, dict[str, float]] = {}
    for spec in run_specs(config).values():
        stage = f"{spec['stage']} {spec['scale']}".replace("anneal-base base", "anneal base")
        if spec.get("round", 1) > 1:  # iterated DDO: a row per later round (an upper bound:
            stage += f" round {spec['round']}"  # the rounds may stop early)
        row = stages.setdefault(stage, {"runs": 0, "tokens": 0.0, "flops": 0.0})
        row["runs"] += 1
        row["tokens"] += float(spec["total_tokens"])
        row["flops"] += run_flops(config, spec)
    downstream = _downstream_stage(config)
    if downstream:
        stages["downstream (lm-eval)"] = downstream
    finetuning = _finetune_stage(config)
    if finetuning:
        stages["finetune"] = finetuning
    for row in stages.values():
        row["gpu_hours"] = row["flops"] / per_gpu_hour
    ddo = sum(r["gpu_hours"] for s, r in stages.items() if s.startswith("ddo"))
    verify = sum(r["gpu_hours"] for s, r in stages.items() if s.startswith("verify"))
    methods = {s.split()[1]: r["flops"] for s, r in stages.items() if s.startswith("proxy ")}
    if config.mixture and any(s.startswith("ddo") for s in stages):
        methods = {
            "ddo (autoscale)": sum(r["flops"] for s, r in stages.items() if s.startswith("ddo")),
            **methods,
        }
    target = max(
        (run_flops(config, s) for s in run_specs(config).values() if s["stage"] == "verify"),
        default=0.0,
    )
    return {
        "accelerator": acc,
        "stages": stages,
        "total_gpu_hours": sum(r["gpu_hours"] for r in stages.values()),
        "proxy_overhead_pct": 100 * ddo / verify if verify else None,
        # each method's proxy compute in units of one training run at the largest target
        "proxy_per_target_run": {m: f / target for m, f in methods.items()} if target else {},
    }


def format_table(budget: dict[str, Any]) -> str:
    acc = budget["accelerator"]
    lines = [
        f"accelerator: {acc['name']}, {acc['peak_tflops']:g} TFLOP/s peak at "
        f"{100 * acc['utilisation']:.0f}% utilisation",
        f"{'stage':<22}{'runs':>6}{'tokens':>12}{'FLOPs':>12}{'GPU-hours':>12}",
    ]
    for stage, r in budget["stages"].items():
        lines.append(
            f"{stage:<22}{r['runs']:>6}{r['tokens']:>12.3g}{r['flops']:>12.3g}{r['gpu_hours']:>12.1f}"
        )
    lines.append(f"{'total':<52}{budget['total_gpu_hours']:>12.1f}")
    if acc.get("price_per_gpu_hour"):
        cost = budget["total_gpu_hours"] * acc["price_per_gpu_hour"]
        lines.append(f"at {acc['price_per_gpu_hour']:g} per GPU-hour: {cost:,.0f}")
    if budget["proxy_overhead_pct"] is not None:
        lines.append(f"proxy (DDO) overhead: {budget['proxy_overhead_pct']:.1f}% of verification")
    for name, share in budget.get("proxy_per_target_run", {}).items():
        lines.append(f"proxy compute of {name}: {share:.3g} x one run at the largest target")
    return "\n".join(lines)


def training_cost_per_token(config: Config) -> float:
    """Training cost of one annealing token from the budget model: 6 x params FLOPs at the
    configured peak and utilisation, priced per GPU-hour (accelerator.price_per_gpu_hour)."""

    price = config.accelerator.price_per_gpu_hour
    price = 1.0 if price is None else float(price)  # annealing costs in GPU-hours by default
    return 6 * model_params(config, "params") / flops_per_gpu_hour(config) * price


def anneal_training_cost(config: Config) -> float:
    """anneal.training_cost_per_token, or the budget model's price of a token."""
    given = config.anneal.training_cost_per_token
    return float(given) if given is not None else training_cost_per_token(config)


def proxy_tokens_by_method(config: Config) -> dict[str, float]:
    """Tokens of the proxy runs each verified method needs (0 for fixed weights): what the
    report sets each method's quality against."""
    if not config.mixture:
        return {}
    layout = Layout(out=config.out, scales=tuple(s.name for s in config.ddo.scales))
    specs = run_specs(config).values()
    return {
        name: float(sum(s["total_tokens"] for s in specs if method(name).uses_run(s, layout)))
        for name in config.verify.methods
    }
