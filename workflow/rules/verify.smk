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
        args=lambda w: commands.compare(CONFIG, target_tokens(w)),
    shell:
        "python -m mixscale compare --metrics {input:q} {params.args} "
        "--out {output:q} > {log:q} 2>&1"


rule report:
    """The experiment's summary page."""
    input:
        ddo=ddo_optima,
        autoscale=expand(f"{OUT}/autoscale/{{target}}.json", target=TARGETS),
        compare=compare_outputs(),
        downstream=downstream_outputs(),
        finetune=finetune_outputs(),
        # an input, not a parameter: --report shows parameters unescaped (commands.world_files)
        world=lambda w: commands.world_files(CONFIG),
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
        quality=report(
            f"{OUT}/report/quality_vs_compute.png",
            caption="../report/quality_vs_compute.rst",
            category="Verification",
        ),
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=lambda w, input: commands.report(
            CONFIG,
            input.ddo,
            input.autoscale,
            input.compare,
            input.downstream,
            input.finetune,
        ),
    shell:
        "python -m mixscale report {params.args} --world {input.world:q} "
        "--out {output.summary:q} > {log:q} 2>&1"
