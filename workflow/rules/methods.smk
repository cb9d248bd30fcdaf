rule method_table:
    """Gather the proxy runs of a method that trains its own (RegMix, DML) into its run table."""
    input:
        method_metrics,
    output:
        f"{OUT}/methods/{{method}}/runs.tsv",
    log:
        f"{OUT}/logs/methods/{{method}}-table.log",
    benchmark:
        f"{OUT}/benchmarks/methods/{{method}}-table.tsv"
    conda:
        "../../envs/mixscale.yaml"
    shell:
        "python -m mixscale table --metrics {input:q} --out {output:q} > {log:q} 2>&1"


rule method_weights:
    """A learned method's mixture for one target scale, from its proxy runs."""
    input:
        f"{OUT}/methods/{{method}}/runs.tsv",
    output:
        f"{OUT}/methods/{{method}}/{{target}}.json",
    log:
        f"{OUT}/logs/methods/{{method}}-{{target}}.log",
    benchmark:
        f"{OUT}/benchmarks/methods/{{method}}-{{target}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=lambda w: commands.method_weights(CONFIG, w.method, target_tokens(w)),
    shell:
        "python -m mixscale {params.args} --runs {input:q} --out {output:q} > {log:q} 2>&1"


rule doremi_weights:
    """DoReMi's mixture for one target: the weights its proxy runs learned."""
    input:
        doremi_metrics,
    output:
        f"{OUT}/methods/doremi/{{target}}.json",
    log:
        f"{OUT}/logs/methods/doremi-{{target}}.log",
    benchmark:
        f"{OUT}/benchmarks/methods/doremi-{{target}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=lambda w: commands.doremi_weights(target_tokens(w)),
    shell:
        "python -m mixscale doremi --metrics {input:q} {params.args} --out {output:q} "
        "> {log:q} 2>&1"
