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
        downstream=downstream_outputs(),
    output:
        **downstream_report_outputs(),
        summary=report(
            f"{OUT}/report/summary.md",
            caption="../report/summary.rst",
            category="Summary",
        ),
        figure=report(
            f"{OUT}/report/weights_vs_scale.png",
            caption="../report/weights_vs_scale.rst",
            category="Mixtures",
        ),
        curves=report(
            f"{OUT}/report/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Verification",
        ),
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        experiment=EXP,
        world=world_arg(),
        downstream=downstream_report_arg,
    shell:
        "python -m mixscale report --experiment {params.experiment} --ddo {input.ddo} "
        "--autoscale {input.autoscale} --compare {input.compare} {params.world} "
        "{params.downstream} --out {output.summary} > {log} 2>&1"
