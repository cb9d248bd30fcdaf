rule anneal_table:
    """Every annealing run's target metric: mean held-out loss on the target domains, or its
    score on the target task."""
    input:
        anneal_metrics,
    output:
        f"{OUT}/anneal/runs.tsv",
    log:
        f"{OUT}/logs/anneal/table.log",
    conda:
        "../../envs/mixscale.yaml"
    params:
        target=anneal_target_args(),
    shell:
        "python -m mixscale anneal-table --metrics {input} {params.target} "
        "--out {output} > {log} 2>&1"


rule anneal_costs:
    """Cost per token of each source: share x acquisition + training (budget model)."""
    output:
        f"{OUT}/anneal/costs.tsv",
    log:
        f"{OUT}/logs/anneal/costs.log",
    conda:
        "../../envs/mixscale.yaml"
    params:
        sources=anneal_sources_arg(),
        share=config.get("anneal", {}).get("share", 0.3),
        training=anneal_training_cost_arg(),
    shell:
        "python -m mixscale anneal-costs --sources {params.sources:q} --share {params.share} "
        "--training-cost {params.training} --out {output} > {log} 2>&1"


rule utility:
    """Curves per source, rankings per budget, rank flips, allocation of the budget."""
    input:
        runs=f"{OUT}/anneal/runs.tsv",
        costs=f"{OUT}/anneal/costs.tsv",
    output:
        f"{OUT}/anneal/utility.json",
    log:
        f"{OUT}/logs/anneal/utility.log",
    benchmark:
        f"{OUT}/benchmarks/anneal/utility.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=utility_args(),
    shell:
        "python -m mixscale utility --runs {input.runs} --costs {input.costs} {params.args} "
        "--out {output} > {log} 2>&1"


rule anneal_report:
    """anneal.md with gain curves (x: tokens, x: cost), rankings with flips, allocation."""
    input:
        utility=f"{OUT}/anneal/utility.json",
        runs=f"{OUT}/anneal/runs.tsv",
    output:
        summary=report(
            f"{OUT}/report/anneal.md",
            caption="../report/anneal.rst",
            category="Data-source utility",
        ),
        tokens=report(
            f"{OUT}/report/anneal_gain_vs_tokens.png",
            caption="../report/anneal_curves.rst",
            category="Data-source utility",
        ),
        cost=report(
            f"{OUT}/report/anneal_gain_vs_cost.png",
            caption="../report/anneal_curves.rst",
            category="Data-source utility",
        ),
    log:
        f"{OUT}/logs/anneal/report.log",
    conda:
        "../../envs/mixscale.yaml"
    params:
        unit=config.get("anneal", {}).get("cost_unit", "$"),
    shell:
        "python -m mixscale anneal-report --utility {input.utility} --runs {input.runs} "
        "--unit {params.unit:q} --out {output.summary} > {log} 2>&1"
