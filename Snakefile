# mixscale: compute-optimal data mixtures at any scale. Thin entry point: config, schema, rules.
import sys

from snakemake.utils import min_version

from mixscale.plan.check import check_or_exit
from mixscale.plan.dryrun import print_budget_after_dry_run
from mixscale.plan.mixture import later_rounds_note

min_version("9.0")


# config/config.yaml is the embedded default. It is read only when no --configfile/--config
# is given: Snakemake would otherwise deep-merge it under the user's file, and keys of the
# demo (its domains, model, reference weights) would leak into the user's experiment.
if not config:

    configfile: "config/config.yaml"


# schema, defaults and every check of the config before any job: one line and exit 2 if bad
CONFIG = check_or_exit(config, workflow.overwrite_configfiles)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ddo.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/autoscale.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/anneal.smk"


# a dry run lists the jobs of round 1 only: say what follows
if later_rounds_note(CONFIG, SPECS):
    print(f"mixscale: {later_rounds_note(CONFIG, SPECS)}", file=sys.stderr)

# a dry run (snakemake -n) ends with the plan's budget, below Snakemake's job table
print_budget_after_dry_run(workflow, CONFIG)


# Aggregation (fits, solver, tables, reports) takes seconds of CPU: it runs where Snakemake
# runs instead of waiting in the cluster queue once per step. Data preparation, training and
# evaluation are the cluster's jobs.
localrules:
    all,
    run_table,
    ddo,
    method_table,
    method_weights,
    doremi_weights,
    autoscale,
    compare,
    report,
    downstream_tasks,
    embedded_finetune_tasks,
    anneal_table,
    anneal_costs,
    utility,
    anneal_report,


rule all:
    default_target: True
    input:
        all_outputs(),
