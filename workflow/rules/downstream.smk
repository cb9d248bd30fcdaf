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
        args=commands.tasks(CONFIG),
    shell:
        "python -m mixscale tasks --corpus {input:q} {params.args} --out {output:q} > {log:q} 2>&1"


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
        args=commands.init_model(SETTINGS),
    shell:
        "python -m mixscale init-model {params.args} --out {output:q} > {log:q} 2>&1"


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
    threads: JOB_THREADS
    resources:
        runtime=downstream_runtime,
        gpu=downstream_gpus,
    params:
        args=lambda w, input: commands.downstream(
            CONFIG,
            ENTRIES[w.entry],
            SPECS.get(w.model),
            os.path.dirname(input.model),
            input.tasks,
        ),
    shell:
        "python -m mixscale downstream {params.args} --out {output:q} > {log:q} 2>&1"
