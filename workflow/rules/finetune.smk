rule embedded_finetune_tasks:
    """Embedded fine-tuning tasks (which domain a passage is from; whether two passages share a
    document), from held-out documents no run trains on."""
    input:
        expand(f"{DATA}/corpus/{{domain}}.jsonl", domain=DOMAINS),
    output:
        directory(f"{OUT}/finetune/tasks"),
    log:
        f"{OUT}/logs/finetune/tasks.log",
    benchmark:
        f"{OUT}/benchmarks/finetune/tasks.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=commands.finetune_tasks(CONFIG),
    shell:
        "python -m mixscale finetune-tasks --corpus {input:q} {params.args} "
        "--out {output:q} > {log:q} 2>&1"


rule finetune:
    """One model fine-tuned on one task (the paper's Table 6 settings by default), scored on
    the task's validation split. A GLUE/SQuAD task not prepared fails this job alone."""
    input:
        model=downstream_model_input,
        tasks=finetune_tasks_input,
    output:
        f"{OUT}/finetune/scores/{{model}}/{{task}}.json",
    log:
        f"{OUT}/logs/finetune/{{model}}/{{task}}.log",
    benchmark:
        f"{OUT}/benchmarks/finetune/{{model}}/{{task}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    threads: JOB_THREADS
    resources:
        runtime=finetune_runtime,
        gpu=finetune_gpus,
    params:
        args=lambda w, input: commands.finetune(
            CONFIG,
            FINETUNE[w.task],
            SPECS.get(w.model),
            os.path.dirname(input.model),
            f"{OUT}/finetune/tasks",
        ),
    shell:
        "python -m mixscale finetune {params.args} --out {output:q} > {log:q} 2>&1"
