# Config access and input functions. Rules hold no logic: they wire files to `python -m mixscale`.
# Command-line flags come from mixscale.plan.commands: every config value reaches the shell quoted.
import json
import os
import sys

from mixscale.config.domains import (
    config_domains,
    data_dir,
    derived_sources,
    eval_only_domains,
)
from mixscale.config.finetune import finetune_tasks
from mixscale.config.tasks import needs_generated_tasks, task_entries
from mixscale.core.rounds import converged
from mixscale.kinds import WEIGHTS_FOR_ROUNDS
from mixscale.methods import Layout, method
from mixscale.plan import commands
from mixscale.plan.anneal import target_task
from mixscale.plan.budget import (
    downstream_resources,
    finetune_resources,
    train_resources,
)
from mixscale.plan.mixture import round_spec
from mixscale.plan.outputs import stop_if_damaged
from mixscale.plan.run import target_label
from mixscale.plan.specs import run_specs, torch_settings
from mixscale.shapes import read_kind

# CONFIG: the typed config the Snakefile checked (mixscale.config.typed.Config); Snakemake's own
# `config` dict is read nowhere else.
EXP = CONFIG.experiment
OUT = CONFIG.out
# An experiment finds a mixture (ddo + autoscale), values data sources (anneal), or both.
MIXTURE = CONFIG.mixture
ANNEAL = CONFIG.anneal is not None
SCALES = {s.name: s for s in CONFIG.ddo.scales} if MIXTURE else {}
TARGETS = {target_label(t): t for t in CONFIG.autoscale.targets} if MIXTURE else {}
SPECS = run_specs(CONFIG)
# iterated DDO: rounds per scale; rounds after the first enter the DAG when the one before ends
ROUNDS = CONFIG.ddo.rounds if MIXTURE else 1
LAYOUT = Layout(out=OUT, scales=tuple(SCALES))
TORCH = CONFIG.backend == "torch"
DOMAINS = config_domains(CONFIG)
# corpus domains the objective evaluates and no run trains on (the paper's held-out domains)
EVAL_ONLY = eval_only_domains(CONFIG)
# candidate sources of the annealing experiment made from the corpus (not training domains)
DERIVED = derived_sources(CONFIG)
DATA = data_dir(CONFIG)
SETTINGS = json.dumps(torch_settings(CONFIG), separators=(",", ":")) if TORCH else ""
# Downstream tasks need saved models: real training only (simulated runs have none)
REPORT_ENTRIES = [e.id for e in task_entries(CONFIG)] if TORCH else []
# the annealing target may be a task too (scored on every annealing run)
ANNEAL_TASK = target_task(CONFIG) if TORCH and ANNEAL else None
ENTRIES = {e.id: e for e in task_entries(CONFIG)} if TORCH else {}
# threads of a training or evaluation job: torch's threads per process (one when not set)
JOB_THREADS = CONFIG.train.get("threads") or 1
if ANNEAL_TASK:
    ENTRIES[ANNEAL_TASK.id] = ANNEAL_TASK
# fine-tuning tasks by file name (glue/sst2 -> glue-sst2): encoders' downstream reading
FINETUNE = {t.id: t for t in finetune_tasks(CONFIG)} if TORCH else {}

# A damaged output (truncated, emptied, edited) stops the run here, before Snakemake schedules
# any job: it would take the file as finished, run the jobs that read it and delete their good
# outputs when they fail. One line names the file and its fix; nothing is moved or deleted
# (why: mixscale/plan/outputs.py). A job's own Snakemake on a cluster node skips it.
if workflow.is_main_process:
    stop_if_damaged(CONFIG, workflow.overwrite_configfiles, sys.argv)


wildcard_constraints:
    scale="[A-Za-z0-9_.-]+",
    target="[0-9.e+]+",
    entry="[A-Za-z0-9_.-]+-[0-9]+shot",
    model="[A-Za-z0-9_.+-]+",
    run="[A-Za-z0-9_.+-]+",
    domain="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    method="regmix|dml",
    round="[0-9]+",
    source="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    task="[A-Za-z0-9_.-]+",


def runs_of(stage, scale, round=1):
    return [
        i
        for i, s in SPECS.items()
        if s["stage"] == stage and s["scale"] == scale and s.get("round", 1) == round
    ]


def scale_runs(wildcards):
    scale = SCALES[wildcards.scale]
    if scale.runs is not None:  # a run table from the user's own sweep
        return scale.runs
    return f"{OUT}/tables/{wildcards.scale}.tsv"


def scale_metrics(wildcards):
    return expand(
        f"{OUT}/runs/{{run}}/metrics.json", run=runs_of("ddo", wildcards.scale)
    )


def method_metrics(wildcards):
    return expand(
        f"{OUT}/runs/{{run}}/metrics.json", run=runs_of("proxy", wildcards.method)
    )


def doremi_metrics(wildcards):
    runs = [i for i, s in SPECS.items() if s["stage"] == "proxy" and s.get("doremi")]
    return expand(f"{OUT}/runs/{{run}}/metrics.json", run=runs)


def verify_metrics(wildcards):
    return expand(
        f"{OUT}/runs/{{run}}/metrics.json", run=runs_of("verify", wildcards.target)
    )


def round_metrics(wildcards):
    """The runs of one later round of iterated DDO at one scale."""
    runs = runs_of("ddo", wildcards.scale, int(wildcards.round))
    return expand(f"{OUT}/runs/{{run}}/metrics.json", run=runs)


def round_table(wildcards):
    """Round 1 fits the scale's run table; a later round, its own runs' table."""
    if int(wildcards.round) == 1:
        return scale_runs(wildcards)
    return f"{OUT}/tables/{wildcards.scale}/round{wildcards.round}.tsv"


def round_weights(scale, round):
    return f"{OUT}/ddo/{scale}/round{round}/weights.json"


def ddo_rounds(wildcards):
    """The WEIGHTS.json of every round a scale runs. Round r is planned only once round r-1
    has ended (a checkpoint: its runs' mixtures are its optimum), and not at all when round
    r-1 moved no weight by more than ddo.round_tolerance."""
    files = [round_weights(wildcards.scale, 1)]
    for number in range(2, ROUNDS + 1):
        done = checkpoints.ddo_round.get(scale=wildcards.scale, round=number - 1)
        weights = read_kind(done.output.weights, WEIGHTS_FOR_ROUNDS)
        if converged(weights, CONFIG.ddo.round_tolerance):
            break
        files.append(round_weights(wildcards.scale, number))
    return files


def ddo_round_figures(wildcards):
    return [os.path.join(os.path.dirname(f), "fits.png") for f in ddo_rounds(wildcards)]


def scale_tokens(wildcards):
    return SCALES[wildcards.scale].tokens


def ddo_optima(wildcards):
    return expand(f"{OUT}/ddo/{{scale}}/weights.json", scale=SCALES)


def spec_of(run):
    """A run's spec; a later round of iterated DDO gets its mixture from the round before
    (a checkpoint: its runs enter the DAG only when that round's optimum exists)."""
    spec = SPECS[run]
    if spec.get("round", 1) > 1:
        return round_spec(
            CONFIG, spec, read_kind(previous_round(spec), WEIGHTS_FOR_ROUNDS)
        )
    return spec


def previous_round(spec):
    return round_weights(spec["scale"], spec["round"] - 1)


def run_spec(wildcards):
    return json.dumps(spec_of(wildcards.run), separators=(",", ":"))


def train_data(wildcards):
    """Token stores and tokenizer a torch run reads (nothing for simulated runs): the training
    domains', and a derived source's when the run's mixture names it (an annealing run).
    Rules without a run (the untrained model) read the training domains'. Evaluation-only
    domains are read by every run."""
    if not TORCH:
        return []
    run = getattr(wildcards, "run", None)
    mixture = spec_of(run).get("tokens", {}) if run else {}
    extra = [d for d in mixture if d in DERIVED]
    return [f"{DATA}/tokenizer"] + expand(
        f"{DATA}/stores/{{domain}}", domain=[*DOMAINS, *EVAL_ONLY, *extra]
    )


def corpus_file(wildcards):
    """A domain's documents: its corpus file, or a derived source's built file."""
    if wildcards.domain in DERIVED:
        return f"{DATA}/derived/{wildcards.domain}.jsonl"
    return f"{DATA}/corpus/{wildcards.domain}.jsonl"


def derived_parents(wildcards):
    """The corpus files a derived source is made from: its parent's and its noise domains'."""
    derivation = DERIVED[wildcards.source]
    return [f"{DATA}/corpus/{d}.jsonl" for d in (derivation.parent, *derivation.noise)]


def train_runtime(wildcards, attempt):
    return train_resources(CONFIG, spec_of(wildcards.run), attempt)["runtime"]


def train_gpus(wildcards):
    return train_resources(CONFIG, spec_of(wildcards.run), 1)["gpu"]


def train_mem_mb(wildcards, attempt):
    return train_resources(CONFIG, spec_of(wildcards.run), attempt)["mem_mb"]


def run_weights(wildcards):
    """The file a verification run takes its mixture from (none for fixed mixtures), as its
    method in the registry names it; for an annealing run, the in-workflow base model.
    """
    spec = SPECS[wildcards.run]
    if spec.get("round", 1) > 1:  # iterated DDO: the optimum of the round before
        return [previous_round(spec)]
    if spec["stage"] == "anneal" and "anneal-base" in SPECS:
        return [f"{OUT}/runs/anneal-base/metrics.json"]
    if spec.get(
        "doremi"
    ):  # a DoReMi proxy run trains against its reference run's model
        return [f"{OUT}/runs/{spec['doremi']['reference_run']}/metrics.json"]
    if spec["stage"] != "verify":
        return []
    path = method(spec["method"]).weights_file(LAYOUT, spec["scale"])
    return [path] if path else []


def target_tokens(wildcards):
    return TARGETS[wildcards.target]


def compare_outputs():
    if not MIXTURE or not CONFIG.verify.methods:
        return []
    return expand(f"{OUT}/verify/{{target}}.json", target=TARGETS)


def downstream_models():
    """Models scored downstream: every verification run, and the untrained floor."""
    models = [i for i, s in SPECS.items() if s["stage"] == "verify"]
    if models and CONFIG.downstream.untrained:
        models.append("untrained")
    return models


def downstream_outputs():
    if not REPORT_ENTRIES:
        return []
    return expand(
        f"{OUT}/downstream/{{model}}/{{entry}}.json",
        model=downstream_models(),
        entry=REPORT_ENTRIES,
    )


def downstream_model_input(wildcards):
    """The untrained model folder, or the run's metrics.json (its model/ is written first)."""
    if wildcards.model == "untrained":
        return f"{OUT}/downstream/untrained/model"
    return f"{OUT}/runs/{wildcards.model}/metrics.json"


def downstream_tasks_input(wildcards):
    """The generated task folder, for the embedded entry only."""
    if needs_generated_tasks(ENTRIES[wildcards.entry]):
        return f"{OUT}/downstream/tasks"
    return []


def downstream_runtime(wildcards, attempt):
    return downstream_resources(CONFIG, ENTRIES[wildcards.entry], attempt)["runtime"]


def downstream_gpus(wildcards):
    return downstream_resources(CONFIG, ENTRIES[wildcards.entry], 1)["gpu"]


def finetune_models():
    """Models fine-tuned: every verification run, and the untrained floor."""
    models = [i for i, s in SPECS.items() if s["stage"] == "verify"]
    if models and CONFIG.finetune.untrained:
        models.append("untrained")
    return models


def finetune_outputs():
    if not FINETUNE:
        return []
    return expand(
        f"{OUT}/finetune/scores/{{model}}/{{task}}.json",
        model=finetune_models(),
        task=FINETUNE,
    )


def finetune_tasks_input(wildcards):
    """The embedded tasks' folder; hub and own tasks are read from where they are."""
    return f"{OUT}/finetune/tasks" if FINETUNE[wildcards.task].embedded else []


def finetune_runtime(wildcards, attempt):
    return finetune_resources(CONFIG, FINETUNE[wildcards.task], attempt)["runtime"]


def finetune_gpus(wildcards):
    return finetune_resources(CONFIG, FINETUNE[wildcards.task], 1)["gpu"]


def downstream_report_outputs():
    """The downstream figure is an output only when tasks are configured."""
    if not REPORT_ENTRIES:
        return {}
    path = f"{OUT}/report/downstream.png"
    return {
        # an absolute caption: called from verify.smk, a relative one resolves elsewhere
        "downstream": report(
            path,
            caption=os.path.join(workflow.basedir, "workflow/report/downstream.rst"),
            category="Downstream tasks",
        )
    }


def all_outputs():
    # every report output is named: Snakemake reruns a job only for outputs someone requests
    outputs = []
    if MIXTURE:
        outputs += [
            f"{OUT}/report/summary.md",
            f"{OUT}/report/quality_vs_compute.png",
            *downstream_report_outputs().values(),
        ]
    if ANNEAL:
        outputs.append(f"{OUT}/report/anneal.md")
    return outputs


def anneal_metrics(wildcards):
    """What the annealing metric is read from: each run's downstream result on the target task,
    or its metrics.json (held-out losses)."""
    runs = [i for i, s in SPECS.items() if s["stage"] == "anneal"]
    if ANNEAL_TASK:
        return expand(f"{OUT}/downstream/{{run}}/{ANNEAL_TASK.id}.json", run=runs)
    return expand(f"{OUT}/runs/{{run}}/metrics.json", run=runs)
