rule autoscale:
    """Predict the optimal mixture at a target scale from the DDO optima (AutoScale)."""
    input:
        ddo_optima,
    output:
        f"{OUT}/autoscale/{{target}}.json",
    log:
        f"{OUT}/logs/autoscale/{{target}}.log",
    benchmark:
        f"{OUT}/benchmarks/autoscale/{{target}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        optima=optimum_args,
        target=target_tokens,
        discrete=discrete_arg(),
    shell:
        "python -m mixscale predict {params.optima} --target {params.target} "
        "{params.discrete} --out {output} > {log} 2>&1"
