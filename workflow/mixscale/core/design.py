"""Which run is the base of a DDO design, and which domain each other run perturbs.

Two designs from the AutoScale paper are recognised:

* ``algorithm1``  (Algorithm 1): a perturbed run multiplies one domain's tokens by a factor and
  keeps every other domain's tokens unchanged, so the total changes.
* ``fixed_total`` (Section 2.2): a perturbed run multiplies one domain's share by a factor and
  rescales the other domains by a common factor so the total stays the same.

Anything else is a ``general`` design: it can still be fitted jointly, without per-domain
closed forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

# Trained runs see whole sequences: a domain's tokens are its requested tokens rounded to a
# multiple of the context length (up to ~1-2% off at the smallest demo shares), which breaks
# exact ratios. Real perturbations are factors like 3, so a 2% tolerance cannot mistake one.
REL_TOL = 0.02


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

    def for_domain(self, domain: int) -> list[Perturbation]:
        return [p for p in self.perturbations if p.domain == domain]


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


def _design_from_base(mixtures: np.ndarray, base: int) -> Design:
    perturbations: list[Perturbation] = []
    unmatched: list[int] = []
    kinds: set[str] = set()
    for g in range(len(mixtures)):
        if g == base:
            continue
        found = classify(mixtures[base], mixtures[g])
        if found is None:
            unmatched.append(g)
            continue
        kind, j, factor = found
        kinds.add(kind)
        perturbations.append(Perturbation(group=g, domain=j, factor=factor))
    # Extra runs that match no perturbation still join the joint fit; they do not change the kind.
    kind = kinds.pop() if len(kinds) == 1 else "general"
    return Design(
        kind=kind, base_group=base, perturbations=perturbations, unmatched_groups=unmatched
    )


def _score(design: Design) -> tuple[int, int]:
    return (len(design.perturbations), len({p.domain for p in design.perturbations}))


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
    best = max(
        (_design_from_base(mixtures, b) for b in range(len(groups))),
        key=_score,  # max() keeps the first of equal scores: first appearance wins ties
    )
    if not best.perturbations:
        return Design(kind="general", base_group=None, unmatched_groups=list(range(len(groups))))
    return best
