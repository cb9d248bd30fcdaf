"""Which run is the base of a DDO design, and which domain each other run perturbs.

Two designs from the AutoScale paper are recognised:

* ``algorithm1``  (Algorithm 1): a perturbed run multiplies one domain's tokens by a factor and
  keeps every other domain's tokens unchanged, so the total changes.
* ``fixed_total`` (Section 2.2): a perturbed run multiplies one domain's share by a factor and
  rescales the other domains by a common factor so the total stays the same.

Anything else is a ``general`` design: it can still be fitted jointly, without per-domain
closed forms.

Speed: a table with m domains has about 2m + 1 mixtures. Classifying every mixture against
every candidate base one pair at a time is ~4m^2 ``classify`` calls, each up to m numpy calls
(the fixed-total test loops over domains): O(m^4), over a minute at m = 100, days at m = 1,000.
Here one base is classified against all mixtures at once (``_classify_many``, the same
elementwise arithmetic as ``classify``), and candidate bases that cannot reach the best score
are ruled out cheaply before they are scored in full (``_best_design``).

A table of thousands of unrelated mixtures (sampled mixtures, not a design) still made that
search quadratic: no base could be ruled out, and every base was scored against every mixture
(8,000 mixtures: 21 s; 32,000: over 150 s). Grids over log tokens (``_CandidateGrids``) now
bound each base's matches and name its candidates, and one domain is counted from sorted
tokens, so the work is about linear in the mixtures, plus the pairs that really lie within the
tolerance of each other (benchmarks/fit_rows.py; tests/test_fit_scale.py checks the shape and
that the result is still the pairwise definition's).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

# Trained runs see whole sequences: a domain's tokens are its requested tokens rounded to a
# multiple of the context length (up to ~1-2% off at the smallest demo shares), which breaks
# exact ratios. Real perturbations are factors like 3, so a 2% tolerance cannot mistake one.
REL_TOL = 0.02

# Codes of _classify_many's kind array.
_NONE, _ALG1, _FIXED = 0, 1, 2
_KIND_NAMES = {_ALG1: "algorithm1", _FIXED: "fixed_total"}


@dataclass(frozen=True)
class Perturbation:
    group: int  # index into RunTable.mixture_groups()
    domain: int  # index of the perturbed training domain
    factor: float  # tokens (algorithm1) or share (fixed_total) relative to the base


@dataclass(frozen=True)
class Design:
    kind: str  # "algorithm1" | "fixed_total" | "general"
    base_group: int | None
    perturbations: list[Perturbation] = field(default_factory=list)
    unmatched_groups: list[int] = field(default_factory=list)

    @cached_property
    def _by_domain(self) -> dict[int, list[Perturbation]]:
        # Built on first use (perturbations are not changed after construction): a scan of
        # all perturbations per call made the fit O(m^2).
        index: dict[int, list[Perturbation]] = {}
        for p in self.perturbations:
            index.setdefault(p.domain, []).append(p)
        return index

    def for_domain(self, domain: int) -> list[Perturbation]:
        return list(self._by_domain.get(domain, []))


def _close(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return np.isclose(a, b, rtol=REL_TOL, atol=0.0)


def classify(base: np.ndarray, other: np.ndarray) -> tuple[str, int, float] | None:
    """How ``other`` perturbs ``base``: (design kind, domain index, factor) or None."""
    ratio = other / base
    unchanged = _close(ratio, 1.0)
    if unchanged.sum() == len(ratio) - 1:
        j = int(np.flatnonzero(~unchanged)[0])
        return "algorithm1", j, float(ratio[j])
    if len(ratio) < 2 or not _close(other.sum(), base.sum()):
        return None
    # Fixed total: all but one ratio share a common value. With two domains both qualify;
    # the perturbed one is the one that moved most in log terms (x3 vs the rescaled rest).
    candidates = []
    for j in range(len(ratio)):
        rest = np.delete(ratio, j)
        if np.all(_close(rest, rest[0])) and not _close(ratio[j], rest[0]):
            candidates.append(j)
    if not candidates:
        return None
    j = max(candidates, key=lambda k: abs(np.log(ratio[k])))
    return "fixed_total", j, float(ratio[j])


def _row_sums(mixtures: np.ndarray) -> np.ndarray:
    # Row by row, as ``classify`` sums one vector: the same rounding, so the same 2% verdicts.
    return np.array([row.sum() for row in mixtures])


def _classify_many(
    base: np.ndarray, other: np.ndarray, base_sum: np.ndarray, other_sum: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``classify`` for many pairs at once: rows of ``base`` and ``other`` (one side may be a
    single row, broadcast). Returns (kind code, domain, factor) per pair; domain and factor
    are meaningful where kind is not _NONE.

    The conditions are ``classify``'s, rewritten without its loop over domains:
    * Algorithm 1: exactly m - 1 ratios are close to 1.
    * Fixed total, perturbed domain j != 0: ``rest[0]`` is ratio[0], so every ratio except
      ratio[j] is close to ratio[0] and ratio[j] is not: ratio[j] is the only one not close.
    * Fixed total, j = 0: ``rest[0]`` is ratio[1]; ratio[0] is the only one not close to it.
    * Both candidates: the larger |log ratio| wins, domain 0 on a tie (``max`` keeps the first).
    """
    ratio = np.atleast_2d(other / base)
    n, m = ratio.shape
    kind = np.full(n, _NONE)
    domain = np.zeros(n, dtype=int)

    changed = ~_close(ratio, 1.0)
    alg1 = changed.sum(axis=1) == 1
    kind[alg1] = _ALG1
    domain[alg1] = np.argmax(changed[alg1], axis=1)

    if m >= 2:
        rest = np.flatnonzero(~alg1 & np.broadcast_to(_close(other_sum, base_sum), (n,)))
        r = ratio[rest]
        off0 = ~_close(r, r[:, :1])  # never true at column 0
        off1 = ~_close(r, r[:, 1:2])
        cand_j = off0.sum(axis=1) == 1
        cand_0 = off1[:, 0] & (off1.sum(axis=1) == 1)
        j = np.argmax(off0, axis=1)
        pick = np.where(cand_0, 0, j)
        both = np.flatnonzero(cand_0 & cand_j)  # compare as classify does
        moved_more = np.abs(np.log(r[both, j[both]])) > np.abs(np.log(r[both, 0]))
        pick[both[moved_more]] = j[both[moved_more]]
        fixed = cand_0 | cand_j
        kind[rest[fixed]] = _FIXED
        domain[rest[fixed]] = pick[fixed]

    factor = ratio[np.arange(n), domain]
    return kind, domain, factor


def _design_from_base(mixtures: np.ndarray, base: int, sums: np.ndarray | None = None) -> Design:
    sums = _row_sums(mixtures) if sums is None else sums
    kind, domain, factor = _classify_many(mixtures[base], mixtures, sums[base], sums)
    perturbations: list[Perturbation] = []
    unmatched: list[int] = []
    kinds: set[str] = set()
    for g in range(len(mixtures)):
        if g == base:
            continue
        if kind[g] == _NONE:
            unmatched.append(g)
            continue
        kinds.add(_KIND_NAMES[int(kind[g])])
        perturbations.append(Perturbation(group=g, domain=int(domain[g]), factor=float(factor[g])))
    # Extra runs that match no perturbation still join the joint fit; they do not change the kind.
    kind_name = kinds.pop() if len(kinds) == 1 else "general"
    return Design(
        kind=kind_name, base_group=base, perturbations=perturbations, unmatched_groups=unmatched
    )


def _score(design: Design) -> tuple[int, int]:
    return (len(design.perturbations), len({p.domain for p in design.perturbations}))


def _likely_base(mixtures: np.ndarray) -> int:
    """The mixture nearest the per-domain median in log tokens: in both designs most runs keep
    a domain at (a common multiple of) its base tokens, so the base sits at the median.

    Only a starting guess (the result does not depend on it, its cost does): every domain
    counts, or the runs that perturb a domain left out would tie with the base, and a
    perturbed run as the guess leaves every base to be scored."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(mixtures)
        return int(np.argmin(np.abs(logs - np.median(logs, axis=0)).sum(axis=1)))


def _best_design(mixtures: np.ndarray) -> Design:
    """The design of the base that matches the most mixtures (then the most domains), the
    first such base in table order: exactly ``max`` over every base, without scoring them all.

    1. One likely base is scored in full: P perturbations over D domains.
    2. Every base gets an upper bound on its matches from the candidate grids
       (``_CandidateGrids``); bases whose bound cannot beat the likely base are dropped.
    3. Where few misses are allowed (a real design: P is close to the number of mixtures),
       the survivors are tested against a few "witness" mixtures at a time; once a base has
       missed more than G - 1 - P of them it cannot reach P and is dropped. That is cheap only
       in that case (a table of unrelated mixtures would need every witness), so it is
       skipped otherwise and capped.
    4. The survivors, most promising first, are scored against their candidates only, and the
       bounds of the rest are checked against the best score found so far.
    """
    n_groups = len(mixtures)
    sums = _row_sums(mixtures)
    if mixtures.shape[1] == 1 and np.all(mixtures > 0) and np.all(np.isfinite(mixtures)):
        return _design_from_base(mixtures, _one_domain_base(mixtures, sums), sums)
    first = _likely_base(mixtures)
    first_design = _design_from_base(mixtures, first, sums)
    best = _Best(first, *_score(first_design))
    grids = _CandidateGrids.build(mixtures, sums)
    bounds = grids.bounds() if grids else np.full(n_groups, n_groups - 1)
    alive = best.may_lose_to(bounds, np.arange(n_groups), mixtures.shape[1])
    alive[first] = False
    allowed = n_groups - 1 - best.count  # misses that can still tie the likely base
    if alive.any() and (allowed + 1) * 4 < bounds[alive].mean():
        alive &= _survive_witnesses(mixtures, sums, alive, allowed)
    bases = np.flatnonzero(alive)
    bases = bases[np.lexsort((bases, -bounds[bases]))]  # highest bound first, then table order
    for chunk in _chunks(bases, bounds, mixtures.shape[1]):
        chunk = chunk[best.may_lose_to(bounds[chunk], chunk, mixtures.shape[1])]
        if len(chunk):
            best.update(chunk, *_scores(mixtures, sums, chunk, grids))
    return first_design if best.base == first else _design_from_base(mixtures, best.base, sums)


def _one_domain_base(mixtures: np.ndarray, sums: np.ndarray) -> int:
    """With one domain a mixture perturbs a base unless its tokens are within the tolerance
    of the base's: each base's exact count from sorted tokens, O(G log G) instead of G^2.

    The ratio to a base rises with the tokens, so the mixtures within the tolerance are one
    run of the sorted tokens. Its ends are found with a margin of 1e-9 either way; only the
    mixtures inside the margin (usually none) are classified one by one."""
    n_groups = len(mixtures)
    x = mixtures[:, 0]
    v = np.sort(x)
    inner_lo = np.searchsorted(v, x * (1 - REL_TOL) * (1 + 1e-9), side="left")
    inner_hi = np.searchsorted(v, x * (1 + REL_TOL) * (1 - 1e-9), side="right")
    outer_lo = np.searchsorted(v, x * (1 - REL_TOL) * (1 - 1e-9), side="left")
    outer_hi = np.searchsorted(v, x * (1 + REL_TOL) * (1 + 1e-9), side="right")
    near = inner_hi - inner_lo  # surely within the tolerance (the base itself included)
    bases = np.arange(n_groups)
    order = np.argsort(x, kind="stable")
    for lo, hi in ((outer_lo, inner_lo), (inner_hi, outer_hi)):
        pb, po = _expand_ranges(bases, lo, np.maximum(hi - lo, 0), order)
        kind, _, _ = _classify_many(mixtures[pb], mixtures[po], sums[pb], sums[po])
        near += np.bincount(pb[kind == _NONE], minlength=n_groups)
    return int(np.argmax(n_groups - near))  # the first of the most matches (one domain)


def _expand_ranges(
    owners: np.ndarray, start: np.ndarray, count: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(owner, order[k]) for every k in start[i] .. start[i] + count[i] - 1 of each owner i."""
    total = int(count.sum())
    first = np.repeat(start - np.cumsum(count) + count, count)
    return np.repeat(owners, count), order[first + np.arange(total)]


@dataclass
class _Best:
    """The best base so far, by (perturbations, domains), the first in table order on a tie."""

    base: int
    count: int
    domains: int

    def may_lose_to(self, bounds: np.ndarray, bases: np.ndarray, m: int) -> np.ndarray:
        """Which bases could still beat or win a tie with the best: their match bound
        reaches its count, and on equal counts they could cover more domains or come first."""
        domains_bound = np.minimum(bounds, m)
        tie = (bounds == self.count) & ((domains_bound > self.domains) | (bases < self.base))
        return (bounds > self.count) | tie

    def update(self, bases: np.ndarray, counts: np.ndarray, domains: np.ndarray) -> None:
        # best of the chunk: most perturbations, then domains, then first in table order
        i = np.lexsort((bases, -domains, -counts))[0]
        score = (int(counts[i]), int(domains[i]))
        if score > (self.count, self.domains) or (
            score == (self.count, self.domains) and bases[i] < self.base
        ):
            self.base, self.count, self.domains = int(bases[i]), *score


def _survive_witnesses(
    mixtures: np.ndarray, sums: np.ndarray, alive: np.ndarray, allowed: int
) -> np.ndarray:
    """Which bases survive tests against witness mixtures, in table order: a base that misses
    more than ``allowed`` of them cannot match as many mixtures as the best. At most
    ``allowed + 33`` witnesses, and none after 17 in a row that dropped no base: enough to
    drop the non-bases of a design (each misses almost every witness), without the quadratic
    sweep that ties would need."""
    alive = alive.copy()
    misses = np.zeros(len(mixtures), dtype=int)
    idle = 0  # witnesses in a row that dropped no base
    for w in range(min(len(mixtures), allowed + 33)):
        cand = np.flatnonzero(alive)
        cand = cand[cand != w]
        if len(cand) <= 2 or idle > 16:  # scoring the rest is cheaper than more witnesses
            break
        kind, _, _ = _classify_many(mixtures[cand], mixtures[w], sums[cand], sums[w])
        misses[cand] += kind == _NONE
        alive[cand] = misses[cand] <= allowed
        idle = 0 if not alive[cand].all() else idle + 1
    return alive


# Pairs classified at once: bounds the memory of a chunk (pairs x domains floats).
_PAIR_ELEMENTS = 1 << 22


def _chunks(bases: np.ndarray, bounds: np.ndarray, m: int) -> Iterator[np.ndarray]:
    """Bases in order, in chunks that double in size (the first scores tighten the pruning of
    the rest) while their candidate pairs fit in ``_PAIR_ELEMENTS``."""
    size, start = 1, 0
    budget = max(1, _PAIR_ELEMENTS // max(m, 1))
    while start < len(bases):
        pairs = np.cumsum(bounds[bases[start : start + size]])
        end = start + max(1, int(np.searchsorted(pairs, budget, side="right")))
        yield bases[start:end]
        start, size = end, size * 2


def _scores(
    mixtures: np.ndarray, sums: np.ndarray, bases: np.ndarray, grids: _CandidateGrids | None
) -> tuple[np.ndarray, np.ndarray]:
    """(perturbations, distinct perturbed domains) of each base, from its candidate pairs."""
    n_groups, m = mixtures.shape
    if grids is None:  # every mixture is a candidate
        pb = np.repeat(bases, n_groups)
        po = np.tile(np.arange(n_groups), len(bases))
        keep = pb != po
        pb, po = pb[keep], po[keep]
    else:
        pb, po = grids.pairs(bases)
    matched_b, matched_d = [], []
    step = max(1, _PAIR_ELEMENTS // max(m, 1))
    for s in range(0, len(pb), step):
        b, o = pb[s : s + step], po[s : s + step]
        kind, domain, _ = _classify_many(mixtures[b], mixtures[o], sums[b], sums[o])
        hit = kind != _NONE
        matched_b.append(b[hit])
        matched_d.append(domain[hit])
    hits = np.concatenate(matched_b) if matched_b else np.zeros(0, dtype=np.int64)
    dom = np.concatenate(matched_d) if matched_d else np.zeros(0, dtype=np.int64)
    position = np.zeros(n_groups, dtype=np.int64)
    position[bases] = np.arange(len(bases))
    where = position[hits]
    counts = np.bincount(where, minlength=len(bases))
    pairs = np.sort(where * m + dom)
    distinct = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] // m if len(pairs) else pairs
    return counts, np.bincount(distinct, minlength=len(bases))


# A ratio within REL_TOL of 1 (or of another ratio) is a difference of at most _LOG_TOL in log
# tokens (log(1/0.98) is the wider side); 1% more absorbs the rounding of the logs.
_LOG_TOL = 1.01 * float(-np.log1p(-REL_TOL))


class _CandidateGrids:
    """Grids over log-token features such that a base and a mixture it perturbs share a cell
    or neighbouring cells in at least one grid: the mixtures near a base are its candidates,
    and the rest cannot match it. Cost: O(G log G) plus the pairs found, instead of G^2.

    * Algorithm 1 changes one domain j and keeps every other within the tolerance: of four
      domains, three are not j, so one of the four grids over triples of log tokens holds the
      pair together (three domains: pairs; two domains: the other domain's log tokens).
    * Fixed total keeps the sum and scales every domain but j by one common ratio: the
      differences of their log tokens (log shares relative to each other) stay within twice
      the tolerance. Of four domains, three are not j: one grid over (log sum, two such
      differences) per left-out domain (three domains: one difference; two: the sum alone).

    The domains used are those whose log tokens vary most (any would be correct; varied ones
    make small cells)."""

    def __init__(self, grids: list[_Grid]) -> None:
        self.grids = grids

    @classmethod
    def build(cls, mixtures: np.ndarray, sums: np.ndarray) -> _CandidateGrids | None:
        """None when every pair must be a candidate: one domain, or tokens of 0."""
        m = mixtures.shape[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            logs, log_sums = np.log(mixtures), np.log(sums)
        if m < 2 or not (np.all(np.isfinite(logs)) and np.all(np.isfinite(log_sums))):
            return None
        top = [int(j) for j in np.argsort(-logs.std(axis=0), kind="stable")[:4]]
        features: list[tuple[list[np.ndarray], list[float]]] = []
        if m == 2:
            features += [([logs[:, top[0]]], [_LOG_TOL]), ([logs[:, top[1]]], [_LOG_TOL])]
            features.append(([log_sums], [_LOG_TOL]))
        else:  # of three domains two are not j, of four three: pairs or triples of them
            for kept in itertools.combinations(top, len(top) - 1):
                features.append(([logs[:, k] for k in kept], [_LOG_TOL] * len(kept)))
            for left_out in range(len(top)):  # 3 or 4 domains
                rest = [top[k] for k in range(len(top)) if k != left_out][:3]
                diffs = [logs[:, rest[0]] - logs[:, r] for r in rest[1:]]
                features.append(([log_sums, *diffs], [_LOG_TOL] + [2 * _LOG_TOL] * len(diffs)))
        grids = [_Grid.build(np.column_stack(f), np.array(w)) for f, w in features]
        if any(g is None for g in grids):
            return None
        return cls([g for g in grids if g is not None])

    def bounds(self) -> np.ndarray:
        """Per base, an upper bound on the mixtures it can match (candidates, with repeats)."""
        total = sum(g.neighbours(np.arange(g.size))[2].sum(axis=0) for g in self.grids)
        n = self.grids[0].size
        return np.minimum(total - len(self.grids), n - 1)  # each grid counted the base itself

    def pairs(self, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(base, candidate) index pairs of ``bases``, each pair once, a base never with
        itself."""
        n = self.grids[0].size
        key = np.sort(np.concatenate([g.pair_keys(bases) for g in self.grids]))
        key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key  # each pair once
        pb, po = key // n, key % n
        keep = pb != po
        return pb[keep], po[keep]


# Grids of up to this many cells (or 8 per mixture) keep a table of where each cell starts:
# a lookup per neighbouring cell instead of a binary search.
_DIRECT_CELLS = 1 << 21

# Cells per tolerance, by the number of features: finer cells make tighter bounds and fewer
# candidates, at (2 reach + 1)^d neighbouring cells to look up per base.
_REACH = {1: 4, 2: 2, 3: 1}


@dataclass(frozen=True)
class _Grid:
    """Mixtures binned by features into cells of 1 / reach of a tolerance, so a pair within
    the tolerance in every feature is at most reach cells apart in each; each cell a run of
    ``order``."""

    size: int
    codes: np.ndarray  # per mixture, its cell's code: sum of cell index x stride
    sorted_codes: np.ndarray
    order: np.ndarray  # mixtures sorted by cell code
    offsets: np.ndarray  # code offsets of the neighbouring cells (itself included)
    cell_starts: np.ndarray | None  # where each cell code starts in order, if few cells

    @classmethod
    def build(cls, features: np.ndarray, tolerances: np.ndarray) -> _Grid | None:
        """None if the cell codes would not fit in 62 bits."""
        reach = _REACH[len(tolerances)]
        cells = np.floor(features / (tolerances / reach)).astype(np.int64)
        cells -= cells.min(axis=0) - reach  # a neighbour reach cells below is still >= 0
        spans = cells.max(axis=0) + reach + 1
        if np.prod(spans.astype(float)) >= 2.0**62:
            return None
        strides = np.concatenate([[1], np.cumprod(spans[:-1])]).astype(np.int64)
        codes = cells @ strides
        order = np.argsort(codes, kind="stable")
        steps = range(-reach, reach + 1)
        offsets = np.array(list(itertools.product(steps, repeat=len(tolerances)))) @ strides
        n_cells = int(np.prod(spans))
        cell_starts = None
        if n_cells <= max(_DIRECT_CELLS, 8 * len(codes)):
            cell_starts = np.searchsorted(codes[order], np.arange(n_cells + 1))
        return cls(len(codes), codes, codes[order], order, offsets, cell_starts)

    def neighbours(self, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, end, count) in ``order`` of each neighbouring cell (rows) of each base."""
        if self.cell_starts is not None:  # few cells: look them up directly
            query = self.codes[bases][None, :] + self.offsets[:, None]
            start, end = self.cell_starts[query], self.cell_starts[query + 1]
            return start, end, end - start
        by_cell = np.argsort(self.codes[bases], kind="stable")
        # sorted queries: searchsorted then walks forward instead of jumping around memory
        query = self.codes[bases][by_cell][None, :] + self.offsets[:, None]
        start = np.empty(query.shape, dtype=np.int64)
        end = np.empty(query.shape, dtype=np.int64)
        start[:, by_cell] = np.searchsorted(self.sorted_codes, query, side="left")
        end[:, by_cell] = np.searchsorted(self.sorted_codes, query, side="right")
        return start, end, end - start

    def pair_keys(self, bases: np.ndarray) -> np.ndarray:
        """base * size + candidate for every mixture in a cell next to each base."""
        start, _, count = self.neighbours(bases)
        owner = np.tile(bases, len(self.offsets))
        owner, members = _expand_ranges(owner, start.ravel(), count.ravel(), self.order)
        return owner * self.size + members


def detect_design(table: RunTable, base_run: str | None = None) -> Design:
    """Find the base mixture (or use the run named by ``base_run``) and classify the others."""
    groups = table.mixture_groups()
    mixtures = np.array([table.tokens[g[0]] for g in groups])
    if base_run is not None:
        if base_run not in table.run_ids:
            raise InputError(
                table.source, f"--base {base_run}", "no run with that id", "use a value of 'run'"
            )
        row = table.run_ids.index(base_run)
        base = next(i for i, g in enumerate(groups) if row in g)
        return _design_from_base(mixtures, base)
    if len(groups) == 1:
        return Design(kind="general", base_group=0)
    best = _best_design(mixtures)
    if not best.perturbations:
        return Design(kind="general", base_group=None, unmatched_groups=list(range(len(groups))))
    return best
