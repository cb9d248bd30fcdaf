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
        args=lambda w, output: commands.corpus(
            CONFIG, w.domain, os.path.dirname(output[0])
        ),
    shell:
        "python -m mixscale corpus {params.args} > {log:q} 2>&1"


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
        args=commands.tokenizer(CONFIG),
    shell:
        "python -m mixscale tokenizer --corpus {input:q} {params.args} "
        "--out {output:q} > {log:q} 2>&1"


rule tokens:
    """One domain's token store: shuffled training order plus a held-out validation block."""
    input:
        corpus=corpus_file,
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
        args=lambda w: commands.tokens(CONFIG, w.domain),
    shell:
        "python -m mixscale tokens {params.args} --corpus {input.corpus:q} "
        "--tokenizer {input.tokenizer:q} --out {output:q} > {log:q} 2>&1"


rule derived_corpus:
    """A candidate source of the annealing experiment made from a domain's training text."""
    input:
        derived_parents,
    output:
        f"{DATA}/derived/{{source}}.jsonl",
    log:
        f"{OUT}/logs/derived/{{source}}.log",
    benchmark:
        f"{OUT}/benchmarks/derived/{{source}}.tsv"
    conda:
        "../../envs/mixscale.yaml"
    params:
        args=lambda w, output: commands.derive(
            CONFIG, w.source, os.path.dirname(output[0])
        ),
        corpus=f"{DATA}/corpus",
    shell:
        "python -m mixscale derive {params.args} --corpus-dir {params.corpus:q} > {log:q} 2>&1"
