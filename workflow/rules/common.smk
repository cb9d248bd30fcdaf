# Config access and input functions. Rules hold no logic: they wire files to `python -m mixscale`.

EXP = config["experiment"]
OUT = f"results/{EXP}"
SCALES = {s["name"]: s for s in config["ddo"]["scales"]}
TARGETS = {f"{t:.6g}": t for t in config["autoscale"]["targets"]}


wildcard_constraints:
    scale="[A-Za-z0-9_.-]+",
    target="[0-9.e+]+",


def scale_runs(wildcards):
    return SCALES[wildcards.scale]["runs"]


def scale_tokens(wildcards):
    return SCALES[wildcards.scale]["tokens"]


def ddo_optima(wildcards):
    return expand(f"{OUT}/ddo/{{scale}}/weights.json", scale=SCALES)


def optimum_args(wildcards, input):
    return " ".join(f"--optimum {path}" for path in input)


def target_tokens(wildcards):
    return TARGETS[wildcards.target]


def objective_args():
    obj = config["objective"]
    args = f"--objective {obj['kind']}"
    if obj.get("eval_domains"):
        args += " --eval-domains " + ",".join(obj["eval_domains"])
    return args


def all_outputs():
    return ddo_optima(None) + expand(f"{OUT}/autoscale/{{target}}.json", target=TARGETS)
