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
        tokens=scale_tokens,
        form=config["fit"]["form"],
        loss=config["fit"]["loss"],
        bootstrap=config["fit"]["bootstrap"],
        objective=objective_args(),
    shell:
        "python -m mixscale ddo --runs {input.runs} --tokens {params.tokens} "
        "--form {params.form} --loss {params.loss} --bootstrap {params.bootstrap} "
        "{params.objective} --figure {output.fits} --out {output.weights} > {log} 2>&1"
