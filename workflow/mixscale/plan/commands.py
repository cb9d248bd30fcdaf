"""The command line of every job of the workflow, built from the config as argument lists and
quoted for the shell (``shlex``) in one place: a config value never reaches a shell unquoted, so
a path with a space works and ``$(...)`` in a config stays text. The rule files only call these
(one lambda per rule); ``tests/test_hardening.py`` runs them with hostile values.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from mixscale.config.domains import config_domains, derived_sources
from mixscale.config.finetune import FinetuneTask
from mixscale.config.model import MASKED, objective_of
from mixscale.config.tasks import TaskEntry

# Every builder reads a config checked by mixscale.plan.check (the Snakefile checks it before any
# rule is read): the schema's defaults are filled in, so none is written again here.
from mixscale.config.typed import Config
from mixscale.core.world import world_file
from mixscale.methods import method
from mixscale.plan.budget import (
    anneal_training_cost,
    proxy_tokens_by_method,
    stage_eval_points,
    train_resources,
)

Item = str | tuple[str, Any] | None


def shell_args(*items: Item) -> str:
    """Flags and values as one shell-quoted string. A bare item is one word (left out when
    None/False/empty); a (flag, value) pair is left out when the value is None, empty or False,
    and is the flag alone when the value is True."""
    words: list[str] = []
    for item in items:
        if isinstance(item, tuple):
            flag, value = item
            if value is None or value == "" or value is False:
                continue
            words += [flag] if value is True else [flag, str(value)]
        elif item not in (None, False, ""):
            words.append(str(item))
    return " ".join(shell_word(w) for w in words)


def shell_word(word: str) -> str:
    """One word, quoted for the shell. A word holding a character a terminal acts on (ESC, BEL,
    a bidi override, ...: see ``mixscale.errors.printable``) is written in bash's ``$'...'``
    quoting with that character as ``\\xHH`` bytes: Snakemake prints every command it runs
    (``printshellcmds``), and the command still receives the exact bytes. Snakemake runs its
    commands with bash. Line breaks and tabs stay inside ordinary quotes."""
    if all(c.isprintable() or c in "\n\t" for c in word):
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(c) for c in word) + "'"


def _ansi_c(c: str) -> str:
    if c in "\\'":
        return "\\" + c
    if c.isprintable():
        return c
    return "".join(f"\\x{b:02x}" for b in _utf8(c))


def _utf8(c: str) -> bytes:
    """A character's bytes; a lone surrogate from an undecodable byte of a file name, that
    byte (any other lone surrogate has no bytes of its own: its UTF-8-style encoding)."""
    try:
        return c.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return c.encode("utf-8", "surrogatepass")


def world(config: Config) -> str | None:
    return config.world if config.backend == "simulate" else None


def world_files(config: Config) -> list[str]:
    """The simulated world's YAML as a job's input (none for other backends): the report rule
    takes it as an input, not a parameter, because ``snakemake --report`` writes the
    parameters of every job behind a report item into a ``<script>`` block of report.html,
    unescaped; the paths of inputs it leaves out."""
    name = world(config)
    return [str(world_file(name))] if name else []


# --- data ------------------------------------------------------------------------------------


def split_flags(config: Config) -> tuple[Item, ...]:
    """The document shuffle and held-out size: the same for tokenizer, stores and tasks."""
    return (("--seed", config.data.seed), ("--validation-bytes", config.data.validation_bytes))


def corpus(config: Config, domain: str, folder: str) -> str:
    data = config.data
    source = data.sources.get(domain, "builtin")
    if not isinstance(source, str):
        source = json.dumps(source, separators=(",", ":"))
    return shell_args(
        ("--out", folder),
        ("--source", f"{domain}={source}"),
        ("--max-bytes", data.max_bytes),
        ("--cache", data.downloads),
        ("--seed", data.seed),
    )


def tokenizer(config: Config) -> str:
    tok = config.data.tokenizer
    how = ("--pretrained", tok.pretrained) if tok.pretrained else ("--vocab-size", tok.vocab_size)
    masked = objective_of(config.model) == MASKED
    return shell_args(how, ("--mask-token", masked), *split_flags(config))


def tokens(config: Config, domain: str) -> str:
    """A derived source is purchasable data, never evaluated: no held-out block of its own."""
    if domain in derived_sources(config):
        return shell_args(
            ("--domain", domain), ("--seed", config.data.seed), ("--validation-bytes", 0)
        )
    return shell_args(("--domain", domain), *split_flags(config))


def derive(config: Config, name: str, folder: str) -> str:
    spec = json.dumps(config.data.sources[name], separators=(",", ":"))
    return shell_args(("--source", f"{name}={spec}"), ("--out", folder), *split_flags(config))


def tasks(config: Config) -> str:
    build = config.downstream.embedded
    return shell_args(*split_flags(config), ("--build", json.dumps(build) if build else None))


# --- training ----------------------------------------------------------------------------------


def train(config: Config, spec: dict[str, Any], settings: str, weights: list[str]) -> str:
    """Everything but the spec and the output: backend, world, settings, mixture file.
    ``weights``: the run's mixture file (verification); an annealing run's input is its base
    model and a DoReMi proxy run's its reference run, not a mixture."""
    mixture = weights[0] if weights and spec["stage"] == "verify" else None
    return shell_args(
        ("--backend", config.backend),
        ("--world", world(config)),
        ("--settings", settings if config.backend == "torch" else None),
        ("--eval-points", stage_eval_points(config, spec["stage"])),
        ("--weights", mixture),
    )


def launcher(config: Config, spec: dict[str, Any]) -> str:
    """Several GPUs per run: one process per GPU through torchrun, same code path (DDP)."""
    gpus = train_resources(config, spec, 1)["gpu"]
    if config.backend == "torch" and gpus > 1:
        return shell_args("torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "mixscale")
    return "python -m mixscale"


def init_model(settings: str) -> str:
    return shell_args(("--settings", settings), ("--seed", 0))


# --- mixture: fits, predictions, verification --------------------------------------------------


def ddo(config: Config, scale_tokens: float) -> str:
    """The fit and the objective from fit.* and objective.*, the scale's token total."""
    fit, objective = config.fit, config.objective
    domains = objective.eval_domains
    return shell_args(
        ("--tokens", scale_tokens),
        ("--form", fit.form),
        ("--loss", fit.loss),
        ("--unit", fit.unit),
        ("--normalise", fit.normalise),
        ("--root", fit.root),
        ("--no-trust-region", not config.ddo.trust_region),
        ("--bootstrap", fit.bootstrap),
        ("--objective", objective.kind),
        ("--eval-domains", ",".join(domains) if domains else None),
    )


def rounds(config: Config) -> str:
    """``mixscale rounds``: how many rounds were planned and when they stop early."""
    return shell_args(("--planned", config.ddo.rounds), ("--tolerance", config.ddo.round_tolerance))


def doremi_weights(target: float) -> str:
    return shell_args(("--tokens", target))


def method_weights(config: Config, name: str, target: float) -> str:
    """``mixscale regmix|dml`` at a target: the command, the objective as for DDO, the
    method's settings."""
    objective = config.objective
    domains = objective.eval_domains
    common = (
        ("--tokens", target),
        ("--objective", objective.kind),
        ("--eval-domains", ",".join(domains) if domains else None),
    )
    if name == "dml":
        return shell_args("dml", *common, ("--huber-delta", config.methods.dml.huber_delta))
    settings = config.methods.regmix
    domains = config_domains(config)
    prior = method("regmix").prior(config, domains)  # type: ignore[attr-defined]
    return shell_args(
        "regmix",
        *common,
        ("--prior", ",".join(f"{d}={float(w)!r}" for d, w in zip(domains, prior, strict=True))),
        ("--regressor", settings.regressor),
        ("--candidates", settings.candidates),
        ("--top-k", settings.top_k),
        ("--seed", settings.seed),
    )


def predict(config: Config, optima: list[str], target: float) -> str:
    return shell_args(
        *(("--optimum", path) for path in optima),
        ("--target", target),
        ("--discrete", config.autoscale.discrete),
    )


def compare(config: Config, target: float) -> str:
    domains = config.objective.eval_domains
    return shell_args(
        ("--target", target),
        ("--world", world(config)),
        ("--objective", config.objective.kind),
        ("--eval-domains", ",".join(domains) if domains else None),
    )


def report(
    config: Config,
    ddo_optima: list[str],
    predictions: list[str],
    compares: list[str],
    downstream: list[str],
    finetuned: list[str] = (),
) -> str:
    return shell_args(
        ("--experiment", config.experiment),
        "--ddo",
        *ddo_optima,
        "--autoscale",
        *predictions,
        "--compare",
        *compares,
        ("--proxy-tokens", json.dumps(proxy_tokens_by_method(config), separators=(",", ":"))),
        *(["--downstream", *downstream] if downstream else []),
        *(["--finetune", *finetuned] if finetuned else []),
    )


# --- downstream --------------------------------------------------------------------------------


def downstream(
    config: Config,
    entry: TaskEntry,
    spec: dict[str, Any] | None,
    run_folder: str,
    tasks_folder: str | None,
) -> str:
    """Everything but the output, from downstream.* and the run's spec (None: untrained)."""
    down = config.downstream
    return shell_args(
        ("--model", os.path.join(run_folder, "model")),
        ("--task", entry.name),
        ("--shots", entry.shots),
        ("--metric", entry.metric),
        ("--include-path", tasks_folder or down.include_path),
        ("--limit", down.limit),
        ("--datasets-cache", down.datasets_cache),
        ("--batch-size", down.batch_size),
        ("--device", down.device),
        ("--online", not down.offline),
        # HF caches inside the run folder, one per task entry: parallel jobs share no lock
        ("--cache-dir", os.path.join(run_folder, "hf-cache", entry.id)),
        ("--label", (spec.get("method") or spec.get("source")) if spec else "untrained"),
        ("--target", spec["scale"] if spec else None),
        ("--run-seed", spec["seed"] if spec else None),
    )


def finetune_tasks(config: Config) -> str:
    """The embedded fine-tuning tasks: built from the held-out documents (the data split)."""
    build = config.finetune.embedded
    return shell_args(
        *split_flags(config),
        ("--task-seed", build["seed"]),
        ("--train-items", build["train_items"]),
        ("--eval-items", build["eval_items"]),
        ("--passage-words", build["passage_words"]),
    )


def finetune(
    config: Config,
    task: FinetuneTask,
    spec: dict[str, Any] | None,
    run_folder: str,
    tasks_folder: str,
) -> str:
    """One (model, task) fine-tuning job: everything but the output."""
    ft = config.finetune
    settings = {"threads": config.train.get("threads") or 0, **ft.settings}
    return shell_args(
        ("--model", os.path.join(run_folder, "model")),
        ("--task", task.path(tasks_folder, ft.prepared)),
        ("--name", task.name),
        ("--settings", json.dumps(settings, separators=(",", ":"))),
        ("--label", (spec.get("method") or spec.get("source")) if spec else "untrained"),
        ("--target", spec["scale"] if spec else None),
        ("--run-seed", spec["seed"] if spec else None),
    )


# --- annealing -----------------------------------------------------------------------------------


def anneal_table(config: Config, task: TaskEntry | None) -> str:
    if task:
        return shell_args(("--task-metric", task.metric))
    return shell_args(("--target", ",".join(config.anneal.target.domains)))


def anneal_costs(config: Config) -> str:
    anneal = config.anneal
    return shell_args(
        ("--sources", json.dumps(anneal.sources, separators=(",", ":"))),
        ("--share", anneal.share),
        ("--training-cost", f"{anneal_training_cost(config):.6g}"),
    )


def utility(config: Config, task: TaskEntry | None) -> str:
    """mixscale utility's options from anneal.*: allocation, extrapolation, bootstrap."""
    anneal = config.anneal
    return shell_args(
        # 10 significant digits: 1.0000001 stays above 1 (":g" wrote 1, which the flag refuses)
        ("--extrapolate", ",".join(f"{x:.10g}" for x in anneal.extrapolate)),
        ("--bootstrap", anneal.bootstrap),
        ("--budget", anneal.allocate),
        ("--plan-budget", anneal.plan_budget),
        ("--direction", "higher" if task else None),  # a task score: higher is better
        # recorded in utility.json, where anneal-report reads it: the report rule's parameters
        # reach report.html unescaped (see world_files)
        ("--unit", anneal.cost_unit),
    )
