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
