"""The hostile pass's cases (run by run_pass.py). None of them is a case issue 36 lists.

Each case is a function of a ``Context`` (its own folder, commands, verdicts). Families of
cases are generated: every JSON reader gets the same bad documents, every ``--seed`` flag a
negative seed, every loader of YAML a Python tag, and so on; single cases follow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

from run_pass import BIN, MARKER, Case, Context

CASES: list[Case] = []


def case(cid: str, probes: str, what: str, expect: str):
    def register(body: Callable[[Context], None]) -> Callable[[Context], None]:
        CASES.append(Case(cid, probes, what, expect, body))
        return body

    return register


def add(cid: str, probes: str, what: str, expect: str, body: Callable[[Context], None]) -> None:
    CASES.append(Case(cid, probes, what, expect, body))


REFUSE = "refused in one line naming the flag/file and the field, exit 2, no traceback"
OK = "succeeds with a correct result"

# --- fixtures ----------------------------------------------------------------------------------

SIM_CONFIG = """\
experiment: odd
backend: simulate
world: separable
fit: {bootstrap: 5}
ddo: {scales: [{name: 1M, tokens: 1.0e+6}, {name: 3M, tokens: 3.0e+6}]}
autoscale: {targets: [3.0e+7]}
verify: {methods: [autoscale, uniform]}
"""
DOMAINS = ("web", "wiki", "code", "books", "science")  # the separable world's
SPEC = {
    "id": "ddo-1M-base-s0",
    "stage": "ddo",
    "scale": "1M",
    "seed": 0,
    "total_tokens": 1.0e6,
    "tokens": dict.fromkeys(DOMAINS, 200000.0),
    "method": None,
    "perturbed": None,
    "factor": 1.0,
}
VERIFY_SPEC = {
    **SPEC,
    "id": "verify-x-autoscale-s0",
    "stage": "verify",
    "tokens": {},
    "method": "autoscale",
    "scale": "3e+07",
    "total_tokens": 3.0e7,
}


def anneal_rows(seeds: int = 1) -> str:
    """An annealing table (control + two sources at four budgets), as tests/test_cli.py;
    with ``seeds`` > 1, replicate runs whose metrics differ a little (bootstrap needs them)."""
    lines = ["source\tbudget_tokens\tmetric\tseed"]
    for b in (1e6, 1e7, 1e8, 1e9):
        for s in range(seeds):
            jitter = 0.002 * s
            lines.append(f"control\t{b:g}\t{2.0 + jitter:.6f}\t{s}")
            web = 2.0 - 0.1 * (1 - (1 + b / 1e7) ** -0.5) - jitter
            math_ = 2.0 - 0.3 * (1 - (1 + b / 1e9) ** -0.5) + jitter
            lines.append(f"web\t{b:g}\t{web:.6f}\t{s}")
            lines.append(f"math\t{b:g}\t{math_:.6f}\t{s}")
    return "\n".join(lines) + "\n"


def sampled_mixture_table(runs: int = 24, total: float = 1.0e7) -> str:
    """RegMix's and DML's input: mixtures sampled at one total, losses from a known law."""
    import random

    rng = random.Random(0)
    domains = ("web", "wiki", "code", "books")
    lines = ["run\t" + "\t".join(f"tokens.{d}" for d in domains) + "\tloss.web\tloss.wiki"]
    for i in range(runs):
        raw = [rng.random() + 0.05 for _ in domains]
        n = [total * r / sum(raw) for r in raw]
        loss_web = 2.0 + 0.5 * (n[0] / 1e6) ** -0.3 + 0.1 * (n[2] / 1e6) ** -0.2
        loss_wiki = 2.2 + 0.4 * (n[1] / 1e6) ** -0.3 + 0.2 * (n[3] / 1e6) ** -0.2
        lines.append(
            f"m{i}\t" + "\t".join(f"{x:.0f}" for x in n) + f"\t{loss_web:.6f}\t{loss_wiki:.6f}"
        )
    return "\n".join(lines) + "\n"


COSTS = "source\tacquisition_cost_per_token\ttraining_cost_per_token\nweb\t0.1\t1\nmath\t2.0\t1\n"


def build_tables(ctx: Context) -> None:
    for name in ("runs_10M.tsv", "runs_30M.tsv"):
        shutil.copy(ctx.root / "examples" / name, ctx.path(name))
    ctx.mixscale("fit", "--runs", "runs_10M.tsv", "--out", "fit.json")
    ctx.mixscale("solve", "--fit", "fit.json", "--tokens", "1e7", "--out", "w10.json")
    ctx.mixscale(
        "ddo",
        "--runs",
        "runs_30M.tsv",
        "--tokens",
        "3e7",
        "--bootstrap",
        "0",
        "--figure",
        "fits.png",
        "--out",
        "w30.json",
    )
    ctx.mixscale(
        "ddo", "--runs", "runs_10M.tsv", "--tokens", "1e7", "--bootstrap", "0", "--out", "d10.json"
    )
    ctx.mixscale(
        "predict",
        "--optimum",
        "w10.json",
        "--optimum",
        "w30.json",
        "--target",
        "1e9",
        "--out",
        "pred.json",
    )
    ctx.write("regmix.tsv", sampled_mixture_table())
    ctx.write("anneal.tsv", anneal_rows())
    ctx.write("anneal2.tsv", anneal_rows(seeds=2))  # replicate seeds: bootstrap resamples them
    ctx.write("costs.tsv", COSTS)
    ctx.mixscale(
        "utility",
        "--runs",
        "anneal.tsv",
        "--costs",
        "costs.tsv",
        "--bootstrap",
        "10",
        "--out",
        "utility.json",
    )


def build_sim(ctx: Context) -> None:
    """A finished simulated experiment (32 jobs): the whole DAG of the workflow."""
    ctx.write("odd.yaml", SIM_CONFIG)
    ctx.snakemake("--configfile", "odd.yaml", timeout=400)


def build_metrics(ctx: Context) -> None:
    sim = ctx.fixtures.get("sim")
    runs = sim / "results" / "odd" / "runs"
    (ctx.dir / "metrics").mkdir()
    for name, run in (
        ("base", "ddo-1M-base-s0"),
        ("up", "ddo-1M-web-up-s0"),
        ("uniform", "verify-3e+07-uniform-s0"),
        ("autoscale", "verify-3e+07-autoscale-s0"),
    ):
        shutil.copy(runs / run / "metrics.json", ctx.dir / "metrics" / f"{name}.json")
    shutil.copy(sim / "results/odd/verify/3e+07.json", ctx.path("compare.json"))


def build_corpus(ctx: Context) -> None:
    """Two small text domains, their JSONL corpus, a 300-token BPE and web's token store."""
    import random

    syllables = "ka lo mi nu pe ra si to vu xe ba de fi go hu".split()  # noqa: SIM905
    for name, seed in (("doc.txt", 0), ("doc2.txt", 1)):
        rng = random.Random(seed)
        words = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(300)]
        # 400 documents of 60 words (the JSONL source keeps them apart for held-out splits)
        docs = [" ".join(rng.choices(words, k=60)) for _ in range(400)]
        ctx.write(name, "\n\n".join(docs) + "\n")
        ctx.write(
            name.replace(".txt", ".jsonl"), "".join(json.dumps({"text": d}) + "\n" for d in docs)
        )
    ctx.mixscale(
        "corpus",
        "--out",
        "corpus",
        "--source",
        'web={"path": "doc.jsonl"}',
        "--source",
        'wiki={"path": "doc2.jsonl"}',
    )
    ctx.mixscale(
        "tokenizer",
        "--corpus",
        "corpus/web.jsonl",
        "corpus/wiki.jsonl",
        "--vocab-size",
        "300",
        "--validation-bytes",
        "2000",
        "--out",
        "tok",
    )


FIXTURES = {
    "tables": build_tables,
    "sim": build_sim,
    "metrics": build_metrics,
    "corpus": build_corpus,
}


# --- helpers -----------------------------------------------------------------------------------


def json_file(ctx: Context, name: str) -> object:
    try:
        return json.loads(ctx.path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def marker_payload(ctx: Context) -> str:
    """Python that proves it ran: it creates the marker file in the case folder."""
    return f"open({str(ctx.path(MARKER))!r}, 'w').write('ran')"


def sim_config(ctx: Context, text: str = SIM_CONFIG, name: str = "c.yaml") -> str:
    ctx.write(name, text)
    return name


def check_then(
    ctx: Context, config: str, job: Callable[[], object], where: str, *names: str
) -> None:
    """A config the checks should refuse: if ``mixscale check`` lets it through, run the job
    it breaks; a failure there is a late failure (a success: a silent wrong result)."""
    res = ctx.mixscale("check", "--configfile", config)
    if res.rc != 0:
        ctx.refuses(res, config, *names)
        return
    later = job()
    if later is None or getattr(later, "rc", 1) == 0:
        ctx.wrong(f"`mixscale check` accepts it and {where} runs with it")
    else:
        ctx.late(later, where)  # type: ignore[arg-type]


# =================================================================================================
# Family 1: every JSON reader, fed a JSON array, another command's output, a document nested
# 100,000 deep and a key written twice.

READERS: dict[str, tuple[str, Callable[[str], list[str]], str]] = {
    # name: (fixture, argv with the file, another command's output to feed it)
    "solve--fit": (
        "tables",
        lambda f: ["solve", "--fit", f, "--tokens", "1e7", "--out", "o.json"],
        "w10.json",
    ),
    "predict--optimum": (
        "tables",
        lambda f: [
            "predict",
            "--optimum",
            f,
            "--optimum",
            "w30.json",
            "--target",
            "1e9",
            "--out",
            "o.json",
        ],
        "fit.json",
    ),
    "table--metrics": (
        "metrics",
        lambda f: ["table", "--metrics", f, "metrics/base.json", "--out", "o.tsv"],
        "compare.json",
    ),
    "compare--metrics": (
        "metrics",
        lambda f: [
            "compare",
            "--metrics",
            f,
            "metrics/uniform.json",
            "--target",
            "3e7",
            "--out",
            "o.json",
        ],
        "compare.json",
    ),
    "report--ddo": (
        "tables",
        lambda f: [
            "report",
            "--experiment",
            "x",
            "--ddo",
            f,
            "w30.json",
            "--out",
            "rep/summary.md",
        ],
        "pred.json",
    ),
    "anneal-report--utility": (
        "tables",
        lambda f: [
            "anneal-report",
            "--utility",
            f,
            "--runs",
            "anneal.tsv",
            "--out",
            "rep/anneal.md",
        ],
        "w10.json",
    ),
    "rounds--weights": (
        "tables",
        lambda f: [
            "rounds",
            "--weights",
            f,
            "--planned",
            "1",
            "--tolerance",
            "0.01",
            "--out",
            "o.json",
        ],
        "fit.json",
    ),
    "world-score--weights": (
        "tables",
        lambda f: [
            "world",
            "score",
            "--world",
            "separable",
            "--tokens",
            "1e6",
            "--weights",
            f,
            "--out",
            "o.json",
        ],
        "fit.json",
    ),
    "doremi--metrics": (
        "metrics",
        lambda f: ["doremi", "--metrics", f, "--tokens", "1e6", "--out", "o.json"],
        "compare.json",
    ),
    "anneal-table--metrics": (
        "metrics",
        lambda f: ["anneal-table", "--metrics", f, "--target", "web", "--out", "o.tsv"],
        "compare.json",
    ),
    "train--weights": (
        "tables",
        lambda f: [
            "train",
            "--backend",
            "simulate",
            "--world",
            "separable",
            "--spec",
            json.dumps(VERIFY_SPEC),
            "--weights",
            f,
            "--out",
            "run/metrics.json",
        ],
        "fit.json",
    ),
    "anneal-costs--sources": (
        "tables",
        lambda f: [
            "anneal-costs",
            "--sources",
            f,
            "--share",
            "0.3",
            "--training-cost",
            "1",
            "--out",
            "o.tsv",
        ],
        "w10.json",
    ),
    "tasks--build": (
        "corpus",
        lambda f: ["tasks", "--corpus", "corpus/web.jsonl", "--build", f, "--out", "tasks"],
        "tok/mixscale_tokenizer.json",
    ),
}

NESTED = "[" * 100_000 + "]" * 100_000


def _reader_case(reader: str, shape: str) -> Callable[[Context], None]:
    fixture, argv, other = READERS[reader]

    def body(ctx: Context) -> None:
        ctx.use(fixture)
        if shape == "array":
            ctx.write("hostile.json", "[1, 2, 3]\n")
        elif shape == "other":
            shutil.copy(ctx.path(other), ctx.path("hostile.json"))
        elif shape == "nested":
            ctx.write("hostile.json", NESTED)
        ctx.refuses(ctx.mixscale(*argv("hostile.json")), "hostile.json")

    return body


# every reader: a JSON array; the readers of one command's output that another's could be
# mistaken for: that other output
for _reader in READERS:
    add(
        f"json-array-{_reader}",
        "traceback",
        f"{_reader.replace('--', ' --')} given a JSON array where an object is expected",
        REFUSE,
        _reader_case(_reader, "array"),
    )
for _reader in ("solve--fit", "predict--optimum", "report--ddo", "world-score--weights"):
    add(
        f"json-other-{_reader}",
        "silent wrong",
        f"{_reader.replace('--', ' --')} given another command's output (the wrong kind of file)",
        REFUSE,
        _reader_case(_reader, "other"),
    )
for _reader in ("solve--fit",):
    add(
        f"json-nested-{_reader}",
        "traceback",
        f"{_reader.replace('--', ' --')} given a JSON document nested 100,000 deep",
        REFUSE,
        _reader_case(_reader, "nested"),
    )


@case("json-nested-train--spec", "traceback", "train --spec: JSON text nested 100,000 deep", REFUSE)
def _(ctx: Context) -> None:
    res = ctx.mixscale(
        "train",
        "--backend",
        "simulate",
        "--world",
        "separable",
        "--spec",
        NESTED[:20000],
        "--out",
        "run/metrics.json",
    )
    ctx.refuses(res, "--spec")


def _duplicate_key(
    argv: Callable[[Context], list[str]], fixture: str, key: str, setup: Callable[[Context], None]
) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        ctx.use(fixture)
        setup(ctx)
        ctx.refuses(ctx.mixscale(*argv(ctx)), key)

    return body


def _dup_weights(ctx: Context) -> None:
    text = ctx.path("w30.json").read_text()
    # the weights written twice: readers keep the last (config YAML refuses this)
    data = json.loads(text)
    doubled = {d: 1.0 / len(data["weights"]) for d in data["weights"]}
    ctx.write(
        "hostile.json", text.rstrip()[:-1] + ',\n "weights": ' + json.dumps(doubled) + "\n}\n"
    )


def _dup_sources(ctx: Context) -> None:
    ctx.write("hostile.json", '{"web": {"acquisition_cost": 0.1}, "web": {"acquisition_cost": 9}}')


def _dup_metrics(ctx: Context) -> None:
    text = ctx.path("metrics/up.json").read_text()
    ctx.write("hostile.json", text.rstrip()[:-1] + ',\n "run": "ddo-1M-base-s0"\n}\n')


add(
    "dupkey-predict--optimum",
    "silent wrong",
    "predict --optimum: WEIGHTS.json with 'weights' written twice",
    REFUSE,
    _duplicate_key(
        lambda c: [
            "predict",
            "--optimum",
            "hostile.json",
            "--optimum",
            "w10.json",
            "--target",
            "1e9",
            "--out",
            "o.json",
        ],
        "tables",
        "weights",
        _dup_weights,
    ),
)
add(
    "dupkey-anneal-costs--sources",
    "silent wrong",
    "anneal-costs --sources: a source written twice in the JSON",
    REFUSE,
    _duplicate_key(
        lambda c: [
            "anneal-costs",
            "--sources",
            "hostile.json",
            "--share",
            "0.3",
            "--training-cost",
            "1",
            "--out",
            "o.tsv",
        ],
        "tables",
        "web",
        _dup_sources,
    ),
)
add(
    "dupkey-table--metrics",
    "silent wrong",
    "table --metrics: metrics.json with 'run' written twice (two rows claim one run)",
    REFUSE,
    _duplicate_key(
        lambda c: ["table", "--metrics", "metrics/base.json", "hostile.json", "--out", "o.tsv"],
        "metrics",
        "run",
        _dup_metrics,
    ),
)


# =================================================================================================
# Family 2: every --seed flag given a negative seed (config seeds have no minimum either)

SEED_FLAGS: dict[str, tuple[str, list[str]]] = {
    "ddo": (
        "tables",
        ["ddo", "--runs", "runs_10M.tsv", "--tokens", "1e7", "--bootstrap", "3", "--out", "o.json"],
    ),
    "utility": (
        "tables",
        [
            "utility",
            "--runs",
            "anneal2.tsv",
            "--costs",
            "costs.tsv",
            "--bootstrap",
            "3",
            "--out",
            "o.json",
        ],
    ),
    "regmix": (
        "tables",
        [
            "regmix",
            "--runs",
            "regmix.tsv",
            "--regressor",
            "linear",
            "--candidates",
            "1000",
            "--out",
            "o.json",
        ],
    ),
    "corpus": (
        "corpus",
        ["corpus", "--out", "c2", "--source", 'web={"path": "doc.txt"}', "--max-bytes", "30000"],
    ),
    "tokens": (
        "corpus",
        [
            "tokens",
            "--corpus",
            "corpus/web.jsonl",
            "--tokenizer",
            "tok",
            "--validation-bytes",
            "2000",
            "--out",
            "store",
        ],
    ),
    "tasks": (
        "corpus",
        [
            "tasks",
            "--corpus",
            "corpus/web.jsonl",
            "corpus/wiki.jsonl",
            "--validation-bytes",
            "20000",
            "--out",
            "tasks",
        ],
    ),
}


def _seed_case(command: str) -> Callable[[Context], None]:
    fixture, argv = SEED_FLAGS[command]

    def body(ctx: Context) -> None:
        ctx.use(fixture)
        ctx.refuses(ctx.mixscale(*argv, "--seed", "-1"), "--seed")

    return body


for _command in SEED_FLAGS:
    add(
        f"seed-negative-{_command}",
        "traceback",
        f"{_command} --seed -1",
        REFUSE,
        _seed_case(_command),
    )


@case(
    "seed-negative-config-data.seed",
    "unclear / late",
    "config data.seed: -1 (no minimum in the schema): check, then the corpus job",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    config = sim_config(
        ctx,
        "experiment: t\nbackend: torch\ndata:\n  seed: -1\n"
        "  sources: {web: {path: doc.txt}, wiki: {path: doc2.txt}}\n"
        "model: {type: gpt2, n_layer: 1, n_embd: 32, n_head: 2}\n"
        "ddo: {scales: [{name: a, tokens: 1.0e+4}, {name: b, tokens: 3.0e+4}]}\n"
        "autoscale: {targets: [9.0e+4]}\n",
    )
    check_then(
        ctx,
        config,
        lambda: ctx.mixscale(
            "corpus",
            "--out",
            "c2",
            "--source",
            'web={"path": "doc.txt"}',
            "--max-bytes",
            "30000",
            "--seed",
            "-1",
        ),
        "the corpus job",
        "data.seed",
    )


# =================================================================================================
# Family 3: numbers on flags issue 36 does not list: huge counts (hangs), NaN/negative/zero

HUGE = "1000000000"


def _flag_case(fixture: str, argv: list[str], *names: str) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        if fixture:
            ctx.use(fixture)
        ctx.refuses(ctx.mixscale(*argv), *names)

    return body


FLAG_CASES: list[tuple[str, str, str, str, list[str], tuple[str, ...]]] = [
    # id, probes, what, fixture, argv, names in the refusal
    (
        "huge-ddo--bootstrap",
        "hang",
        "ddo --bootstrap 1e9 (config caps fit.bootstrap at 1e5)",
        "tables",
        [
            "ddo",
            "--runs",
            "runs_10M.tsv",
            "--tokens",
            "1e7",
            "--bootstrap",
            HUGE,
            "--out",
            "o.json",
        ],
        ("--bootstrap",),
    ),
    (
        "huge-utility--bootstrap",
        "hang",
        "utility --bootstrap 1e9 (replicate seeds: the bootstrap runs)",
        "tables",
        [
            "utility",
            "--runs",
            "anneal2.tsv",
            "--costs",
            "costs.tsv",
            "--bootstrap",
            HUGE,
            "--out",
            "o.json",
        ],
        ("--bootstrap",),
    ),
    (
        "huge-train--eval-points",
        "hang",
        "train --eval-points 1e9 (config caps it at 10,000)",
        "",
        [
            "train",
            "--backend",
            "simulate",
            "--world",
            "separable",
            "--spec",
            json.dumps(SPEC),
            "--eval-points",
            HUGE,
            "--out",
            "run/metrics.json",
        ],
        ("--eval-points",),
    ),
    (
        "huge-finetune-tasks--train-items",
        "hang",
        "finetune-tasks --train-items 1e9",
        "corpus",
        [
            "finetune-tasks",
            "--corpus",
            "corpus/web.jsonl",
            "corpus/wiki.jsonl",
            "--validation-bytes",
            "20000",
            "--train-items",
            HUGE,
            "--out",
            "ft",
        ],
        ("--train-items",),
    ),
    (
        "huge-regmix--top-k-inf",
        "traceback",
        "regmix --top-k inf",
        "tables",
        [
            "regmix",
            "--runs",
            "regmix.tsv",
            "--regressor",
            "linear",
            "--top-k",
            "inf",
            "--out",
            "o.json",
        ],
        ("--top-k",),
    ),
    (
        "inf-tokens--validation-bytes",
        "traceback",
        "tokens --validation-bytes inf",
        "corpus",
        [
            "tokens",
            "--corpus",
            "corpus/web.jsonl",
            "--tokenizer",
            "tok",
            "--validation-bytes",
            "inf",
            "--out",
            "store",
        ],
        ("--validation-bytes",),
    ),
    (
        "nan-solve--max-epochs",
        "silent wrong",
        "solve --available web=1e6 --max-epochs nan",
        "tables",
        [
            "solve",
            "--fit",
            "fit.json",
            "--tokens",
            "1e7",
            "--available",
            "web=1e6",
            "--max-epochs",
            "nan",
            "--out",
            "o.json",
        ],
        ("--max-epochs",),
    ),
    (
        "negative-solve--available",
        "silent wrong",
        "solve --available web=-5 --max-epochs 1",
        "tables",
        [
            "solve",
            "--fit",
            "fit.json",
            "--tokens",
            "1e7",
            "--available",
            "web=-5",
            "--max-epochs",
            "1",
            "--out",
            "o.json",
        ],
        ("--available",),
    ),
    (
        "nan-solve--max-tokens",
        "silent wrong",
        "solve --max-tokens web=nan",
        "tables",
        [
            "solve",
            "--fit",
            "fit.json",
            "--tokens",
            "1e7",
            "--max-tokens",
            "web=nan",
            "--out",
            "o.json",
        ],
        ("--max-tokens",),
    ),
    (
        "negative-solve--cost",
        "silent wrong",
        "solve --cost web=-1 (others 1) --budget 1e7",
        "tables",
        [
            "solve",
            "--fit",
            "fit.json",
            "--budget",
            "1e7",
            "--cost",
            "web=-1",
            "--cost",
            "wiki=1",
            "--cost",
            "code=1",
            "--cost",
            "books=1",
            "--out",
            "o.json",
        ],
        ("--cost",),
    ),
    (
        "nan-rounds--tolerance",
        "silent wrong",
        "rounds --tolerance nan",
        "tables",
        [
            "rounds",
            "--weights",
            "d10.json",
            "--planned",
            "2",
            "--tolerance",
            "nan",
            "--out",
            "o.json",
        ],
        ("--tolerance",),
    ),
    (
        "negative-advise--error",
        "silent wrong",
        "advise --error -1 (an L1 error in (0, 2])",
        "tables",
        [
            "advise",
            "--pilot",
            "runs_10M.tsv",
            "--scales",
            "1e7,3e7",
            "--error",
            "-1",
            "--trials",
            "11",
        ],
        ("--error",),
    ),
    (
        "nan-utility--extrapolate",
        "silent wrong",
        "utility --extrapolate nan",
        "tables",
        [
            "utility",
            "--runs",
            "anneal.tsv",
            "--costs",
            "costs.tsv",
            "--bootstrap",
            "0",
            "--extrapolate",
            "nan",
            "--out",
            "o.json",
        ],
        ("--extrapolate",),
    ),
    (
        "negative-utility--train-cost",
        "silent wrong",
        "utility --train-cost-per-token -1 (costs table without the column)",
        "tables",
        [
            "utility",
            "--runs",
            "anneal.tsv",
            "--costs",
            "costs2.tsv",
            "--bootstrap",
            "0",
            "--train-cost-per-token",
            "-1",
            "--out",
            "o.json",
        ],
        ("--train-cost-per-token",),
    ),
    (
        "nan-anneal-costs--share",
        "silent wrong",
        "anneal-costs --share nan",
        "",
        [
            "anneal-costs",
            "--sources",
            '{"web": {"acquisition_cost": 1}}',
            "--share",
            "nan",
            "--training-cost",
            "1",
            "--out",
            "o.tsv",
        ],
        ("--share",),
    ),
    (
        "negative-anneal-costs--training-cost",
        "silent wrong",
        "anneal-costs --training-cost -1",
        "",
        [
            "anneal-costs",
            "--sources",
            '{"web": {"acquisition_cost": 1}}',
            "--share",
            "0.3",
            "--training-cost",
            "-1",
            "--out",
            "o.tsv",
        ],
        ("--training-cost",),
    ),
    (
        "zero-mixtures--temperature",
        "traceback",
        "mixtures --temperature 0 (config: > 0)",
        "",
        [
            "mixtures",
            "--prior",
            "a=1,b=1",
            "--count",
            "4",
            "--tokens",
            "1e6",
            "--temperature",
            "0",
            "--out",
            "o.tsv",
        ],
        ("--temperature",),
    ),
    (
        "zero-dml--huber-delta",
        "silent wrong",
        "dml --huber-delta 0 (config: > 0)",
        "tables",
        ["dml", "--runs", "regmix.tsv", "--huber-delta", "0", "--out", "o.json"],
        ("--huber-delta",),
    ),
    (
        "zero-regmix--top-k",
        "traceback",
        "regmix --top-k 0",
        "tables",
        [
            "regmix",
            "--runs",
            "regmix.tsv",
            "--regressor",
            "linear",
            "--candidates",
            "1000",
            "--top-k",
            "0",
            "--out",
            "o.json",
        ],
        ("--top-k",),
    ),
    (
        "tiny-tokenizer--vocab-size",
        "silent wrong",
        "tokenizer --vocab-size 5 (config: >= 300)",
        "corpus",
        [
            "tokenizer",
            "--corpus",
            "corpus/web.jsonl",
            "--vocab-size",
            "5",
            "--validation-bytes",
            "2000",
            "--out",
            "tok2",
        ],
        ("--vocab-size",),
    ),
    (
        "negative-corpus--max-bytes",
        "silent wrong",
        "corpus --max-bytes -1 (config: > 0)",
        "corpus",
        ["corpus", "--out", "c2", "--source", 'web={"path": "doc.txt"}', "--max-bytes", "-1"],
        ("--max-bytes",),
    ),
    (
        "zero-fit--unit",
        "traceback",
        "fit --unit 0 (a token unit, config: > 0)",
        "tables",
        ["fit", "--runs", "runs_10M.tsv", "--form", "paper", "--unit", "0", "--out", "o.json"],
        ("--unit",),
    ),
    (
        "nan-fit--eval-weights",
        "silent wrong",
        "fit --eval-weights web=nan,wiki=1",
        "tables",
        ["fit", "--runs", "runs_10M.tsv", "--eval-weights", "web=nan,wiki=1", "--out", "o.json"],
        ("--eval-weights",),
    ),
    (
        "dup-fit--eval-weights",
        "silent wrong",
        "fit --eval-weights web=0.9,wiki=0.1,web=0.1 (a domain twice: the last wins)",
        "tables",
        [
            "fit",
            "--runs",
            "runs_10M.tsv",
            "--eval-weights",
            "web=0.9,wiki=0.1,web=0.1",
            "--out",
            "o.json",
        ],
        ("--eval-weights", "web"),
    ),
    (
        "dup-fit--eval-domains",
        "silent wrong",
        "fit --eval-domains web,wiki,web (web counted twice)",
        "tables",
        ["fit", "--runs", "runs_10M.tsv", "--eval-domains", "web,wiki,web", "--out", "o.json"],
        ("--eval-domains", "web"),
    ),
    (
        "dup-solve--min-weight",
        "silent wrong",
        "solve --min-weight web=0.4 --min-weight web=0.1 (the same domain twice)",
        "tables",
        [
            "solve",
            "--fit",
            "fit.json",
            "--tokens",
            "1e7",
            "--min-weight",
            "web=0.4",
            "--min-weight",
            "web=0.1",
            "--out",
            "o.json",
        ],
        ("--min-weight", "web"),
    ),
    (
        "infeasible-solve--min-weight",
        "silent wrong",
        "solve --min-weight 0.3 for four domains (sum 1.2: no mixture)",
        "tables",
        ["solve", "--fit", "fit.json", "--tokens", "1e7", "--min-weight", "0.3", "--out", "o.json"],
        ("--min-weight",),
    ),
    (
        "nan-report--proxy-tokens",
        "silent wrong",
        "report --proxy-tokens '{\"autoscale\": NaN}'",
        "tables",
        [
            "report",
            "--experiment",
            "x",
            "--ddo",
            "d10.json",
            "w30.json",
            "--proxy-tokens",
            '{"autoscale": NaN}',
            "--out",
            "rep/s.md",
        ],
        ("--proxy-tokens",),
    ),
    (
        "zero-finetune-tasks--passage-words",
        "traceback",
        "finetune-tasks --passage-words 0 (config: >= 4)",
        "corpus",
        [
            "finetune-tasks",
            "--corpus",
            "corpus/web.jsonl",
            "corpus/wiki.jsonl",
            "--validation-bytes",
            "20000",
            "--passage-words",
            "0",
            "--train-items",
            "10",
            "--eval-items",
            "10",
            "--out",
            "ft",
        ],
        ("--passage-words",),
    ),
    (
        "zero-train--eval-points",
        "traceback",
        "train --eval-points 0",
        "",
        [
            "train",
            "--backend",
            "simulate",
            "--world",
            "separable",
            "--spec",
            json.dumps(SPEC),
            "--eval-points",
            "0",
            "--out",
            "run/metrics.json",
        ],
        ("--eval-points",),
    ),
    (
        "unknown-train--backend",
        "silent wrong",
        "train --backend tpu (no choices on the flag)",
        "",
        ["train", "--backend", "tpu", "--spec", json.dumps(SPEC), "--out", "run/metrics.json"],
        ("backend",),
    ),
]


def _flag_body(fixture: str, argv: list[str], names: tuple[str, ...]) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        if fixture:
            ctx.use(fixture)
        if "costs2.tsv" in argv:
            ctx.write("costs2.tsv", "source\tacquisition_cost_per_token\nweb\t0.1\nmath\t2.0\n")
        ctx.refuses(ctx.mixscale(*argv), *names)

    return body


for _cid, _probes, _what, _fixture, _argv, _names in FLAG_CASES:
    add(_cid, _probes, _what, REFUSE, _flag_body(_fixture, _argv, _names))


# =================================================================================================
# Family 4: where outputs go: a folder, '', under a file, onto an input, onto each other, and
# the files written beside --out without being asked


def _out_case(kind: str) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        ctx.use("tables")
        ctx.write("outdir/notes.txt", "the user's notes\n")
        ctx.protect("outdir/notes.txt", "runs_10M.tsv")
        out = {"dir": "outdir", "empty": "", "under-file": "outdir/notes.txt/fit.json"}[kind]
        res = ctx.mixscale("fit", "--runs", "runs_10M.tsv", "--out", out)
        ctx.refuses(res, "--out" if kind == "empty" else "outdir")

    return body


add(
    "out-existing-folder",
    "traceback",
    "fit --out an existing folder (holding the user's files)",
    REFUSE,
    _out_case("dir"),
)
add(
    "out-empty-string",
    "traceback",
    "fit --out '' (an unset shell variable)",
    REFUSE,
    _out_case("empty"),
)
add(
    "out-under-a-file",
    "traceback",
    "fit --out notes.txt/fit.json (the parent is a file)",
    REFUSE,
    _out_case("under-file"),
)


@case(
    "out-folder-output-onto-file",
    "data loss",
    "tokenizer --out the path of an existing user file (a folder output over a file)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.write("mytok", "the user's file\n")
    ctx.protect("mytok")
    res = ctx.mixscale(
        "tokenizer",
        "--corpus",
        "corpus/web.jsonl",
        "--vocab-size",
        "300",
        "--validation-bytes",
        "2000",
        "--out",
        "mytok",
    )
    ctx.refuses(res, "mytok")


@case(
    "figure-onto-runs",
    "data loss",
    "ddo --figure runs_10M.tsv (the figure path is the run table)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.protect("runs_10M.tsv")
    res = ctx.mixscale(
        "ddo",
        "--runs",
        "runs_10M.tsv",
        "--tokens",
        "1e7",
        "--bootstrap",
        "0",
        "--figure",
        "runs_10M.tsv",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "--figure")


@case(
    "figure-onto-out",
    "silent wrong",
    "ddo --out w.json --figure w.json (two outputs, one path)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    res = ctx.mixscale(
        "ddo",
        "--runs",
        "runs_10M.tsv",
        "--tokens",
        "1e7",
        "--bootstrap",
        "0",
        "--figure",
        "w.json",
        "--out",
        "w.json",
    )
    if res.rc == 0 and not isinstance(json_file(ctx, "w.json"), dict):
        ctx.wrong("exit 0 and --out w.json is not the JSON it reported writing (the PNG won)")
    elif res.rc == 0:
        ctx.wrong("exit 0 and the figure it reported writing is not there (the JSON won)")
    else:
        ctx.refuses(res, "--figure")


@case(
    "rounds-figure-onto-weights",
    "data loss",
    "rounds --figure equal to one of its --weights files",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.protect("d10.json")
    res = ctx.mixscale(
        "rounds",
        "--weights",
        "d10.json",
        "--figures",
        "fits.png",
        "--planned",
        "1",
        "--tolerance",
        "0.01",
        "--figure",
        "d10.json",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "--figure")


@case("scores-out-onto-score", "data loss", "regmix --score held.tsv --scores-out held.tsv", REFUSE)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("held.tsv", sampled_mixture_table(runs=6))
    ctx.protect("held.tsv")
    res = ctx.mixscale(
        "regmix",
        "--runs",
        "regmix.tsv",
        "--regressor",
        "linear",
        "--candidates",
        "1000",
        "--score",
        "held.tsv",
        "--scores-out",
        "held.tsv",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "--scores-out")


@case("study-markdown-onto-config", "data loss", "study --markdown equal to its --config", REFUSE)
def _(ctx: Context) -> None:
    ctx.write(
        "study.yaml",
        "worlds: [separable]\ntrials: 2\nbaseline: {sigma: 0.004, seeds: 1, "
        "factor: 3.0, scales: [3.0e+7, 3.0e+8], target: 1.0e+10, trust_region: true}\n"
        "vary: {seeds: [1]}\n",
    )
    ctx.protect("study.yaml")
    res = ctx.mixscale(
        "study", "--config", "study.yaml", "--markdown", "study.yaml", "--out", "o.json"
    )
    ctx.refuses(res, "--markdown")


@case(
    "report-overwrites-unasked-files",
    "data loss",
    "report --out notes/summary.md where notes/ holds the user's loss_curves.png",
    "only --out (and files it names) written",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("notes/loss_curves.png", b"the user's own figure")
    ctx.write("notes/weights_vs_scale.png", b"the user's other figure")
    ctx.protect("notes/loss_curves.png", "notes/weights_vs_scale.png")
    ctx.mixscale(
        "report", "--experiment", "x", "--ddo", "d10.json", "w30.json", "--out", "notes/summary.md"
    )


@case(
    "anneal-report-overwrites-unasked-files",
    "data loss",
    "anneal-report --out my/anneal.md where my/ holds anneal_gain_vs_cost.png of another study",
    "only --out written",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("my/anneal_gain_vs_cost.png", b"another study's figure")
    ctx.protect("my/anneal_gain_vs_cost.png")
    ctx.mixscale(
        "anneal-report",
        "--utility",
        "utility.json",
        "--runs",
        "anneal.tsv",
        "--out",
        "my/anneal.md",
    )


# =================================================================================================
# Family 5: run tables, annealing tables, corpora: content a spreadsheet or another tool writes


def _table_text(ctx: Context, edit: Callable[[list[list[str]]], list[list[str]]]) -> str:
    rows = [line.split("\t") for line in ctx.path("runs_10M.tsv").read_text().splitlines()]
    return "\n".join("\t".join(r) for r in edit(rows)) + "\n"


@case(
    "runtable-typo-column",
    "silent wrong",
    "run table whose tokens.code column is spelled "
    "token.code (the domain silently left out of the fit)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write(
        "t.tsv",
        _table_text(
            ctx,
            lambda rows: [
                [("token.code" if c == "tokens.code" else c) for c in rows[0]],
                *rows[1:],
            ],
        ),
    )
    ctx.refuses(ctx.mixscale("fit", "--runs", "t.tsv", "--out", "o.json"), "token.code")


@case(
    "runtable-quoted-header",
    "unclear / late",
    'run table exported with quoted cells ("tokens.web")',
    "read as written, or refused naming the quoting",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("t.tsv", _table_text(ctx, lambda rows: [[f'"{c}"' for c in r] for r in rows]))
    res = ctx.mixscale("fit", "--runs", "t.tsv", "--out", "o.json")
    if res.rc != 0:
        ctx.refuses(res, "t.tsv", "quot")


@case(
    "runtable-nfd-domain",
    "unclear / late",
    "run table with domain café in NFD, --eval-domains café typed in NFC",
    "the same domain, or a refusal that says why",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    ctx.write(
        "t.tsv",
        _table_text(ctx, lambda rows: [[c.replace("wiki", nfd) for c in rows[0]], *rows[1:]]),
    )
    res = ctx.mixscale("fit", "--runs", "t.tsv", "--eval-domains", f"web,{nfc}", "--out", "o.json")
    if res.rc != 0:
        ctx.refuses(res, "--eval-domains", "normal")


@case(
    "runtable-utf16",
    "unclear / late",
    "run table saved as UTF-16 ('Unicode text' in a spreadsheet)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("t.tsv", ctx.path("runs_10M.tsv").read_text().encode("utf-16"))
    ctx.refuses(ctx.mixscale("fit", "--runs", "t.tsv", "--out", "o.json"), "t.tsv", "UTF")


@case(
    "runtable-empty-seed-cells",
    "silent wrong",
    "run table whose seed column is empty on some rows",
    "refused naming the row, or seeds read as written",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write(
        "t.tsv",
        _table_text(
            ctx,
            lambda rows: (
                [rows[0]]
                + [
                    [("" if j == 1 and i % 2 else c) for j, c in enumerate(r)]
                    for i, r in enumerate(rows[1:])
                ]
            ),
        ),
    )
    res = ctx.mixscale("ddo", "--runs", "t.tsv", "--tokens", "1e7", "--out", "o.json")
    if res.rc == 0:
        ctx.wrong("exit 0: rows without a seed were taken as seed '' (a seed of their own)")
    else:
        ctx.refuses(res, "t.tsv", "seed")


@case(
    "runtable-300-domains",
    "hang",
    "fit on a 300-domain Algorithm 1 sweep (601 runs)",
    "finishes in seconds or refuses",
)
def _(ctx: Context) -> None:
    m = 300
    header = ["run", *(f"tokens.d{j}" for j in range(m)), "loss.all"]
    rows = []
    base = [1.0e6] * m

    def loss(n: list[float]) -> float:
        return 2.0 + sum(0.5 * (x / 1e6) ** -0.3 for x in n) / m

    rows.append(["base", *map(str, base), f"{loss(base):.6f}"])
    for j in range(m):
        for f, tag in ((3.0, "up"), (1 / 3, "down")):
            n = list(base)
            n[j] *= f
            rows.append([f"d{j}_{tag}", *(f"{x:.0f}" for x in n), f"{loss(n):.6f}"])
    ctx.write("t.tsv", "\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    res = ctx.mixscale(
        "ddo", "--runs", "t.tsv", "--tokens", "3e8", "--bootstrap", "0", "--out", "o.json"
    )
    ctx.succeeds(res)


@case(
    "runtable-tab-in-run-id",
    "silent wrong",
    "table: a metrics.json whose run id holds a tab (the TSV written has a ragged row)",
    "a table that reads back, or a refusal",
)
def _(ctx: Context) -> None:
    ctx.use("metrics")
    data = json.loads(ctx.path("metrics/up.json").read_text())
    data["run"] = "web\tup"
    ctx.write("metrics/tab.json", json.dumps(data))
    res = ctx.mixscale(
        "table", "--metrics", "metrics/base.json", "metrics/tab.json", "--out", "o.tsv"
    )
    if res.rc == 0:
        back = ctx.mixscale("fit", "--runs", "o.tsv", "--out", "o.json")
        if back.rc != 0:
            ctx.wrong(f"table wrote a run table that does not read back: {back.first_error()}")
    else:
        ctx.refuses(res, "run")


@case(
    "anneal-table-tab-in-source",
    "silent wrong",
    "anneal-table: metrics whose source name holds a tab and a newline",
    "a table that reads back, or a refusal",
)
def _(ctx: Context) -> None:
    ctx.use("metrics")
    for name, source in (("base", "control"), ("up", "evil\tsource\nweb")):
        data = json.loads(ctx.path(f"metrics/{name}.json").read_text())
        data.update(source=source, seed=0, requested_tokens={"web": 1e4})
        ctx.write(f"metrics/a-{name}.json", json.dumps(data))
    res = ctx.mixscale(
        "anneal-table",
        "--metrics",
        "metrics/a-base.json",
        "metrics/a-up.json",
        "--target",
        "web",
        "--out",
        "o.tsv",
    )
    if res.rc == 0:
        lines = ctx.path("o.tsv").read_text().splitlines()
        if len(lines) != 3 or any(len(line.split("\t")) != 5 for line in lines):
            ctx.wrong(f"exit 0 and the TSV has {len(lines)} lines for 2 runs (a row injected)")
    else:
        ctx.refuses(res, "source")


@case(
    "anneal-costs-tab-in-source",
    "silent wrong",
    "anneal-costs --sources with a source name holding a newline and a tab",
    "refused (the schema's name pattern), or quoted",
)
def _(ctx: Context) -> None:
    res = ctx.mixscale(
        "anneal-costs",
        "--sources",
        '{"web\\nmath\\t0\\t0\\t1\\t0\\t": {"acquisition_cost": 1}}',
        "--share",
        "0.3",
        "--training-cost",
        "1",
        "--out",
        "o.tsv",
    )
    if res.rc == 0:
        ctx.wrong(
            f"exit 0: {len(ctx.path('o.tsv').read_text().splitlines()) - 1} cost rows "
            "written for one source"
        )
    else:
        ctx.refuses(res, "--sources")


@case(
    "anneal-costs-bad-cost-type",
    "traceback",
    'anneal-costs --sources with acquisition_cost "cheap"',
    REFUSE,
)
def _(ctx: Context) -> None:
    res = ctx.mixscale(
        "anneal-costs",
        "--sources",
        '{"web": {"acquisition_cost": "cheap"}}',
        "--share",
        "0.3",
        "--training-cost",
        "1",
        "--out",
        "o.tsv",
    )
    ctx.refuses(res, "acquisition_cost")


@case(
    "anneal-costs-source-not-mapping",
    "traceback",
    "anneal-costs --sources with a source given as a list",
    REFUSE,
)
def _(ctx: Context) -> None:
    res = ctx.mixscale(
        "anneal-costs",
        "--sources",
        '{"web": [1, 2]}',
        "--share",
        "0.3",
        "--training-cost",
        "1",
        "--out",
        "o.tsv",
    )
    ctx.refuses(res, "web")


@case(
    "utility-duplicate-runs",
    "silent wrong",
    "utility: the same (source, budget, seed) run twice with different metrics",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("a.tsv", anneal_rows() + "web\t1e+06\t1.5\t0\n")
    res = ctx.mixscale(
        "utility", "--runs", "a.tsv", "--costs", "costs.tsv", "--bootstrap", "0", "--out", "o.json"
    )
    ctx.refuses(res, "a.tsv", "web")


@case(
    "utility-control-missing-at-a-budget",
    "silent wrong",
    "utility: no control run at one of the budgets (the gain there has no baseline)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    text = "".join(
        line + "\n" for line in anneal_rows().splitlines() if not line.startswith("control\t1e+08")
    )
    ctx.write("a.tsv", text)
    res = ctx.mixscale(
        "utility", "--runs", "a.tsv", "--costs", "costs.tsv", "--bootstrap", "0", "--out", "o.json"
    )
    ctx.refuses(res, "control")


@case(
    "corpus-text-with-bom",
    "silent wrong",
    "corpus from a UTF-8 text file with a byte-order "
    "mark (docs: a BOM is read as written in data files)",
    "no U+FEFF in the documents",
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.write("bom.txt", b"\xef\xbb\xbf" + ctx.path("doc.txt").read_bytes())
    res = ctx.mixscale("corpus", "--out", "c2", "--source", 'web={"path": "bom.txt"}')
    if not ctx.succeeds(res):
        return
    text = ctx.path("c2/web.jsonl").read_text(encoding="utf-8")
    if "\ufeff" in text or "\\ufeff" in text.lower():  # raw, or escaped by json.dumps
        ctx.wrong("the byte-order mark is in the first document's text (U+FEFF trained on)")


@case(
    "corpus-jsonl-with-bom", "silent wrong", "corpus from a JSONL file with a byte-order mark", OK
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.write("bom.jsonl", b"\xef\xbb\xbf" + ctx.path("corpus/web.jsonl").read_bytes())
    ctx.succeeds(ctx.mixscale("corpus", "--out", "c2", "--source", 'web={"path": "bom.jsonl"}'))


@case(
    "corpus-path-fifo", "hang", "a data source whose path is a FIFO (nobody writes to it)", REFUSE
)
def _(ctx: Context) -> None:
    os.mkfifo(ctx.path("pipe"))
    res = ctx.mixscale("corpus", "--out", "c2", "--source", 'web={"path": "pipe"}', timeout=10)
    ctx.refuses(res, "pipe")


@case(
    "corpus-domain-path-traversal",
    "security",
    "corpus --source '../escaped={\"path\": ...}' (a domain name with ../ writes outside --out)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    res = ctx.mixscale("corpus", "--out", "out/c", "--source", '../../escaped={"path": "doc.txt"}')
    if ctx.path("escaped.jsonl").exists():
        ctx.security("wrote escaped.jsonl two folders above --out")
    ctx.refuses(res, "escaped")


@case(
    "derive-name-path-traversal",
    "security",
    "derive --source '../../escaped={...}' (the name becomes a file name)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    res = ctx.mixscale(
        "derive",
        "--source",
        '../../escaped={"derive": "web", "kind": "curated", "bytes": 20000}',
        "--corpus-dir",
        "corpus",
        "--validation-bytes",
        "2000",
        "--out",
        "out/d",
    )
    if any(ctx.dir.glob("escaped*")):
        ctx.security("wrote escaped.* two folders above --out")
    ctx.refuses(res, "escaped")


@case(
    "tokens-foreign-jsonl",
    "traceback",
    "tokens --corpus a JSONL of another tool (field 'content', not 'text')",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.write(
        "foreign.jsonl",
        "".join(json.dumps({"content": f"doc {i} " * 50}) + "\n" for i in range(50)),
    )
    res = ctx.mixscale(
        "tokens",
        "--corpus",
        "foreign.jsonl",
        "--tokenizer",
        "tok",
        "--validation-bytes",
        "2000",
        "--out",
        "store",
    )
    ctx.refuses(res, "foreign.jsonl")


@case(
    "tokenizer-plain-text-corpus",
    "traceback",
    "tokenizer --corpus a plain .txt file (not the corpus command's JSONL)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    res = ctx.mixscale(
        "tokenizer",
        "--corpus",
        "doc.txt",
        "--vocab-size",
        "300",
        "--validation-bytes",
        "2000",
        "--out",
        "tok2",
    )
    ctx.refuses(res, "doc.txt")


@case(
    "tasks-truncated-corpus",
    "traceback",
    "tasks --corpus a JSONL truncated mid-line (a killed copy)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    data = ctx.path("corpus/web.jsonl").read_bytes()
    ctx.write("cut/web.jsonl", data[: len(data) // 2])
    res = ctx.mixscale(
        "tasks", "--corpus", "cut/web.jsonl", "--validation-bytes", "20000", "--out", "tasks"
    )
    ctx.refuses(res, "web.jsonl")


@case(
    "stdin-dash-as-run-table", "hang", "fit --runs - with a terminal-like stdin left open", REFUSE
)
def _(ctx: Context) -> None:
    res = ctx.mixscale("fit", "--runs", "-", "--out", "o.json", stdin=b"", keep_stdin_open=True)
    ctx.refuses(res, "-")


# =================================================================================================
# Family 6: every loader of YAML or model files given something that would run code


def _python_tag_yaml(ctx: Context) -> str:
    return f"!!python/object/apply:os.system ['touch {ctx.path(MARKER)}']\n"


def _yaml_tag_case(loader: str) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        payload = _python_tag_yaml(ctx)
        if loader == "config":
            ctx.write("c.yaml", SIM_CONFIG.replace("world: separable", f"world: {payload}"))
            res, names = ctx.mixscale("check", "--configfile", "c.yaml"), ("c.yaml",)
        elif loader == "world":
            ctx.write("w.yaml", f"domains: {payload}")
            res = ctx.mixscale(
                "world", "optimum", "--world", "w.yaml", "--tokens", "1e6", "--out", "o.json"
            )
            names = ("w.yaml",)
        elif loader == "settings":
            ctx.write("s.yaml", f"items: {payload}")
            ctx.use("corpus")
            res = ctx.mixscale(
                "tasks", "--corpus", "corpus/web.jsonl", "--build", "s.yaml", "--out", "tasks"
            )
            names = ("s.yaml",)
        elif loader == "study":
            ctx.write("study.yaml", f"worlds: {payload}")
            res, names = (
                ctx.mixscale("study", "--config", "study.yaml", "--out", "o.json"),
                ("study.yaml",),
            )
        elif loader == "profile":
            ctx.write("prof/config.yaml", f"executor: {payload}")
            res = ctx.mixscale(
                "install-profile",
                "--partition",
                "cpu",
                "--source",
                "prof",
                "--config-dir",
                "profiles",
            )
            names = ("config.yaml",)
        ctx.refuses(res, *names)

    return body


for _loader in ("config", "world", "settings", "study", "profile"):
    add(
        f"yaml-python-tag-{_loader}",
        "security",
        f"a !!python/object/apply tag in a {_loader} YAML",
        REFUSE + "; nothing runs",
        _yaml_tag_case(_loader),
    )


@case(
    "yaml-recursive-anchor-config",
    "hang",
    "a config with a self-referencing anchor (&a [*a])",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.write("c.yaml", SIM_CONFIG + "tracking: &loop [*loop]\n")
    ctx.refuses(ctx.mixscale("check", "--configfile", "c.yaml"), "c.yaml")


@case("yaml-recursive-anchor-world", "hang", "a world file with a self-referencing anchor", REFUSE)
def _(ctx: Context) -> None:
    ctx.write("w.yaml", "domains: &loop [a, *loop]\nskills: [{beta: 1, gamma: 0.3}]\n")
    res = ctx.mixscale(
        "world", "optimum", "--world", "w.yaml", "--tokens", "1e6", "--out", "o.json"
    )
    ctx.refuses(res, "w.yaml")


@case(
    "world-duplicate-key",
    "silent wrong",
    "a world file with 'skills' written twice (configs refuse this; worlds keep the last)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.write(
        "w.yaml",
        "domains: [a, b]\nskills: [{beta: 1, gamma: 0.3}, {beta: 1, gamma: 0.3}]\n"
        "skills: [{beta: 5, gamma: 0.9}, {beta: 1, gamma: 0.1}]\n",
    )
    res = ctx.mixscale(
        "world", "optimum", "--world", "w.yaml", "--tokens", "1e6", "--out", "o.json"
    )
    ctx.refuses(res, "w.yaml", "skills")


def _remote_code_dir(ctx: Context, folder: str, kind: str) -> None:
    """A model or tokenizer folder whose config names code of its own (auto_map): loading it
    with trust_remote_code would import evil.py, which creates the marker."""
    ctx.write(f"{folder}/evil.py", marker_payload(ctx) + "\n")
    if kind == "model":
        ctx.write(
            f"{folder}/config.json",
            json.dumps(
                {
                    "model_type": "evil",
                    "architectures": ["EvilModel"],
                    "auto_map": {
                        "AutoConfig": "evil.EvilConfig",
                        "AutoModel": "evil.EvilModel",
                        "AutoModelForSequenceClassification": "evil.EvilModel",
                    },
                }
            ),
        )
        for name in ("tokenizer.json", "tokenizer_config.json"):  # a tokenizer of its own
            shutil.copy(ctx.path(f"tok/{name}"), ctx.path(f"{folder}/{name}"))
    else:
        shutil.copy(ctx.path("tok/tokenizer.json"), ctx.path(f"{folder}/tokenizer.json"))
        ctx.write(
            f"{folder}/tokenizer_config.json",
            json.dumps(
                {
                    "tokenizer_class": "EvilTokenizer",
                    "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]},
                }
            ),
        )


@case(
    "remote-code-finetune--model",
    "security",
    "finetune --model a folder whose config.json has auto_map to its own evil.py",
    REFUSE + "; nothing runs",
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    _remote_code_dir(ctx, "evilmodel", "model")
    ctx.mixscale(
        "finetune-tasks",
        "--corpus",
        "corpus/web.jsonl",
        "corpus/wiki.jsonl",
        "--validation-bytes",
        "20000",
        "--train-items",
        "10",
        "--eval-items",
        "10",
        "--out",
        "ft",
    )
    task = next((p for p in ctx.path("ft").iterdir() if p.is_dir()), ctx.path("ft"))
    res = ctx.mixscale(
        "finetune", "--model", "evilmodel", "--task", str(task), "--no-train", "--out", "o.json"
    )
    ctx.refuses(res, "evilmodel")


@case(
    "remote-code-tokens--tokenizer",
    "security",
    "tokens --tokenizer a folder whose tokenizer_config.json has auto_map to its own evil.py",
    REFUSE + "; nothing runs",
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    _remote_code_dir(ctx, "eviltok", "tokenizer")
    res = ctx.mixscale(
        "tokens",
        "--corpus",
        "corpus/web.jsonl",
        "--tokenizer",
        "eviltok",
        "--validation-bytes",
        "2000",
        "--out",
        "store",
    )
    if res.rc == 0:
        return  # loaded as the plain tokenizer.json: fine, if nothing ran (checked after)
    ctx.refuses(res, "eviltok")


@case(
    "pickle-model-checkpoint",
    "security",
    "init-model with model.checkpoint a folder holding "
    "only a pickled pytorch_model.bin that runs code",
    REFUSE + "; nothing runs",
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.mixscale(
        "tokens",
        "--corpus",
        "corpus/web.jsonl",
        "--tokenizer",
        "tok",
        "--validation-bytes",
        "2000",
        "--out",
        "stores/web",
    )
    ctx.write(
        "ckpt/config.json",
        json.dumps(
            {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 300}
        ),
    )
    payload = (
        "import pickle, os\n"
        "class P:\n"
        f"    def __reduce__(self): return (os.system, ('touch {ctx.path(MARKER)}',))\n"
        f"pickle.dump({{'x': P()}}, open({str(ctx.path('ckpt/pytorch_model.bin'))!r}, 'wb'))\n"
    )
    ctx.python(payload)
    settings = {
        "stores": "stores",
        "tokenizer": "tok",
        "model": {"checkpoint": "ckpt"},
        "train": {"seq_len": 16},
    }
    res = ctx.mixscale("init-model", "--settings", json.dumps(settings), "--out", "m")
    if res.rc == 0:
        return  # the architecture built fresh, the checkpoint never read: fine if nothing ran
    ctx.refuses(res, "ckpt")


# =================================================================================================
# Family 7: markup and markdown injection in what the reports print


@case(
    "report-experiment-html",
    "security",
    "report --experiment '<script>...' (the name goes into summary.md raw)",
    "refused, or escaped in the report",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    res = ctx.mixscale(
        "report",
        "--experiment",
        "<script>alert(1)</script>",
        "--ddo",
        "d10.json",
        "w30.json",
        "--out",
        "rep/summary.md",
    )
    if res.rc == 0 and "<script>" in ctx.path("rep/summary.md").read_text():
        ctx.security("<script> is written raw into summary.md (rendered by --report)")
    elif res.rc != 0:
        ctx.refuses(res, "--experiment")


@case(
    "report-method-name-html",
    "security",
    "report --compare: a compare JSON whose method name is '<img src=x onerror=alert(1)>'",
    "escaped in the report",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.use("metrics")
    data = json.loads(ctx.path("compare.json").read_text())
    data["methods"] = {
        "<img src=x onerror=alert(1)>" if k == "autoscale" else k: v
        for k, v in data["methods"].items()
    }
    ctx.write("cmp/3e+07.json", json.dumps(data))
    res = ctx.mixscale(
        "report",
        "--experiment",
        "x",
        "--ddo",
        "d10.json",
        "w30.json",
        "--compare",
        "cmp/3e+07.json",
        "--out",
        "rep/summary.md",
    )
    if res.rc == 0 and "<img src=x" in ctx.path("rep/summary.md").read_text():
        ctx.security("the method name's <img onerror> is written raw into summary.md")
    elif res.rc != 0:
        ctx.refuses(res, "cmp/3e+07.json")


@case(
    "anneal-report-source-html",
    "security",
    "anneal-report: a source named '<script>' in the annealing table",
    "escaped in anneal.md",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("a.tsv", anneal_rows().replace("math", "<script>x</script>"))
    ctx.write("c.tsv", COSTS.replace("math", "<script>x</script>"))
    ctx.mixscale(
        "utility", "--runs", "a.tsv", "--costs", "c.tsv", "--bootstrap", "0", "--out", "u.json"
    )
    res = ctx.mixscale(
        "anneal-report", "--utility", "u.json", "--runs", "a.tsv", "--out", "rep/anneal.md"
    )
    if res.rc == 0 and "<script>" in ctx.path("rep/anneal.md").read_text():
        ctx.security("<script> from a source name is written raw into anneal.md")
    elif res.rc != 0:
        ctx.refuses(res, "a.tsv")


@case(
    "report-method-name-pipe",
    "silent wrong",
    "report: a method named 'a | b' breaks the markdown table rows",
    "the table keeps its columns",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.use("metrics")
    data = json.loads(ctx.path("compare.json").read_text())
    data["methods"] = {
        "auto | scale" if k == "autoscale" else k: v for k, v in data["methods"].items()
    }
    ctx.write("cmp/3e+07.json", json.dumps(data))
    res = ctx.mixscale(
        "report",
        "--experiment",
        "x",
        "--ddo",
        "d10.json",
        "w30.json",
        "--compare",
        "cmp/3e+07.json",
        "--out",
        "rep/summary.md",
    )
    if res.rc == 0 and "auto | scale" in ctx.path("rep/summary.md").read_text():
        ctx.wrong("'auto | scale' is written unescaped: the row gains a column")


# =================================================================================================
# Family 8: install-profile values YAML reads as something else


def _profile_case(flag: str, value: str, key: str) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        res = ctx.mixscale(
            "install-profile",
            "--partition",
            "cpu",
            flag,
            value,
            "--source",
            str(ctx.root / "profiles" / "slurm"),
            "--config-dir",
            "profiles",
        )
        if res.rc != 0:
            ctx.refuses(res, flag)
            return
        import yaml

        text = ctx.path("profiles/slurm/config.yaml").read_text()
        data = yaml.safe_load(text)
        got = (
            data["default-resources"].get(key)
            if key == "slurm_account"
            else (data["set-resources"]["train"].get(key))
        )
        if got != value:
            ctx.wrong(f"{flag} {value} is read back as {got!r} ({type(got).__name__})")

    return body


for _flag, _value, _key in (
    ("--account", "0123", "slurm_account"),
    ("--gpu-partition", "null", "slurm_partition"),
):
    add(
        f"profile-yaml-typed-{_flag.strip('-')}-{_value}",
        "silent wrong",
        f"install-profile {_flag} {_value} (YAML 1.1 reads it as another type)",
        "the value arrives as the text typed",
        _profile_case(_flag, _value, _key),
    )


@case(
    "profile-name-dot",
    "silent wrong",
    "install-profile --name . (the profile is written as the config folder's own config.yaml)",
    REFUSE,
)
def _(ctx: Context) -> None:
    res = ctx.mixscale(
        "install-profile",
        "--partition",
        "cpu",
        "--name",
        ".",
        "--source",
        str(ctx.root / "profiles" / "slurm"),
        "--config-dir",
        "profiles",
    )
    ctx.refuses(res, "--name")


# =================================================================================================
# Family 9: configs that pass `mixscale check` (or should not)


def _config_case(
    text: str,
    *names: str,
    job: Callable[[Context], object] | None = None,
    where: str = "",
    fixture: str = "",
) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        if fixture:
            ctx.use(fixture)
        config = sim_config(ctx, text)
        if job is None:
            ctx.refuses(ctx.mixscale("check", "--configfile", config), config, *names)
        else:
            check_then(ctx, config, lambda: job(ctx), where, *names)

    return body


def _many(key: str, n: int) -> str:
    if key == "targets":
        return SIM_CONFIG.replace(
            "targets: [3.0e+7]",
            "targets: [" + ", ".join(f"{3.0e7 + 1000 * i:.6e}" for i in range(n)) + "]",
        )
    scales = ", ".join(f"{{name: s{i}, tokens: {1.0e6 * (1 + i):.1f}}}" for i in range(n))
    return SIM_CONFIG.replace(
        "scales: [{name: 1M, tokens: 1.0e+6}, {name: 3M, tokens: 3.0e+6}]", f"scales: [{scales}]"
    ).replace("3.0e+7", f"{1.0e6 * (n + 5):.1f}")


TORCH_BASE = (
    "experiment: t\nbackend: torch\ndata:\n  sources: {web: {path: doc.txt}, wiki: "
    "{path: doc2.txt}}\nmodel: {type: gpt2, n_layer: 1, n_embd: 32, n_head: 2}\n"
    "ddo: {scales: [{name: a, tokens: 1.0e+4}, {name: b, tokens: 3.0e+4}]}\n"
    "autoscale: {targets: [9.0e+4]}\n"
)


def _answers_in_time(text: str) -> Callable[[Context], None]:
    """A config that is legal but large: `mixscale check` and Snakemake's dry run answer
    within the timeout (accepting or refusing it)."""

    def body(ctx: Context) -> None:
        config = sim_config(ctx, text)
        for res in (
            ctx.mixscale("check", "--configfile", config),
            ctx.snakemake("-n", "--quiet", "--configfile", config),
        ):
            if res.rc not in (0, None):
                ctx.refuses(res, config, code=None)

    return body


add(
    "config-10000-targets",
    "hang",
    "autoscale.targets with 10,000 targets (no maxItems): check and snakemake -n",
    "an answer within the timeout",
    _answers_in_time(_many("targets", 10000)),
)
add(
    "config-3000-scales",
    "hang",
    "ddo.scales with 3,000 scales: check and snakemake -n",
    "an answer within the timeout",
    _answers_in_time(_many("scales", 3000)),
)

CONFIG_CASES: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    # id, probes, what, config text, names
    (
        "config-norway-domain",
        "unclear / late",
        "verify.natural with a domain key written 'no' (YAML 1.1 reads false)",
        SIM_CONFIG.replace(
            "verify: {methods: [autoscale, uniform]}",
            "verify: {methods: [autoscale, natural], natural: {web: 1, wiki: 1, code: 1, books: 1, "
            "no: 1}}",
        ),
        ("verify.natural",),
    ),
    (
        "config-duplicate-eval-domains",
        "silent wrong",
        "objective.eval_domains: [web, web, wiki] (web counted twice)",
        SIM_CONFIG + "objective: {kind: mean, eval_domains: [web, web, wiki]}\n",
        ("objective.eval_domains",),
    ),
    (
        "config-experiment-number",
        "unclear / late",
        "experiment: 2024 (YAML reads a number)",
        SIM_CONFIG.replace("experiment: odd", "experiment: 2024"),
        ("experiment",),
    ),
    (
        "config-anneal-duplicate-target",
        "silent wrong",
        "anneal.target.domains: [web, web]",
        TORCH_BASE + "anneal:\n  target: {domains: [web, web]}\n  sources: {wiki: "
        "{acquisition_cost: 1}}\n  budgets: [1.0e+3, 2.0e+3, 4.0e+3]\n  base: {tokens: 1.0e+4}\n",
        ("anneal.target.domains",),
    ),
]

for _cid, _probes, _what, _text, _names in CONFIG_CASES:
    add(
        _cid,
        _probes,
        _what,
        REFUSE,
        _config_case(_text, *_names, fixture="corpus" if "doc.txt" in _text else ""),
    )


# id, what, config, the job it breaks (None: too heavy to run here), where, names. A job that
# runs fine with the value shows the check was right to accept it (a seed Python accepts).
LATE_CASES: list[tuple[str, str, str, Callable[[Context], object], str, tuple[str, ...]]] = [
    (
        "late-source-path-missing",
        "a data source path that does not exist",
        TORCH_BASE.replace("doc2.txt", "nowhere/doc2.txt"),
        lambda c: c.mixscale(
            "corpus", "--out", "c2", "--source", 'wiki={"path": "nowhere/doc2.txt"}'
        ),
        "the corpus job",
        ("data.sources.wiki",),
    ),
    (
        "late-source-path-fifo",
        "a data source path that is a FIFO",
        TORCH_BASE.replace("doc2.txt", "pipe"),
        lambda c: c.mixscale(
            "corpus", "--out", "c2", "--source", 'wiki={"path": "pipe"}', timeout=8
        ),
        "the corpus job",
        ("data.sources.wiki",),
    ),
    (
        "late-model-checkpoint-missing",
        "model.checkpoint a folder that does not exist",
        TORCH_BASE.replace(
            "model: {type: gpt2, n_layer: 1, n_embd: 32, n_head: 2}",
            "model: {checkpoint: nowhere/model}",
        ),
        lambda c: None,
        "the first training job",
        ("model.checkpoint",),
    ),
    (
        "late-include-path-missing",
        "downstream.include_path a folder that does not exist",
        TORCH_BASE + "downstream: {tasks: [mytask], include_path: nowhere/tasks}\n",
        lambda c: None,
        "the downstream jobs after every verification run",
        ("downstream.include_path",),
    ),
    (
        "late-finetune-task-path-missing",
        "finetune.tasks [{name: t, path: nowhere}]",
        TORCH_BASE.replace(
            "gpt2, n_layer: 1, n_embd: 32, n_head: 2",
            "bert, num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, "
            "intermediate_size: 64",
        )
        + "finetune: {tasks: [{name: t, path: nowhere}]}\n",
        lambda c: None,
        "the fine-tuning jobs after every verification run",
        ("finetune.tasks",),
    ),
    (
        "late-max-bytes-tiny",
        "data.max_bytes: 10 (no document fits)",
        TORCH_BASE.replace("data:\n", "data:\n  max_bytes: 10\n"),
        lambda c: c.mixscale(
            "corpus", "--out", "c2", "--source", 'web={"path": "doc.txt"}', "--max-bytes", "10"
        ),
        "the corpus job (or the token stores after it)",
        ("data.max_bytes",),
    ),
    (
        "late-finetune-seed-negative",
        "finetune.embedded.seed: -1 (no minimum)",
        TORCH_BASE.replace(
            "gpt2, n_layer: 1, n_embd: 32, n_head: 2",
            "bert, num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, "
            "intermediate_size: 64",
        )
        + "finetune: {tasks: [embedded], embedded: {seed: -1, train_items: 10, eval_items: 10}}\n",
        lambda c: c.mixscale(
            "finetune-tasks",
            "--corpus",
            "corpus/web.jsonl",
            "corpus/wiki.jsonl",
            "--validation-bytes",
            "20000",
            "--task-seed",
            "-1",
            "--train-items",
            "10",
            "--eval-items",
            "10",
            "--out",
            "ft",
        ),
        "the fine-tuning tasks job",
        ("finetune.embedded.seed",),
    ),
    (
        "late-derive-unknown-parent",
        "a derived source whose noise domains do not exist",
        TORCH_BASE.replace(
            "wiki: {path: doc2.txt}}",
            "wiki: {path: doc2.txt}, pool: {derive: web, "
            "kind: pool, noise: [nosuch], noise_share: 0.3}}",
        ),
        lambda c: c.mixscale(
            "derive",
            "--source",
            'pool={"derive": "web", "kind": "pool", "noise": ["nosuch"], "noise_share": 0.3}',
            "--corpus-dir",
            "corpus",
            "--validation-bytes",
            "2000",
            "--out",
            "derived",
        ),
        "the derive job",
        ("noise",),
    ),
]


def _late_body(
    text: str,
    job: Callable[[Context], object],
    where: str,
    names: tuple[str, ...],
    running_is_wrong: bool,
) -> Callable[[Context], None]:
    def body(ctx: Context) -> None:
        ctx.use("corpus")
        if "pipe" in text:
            os.mkfifo(ctx.path("pipe"))
        config = sim_config(ctx, text)
        res = ctx.mixscale("check", "--configfile", config)
        if res.rc != 0:
            ctx.refuses(res, config, *names)
            return
        later = job(ctx)
        if later is None:  # a job too heavy to run here: passing the check is the finding
            ctx.unclear(f"late: `mixscale check` accepts it; it fails only in {where}")
        elif getattr(later, "rc", 0) != 0:
            ctx.late(later, where)  # type: ignore[arg-type]
        elif running_is_wrong:
            ctx.wrong(f"`mixscale check` accepts it and {where} runs with it (an empty domain)")

    return body


for _cid, _what, _text, _job, _where, _names in LATE_CASES:
    add(
        _cid,
        "unclear / late",
        _what + ": check, then the job it breaks",
        REFUSE,
        _late_body(_text, _job, _where, _names, "max-bytes" in _cid),
    )


@case(
    "config-crlf-bom",
    "silent wrong",
    "a config saved by a Windows editor: BOM + CRLF",
    "accepted exactly as the LF version",
)
def _(ctx: Context) -> None:
    ctx.write("c.yaml", b"\xef\xbb\xbf" + SIM_CONFIG.replace("\n", "\r\n").encode())
    ctx.succeeds(ctx.mixscale("check", "--configfile", "c.yaml"))
    res = ctx.snakemake("-n", "--configfile", "c.yaml")
    ctx.succeeds(res, "the BOM + CRLF config under Snakemake")


@case(
    "config-override-without-configfile",
    "unclear / late",
    "snakemake --config experiment=mine (expecting the default config with one key changed)",
    "one line saying the config must be complete (config/config.yaml is not read)",
)
def _(ctx: Context) -> None:
    shutil.copytree(ctx.root / "config", ctx.path("config"))
    res = ctx.snakemake("-n", "--config", "experiment=mine")
    if res.rc == 0:
        return  # the default config with one key changed: what the user meant
    ctx.refuses(res, "--config", code=None)


@case(
    "tables-domains-differ-by-scale",
    "unclear / late",
    "backend tables: the two scales' run tables have different domains (check, then the workflow)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    text = ctx.path("runs_30M.tsv").read_text().replace("tokens.books", "tokens.novels")
    ctx.write("runs_30M.tsv", text)
    config = sim_config(
        ctx,
        "experiment: tab\nbackend: tables\nfit: {bootstrap: 0}\n"
        "ddo:\n  scales:\n    - {name: 10M, tokens: 1.0e+7, runs: runs_10M.tsv}\n"
        "    - {name: 30M, tokens: 3.0e+7, runs: runs_30M.tsv}\n"
        "autoscale: {targets: [1.0e+9]}\n",
    )
    res = ctx.mixscale("check", "--configfile", config)
    if res.rc != 0:
        ctx.refuses(res, config, "ddo.scales")
        return
    later = ctx.snakemake("results/tab/autoscale/1e+09.json", "--configfile", config)
    if later.rc == 0:
        ctx.wrong("AutoScale predicted from optima over different domains")
    else:
        ctx.unclear("late: `mixscale check` accepts it; the autoscale job fails after the fits")


@case(
    "tables-scale-tokens-mismatch",
    "silent wrong",
    "backend tables: ddo.scales[].tokens 10x the totals of the run table it names",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    config = sim_config(
        ctx,
        "experiment: tab\nbackend: tables\nfit: {bootstrap: 0}\n"
        "ddo:\n  scales:\n    - {name: 10M, tokens: 1.0e+8, runs: runs_10M.tsv}\n"
        "    - {name: 30M, tokens: 3.0e+8, runs: runs_30M.tsv}\n"
        "autoscale: {targets: [1.0e+10]}\n",
    )
    res = ctx.mixscale("check", "--configfile", config)
    if res.rc != 0:
        ctx.refuses(res, config, "tokens")
        return
    later = ctx.snakemake("results/tab/autoscale/1e+10.json", "--configfile", config)
    if later.rc == 0:
        ctx.wrong("each sweep's optimum solved at 10x its runs' tokens, without a word")
    else:
        ctx.unclear(f"late: passes the check, fails in the workflow: {later.first_error()}")


# =================================================================================================
# Family 10: the workflow on a finished (or running) simulated experiment


def _tail_text(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-2:])[:200]


def _dry_jobs(res: object) -> dict[str, int]:
    """Job counts per rule from a dry run's job table."""
    counts: dict[str, int] = {}
    in_table = False
    for line in getattr(res, "output", "").splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            counts[parts[0]] = int(parts[1])
    return counts


def _edit_reruns(
    edit: Callable[[str], str], allowed: dict[str, int], needed: dict[str, int] | None = None
) -> Callable[[Context], None]:
    """Edit a finished experiment's config; the dry run may plan at most ``allowed`` jobs per
    rule (a training run planned beyond them is finished work thrown away)."""

    def body(ctx: Context) -> None:
        ctx.use("sim")
        ctx.write("odd.yaml", edit(SIM_CONFIG))
        res = ctx.snakemake("-n", "--configfile", "odd.yaml")
        if not ctx.succeeds(res, "the edited config"):
            return
        jobs = _dry_jobs(res)
        extra = {k: v for k, v in jobs.items() if k != "all" and v > allowed.get(k, 0)}
        if extra:
            ctx.lost(f"finished jobs would run again: {extra} (expected at most {allowed})")
        short = {k: v for k, v in (needed or {}).items() if jobs.get(k, 0) < v}
        if short:
            ctx.wrong(f"the jobs the edit needs are not planned: {jobs} (needs {needed})")

    return body


add(
    "rerun-after-methods-order",
    "data loss",
    "reorder verify.methods in a finished experiment (the same methods)",
    "nothing reruns but the report",
    _edit_reruns(
        lambda t: t.replace(
            "verify: {methods: [autoscale, uniform]}", "verify: {methods: [uniform, autoscale]}"
        ),
        {"report": 1},
    ),
)
add(
    "rerun-after-bootstrap-change",
    "data loss",
    "change fit.bootstrap in a finished experiment",
    "the fits, AutoScale and the report rerun; no training run does",
    _edit_reruns(
        lambda t: t.replace("bootstrap: 5", "bootstrap: 7"),
        {"ddo": 2, "autoscale": 1, "compare": 1, "report": 1},
    ),
)
add(
    "rerun-after-new-target",
    "data loss",
    "add a second AutoScale target to a finished experiment",
    "only the new target's jobs run",
    _edit_reruns(
        lambda t: t.replace("targets: [3.0e+7]", "targets: [3.0e+7, 1.0e+8]"),
        {"autoscale": 1, "train": 2, "compare": 1, "report": 1},
        {"train": 2},
    ),
)


@case(
    "status-advice-for-damaged-run",
    "silent wrong",
    "a finished run's metrics.json is "
    "truncated; follow `mixscale status`'s advice (delete it and rerun: it trains again)",
    "the rerun trains that run again (and what depends on it)",
)
def _(ctx: Context) -> None:
    ctx.use("sim")
    metrics = ctx.path("results/odd/runs/ddo-1M-web-up-s0/metrics.json")
    metrics.write_text(metrics.read_text()[:100])
    status = ctx.mixscale("status", "--configfile", "odd.yaml")
    if "delete it and rerun" not in status.stdout:
        ctx.wrong(f"status does not name the damaged run: {_tail_text(status.stdout)}")
        return
    metrics.unlink()
    res = ctx.snakemake("-n", "--configfile", "odd.yaml")
    if ctx.succeeds(res, "the rerun"):
        jobs = _dry_jobs(res)
        if jobs.get("train", 0) != 1:
            ctx.wrong(f"status said it trains again; the rerun plans {jobs or 'nothing'}")


def _job_in_flight(ctx: Context) -> bool:
    logs, runs = ctx.path("results/odd/logs/train"), ctx.path("results/odd/runs")
    started = list(logs.glob("*.log")) if logs.is_dir() else []
    return any(not (runs / log.stem / "metrics.json").exists() for log in started)


@case(
    "ctrl-c-mid-workflow",
    "data loss",
    "Ctrl-C (SIGINT) Snakemake 6 s into the simulated DAG, then rerun",
    "no damaged output; the rerun finishes the rest",
)
def _(ctx: Context) -> None:
    config = sim_config(ctx, SIM_CONFIG, "odd.yaml")
    # Ctrl-C while a training job runs (its log exists, its metrics.json not yet): the moment
    # a user's Ctrl-C lands in a long run, and the same on every pass (not between jobs)
    ctx.snakemake("--configfile", config, interrupt_when=lambda: _job_in_flight(ctx))
    # whether the interrupted job prints a KeyboardInterrupt traceback depends on when in its
    # 0.4 s the signal lands: ctrl-c-mixscale-command classifies that, this case the outputs
    ctx.tracebacks_elsewhere = ("KeyboardInterrupt",)
    damaged = []
    for p in ctx.path("results").rglob("*.json"):
        try:
            json.loads(p.read_text())
        except ValueError:
            damaged.append(str(p.relative_to(ctx.dir)))
    if damaged:
        ctx.lost(f"outputs left damaged: {damaged[:3]}")
    res = ctx.snakemake("-n", "--configfile", config)
    if res.rc != 0 and "unlock" in res.output.lower():
        ctx.unclear("after Ctrl-C the directory stays locked: --unlock needed")
    else:
        ctx.succeeds(res, "the rerun after Ctrl-C")


@case(
    "ctrl-c-mixscale-command",
    "traceback",
    "Ctrl-C a long `mixscale ddo` (bootstrap)",
    "exit without a traceback; no output and no temporary file left",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.mixscale(
        "ddo",
        "--runs",
        "runs_10M.tsv",
        "--tokens",
        "1e7",
        "--bootstrap",
        "100000",
        "--out",
        "o.json",
        interrupt_after=3,
        timeout=15,
    )
    left = [p.name for p in ctx.dir.glob(".o.json*")]
    if left:
        ctx.lost(f"temporary files left: {left}")
    if ctx.path("o.json").exists():
        ctx.wrong("o.json written by an interrupted command")


@case(
    "concurrent-snakemake",
    "unclear / late",
    "a second Snakemake in the same folder while the first runs",
    "the second refuses in one line (locked), the first finishes intact",
)
def _(ctx: Context) -> None:
    config = sim_config(ctx, SIM_CONFIG, "odd.yaml")
    env = ctx.env()
    argv = [
        str(BIN / "snakemake"),
        "-s",
        str(ctx.root / "Snakefile"),
        "--directory",
        str(ctx.dir),
        "--profile",
        str(ctx.root / "profiles" / "local"),
        "--configfile",
        config,
    ]
    first = subprocess.Popen(
        argv,
        cwd=ctx.dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ctx.path(".snakemake/locks").is_dir():
            time.sleep(0.2)
        time.sleep(2)
        second = ctx.snakemake("--configfile", config, timeout=15)
        if second.rc == 0:
            ctx.wrong("the second Snakemake ran in a locked folder")
        elif "lock" not in second.output.lower():
            ctx.unclear(
                f"the second refused without saying the folder is locked: {second.first_error()}"
            )
        first.wait(timeout=240)  # the first one's own run to its end (not a measured command)
        if first.returncode != 0:
            ctx.lost(f"the first Snakemake failed (exit {first.returncode}) after the second")
    except subprocess.TimeoutExpired:
        ctx.note("hang", "the first Snakemake did not finish in 240 s after the second")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


@case(
    "status-directory-typo",
    "silent wrong",
    "status --directory with a typo (a folder that does not exist)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("sim")
    ctx.refuses(
        ctx.mixscale("status", "--configfile", "odd.yaml", "--directory", "rezults"), "--directory"
    )


@case("status-finished", "silent wrong", "status on a finished experiment", "every run finished")
def _(ctx: Context) -> None:
    ctx.use("sim")
    res = ctx.mixscale("status", "--configfile", "odd.yaml", "--out", "s.json")
    if ctx.succeeds(res):
        counts = (json_file(ctx, "s.json") or {}).get("counts", {})
        if set(counts) != {"finished"}:
            ctx.wrong(f"a finished experiment reported as {counts}")


@case(
    "status-metrics-of-another-run",
    "silent wrong",
    "status when a run's metrics.json was copied from another run (wrong mixture under this id)",
    "named as damaged, not finished",
)
def _(ctx: Context) -> None:
    ctx.use("sim")
    runs = ctx.path("results/odd/runs")
    shutil.copy(runs / "ddo-1M-web-up-s0/metrics.json", runs / "ddo-1M-wiki-up-s0/metrics.json")
    res = ctx.mixscale("status", "--configfile", "odd.yaml", "--out", "s.json")
    if ctx.succeeds(res):
        state = (json_file(ctx, "s.json") or {}).get("runs", {}).get("ddo-1M-wiki-up-s0", {})
        if state.get("state") == "finished":
            ctx.wrong("a run whose metrics.json is another run's counts as finished")


@case(
    "table-metrics-of-another-run",
    "silent wrong",
    "the run table job when a run's metrics.json holds another run's mixture (a copy)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("sim")
    runs = ctx.path("results/odd/runs")
    shutil.copy(runs / "ddo-1M-web-up-s0/metrics.json", runs / "ddo-1M-wiki-up-s0/metrics.json")
    paths = sorted(str(p.relative_to(ctx.dir)) for p in runs.glob("ddo-1M-*/metrics.json"))
    res = ctx.mixscale("table", "--metrics", *paths, "--out", "t.tsv")
    ctx.refuses(res, "ddo-1M-wiki-up-s0")


@case(
    "env-mixscale-cache-is-a-file",
    "traceback",
    "MIXSCALE_CACHE pointing at a file, then budget of a torch config",
    "the budget prints (the cache is skipped)",
)
def _(ctx: Context) -> None:
    ctx.use("corpus")
    ctx.write("cachefile", "not a folder\n")
    config = sim_config(ctx, TORCH_BASE)
    res = ctx.mixscale(
        "budget", "--configfile", config, env={"MIXSCALE_CACHE": str(ctx.path("cachefile"))}
    )
    ctx.succeeds(res, "budget with MIXSCALE_CACHE on a file")


# =================================================================================================
# Family 11: more single cases: wrong results from inputs that look right


@case(
    "train-weights-not-summing-to-one",
    "silent wrong",
    "train --weights a WEIGHTS.json whose weights sum to 2 (hand-edited)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.write("w.json", json.dumps({"weights": dict.fromkeys(DOMAINS, 0.4)}))
    res = ctx.mixscale(
        "train",
        "--backend",
        "simulate",
        "--world",
        "separable",
        "--spec",
        json.dumps(VERIFY_SPEC),
        "--weights",
        "w.json",
        "--out",
        "run/metrics.json",
    )
    if res.rc == 0:
        total = sum((json_file(ctx, "run/metrics.json") or {}).get("tokens", {}).values())
        ctx.wrong(
            f"exit 0: the run trained {total:.3g} tokens for a {VERIFY_SPEC['total_tokens']:.3g}"
            "-token spec"
        )
    else:
        ctx.refuses(res, "w.json", "weights")


@case(
    "train-weights-unknown-domain",
    "traceback",
    "train --weights with a domain the world does not have",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.write("w.json", json.dumps({"weights": {"web": 0.5, "nosuch": 0.5}}))
    res = ctx.mixscale(
        "train",
        "--backend",
        "simulate",
        "--world",
        "separable",
        "--spec",
        json.dumps(VERIFY_SPEC),
        "--weights",
        "w.json",
        "--out",
        "run/metrics.json",
    )
    ctx.refuses(res, "nosuch")


@case(
    "train-spec-negative-tokens",
    "silent wrong",
    "train --spec with a domain at -1e5 tokens",
    REFUSE,
)
def _(ctx: Context) -> None:
    spec = {**SPEC, "tokens": {**SPEC["tokens"], "web": -1.0e5}}
    res = ctx.mixscale(
        "train",
        "--backend",
        "simulate",
        "--world",
        "separable",
        "--spec",
        json.dumps(spec),
        "--out",
        "run/metrics.json",
    )
    ctx.refuses(res, "--spec", "web")


@case(
    "world-score-weights-of-other-domains",
    "silent wrong",
    "world score --weights a WEIGHTS.json of another experiment's domains",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")  # w10.json: web, wiki, code, books; the redpajama world has others
    res = ctx.mixscale(
        "world",
        "score",
        "--world",
        "redpajama",
        "--tokens",
        "1e9",
        "--weights",
        "w10.json",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "w10.json")


@case(
    "predict-optima-of-different-domains",
    "silent wrong",
    "predict from two WEIGHTS.json of different domain sets",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    data = json.loads(ctx.path("w30.json").read_text())
    for key in ("weights", "tokens"):
        data[key] = {("novels" if k == "books" else k): v for k, v in data[key].items()}
    ctx.write("w30b.json", json.dumps(data))
    res = ctx.mixscale(
        "predict",
        "--optimum",
        "w10.json",
        "--optimum",
        "w30b.json",
        "--target",
        "1e9",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "w30b.json")


@case(
    "rounds-of-different-scales",
    "silent wrong",
    "rounds --weights of two different scales (10M then 30M)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    res = ctx.mixscale(
        "rounds",
        "--weights",
        "d10.json",
        "w30.json",
        "--planned",
        "2",
        "--tolerance",
        "0.01",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "w30.json")


@case("regmix-prior-nan", "silent wrong", "regmix --prior web=nan,... ", REFUSE)
def _(ctx: Context) -> None:
    ctx.use("tables")
    res = ctx.mixscale(
        "regmix",
        "--runs",
        "regmix.tsv",
        "--regressor",
        "linear",
        "--candidates",
        "1000",
        "--prior",
        "web=nan,wiki=1,code=1,books=1",
        "--out",
        "o.json",
    )
    ctx.refuses(res, "--prior")


@case(
    "doremi-weights-of-other-runs",
    "silent wrong",
    "doremi --metrics two proxy runs whose learned weights sum to 3 (hand-edited)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("metrics")
    data = json.loads(ctx.path("metrics/base.json").read_text())
    data["doremi"] = {"weights": dict.fromkeys(DOMAINS, 0.6)}
    ctx.write("d.json", json.dumps(data))
    res = ctx.mixscale("doremi", "--metrics", "d.json", "--tokens", "1e6", "--out", "o.json")
    if res.rc == 0:
        w = (json_file(ctx, "o.json") or {}).get("weights", {})
        if abs(sum(w.values()) - 1) > 1e-6:
            ctx.wrong(f"exit 0 with weights summing to {sum(w.values()):.3g}")
        return
    ctx.refuses(res, "d.json", "weights")


@case(
    "advise-pilot-without-seeds",
    "unclear / late",
    "advise --pilot a table with one seed per mixture (no replicate to measure noise)",
    REFUSE,
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    lines = ctx.path("runs_10M.tsv").read_text().splitlines()
    ctx.write("p.tsv", "\n".join([lines[0]] + [ln for ln in lines[1:] if "\t0\t" in ln]) + "\n")
    res = ctx.mixscale("advise", "--pilot", "p.tsv", "--scales", "1e7,3e7", "--trials", "11")
    ctx.refuses(res, "p.tsv", "seed")


@case("fit-base-unknown", "unclear / late", "fit --base a run id not in the table", REFUSE)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.refuses(
        ctx.mixscale("fit", "--runs", "runs_10M.tsv", "--base", "nosuch", "--out", "o.json"),
        "--base",
        "nosuch",
    )


@case(
    "fit-one-run",
    "silent wrong",
    "fit on a run table of one run",
    "refused, or every domain's status says it could not be fitted",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    ctx.write("t.tsv", "\n".join(ctx.path("runs_10M.tsv").read_text().splitlines()[:2]) + "\n")
    res = ctx.mixscale("fit", "--runs", "t.tsv", "--out", "o.json")
    if res.rc != 0:
        ctx.refuses(res, "t.tsv")
        return
    statuses = {d["status"] for d in (json_file(ctx, "o.json") or {}).get("domains", {}).values()}
    if "fitted" in statuses or "ok" in statuses:
        ctx.wrong(f"exit 0 with fitted domains from one run: {statuses}")


@case("solve-fit-of-no-domains", "traceback", "solve --fit a FIT.json whose domains are {}", REFUSE)
def _(ctx: Context) -> None:
    ctx.use("tables")
    data = json.loads(ctx.path("fit.json").read_text())
    data["domains"] = {}
    ctx.write("f.json", json.dumps(data))
    ctx.refuses(
        ctx.mixscale("solve", "--fit", "f.json", "--tokens", "1e7", "--out", "o.json"), "f.json"
    )


@case(
    "world-shadowed-by-local-file",
    "silent wrong",
    "world: separable, with a file named 'separable' in the working folder",
    "the shipped world (or a refusal naming both)",
)
def _(ctx: Context) -> None:
    ctx.write("separable", "domains: [a]\nskills: [{beta: 1, gamma: 0.3}]\n")
    res = ctx.mixscale(
        "world", "optimum", "--world", "separable", "--tokens", "1e6", "--out", "o.json"
    )
    if res.rc == 0 and list((json_file(ctx, "o.json") or {}).get("weights", {})) == ["a"]:
        ctx.wrong("the shipped world 'separable' was silently replaced by ./separable")


@case("settings-file-fifo", "hang", "train --settings a FIFO path", REFUSE)
def _(ctx: Context) -> None:
    os.mkfifo(ctx.path("s.json"))
    res = ctx.mixscale(
        "train",
        "--backend",
        "torch",
        "--spec",
        json.dumps(SPEC),
        "--settings",
        "s.json",
        "--out",
        "run/metrics.json",
        timeout=10,
    )
    ctx.refuses(res, "s.json")


@case(
    "huge-jsonl-as-config",
    "hang",
    "check --configfile a 40 MB JSONL corpus (the wrong file passed by mistake)",
    REFUSE,
)
def _(ctx: Context) -> None:
    line = json.dumps({"id": "x", "text": "lorem ipsum " * 300}) + "\n"
    ctx.write("data.jsonl", line * (40_000_000 // len(line)))
    ctx.refuses(ctx.mixscale("check", "--configfile", "data.jsonl"), "data.jsonl")


@case(
    "argv-non-utf8-out",
    "traceback",
    "fit --out a file name with a non-UTF-8 byte",
    "written under that name",
)
def _(ctx: Context) -> None:
    ctx.use("tables")
    name = os.fsdecode(b"w\xff.json")
    res = ctx.mixscale("fit", "--runs", "runs_10M.tsv", "--out", name)
    if ctx.succeeds(res) and not os.path.exists(ctx.dir / name):
        ctx.wrong("exit 0 but no file under the name given")
