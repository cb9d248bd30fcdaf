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
        args=lambda w, input: commands.predict(CONFIG, list(input), target_tokens(w)),
    shell:
        "python -m mixscale predict {params.args} --out {output:q} > {log:q} 2>&1"
