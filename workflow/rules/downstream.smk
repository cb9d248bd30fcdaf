rule downstream_tasks:
    """Embedded multiple-choice tasks (lm-eval YAML + JSONL) from each domain's held-out text."""
    input:
        expand(f"{DATA}/corpus/{{domain}}.jsonl", domain=DOMAINS),
    output:
        directory(f"{OUT}/downstream/tasks"),
    log:
        f"{OUT}/logs/downstream/tasks.log",
    benchmark:
        f"{OUT}/benchmarks/downstream/tasks.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        build=embedded_build_arg(),
        seed=DATA_CONFIG.get("seed", 0),
        validation=DATA_CONFIG.get("validation_bytes", 200000),
    shell:
        "python -m mixscale tasks --corpus {input} --seed {params.seed} "
        "--validation-bytes {params.validation} {params.build} --out {output} > {log} 2>&1"


rule untrained_model:
    """The configured model as initialised (seed 0): the chance floor of every task."""
    input:
        train_data,
    output:
        directory(f"{OUT}/downstream/untrained/model"),
    log:
        f"{OUT}/logs/downstream/untrained_model.log",
    conda:
        "../../envs/mixscale.yaml"
    params:
        settings=train_settings_arg(),
    shell:
        "python -m mixscale init-model {params.settings} --seed 0 --out {output} > {log} 2>&1"


rule downstream:
    """One model on one task entry through lm-eval (offline by default). A missing task or
    dataset fails this job alone; with --keep-going the others go on."""
    input:
        model=downstream_model_input,
        tasks=downstream_tasks_input,
    output:
        f"{OUT}/downstream/{{model}}/{{entry}}.json",
    log:
        f"{OUT}/logs/downstream/{{model}}/{{entry}}.log",
    benchmark:
        f"{OUT}/benchmarks/downstream/{{model}}/{{entry}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    threads: config.get("train", {}).get("threads", 1) or 1
    resources:
        runtime=downstream_runtime,
        gpu=downstream_gpus,
    params:
        model=downstream_model_dir,
        args=downstream_args,
    shell:
        "python -m mixscale downstream --model {params.model} {params.args} "
        "--out {output} > {log} 2>&1"
