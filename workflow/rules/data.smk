rule corpus:
    """One domain's documents (JSONL) from its source: the embedded corpus, files or a dataset."""
    output:
        f"{DATA}/corpus/{{domain}}.jsonl",
    log:
        f"{OUT}/logs/corpus/{{domain}}.log",
    benchmark:
        f"{OUT}/benchmarks/corpus/{{domain}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        source=domain_source,
        folder=output_folder,
        max_bytes=max_bytes_arg(),
        downloads=DATA_CONFIG.get("downloads", "resources/downloads"),
        seed=DATA_CONFIG.get("seed", 0),
    shell:
        "python -m mixscale corpus --out {params.folder} "
        "--source {wildcards.domain}={params.source:q} {params.max_bytes} "
        "--cache {params.downloads} --seed {params.seed} > {log} 2>&1"


rule tokenizer:
    """The experiment's tokenizer: a byte-level BPE trained on the training documents."""
    input:
        expand(f"{DATA}/corpus/{{domain}}.jsonl", domain=DOMAINS),
    output:
        directory(f"{DATA}/tokenizer"),
    log:
        f"{OUT}/logs/tokenizer.log",
    benchmark:
        f"{OUT}/benchmarks/tokenizer.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        how=tokenizer_args(),
        seed=DATA_CONFIG.get("seed", 0),
        validation=DATA_CONFIG.get("validation_bytes", 200000),
    shell:
        "python -m mixscale tokenizer --corpus {input} {params.how} --seed {params.seed} "
        "--validation-bytes {params.validation} --out {output} > {log} 2>&1"


rule tokens:
    """One domain's token store: shuffled training order plus a held-out validation block."""
    input:
        corpus=f"{DATA}/corpus/{{domain}}.jsonl",
        tokenizer=f"{DATA}/tokenizer",
    output:
        directory(f"{DATA}/stores/{{domain}}"),
    log:
        f"{OUT}/logs/tokens/{{domain}}.log",
    benchmark:
        f"{OUT}/benchmarks/tokens/{{domain}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        seed=DATA_CONFIG.get("seed", 0),
        validation=DATA_CONFIG.get("validation_bytes", 200000),
    shell:
        "python -m mixscale tokens --domain {wildcards.domain} --corpus {input.corpus} "
        "--tokenizer {input.tokenizer} --seed {params.seed} "
        "--validation-bytes {params.validation} --out {output} > {log} 2>&1"
