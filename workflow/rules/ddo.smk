if ROUNDS == 1:

    rule ddo:
        """Fit per-domain scaling laws to one scale's run table and solve for the optimal mixture."""
        input:
            runs=scale_runs,
        output:
            weights=f"{OUT}/ddo/{{scale}}/weights.json",
            fits=report(
                f"{OUT}/ddo/{{scale}}/fits.png",
                caption="../report/fits.rst",
                category="DDO fits",
                subcategory="{scale}",
            ),
        log:
            f"{OUT}/logs/ddo/{{scale}}.log",
        benchmark:
            f"{OUT}/benchmarks/ddo/{{scale}}.tsv"
        conda:
            "../../envs/mixscale.yaml"
        params:
            args=lambda w: commands.ddo(CONFIG, scale_tokens(w)),
        shell:
            "python -m mixscale ddo --runs {input.runs:q} {params.args} "
            "--figure {output.fits:q} --out {output.weights:q} > {log:q} 2>&1"

else:

    # fits and tables take seconds: where Snakemake runs (see the Snakefile's localrules)
    localrules:
        ddo_round,
        round_table,

    checkpoint ddo_round:
        """One round of iterated DDO at one scale: fit its runs and solve. A checkpoint: the
        next round's runs are centred on this optimum, so they are planned when it exists.
        """
        input:
            runs=round_table,
        output:
            weights=f"{OUT}/ddo/{{scale}}/round{{round}}/weights.json",
            fits=f"{OUT}/ddo/{{scale}}/round{{round}}/fits.png",
        log:
            f"{OUT}/logs/ddo/{{scale}}-round{{round}}.log",
        benchmark:
            f"{OUT}/benchmarks/ddo/{{scale}}-round{{round}}.tsv"
        conda:
            "../../envs/mixscale.yaml"
        params:
            args=lambda w: commands.ddo(CONFIG, scale_tokens(w)),
        shell:
            "python -m mixscale ddo --runs {input.runs:q} {params.args} "
            "--figure {output.fits:q} --out {output.weights:q} > {log:q} 2>&1"

    rule round_table:
        """Gather one later round's runs at one scale into its run table."""
        input:
            round_metrics,
        output:
            f"{OUT}/tables/{{scale}}/round{{round}}.tsv",
        log:
            f"{OUT}/logs/tables/{{scale}}-round{{round}}.log",
        benchmark:
            f"{OUT}/benchmarks/tables/{{scale}}-round{{round}}.tsv"
        conda:
            "../../envs/mixscale.yaml"
        shell:
            "python -m mixscale table --metrics {input:q} --out {output:q} > {log:q} 2>&1"

    rule ddo:
        """A scale's optimum after iterated DDO: the last round's, with every round's weights."""
        input:
            weights=ddo_rounds,
            figures=ddo_round_figures,
        output:
            weights=f"{OUT}/ddo/{{scale}}/weights.json",
            fits=report(
                f"{OUT}/ddo/{{scale}}/fits.png",
                caption="../report/fits.rst",
                category="DDO fits",
                subcategory="{scale}",
            ),
        log:
            f"{OUT}/logs/ddo/{{scale}}.log",
        benchmark:
            f"{OUT}/benchmarks/ddo/{{scale}}.tsv"
        conda:
            "../../envs/mixscale.yaml"
        params:
            args=lambda w: commands.rounds(CONFIG),
        shell:
            "python -m mixscale rounds --weights {input.weights:q} "
            "--figures {input.figures:q} {params.args} --figure {output.fits:q} "
            "--out {output.weights:q} > {log:q} 2>&1"
