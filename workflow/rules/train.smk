rule train:
    """One training run of the plan; its spec is a parameter, so only changed runs rerun.

    Checkpoints go to runs/<run>/checkpoints (not an output: Snakemake would delete it before a
    rerun), so a rerun after a failure resumes where the run stopped."""
    input:
        weights=run_weights,
        data=train_data,
    output:
        f"{OUT}/runs/{{run}}/metrics.json",
    log:
        f"{OUT}/logs/train/{{run}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{run}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    threads: JOB_THREADS
    resources:
        runtime=train_runtime,
        gpu=train_gpus,
        mem_mb=train_mem_mb,
    params:
        spec=run_spec,
        launcher=lambda w: commands.launcher(CONFIG, SPECS[w.run]),
        args=lambda w, input: commands.train(
            CONFIG, SPECS[w.run], SETTINGS, input.weights
        ),
    shell:
        "{params.launcher} train --spec {params.spec:q} {params.args} --threads {threads} "
        "--out {output:q} > {log:q} 2>&1"


rule run_table:
    """Gather one DDO scale's runs into its run table."""
    input:
        scale_metrics,
    output:
        f"{OUT}/tables/{{scale}}.tsv",
    log:
        f"{OUT}/logs/tables/{{scale}}.log",
    benchmark:
        f"{OUT}/benchmarks/tables/{{scale}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    shell:
        "python -m mixscale table --metrics {input:q} --out {output:q} > {log:q} 2>&1"
