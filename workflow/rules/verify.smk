rule compare:
    """Verification at one target scale: every method's runs side by side."""
    input:
        verify_metrics,
    output:
        f"{OUT}/verify/{{target}}.json",
    log:
        f"{OUT}/logs/verify/{{target}}.log",
    benchmark:
        f"{OUT}/benchmarks/verify/{{target}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        target=target_tokens,
        world=world_arg(),
    shell:
        "python -m mixscale compare --metrics {input} --target {params.target} "
        "{params.world} --out {output} > {log} 2>&1"


rule report:
    """The experiment's summary page."""
    input:
        ddo=ddo_optima,
        autoscale=expand(f"{OUT}/autoscale/{{target}}.json", target=TARGETS),
        compare=compare_outputs(),
    output:
        f"{OUT}/report/summary.md",
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        experiment=EXP,
    shell:
        "python -m mixscale report --experiment {params.experiment} --ddo {input.ddo} "
        "--autoscale {input.autoscale} --compare {input.compare} --out {output} > {log} 2>&1"
