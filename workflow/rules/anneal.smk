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
        target=lambda w: commands.anneal_table(CONFIG, ANNEAL_TASK),
    shell:
        "python -m mixscale anneal-table --metrics {input:q} {params.target} "
        "--out {output:q} > {log:q} 2>&1"


rule anneal_costs:
    """Cost per token of each source: share x acquisition + training (budget model)."""
    output:
        f"{OUT}/anneal/costs.tsv",
    log:
        f"{OUT}/logs/anneal/costs.log",
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=lambda w: commands.anneal_costs(CONFIG),
    shell:
        "python -m mixscale anneal-costs {params.args} --out {output:q} > {log:q} 2>&1"


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
        args=lambda w: commands.utility(CONFIG, ANNEAL_TASK),
    shell:
        "python -m mixscale utility --runs {input.runs:q} --costs {input.costs:q} {params.args} "
        "--out {output:q} > {log:q} 2>&1"


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
    # no params: --report shows them unescaped; the cost unit comes in utility.json
    shell:
        "python -m mixscale anneal-report --utility {input.utility:q} --runs {input.runs:q} "
        "--out {output.summary:q} > {log:q} 2>&1"
