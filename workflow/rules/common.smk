# Config access and input functions. Rules hold no logic: they wire files to `python -m mixscale`.
import json
import os
import shlex

from mixscale.anneal import anneal_training_cost, target_task
from mixscale.budget import downstream_resources, train_resources
from mixscale.downstream import needs_generated_tasks, task_entries
from mixscale.experiment import config_domains, data_dir, run_specs, torch_settings
from mixscale.plan import target_label

EXP = config["experiment"]
OUT = f"results/{EXP}"
# An experiment finds a mixture (ddo + autoscale), values data sources (anneal), or both.
MIXTURE = "ddo" in config
ANNEAL = bool(config.get("anneal"))
SCALES = {s["name"]: s for s in config["ddo"]["scales"]} if MIXTURE else {}
SMALLEST_SCALE = next(iter(SCALES), None)
LARGEST_SCALE = next(reversed(SCALES), None) if SCALES else None
TARGETS = (
    {target_label(t): t for t in config["autoscale"]["targets"]} if MIXTURE else {}
)
SPECS = run_specs(config)
WORLD = config.get("world", "") if config["backend"] == "simulate" else ""
TORCH = config["backend"] == "torch"
DOMAINS = config_domains(config)
DATA = data_dir(config)
DATA_CONFIG = config.get("data", {})
SETTINGS = json.dumps(torch_settings(config), separators=(",", ":")) if TORCH else ""
DOWNSTREAM = config.get("downstream", {})
# Downstream tasks need saved models: real training only (simulated runs have none)
REPORT_ENTRIES = [e.id for e in task_entries(config)] if TORCH else []
# the annealing target may be a task too (scored on every annealing run)
ANNEAL_TASK = target_task(config) if TORCH and config.get("anneal") else None
ENTRIES = {e.id: e for e in task_entries(config)} if TORCH else {}
if ANNEAL_TASK:
    ENTRIES[ANNEAL_TASK.id] = ANNEAL_TASK


wildcard_constraints:
    scale="[A-Za-z0-9_.-]+",
    target="[0-9.e+]+",
    entry="[A-Za-z0-9_.-]+-[0-9]+shot",
    model="[A-Za-z0-9_.+-]+",
    run="[A-Za-z0-9_.+-]+",
    domain="[A-Za-z0-9_][A-Za-z0-9_.-]*",


def runs_of(stage, scale):
    return [i for i, s in SPECS.items() if s["stage"] == stage and s["scale"] == scale]


def scale_runs(wildcards):
    scale = SCALES[wildcards.scale]
    if "runs" in scale:  # a run table from the user's own sweep
        return scale["runs"]
    return f"{OUT}/tables/{wildcards.scale}.tsv"


def scale_metrics(wildcards):
    return expand(
        f"{OUT}/runs/{{run}}/metrics.json", run=runs_of("ddo", wildcards.scale)
    )


def verify_metrics(wildcards):
    return expand(
        f"{OUT}/runs/{{run}}/metrics.json", run=runs_of("verify", wildcards.target)
    )


def scale_tokens(wildcards):
    return SCALES[wildcards.scale]["tokens"]


def ddo_optima(wildcards):
    return expand(f"{OUT}/ddo/{{scale}}/weights.json", scale=SCALES)


def run_spec(wildcards):
    return json.dumps(SPECS[wildcards.run], separators=(",", ":"))


def domain_source(wildcards):
    source = DATA_CONFIG.get("sources", {}).get(wildcards.domain, "builtin")
    return (
        source if isinstance(source, str) else json.dumps(source, separators=(",", ":"))
    )


def output_folder(wildcards, output):
    return os.path.dirname(output[0])


def max_bytes_arg():
    cap = DATA_CONFIG.get("max_bytes")
    return f"--max-bytes {cap}" if cap else ""


def tokenizer_args():
    tok = DATA_CONFIG.get("tokenizer", {})
    if tok.get("pretrained"):
        return f"--pretrained {tok['pretrained']}"
    return f"--vocab-size {tok.get('vocab_size', 1024)}"


def train_data(wildcards):
    """Token stores and tokenizer a torch run reads (nothing for simulated runs)."""
    if not TORCH:
        return []
    return [f"{DATA}/tokenizer"] + expand(f"{DATA}/stores/{{domain}}", domain=DOMAINS)


def train_settings_arg():
    return f"--settings {shlex.quote(SETTINGS)}" if TORCH else ""


def train_launcher(wildcards):
    """Several GPUs per run: one process per GPU through torchrun, same code path (DDP)."""
    gpus = train_resources(config, SPECS[wildcards.run], 1)["gpu"]
    if TORCH and gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m mixscale"
    return "python -m mixscale"


def run_eval_points(wildcards):
    """DDO fits use only a run's final losses: its runs may evaluate less often."""
    stage = SPECS[wildcards.run]["stage"]
    if stage in ("ddo", "anneal"):
        return config[stage].get("eval_points", config["eval_points"])
    return config["eval_points"]


def train_runtime(wildcards, attempt):
    return train_resources(config, SPECS[wildcards.run], attempt)["runtime"]


def train_gpus(wildcards):
    return train_resources(config, SPECS[wildcards.run], 1)["gpu"]


def train_mem_mb(wildcards, attempt):
    return train_resources(config, SPECS[wildcards.run], attempt)["mem_mb"]


def run_weights(wildcards):
    """The file a verification run takes its mixture from (none for explicit mixtures); for an
    annealing run, the in-workflow base model it starts from."""
    if SPECS[wildcards.run]["stage"] == "anneal" and "anneal-base" in SPECS:
        return [f"{OUT}/runs/anneal-base/metrics.json"]
    method = SPECS[wildcards.run].get("method")
    if method == "autoscale":
        return [f"{OUT}/autoscale/{SPECS[wildcards.run]['scale']}.json"]
    if method == "ddo_largest":
        return [f"{OUT}/ddo/{LARGEST_SCALE}/weights.json"]
    if method == "ddo_smallest":
        return [f"{OUT}/ddo/{SMALLEST_SCALE}/weights.json"]
    return []


def weights_arg(wildcards, input):
    if SPECS[wildcards.run]["stage"] == "anneal":
        return ""  # its input is the base model, not a mixture
    return f"--weights {input.weights}" if input.weights else ""


def optimum_args(wildcards, input):
    return " ".join(f"--optimum {path}" for path in input)


def target_tokens(wildcards):
    return TARGETS[wildcards.target]


def world_arg():
    return f"--world {WORLD}" if WORLD else ""


def objective_args():
    obj = config["objective"]
    args = f"--objective {obj['kind']}"
    if obj.get("eval_domains"):
        args += " --eval-domains " + ",".join(obj["eval_domains"])
    return args


def compare_outputs():
    if not MIXTURE or not config["verify"]["methods"]:
        return []
    return expand(f"{OUT}/verify/{{target}}.json", target=TARGETS)


def downstream_models():
    """Models scored downstream: every verification run, and the untrained floor."""
    models = [i for i, s in SPECS.items() if s["stage"] == "verify"]
    if models and DOWNSTREAM.get("untrained", True):
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


def downstream_model_dir(wildcards, input):
    return os.path.join(os.path.dirname(input.model), "model")


def downstream_tasks_input(wildcards):
    """The generated task folder, for the embedded entry only."""
    if needs_generated_tasks(ENTRIES[wildcards.entry]):
        return f"{OUT}/downstream/tasks"
    return []


def downstream_args(wildcards, input):
    """Everything but the model and the output, from downstream.* and the run's spec."""
    entry = ENTRIES[wildcards.entry]
    args = [
        f"--task {entry.name}",
        f"--shots {entry.shots}",
        f"--metric {entry.metric}",
    ]
    task_folder = input.tasks or DOWNSTREAM.get("include_path")
    if task_folder:
        args.append(f"--include-path {shlex.quote(str(task_folder))}")
    for key in ("limit", "datasets_cache"):
        if DOWNSTREAM.get(key) is not None:
            args.append(
                f"--{key.replace('_', '-')} {shlex.quote(str(DOWNSTREAM[key]))}"
            )
    args.append(f"--batch-size {DOWNSTREAM.get('batch_size', 16)}")
    args.append(f"--device {DOWNSTREAM.get('device', 'auto')}")
    if not DOWNSTREAM.get("offline", True):
        args.append("--online")
    # HF caches inside the run folder, one per task entry: parallel jobs never share a lock
    cache = os.path.join(os.path.dirname(input.model), "hf-cache", wildcards.entry)
    args.append(f"--cache-dir {shlex.quote(cache)}")
    spec = SPECS.get(wildcards.model)
    if spec:
        args += [
            f"--label {spec.get('method') or spec.get('source')}",
            f"--target {spec['scale']}",
            f"--run-seed {spec['seed']}",
        ]
    else:
        args.append("--label untrained")
    return " ".join(args)


def embedded_build_arg():
    build = DOWNSTREAM.get("embedded")
    return f"--build {shlex.quote(json.dumps(build))}" if build else ""


def downstream_runtime(wildcards, attempt):
    return downstream_resources(config, ENTRIES[wildcards.entry], attempt)["runtime"]


def downstream_gpus(wildcards):
    return downstream_resources(config, ENTRIES[wildcards.entry], 1)["gpu"]


def downstream_report_arg(wildcards, input):
    return "--downstream " + " ".join(input.downstream) if input.downstream else ""


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
        outputs += [f"{OUT}/report/summary.md", *downstream_report_outputs().values()]
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


def anneal_sources_arg():
    sources = config["anneal"]["sources"] if ANNEAL else {}
    return json.dumps(sources, separators=(",", ":"))


def anneal_training_cost_arg():
    return f"{anneal_training_cost(config):.6g}" if ANNEAL else "0"


def anneal_target_args():
    if ANNEAL_TASK:
        return f"--task-metric {ANNEAL_TASK.metric}"
    if not ANNEAL:
        return ""
    return "--target " + ",".join(config["anneal"]["target"]["domains"])


def utility_args():
    """mixscale utility's options from anneal.*: allocation, extrapolation, bootstrap."""
    anneal = config.get("anneal", {})
    args = [
        "--extrapolate "
        + ",".join(f"{x:g}" for x in anneal.get("extrapolate", [10, 100])),
        f"--bootstrap {anneal.get('bootstrap', 200)}",
    ]
    if anneal.get("allocate"):
        args.append(f"--budget {anneal['allocate']}")
    if ANNEAL_TASK:  # a task score: higher is better
        args.append("--direction higher")
    return " ".join(args)


def discrete_arg():
    return "--discrete" if config.get("autoscale", {}).get("discrete") else ""
