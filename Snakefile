# mixscale: compute-optimal data mixtures at any scale. Thin entry point: config, schema, rules.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ddo.smk"
include: "workflow/rules/autoscale.smk"
include: "workflow/rules/verify.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
