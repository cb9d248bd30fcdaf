"""Fitting at scale: a 1,000-domain Algorithm-1 table through the CLI recovers the world's
optimum, and the fast paths (design detection, per-mixture statistics, bootstrap resampling,
table parsing) give exactly what the direct per-pair / per-group computations give.

Correctness only: timings live in benchmarks/fit_scale.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import alg1_mixtures, fixed_total_mixtures, make_table, power_world, run_cli
from mixscale.core.design import Design, Perturbation, classify, detect_design
from mixscale.core.fit import _group_stats, _noise_sd, bootstrap_fits, fit_runs
from mixscale.core.runtable import RunTable, _parse_cells, load_run_table
from mixscale.core.solve import Problem, solve


def power_table(m: int, seeds: int = 2, noise: float = 1e-7, seed: int = 0):
    """Algorithm 1's design over m domains of a power-law world: (table, a, b)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 2.0, m) * 1e6
    b = rng.uniform(0.2, 0.6, m)
    a = rng.uniform(0.5, 1.5, m) * 3.0 / m * base**b  # each domain ~3/m nats at the base
    mixtures = alg1_mixtures(base)
    table = make_table(mixtures, power_world(a, b), seeds, noise, np.random.default_rng(seed + 1))
    return table, a, b


def world_optimum(a: np.ndarray, b: np.ndarray, total: float) -> np.ndarray:
    m = len(a)
    problem = Problem(
        A=a,
        S=np.zeros(m),
        b=b,
        lower=np.zeros(m),
        upper=np.full(m, np.inf),
        cost=np.ones(m),
        resource=total,
    )
    return solve(problem) / total


def test_thousand_domains_through_the_cli(tmp_path):
    m, total = 1000, 3e9
    table, a, b = power_table(m)
    runs, out = tmp_path / "runs.tsv", tmp_path / "weights.json"
    table.save(runs)
    proc = run_cli(
        "ddo", "--runs", str(runs), "--tokens", f"{total:g}", "--bootstrap", "3", "--out", str(out),
        "--objective", "mean", "--no-trust-region",  # the world's optimum, on its mean loss
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    fit = result["fit"]
    assert fit["design"] == "algorithm1"
    assert len(fit["domains"]) == m
    assert {d["status"] for d in fit["domains"].values()} == {"ok"}
    fitted_b = np.array([fit["domains"][f"d{j}"]["params"]["b"] for j in range(m)])
    np.testing.assert_allclose(fitted_b, b, rtol=1e-2)
    weights = np.array([result["weights"][f"d{j}"] for j in range(m)])
    truth = world_optimum(a, b, total)
    assert abs(weights.sum() - 1) < 1e-9
    # noise 1e-7 on drops of ~1e-3 nats: measured max relative error 5e-4, L1 distance 6e-5
    # (uniform weights are 0.23 away)
    np.testing.assert_allclose(weights, truth, rtol=5e-3)
    assert np.abs(weights - truth).sum() < 1e-3
    intervals = result["weight_intervals_90"]
    assert len(intervals) == m and all(v["samples"] == 3 for v in intervals.values())


# --- the fast paths against direct references ----------------------------------------------


def reference_design(table: RunTable) -> Design:
    """Design detection as defined: classify every mixture against every candidate base, one
    pair at a time, and keep the first base with the most (perturbations, domains)."""
    groups = table.mixture_groups()
    mixtures = [table.tokens[g[0]] for g in groups]
    if len(groups) == 1:
        return Design(kind="general", base_group=0)
    best, best_score = None, None
    for base in range(len(groups)):
        perts, unmatched, kinds = [], [], set()
        for g in range(len(groups)):
            if g == base:
                continue
            found = classify(mixtures[base], mixtures[g])
            if found is None:
                unmatched.append(g)
                continue
            kinds.add(found[0])
            perts.append(Perturbation(group=g, domain=found[1], factor=found[2]))
        kind = kinds.pop() if len(kinds) == 1 else "general"
        design = Design(kind, base, perts, unmatched)
        score = (len(perts), len({p.domain for p in perts}))
        if best_score is None or score > best_score:
            best, best_score = design, score
    assert best is not None
    if not best.perturbations:
        return Design(kind="general", base_group=None, unmatched_groups=list(range(len(groups))))
    return best


def random_design_table(rng: np.random.Generator) -> RunTable:
    """Small tables that stress the design search: both designs, factors near the 2%
    tolerance, extra and jittered runs, shuffled rows."""
    m = int(rng.integers(1, 7))
    base = rng.uniform(0.5, 2.0, m) * 1e6
    if rng.random() < 0.3:
        base = np.round(base, -5)  # ties between domains
    factor = float(rng.choice([3.0, 2.0, 1.03, 1.019, 1.021]))
    design = alg1_mixtures if rng.random() < 0.5 else fixed_total_mixtures
    mixtures = design(base, factor)
    if rng.random() < 0.4:
        mixtures += (alg1_mixtures if rng.random() < 0.5 else fixed_total_mixtures)(
            base * float(rng.choice([1.0, 3.0, 1.01])), factor
        )[: int(rng.integers(1, 5))]
    for _ in range(int(rng.integers(0, 3))):
        mixtures.append(("extra", base * rng.uniform(0.9, 1.1, m)))
    for _ in range(int(rng.integers(0, 4))):
        i = int(rng.integers(len(mixtures)))
        n = mixtures[i][1].copy()
        n[int(rng.integers(m))] *= float(rng.choice([1.019, 1.0201, 0.98, 3.0]))
        mixtures[i] = (mixtures[i][0], n)
    order = rng.permutation(len(mixtures))
    tokens = np.array([mixtures[i][1] for i in order])
    ids = [f"r{i}" for i in range(len(tokens))]
    return RunTable(
        "t",
        [f"d{j}" for j in range(m)],
        ["all"],
        tokens,
        np.ones((len(ids), 1)),
        ids,
        ["0"] * len(ids),
    )


def same_design(a: Design, b: Design) -> bool:
    return (a.kind, a.base_group, a.unmatched_groups) == (
        b.kind,
        b.base_group,
        b.unmatched_groups,
    ) and [(p.group, p.domain, p.factor) for p in a.perturbations] == [
        (p.group, p.domain, p.factor) for p in b.perturbations
    ]


def test_design_search_matches_the_pairwise_definition():
    rng = np.random.default_rng(7)
    kinds = set()
    with np.errstate(all="ignore"):
        for _ in range(250):
            table = random_design_table(rng)
            fast, ref = detect_design(table), reference_design(table)
            assert same_design(fast, ref)
            kinds.add(fast.kind)
            for j in range(len(table.train_domains)):
                assert fast.for_domain(j) == [q for q in fast.perturbations if q.domain == j]
    assert kinds == {"algorithm1", "fixed_total", "general"}


def unrelated_mixtures_table(rng: np.random.Generator) -> RunTable:
    """Tables of many mixtures that are mostly no design at all (sampled mixtures, one
    domain, a lattice, everything within a few %, a domain held fixed, a design among them):
    the shapes the candidate grids and the one-domain count must get exactly right."""
    m, n = int(rng.integers(1, 7)), int(rng.integers(2, 24))
    kind = int(rng.integers(6))
    if kind == 0:
        tokens = rng.uniform(0.5, 2.0, (n, m)) * 1e6
    elif kind == 1:
        tokens = rng.dirichlet(np.ones(m) * rng.uniform(0.3, 3.0), n) * 1e7 + 1
    elif kind == 2:
        tokens = np.round(rng.uniform(0.5, 2.0, (n, m)) * 10) / 10 * 1e6  # exact ties
    elif kind == 3:
        tokens = 1.02 ** rng.integers(-3, 4, (n, m)) * 1e6  # steps at the tolerance
    elif kind == 4:
        base = rng.uniform(0.5, 2.0, m) * 1e6
        design = alg1_mixtures if rng.random() < 0.5 else fixed_total_mixtures
        planned = [t for _, t in design(base, float(rng.choice([3.0, 1.019, 1.021])))]
        tokens = np.vstack([planned, rng.uniform(0.5, 2.0, (n, m)) * 1e6])
    else:
        tokens = np.exp(rng.normal(0.0, 0.03, (n, m))) * 1e6  # all within a few %
    if rng.random() < 0.3:
        tokens[:, int(rng.integers(m))] = 1e6  # one domain never varied
    tokens = tokens[rng.permutation(len(tokens))]
    ids = [f"r{i}" for i in range(len(tokens))]
    domains = [f"d{j}" for j in range(m)]
    return RunTable("t", domains, ["all"], tokens, np.ones((len(ids), 1)), ids, ["0"] * len(ids))


def test_design_search_matches_the_pairwise_definition_on_unrelated_mixtures():
    rng = np.random.default_rng(17)
    with np.errstate(all="ignore"):
        for _ in range(80):
            table = unrelated_mixtures_table(rng)
            assert same_design(detect_design(table), reference_design(table))


def pairs_classified(table: RunTable, monkeypatch) -> int:
    """How many (base, mixture) pairs the design search classifies on ``table``."""
    from mixscale.core import design

    seen = [0]
    classify_many = design._classify_many

    def counting(base, other, base_sum, other_sum):
        seen[0] += max(np.atleast_2d(base).shape[0], np.atleast_2d(other).shape[0])
        return classify_many(base, other, base_sum, other_sum)

    monkeypatch.setattr(design, "_classify_many", counting)
    detect_design(table)
    return seen[0]


def table_of(tokens: np.ndarray) -> RunTable:
    ids = [f"r{i}" for i in range(len(tokens))]
    domains = [f"d{j}" for j in range(tokens.shape[1])]
    return RunTable("t", domains, ["all"], tokens, np.ones((len(ids), 1)), ids, ["0"] * len(ids))


SHAPES = {
    # thousands of unrelated mixtures (the issue: 8,000 of them took 21 s, 32,000 over 150 s)
    "sampled mixtures, 4 domains": lambda n, rng: np.exp(rng.uniform(0, np.log(1e12), (n, 4))),
    "sampled mixtures, 7 domains": lambda n, rng: np.exp(rng.uniform(0, np.log(1e12), (n, 7))),
    "one domain at many sizes": lambda n, rng: rng.uniform(0.5, 2.0, (n, 1)) * 1e6,
    "Algorithm 1, base last": lambda n, rng: np.array(
        [t for _, t in alg1_mixtures(rng.uniform(0.5, 2.0, n // 2) * 1e6)]
    )[::-1],
    "fixed total, base last": lambda n, rng: np.array(
        [t for _, t in fixed_total_mixtures(rng.uniform(0.5, 2.0, n // 2) * 1e6)]
    )[::-1],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_design_search_work_grows_linearly_with_the_mixtures(shape, monkeypatch):
    """The shape, not a time (timings: benchmarks/fit_rows.py): 4x the mixtures costs about
    4x the pair classifications (before: 16x, every base against every mixture)."""
    make = SHAPES[shape]
    small = pairs_classified(table_of(make(300, np.random.default_rng(1))), monkeypatch)
    large = pairs_classified(table_of(make(1200, np.random.default_rng(1))), monkeypatch)
    assert large <= 6 * small, (small, large)
    assert large <= 20 * 1200  # a few classifications per mixture, not one per pair


def test_design_search_at_scale_finds_the_base_anywhere():
    table, _, _ = power_table(200, seeds=1)
    order = np.r_[np.arange(1, 300), 0, np.arange(300, table.n_runs)]  # base is run 299
    moved = RunTable(
        "t", table.train_domains, table.eval_domains, table.tokens[order], table.losses[order],
        [table.run_ids[i] for i in order], [table.seeds[i] for i in order],
    )  # fmt: skip
    design = detect_design(moved)
    assert design.kind == "algorithm1" and len(design.perturbations) == 400
    assert moved.run_ids[moved.mixture_groups()[design.base_group][0]] == "base_s0"


def test_mixture_groups_match_grouping_by_float_tuples():
    rng = np.random.default_rng(3)
    tokens = rng.choice([1.0, 2.0, 3.0], size=(200, 3))
    for special in (None, 0.0, -0.0, np.nan):
        t = tokens.copy()
        if special is not None:
            t[::7, 1] = special
            t[::11, 1] = 0.0 if special == 0 else t[::11, 1]
        ids = [str(i) for i in range(200)]
        table = RunTable("t", ["a", "b", "c"], ["l"], t, np.ones((200, 1)), ids, ["0"] * 200)
        ref: dict[tuple[float, ...], list[int]] = {}
        for i, row in enumerate(t):
            ref.setdefault(tuple(float(x) for x in row), []).append(i)
        assert table.mixture_groups() == list(ref.values())


def test_group_stats_match_numpy_per_mixture():
    rng = np.random.default_rng(11)
    for trial in range(200):
        sizes = rng.integers(1, 5, int(rng.integers(1, 40)))
        rows = rng.permutation(int(sizes.sum()))
        groups = [rows[s - n : s].tolist() for s, n in zip(np.cumsum(sizes), sizes, strict=True)]
        y = rng.normal(3.0, 1.0, len(rows))
        if trial % 4 == 0:
            y = rng.choice([0.0, -0.0, 1.0, 2.5, 1e-300], len(rows))
        for robust in (False, True):
            centre = np.median if robust else np.mean
            means, sds = _group_stats(y, groups, robust)
            ref_means = np.array([centre(y[g]) for g in groups])
            ref_sds = np.array([y[g].std(ddof=1) if len(g) > 1 else np.nan for g in groups])
            assert means.tobytes() == ref_means.tobytes()
            assert sds.tobytes() == ref_sds.tobytes()
        ss, dof = 0.0, 0
        for g in groups:
            if len(g) > 1:
                ss += float(((y[g] - y[g].mean()) ** 2).sum())
                dof += len(g) - 1
        assert _noise_sd(y, groups) == (np.sqrt(ss / dof) if dof else None)


def reference_bootstrap(table: RunTable, n_boot: int, seed: int, base_run: str | None, **kw):
    """The bootstrap as defined: rng.choice per mixture, then a fit from scratch."""
    rng = np.random.default_rng(seed)
    groups = table.mixture_groups()
    base_group = None
    if base_run is not None:
        row = table.run_ids.index(base_run)
        base_group = next(i for i, g in enumerate(groups) if row in g)
    out = []
    for _ in range(n_boot):
        picks = [rng.choice(g, size=len(g), replace=True) for g in groups]
        rows = np.concatenate(picks)
        resampled = RunTable(
            table.source, table.train_domains, table.eval_domains, table.tokens[rows],
            table.losses[rows], [f"boot{k}" for k in range(len(rows))],
            [table.seeds[r] for r in rows],
        )  # fmt: skip
        base = None if base_group is None else f"boot{sum(len(p) for p in picks[:base_group])}"
        out.append(fit_runs(resampled, base_run=base, **kw))
    return out


@pytest.mark.parametrize(
    ("seeds", "base_run", "kw"),
    [
        (2, None, {}),
        (3, "d1_up_s2", {}),
        (3, None, {"loss": "huber"}),
        (2, None, {"form": "paper"}),
    ],
)
def test_bootstrap_matches_refitting_from_scratch(seeds, base_run, kw):
    table, _, _ = power_table(5, seeds=seeds, noise=1e-4, seed=seeds)
    rows = [i for i in range(table.n_runs) if i % 5 != 3]  # uneven replicate counts
    table = RunTable(
        table.source, table.train_domains, table.eval_domains, table.tokens[rows],
        table.losses[rows], [table.run_ids[i] for i in rows], [table.seeds[i] for i in rows],
    )  # fmt: skip
    fast = bootstrap_fits(table, 3, seed=5, base_run=base_run, **kw)
    ref = reference_bootstrap(table, 3, 5, base_run, **kw)
    # as JSON text: NaN (the sd of a single seed) != NaN in a dict comparison
    assert [json.dumps(f.to_json()) for f in fast] == [json.dumps(f.to_json()) for f in ref]


def test_parsing_fast_path_matches_the_cell_by_cell_loop(tmp_path):
    table, _, _ = power_table(20)
    path = tmp_path / "runs.tsv"
    table.save(path)
    loaded = load_run_table(path)
    header = path.read_text().splitlines()[0].split("\t")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    index = {h: i for i, h in enumerate(header)}
    token_cols = [h for h in header if h.startswith("tokens.")]
    loss_cols = [h for h in header if h.startswith("loss.")]
    tokens, losses = _parse_cells(str(path), rows, index, token_cols, loss_cols)
    assert loaded.tokens.tobytes() == tokens.tobytes()
    assert loaded.losses.tobytes() == losses.tobytes()
    assert loaded.tokens.tobytes() == table.tokens.tobytes()  # repr round-trips exactly
