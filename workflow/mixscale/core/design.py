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
"""

from __future__ import annotations

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
        for i in np.flatnonzero(cand_0 & cand_j):  # rare: compare as classify does
            if abs(np.log(r[i, j[i]])) > abs(np.log(r[i, 0])):
                pick[i] = j[i]
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

    Only a starting guess (the result does not depend on it), so 64 domains are enough."""
    cols = np.unique(np.linspace(0, mixtures.shape[1] - 1, 64).astype(int))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(mixtures[:, cols])
        return int(np.argmin(np.abs(logs - np.median(logs, axis=0)).sum(axis=1)))


def _best_design(mixtures: np.ndarray) -> Design:
    """The design of the base that matches the most mixtures (then the most domains), the
    first such base in table order: exactly ``max`` over every base, without scoring them all.

    A base b can match at most G - 1 mixtures minus those it is known not to match. After
    scoring one likely base (P perturbations), every other base is tested against a few
    "witness" mixtures at a time; once it has missed more than G - 1 - P of them it cannot
    reach P and is dropped. The survivors (usually only the base itself) are scored in full.
    """
    n_groups = len(mixtures)
    sums = _row_sums(mixtures)
    first = _likely_base(mixtures)
    first_design = _design_from_base(mixtures, first, sums)
    allowed = n_groups - 1 - len(first_design.perturbations)  # misses that can still tie it
    alive = np.ones(n_groups, dtype=bool)
    misses = np.zeros(n_groups, dtype=int)
    for w in range(n_groups):
        cand = np.flatnonzero(alive)
        cand = cand[cand != w]
        if len(cand) <= 2:  # scoring the few left in full is cheaper than more witnesses
            break
        kind, _, _ = _classify_many(mixtures[cand], mixtures[w], sums[cand], sums[w])
        misses[cand] += kind == _NONE
        alive[cand] = misses[cand] <= allowed
    alive[first] = True
    survivors = [
        first_design if b == first else _design_from_base(mixtures, int(b), sums)
        for b in np.flatnonzero(alive)
    ]
    return max(survivors, key=_score)  # in table order: max() keeps the first of equal scores


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
