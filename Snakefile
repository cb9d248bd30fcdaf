# mixscale: compute-optimal data mixtures at any scale. Thin entry point: config, schema, rules.
from snakemake.utils import min_version, validate

min_version("9.0")


# config/config.yaml is the embedded default. It is read only when no --configfile/--config
# is given: Snakemake would otherwise deep-merge it under the user's file, and keys of the
# demo (its domains, model, reference weights) would leak into the user's experiment.
if not config:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ddo.smk"
include: "workflow/rules/autoscale.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/anneal.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
