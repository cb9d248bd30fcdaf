"""DDO step 1: fit the separable model objective(run) = C + sum_j f_j(n_j) to a run table.

How the parameters are identified (see docs/method.md, "Fit forms"):

* Algorithm 1's design (domain j's tokens x k and / k, other domains unchanged) isolates f_j:
  D1 = L(x/k) - L(x) = f_j(x/k) - f_j(x) and D2 = L(x) - L(kx) = f_j(x) - f_j(kx). For a power
  law a n^-b the drop ratio r = D1 / D2 = k^b, so b = log r / log k and a follows from D2:
  the closed form, exact through the three points.
* The paper's Eq. 2, (N0 + x/u)^-b + c, has three parameters for three points: r fixes N0/x
  for a given b (r falls from k^b at N0 = 0 to the straight-line ratio 1/k as N0 grows), D2
  fixes b, the base level fixes c. It covers 1/k < r <= 1, the near-linear response that small
  models show, which no pure power law with b > 0 can.
* Section 2.2's fixed-total design changes every domain in each perturbed run, so the domains
  are fitted jointly by nonlinear least squares over all runs (replicate seeds as separate
  residuals), started from the per-domain fits.

Data that no convex decreasing form describes gets a named status and a defined fallback:
``no_gain`` (more tokens do not lower the objective), ``non_monotone``, ``accelerating``
(r <= 1/k: returns grow with data, the problem would not be convex) and ``insufficient_data``.
Such a domain is held at its base-run weight by the solver (``fallback: hold_base_weight``):
the data give no evidence to move it, and a linear or concave extrapolation would put all
weight in a corner.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq, least_squares

from mixscale.core.design import Design, detect_design
from mixscale.core.forms import (
    FORM_CHOICES,
    FORMS,
    Canonical,
    canonical,
    drop_ratio_power,
    form_value,
    linear_ratio,
)
from mixscale.core.objective import Objective
from mixscale.core.runtable import RunTable
from mixscale.errors import InputError

OK = "ok"
FALLBACK = "hold_base_weight"
B_BOUNDS = (1e-4, 5.0)
LOG_N0_BOUNDS = (math.log(1e-6), math.log(1e3))


@dataclass
class DomainFit:
    domain: str
    status: str
    reason: str
    form: str | None = None
    method: str | None = None  # closed | nls | joint_nls
    params: dict[str, float] = field(default_factory=dict)
    base_tokens: float = 0.0
    base_weight: float = 0.0
    fallback: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    unit: float | None = None  # this domain's token unit (--unit base_domain); None: the fit's

    @property
    def usable(self) -> bool:
        return self.status == OK and self.form is not None

    def canonical(self, unit: float) -> Canonical:
        """The curve in objective units of the fit, ``unit`` unless the domain has its own."""
        assert self.form is not None
        return canonical(self.form, self.params, self.unit_or(unit))

    def unit_or(self, unit: float) -> float:
        return self.unit if self.unit is not None else unit


@dataclass
class FitResult:
    objective: str
    design: str
    base_runs: list[str]
    base_total_tokens: float
    unit: float
    intercept: float
    domains: dict[str, DomainFit]
    form_requested: str = "auto"
    loss: str = "linear"
    notes: list[str] = field(default_factory=list)
    unit_kind: str = "base_total"  # base_total | base_domain | tokens (a number was given)
    # The fitted values are objective / objective_scale: the base run's objective when the fit
    # was normalised (the authors' procedure), else 1. Predictions multiply it back.
    objective_scale: float = 1.0
    root: str = "smallest_b"  # which exact Eq. 2 curve was kept when three points give two
    unmatched_runs: list[str] = field(default_factory=list)  # runs no perturbation explains

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)  # converts the DomainFit values of ``domains`` too
        for name, d in self.domains.items():
            if d.usable:
                c = d.canonical(self.unit)
                data["domains"][name]["canonical"] = {"A": c.A, "S": c.S, "b": c.b}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "FIT.json") -> FitResult:
        try:
            domains = {}
            for name, d in data["domains"].items():
                d = {k: v for k, v in d.items() if k != "canonical"}
                domains[name] = DomainFit(**d)
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "domains" and k in data}
            return cls(domains=domains, **fields)
        except (KeyError, TypeError) as exc:
            raise InputError(
                source, str(exc).strip("'"), "missing or malformed field", "regenerate with fit"
            ) from exc

    def predict(self, tokens: np.ndarray, train_domains: list[str]) -> np.ndarray:
        """Model objective for token vectors (runs x train_domains)."""
        total = np.full(tokens.shape[0], self.intercept)
        for j, name in enumerate(train_domains):
            d = self.domains.get(name)
            if d is not None and d.usable:
                total += d.canonical(self.unit).value(tokens[:, j])
        return self.objective_scale * total


@dataclass
class _Points:
    """One domain's view: base mixture and the mixtures that perturb this domain."""

    groups: list[int]
    factors: list[float]
    tokens: list[float]  # this domain's tokens in each group
    means: list[float]
    sds: list[float]
    counts: list[int]
    rows: list[list[int]]


def _group_stats(
    y: np.ndarray, groups: list[list[int]], robust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (mean; median when robust) and seed sd of the objective per mixture."""
    centre = np.median if robust else np.mean
    means, sds, squares = _pair_stats(y, groups)
    for i in np.flatnonzero(np.isnan(squares)):  # mixtures with more than two seeds
        means[i] = centre(y[groups[i]])
        sds[i] = y[groups[i]].std(ddof=1)
    return means, sds


def _pair_stats(
    y: np.ndarray, groups: list[list[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, seed sd and sum of squared deviations of mixtures with one or two seeds, all
    mixtures at once (NaN elsewhere; sd is NaN for one seed).

    Bit for bit what np.mean, np.median, np.std(ddof=1) and ((v - mean) ** 2).sum() return
    for one or two numbers: numpy sums from 0.0 and adds the elements in order, divides by
    the count, and the median of two is their mean. Calling numpy per mixture instead cost
    ~10 us x 2,000 mixtures in every fit and every bootstrap replicate.
    """
    sizes = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
    first = np.fromiter((g[0] for g in groups), dtype=np.int64, count=len(groups))
    last = np.fromiter((g[-1] for g in groups), dtype=np.int64, count=len(groups))
    one, two = sizes == 1, sizes == 2
    y0, y1 = y[first], y[last]
    total = (0.0 + y0) + np.where(two, y1, 0.0)
    total[one] = 0.0 + y0[one]
    means = np.where(one | two, total / np.maximum(sizes, 1), np.nan)
    sq = (0.0 + (y0 - means) ** 2) + (y1 - means) ** 2
    squares = np.where(two, sq, np.where(one, 0.0, np.nan))
    sds = np.where(two, np.sqrt(squares / 1.0), np.nan)
    return means, sds, squares


def _domain_points(
    j: int,
    design: Design,
    table: RunTable,
    groups: list[list[int]],
    stats: tuple[list[float], list[float]],
) -> _Points:
    """``stats``: ``_group_stats`` of the whole table as lists, computed once per fit."""
    means, sds = stats
    base = design.base_group
    assert base is not None
    entries = [(base, 1.0)] + [(p.group, p.factor) for p in design.for_domain(j)]
    entries.sort(key=lambda e: e[1])
    return _Points(
        groups=[g for g, _ in entries],
        factors=[f for _, f in entries],
        tokens=[float(table.tokens[groups[g][0], j]) for g, _ in entries],
        means=[means[g] for g, _ in entries],
        sds=[sds[g] for g, _ in entries],
        counts=[len(groups[g]) for g, _ in entries],
        rows=[groups[g] for g, _ in entries],
    )


def _drops(points: _Points) -> tuple[float, float, float, float] | None:
    """(D1, D2, lo factor, hi factor) from the extreme lower and upper perturbations."""
    base = points.factors.index(1.0)
    if base == 0 or base == len(points.factors) - 1:
        return None
    d1 = points.means[0] - points.means[base]
    d2 = points.means[base] - points.means[-1]
    return d1, d2, points.factors[0], points.factors[-1]


def _classify(d1: float, d2: float, lo: float, hi: float, form: str) -> tuple[str, str | None, str]:
    """(status, chosen form, reason) from the drops around the base point."""
    if d1 <= 0 and d2 <= 0:
        return "no_gain", None, "objective does not fall with more of this domain"
    if d1 <= 0 or d2 <= 0:
        return (
            "non_monotone",
            None,
            "objective falls on one side of the base and rises on the other",
        )
    r = d1 / d2
    r_log, r_lin = drop_ratio_power(lo, hi, 0.0), linear_ratio(lo, hi)
    if r <= r_lin:
        return (
            "accelerating",
            None,
            f"r={r:.3g} <= {r_lin:.3g} (straight line): returns grow with data, not convex",
        )
    if form in ("closed", "power", "algorithm1") and r <= r_log:
        return (
            "accelerating",
            None,
            f"r={r:.3g} <= {r_log:.3g}: a pure power law would need b <= 0; "
            "--form auto or paper fits it with Eq. 2's shifted form",
        )
    if form == "paper":
        return OK, "paper", f"r={r:.3g}: Eq. 2 requested"
    if form == "auto":
        if r > r_log:
            return OK, "power", f"r={r:.3g} > {r_log:.3g}: diminishing returns, pure power law"
        return (
            OK,
            "paper",
            f"{r_lin:.3g} < r={r:.3g} <= {r_log:.3g}: near-linear response, "
            "Eq. 2's shifted form (N0 + x/u)^-b",
        )
    chosen = "algorithm1" if form == "algorithm1" else "power"
    return OK, chosen, f"r={r:.3g} > {r_log:.3g}: {chosen} form requested"


def _closed_form_power(points: _Points) -> dict[str, float]:
    """Exact a n^-b + c through three points at factors lo < 1 < hi."""
    d1, d2, lo, hi = _drops(points)  # type: ignore[misc]
    r = d1 / d2
    if math.isclose(lo * hi, 1.0, rel_tol=1e-9):
        b = math.log(r) / math.log(hi)  # r = k^b for the reciprocal pair (x/k, x, kx)
    else:
        b = brentq(lambda x: drop_ratio_power(lo, hi, x) - r, 1e-12, 60.0, xtol=1e-15)
    n0 = points.tokens[points.factors.index(1.0)]
    a = d2 * n0**b / (1.0 - hi**-b)
    c = points.means[points.factors.index(1.0)] - a * n0**-b
    return {"a": a, "b": b, "c": c}


def _paper_ratio(n0: float, b: float, t: float, lo: float, hi: float) -> tuple[float, float]:
    """(r, D2) of (N0 + x)^-b at x = lo*t, t, hi*t (x in the unit u)."""
    f_lo, f0, f_hi = (n0 + lo * t) ** -b, (n0 + t) ** -b, (n0 + hi * t) ** -b
    return (f_lo - f0) / (f0 - f_hi), f0 - f_hi


def _paper_n0_for_ratio(r: float, b: float, t: float, lo: float, hi: float) -> float | None:
    """N0 >= 0 at which Eq. 2 with exponent b has drop ratio r (r falls as N0 grows)."""
    lo_log, hi_log = math.log(1e-9 * t), math.log(1e9 * t)
    g = lambda x: _paper_ratio(math.exp(x), b, t, lo, hi)[0] - r  # noqa: E731
    try:
        if g(lo_log) < 0 or g(hi_log) > 0:
            return None
        return math.exp(brentq(g, lo_log, hi_log, xtol=1e-14))
    except (ValueError, OverflowError, ZeroDivisionError):
        return None


def _paper_exact_solutions(points: _Points, unit: float) -> list[dict[str, float]]:
    """Every (N0, b, c) of Eq. 2 through three points, found by scanning b.

    For each b the drop ratio fixes N0; the remaining equation (the size of the drop D2) is a
    1-D root in b. It can have two roots: three points do not always identify Eq. 2 uniquely.
    """
    d1, d2, lo, hi = _drops(points)  # type: ignore[misc]
    r = d1 / d2
    t = points.tokens[points.factors.index(1.0)] / unit

    def mismatch(log_b: float) -> float:
        b = math.exp(log_b)
        n0 = _paper_n0_for_ratio(r, b, t, lo, hi)
        if n0 is None:
            return math.nan
        return math.log(_paper_ratio(n0, b, t, lo, hi)[1]) - math.log(d2)

    grid = np.linspace(math.log(B_BOUNDS[0]), math.log(B_BOUNDS[1]), 400)
    values = _paper_mismatch_grid(np.exp(grid), r, d2, t, lo, hi).tolist()
    solutions = []
    for (x0, v0), (x1, v1) in itertools.pairwise(zip(grid, values, strict=True)):
        if math.isfinite(v0) and math.isfinite(v1) and v0 * v1 <= 0 and v0 != v1:
            log_b = brentq(mismatch, x0, x1, xtol=1e-15)
            b = math.exp(log_b)
            n0 = _paper_n0_for_ratio(r, b, t, lo, hi)
            if n0 is not None:
                base_mean = points.means[points.factors.index(1.0)]
                solutions.append({"N0": n0, "b": b, "c": base_mean - (n0 + t) ** -b})
    return solutions


def _paper_mismatch_grid(
    b: np.ndarray, r: float, d2: float, t: float, lo: float, hi: float
) -> np.ndarray:
    """``mismatch`` of ``_paper_exact_solutions`` at every b of the grid at once: the root N0 of
    each b's drop ratio by a vectorised bisection on log N0 (50 halvings of the same bracket
    ``_paper_n0_for_ratio`` searches, to 4e-14), NaN where that bracket holds no root. The grid
    only locates sign changes; each root is then refined by the scalar functions, so the
    solutions are theirs (400 scalar root searches per fit took 94% of the design advisor's time).
    """
    low = np.full_like(b, math.log(1e-9 * t))
    high = np.full_like(b, math.log(1e9 * t))
    with np.errstate(all="ignore"):
        bracketed = (_paper_ratio_vec(low, b, t, lo, hi)[0] - r >= 0) & (
            _paper_ratio_vec(high, b, t, lo, hi)[0] - r <= 0
        )
        for _ in range(50):  # the ratio falls as N0 grows
            mid = 0.5 * (low + high)
            above = _paper_ratio_vec(mid, b, t, lo, hi)[0] - r > 0
            low, high = np.where(above, mid, low), np.where(above, high, mid)
        drop = _paper_ratio_vec(0.5 * (low + high), b, t, lo, hi)[1]
        values = np.log(drop) - math.log(d2)
    return np.where(bracketed & np.isfinite(values), values, np.nan)


def _paper_ratio_vec(log_n0: np.ndarray, b: np.ndarray, t: float, lo: float, hi: float):
    """``_paper_ratio`` over arrays (N0 given as its log)."""
    n0 = np.exp(log_n0)
    f_lo, f0, f_hi = (n0 + lo * t) ** -b, (n0 + t) ** -b, (n0 + hi * t) ** -b
    return (f_lo - f0) / (f0 - f_hi), f0 - f_hi


def _pack(form: str, params: dict[str, float]) -> list[float]:
    if form == "power":
        return [math.log(params["a"]), params["b"]]
    if form == "paper":
        return [math.log(max(params["N0"], 1e-6)), params["b"]]
    return [params["b"]]


def _unpack(form: str, values: np.ndarray) -> dict[str, float]:
    if form == "power":
        return {"a": float(np.exp(values[0])), "b": float(values[1])}
    if form == "paper":
        return {"N0": float(np.exp(values[0])), "b": float(values[1])}
    return {"b": float(values[0])}


def _bounds(form: str) -> tuple[list[float], list[float]]:
    if form == "power":
        return [-np.inf, B_BOUNDS[0]], [np.inf, B_BOUNDS[1]]
    if form == "paper":
        return [LOG_N0_BOUNDS[0], B_BOUNDS[0]], [LOG_N0_BOUNDS[1], B_BOUNDS[1]]
    return [B_BOUNDS[0]], [B_BOUNDS[1]]


def _starts(form: str, n0: float, unit: float, drop: float) -> list[dict[str, float]]:
    """Cold starts over the exponent (and Eq. 2's N0), ordered so that neighbours differ in b:
    the first starts of ``_nls`` already come from different basins."""
    exponents = (0.05, 0.3, 1.0, 2.5)
    if form == "power":
        return [{"a": max(drop, 1e-6) * n0**b / max(1 - 3.0**-b, 1e-6), "b": b} for b in exponents]
    if form == "paper":
        return [{"N0": n0 / unit * s, "b": b} for s in (0.03, 1.0, 30.0) for b in exponents]
    return [{"b": b} for b in exponents]


# starts that must reach the same least cost (relative SAME_COST) before _nls stops
AGREE, SAME_COST = 3, 1e-9


def _nls(
    residual_fn,
    starts: list[np.ndarray],
    lower: list[float],
    upper: list[float],
    loss: str,
    f_scale: float,
    jac: Any = "2-point",
) -> np.ndarray:
    """Multi-start bounded least squares; the best start by robust cost wins. It stops once
    ``AGREE`` starts have reached the same least cost: further starts find that minimum again
    (measured on the design advisor's 161 multi-start fits: all 12 starts of every one reached
    one cost, and the first 3 found it to 3e-12 relative), so 3 starts cost what 12 did.
    A worse minimum that 3 starts reach before any start finds a lower one would be kept:
    ``_starts`` orders the cold starts so that neighbours differ in the exponent."""
    best, costs = None, []
    for x0 in starts:
        x0 = np.clip(x0, np.array(lower) + 1e-12, np.array(upper) - 1e-12)
        try:
            res = least_squares(
                residual_fn,
                x0,
                jac=jac,
                bounds=(lower, upper),
                loss=loss,
                f_scale=f_scale,
                xtol=1e-12,
                ftol=1e-12,
                gtol=1e-12,
                max_nfev=300,
            )
        except (ValueError, FloatingPointError):
            continue
        if not np.all(np.isfinite(res.fun)):
            continue
        if best is None or res.cost < best.cost:
            best = res
        costs.append(res.cost)
        if np.sum(np.isclose(costs, best.cost, rtol=SAME_COST, atol=1e-300)) >= AGREE:
            break
    if best is None:
        raise RuntimeError("no start converged")
    return best.x


def _marginal_nls(
    points: _Points,
    form: str,
    unit: float,
    loss: str,
    f_scale: float,
    y: np.ndarray,
    warm: dict[str, float] | None = None,
) -> dict[str, float]:
    """Fit form + c to one domain's points, replicate seeds as separate residuals. ``warm``:
    this domain's parameters in the full table's fit (a bootstrap replicate starts there, and
    from the cold starts only if that start fails)."""
    xs = np.concatenate([[points.tokens[i]] * len(r) for i, r in enumerate(points.rows)])
    ys = np.concatenate([y[r] for r in points.rows])
    n0 = points.tokens[points.factors.index(1.0)]
    drops = _drops(points)
    drop = drops[1] if drops else float(np.ptp(ys))
    lower, upper = _bounds(form)
    lower, upper = [-np.inf, *lower], [np.inf, *upper]
    model = _JointModel([form], [xs], [unit])  # theta = (c, the form's parameters)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return model.predict(theta) - ys

    def start(params: dict[str, float]) -> np.ndarray:
        c0 = float(ys.mean() - canonical(form, params, unit).value(np.array([n0]))[0])
        return np.array([c0, *_pack(form, params)])

    theta = None
    if warm is not None:
        try:
            theta = _nls(residuals, [start(warm)], lower, upper, loss, f_scale, model.jacobian)
        except RuntimeError:
            theta = None  # the warm start failed: the cold starts below
    if theta is None:
        starts = [start(s) for s in _starts(form, n0, unit, drop)]
        theta = _nls(residuals, starts, lower, upper, loss, f_scale, model.jacobian)
    params = _unpack(form, theta[1:])
    params["c"] = float(theta[0])
    return params


class _JointModel:
    """y_row = C + sum_j f_j(n_row,j) with its Jacobian in closed form, vectorised over runs.

    Parameters as ``_pack`` orders them: power (log a, b), paper (log N0, b), algorithm1 (b).
    A closed-form Jacobian costs one evaluation where finite differences cost one per
    parameter: the joint fit, and each of its bootstrap replicates, is several times faster.
    """

    def __init__(self, forms: list[str], columns: list[np.ndarray], units: list[float]) -> None:
        self.forms = forms
        self.log_n = [np.log(c) for c in columns]
        self.scaled = [c / u for c, u in zip(columns, units, strict=True)]  # n / u (paper)
        self.log_u = [math.log(u) for u in units]
        self.sizes = [2 if f in ("power", "paper") else 1 for f in forms]

    def _terms(self, theta: np.ndarray):
        """Per domain: (its columns in theta, f_j(n) per run, log of its base (n or N0 + n/u))."""
        k = 1
        for j, form in enumerate(self.forms):
            size = self.sizes[j]
            p = theta[k : k + size]
            if form == "power":
                log_base = self.log_n[j]
                value = np.exp(p[0] - p[1] * log_base)
            elif form == "paper":
                log_base = np.log(np.exp(p[0]) + self.scaled[j])
                value = np.exp(-p[1] * log_base)
            else:  # algorithm1: (n / u) ** -b
                log_base = self.log_n[j] - self.log_u[j]
                value = np.exp(-p[0] * log_base)
            yield slice(k, k + size), p, value, log_base
            k += size

    def predict(self, theta: np.ndarray) -> np.ndarray:
        pred = np.full(len(self.log_n[0]) if self.log_n else 0, theta[0])
        for _, _, value, _ in self._terms(theta):
            pred += value
        return pred

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        jac = np.empty((len(self.log_n[0]), len(theta)))
        jac[:, 0] = 1.0
        for (cols, p, value, log_base), form in zip(self._terms(theta), self.forms, strict=True):
            if form == "power":  # d/d log a = f, d/db = -f log n
                jac[:, cols.start] = value
                jac[:, cols.start + 1] = -value * log_base
            elif form == "paper":  # d/d log N0 = -b f N0 / (N0 + n/u), d/db = -f log(N0 + n/u)
                n0 = np.exp(p[0])
                jac[:, cols.start] = -p[1] * value * n0 / np.exp(log_base)
                jac[:, cols.start + 1] = -value * log_base
            else:
                jac[:, cols.start] = -value * log_base
        return jac


def _joint_nls(
    fits: dict[str, DomainFit],
    table: RunTable,
    y: np.ndarray,
    unit: float,
    loss: str,
    f_scale: float,
    start_bs: tuple[float, ...] = (),
) -> tuple[float, float]:
    """Refine all usable domains jointly: y_row = C + sum_j f_j(n_row,j).

    Starts from the current parameters and, for each b in ``start_bs``, from every domain at
    that b. Returns (intercept C, least-squares cost).
    """
    names = [d for d in table.train_domains if fits[d].usable]
    cols = [table.train_domains.index(d) for d in names]
    forms = [fits[d].form for d in names]
    units = [fits[d].unit_or(unit) for d in names]
    model = _JointModel(forms, [table.tokens[:, c] for c in cols], units)  # type: ignore[arg-type]

    def split(theta: np.ndarray) -> list[dict[str, float]]:
        out, k = [], 1
        for f, size in zip(forms, model.sizes, strict=True):
            out.append(_unpack(f, theta[k : k + size]))  # type: ignore[arg-type]
            k += size
        return out

    def residuals(theta: np.ndarray) -> np.ndarray:
        return model.predict(theta) - y

    lower, upper = [-np.inf], [np.inf]
    for f in forms:
        lo, hi = _bounds(f)  # type: ignore[arg-type]
        lower += lo
        upper += hi

    def start(params: list[dict[str, float]]) -> np.ndarray:
        x0 = np.array([0.0] + [v for f, p in zip(forms, params, strict=True) for v in _pack(f, p)])  # type: ignore[arg-type]
        x0[0] = float(np.mean(-residuals(x0)))  # best intercept for this start
        return x0

    starts = [start([fits[d].params for d in names])]
    for b in start_bs:
        starts.append(
            start([_rescaled_start(fits[d], f, b, unit) for d, f in zip(names, forms, strict=True)])
        )  # type: ignore[arg-type]
    theta = _nls(residuals, starts, lower, upper, loss, f_scale, jac=model.jacobian)
    for d, params in zip(names, split(theta), strict=True):
        fits[d].params = params
        fits[d].method = "joint_nls"
    return float(theta[0]), float(0.5 * np.sum(residuals(theta) ** 2))


def _rescaled_start(fit: DomainFit, form: str, b: float, unit: float) -> dict[str, float]:
    """A start at exponent b whose drop over the domain's perturbation range matches the data."""
    diag = fit.diagnostics
    n0 = fit.base_tokens
    span = abs(diag.get("drop_high", 0.0)) + abs(diag.get("drop_low", 0.0)) or 1e-3
    if form == "power":
        lo, hi = diag.get("factor_low", 1 / 3), diag.get("factor_high", 3.0)
        return {"a": span * n0**b / max((lo**-b - hi**-b), 1e-9), "b": b}
    if form == "paper":
        return {"N0": max(n0 / fit.unit_or(unit), 1e-3), "b": b}
    return {"b": b}


def _noise_sd(y: np.ndarray, groups: list[list[int]], robust: bool = False) -> float | None:
    """Pooled seed standard deviation of the objective over replicated mixtures.

    Robust: 1.4826 x the median absolute deviation from each mixture's median, so one
    diverged seed does not set the scale that is meant to discount it.
    """
    if robust:
        dev = [np.abs(y[g] - np.median(y[g])) for g in groups if len(g) > 2]
        return float(1.4826 * np.median(np.concatenate(dev))) if dev else None
    _, _, squares = _pair_stats(y, groups)
    ss, dof = 0.0, 0
    for g, sq in zip(groups, squares.tolist(), strict=True):
        if len(g) > 1:
            ss += sq if len(g) == 2 else float(((y[g] - y[g].mean()) ** 2).sum())
            dof += len(g) - 1
    return math.sqrt(ss / dof) if dof else None


UNITS = ("base_total", "base_domain")
ROOTS = ("smallest_b", "largest_b")


def fit_runs(
    table: RunTable,
    objective: Objective | None = None,
    form: str = "auto",
    base_run: str | None = None,
    loss: str = "linear",
    unit: float | str | None = None,
    normalise: bool = False,
    root: str = "smallest_b",
) -> FitResult:
    """Fit each training domain's response; see the module docstring for the method.

    ``unit``: the token unit of the paper's forms: ``base_total`` (default: x/u is the domain's
    weight in the base mixture), ``base_domain`` (x = 1 at the base run, the authors' choice)
    or a number of tokens. ``normalise``: fit the objective divided by its base value (the
    authors' choice). ``root``: which exact Eq. 2 curve to keep when three points give two.
    """
    return _fit_runs(table, objective, form, base_run, loss, unit, normalise, root)


def _check_fit_options(form: str, loss: str, unit: float | str | None, root: str) -> None:
    if form not in FORM_CHOICES:
        raise InputError("--form", form, "unknown form", f"use one of {FORM_CHOICES}")
    if loss not in ("linear", "huber"):
        raise InputError("--loss", loss, "unknown loss", "use linear or huber")
    if isinstance(unit, str) and unit not in UNITS:
        raise InputError("--unit", unit, "unknown unit", f"use {' or '.join(UNITS)} or tokens")
    if isinstance(unit, int | float) and not (math.isfinite(unit) and unit > 0):
        raise InputError("--unit", f"{unit}", "must be a positive number of tokens", "e.g. 1e9")
    if root not in ROOTS:
        raise InputError("--root", root, "unknown root", f"use {' or '.join(ROOTS)}")


def _fit_runs(
    table: RunTable,
    objective: Objective | None = None,
    form: str = "auto",
    base_run: str | None = None,
    loss: str = "linear",
    unit: float | str | None = None,
    normalise: bool = False,
    root: str = "smallest_b",
    groups: list[list[int]] | None = None,
    design: Design | None = None,
    warm: FitResult | None = None,
) -> FitResult:
    """``fit_runs``, optionally with the table's mixture groups and design already known (the
    bootstrap's resampled tables share the original's, see ``bootstrap_fits``), and a joint
    fit warm-started from ``warm`` (the full table's fit)."""
    _check_fit_options(form, loss, unit, root)
    objective = objective or Objective()
    y = objective.evaluate(table.eval_domains, table.losses, table.source)
    groups = table.mixture_groups() if groups is None else groups
    design = detect_design(table, base_run) if design is None else design
    if design.base_group is None:
        raise InputError(
            table.source,
            "tokens.*",
            "no base run found: no run differs from another in one domain only "
            "(Algorithm 1) or in one domain's share at a fixed total (Section 2.2)",
            "name the base with --base RUN or add the perturbed runs",
        )
    base_rows = groups[design.base_group]
    base_tokens = table.tokens[base_rows[0]]
    base_total = float(base_tokens.sum())
    unit_kind = unit if isinstance(unit, str) else ("tokens" if unit else "base_total")
    unit = float(unit) if isinstance(unit, int | float) and unit else base_total
    scale = _objective_scale(y, base_rows, table.source) if normalise else 1.0
    y = y / scale
    noise = _noise_sd(y, groups)
    robust_noise = _noise_sd(y, groups, robust=True) if loss == "huber" else None
    f_scale = robust_noise if robust_noise else 1.0
    joint = design.kind != "algorithm1"
    # Each mixture's objective centre and seed sd, once for all domains (as Python floats,
    # which is what each domain's points hold).
    centres, sds = _group_stats(y, groups, robust=not joint and loss == "huber")
    stats = (centres.tolist(), sds.tolist())
    fits: dict[str, DomainFit] = {}
    for j, name in enumerate(table.train_domains):
        # x = 1 at the base run: each domain's own unit is its base tokens
        own_unit = float(base_tokens[j]) if unit_kind == "base_domain" else None
        if joint:
            fits[name] = _joint_domain_start(j, name, table, design, groups, stats, form)
        else:
            fits[name] = _fit_domain(
                j, name, table, design, groups, y, stats, form,
                own_unit or unit, loss, f_scale, root,
                warm.domains.get(name) if warm is not None else None,
            )  # fmt: skip
        fits[name].unit = own_unit
        fits[name].base_tokens = float(base_tokens[j])
        fits[name].base_weight = float(base_tokens[j] / base_total)
        _add_noise_diagnostics(fits[name], noise)

    unmatched = [table.run_ids[r] for g in design.unmatched_groups for r in groups[g]]
    notes = []
    if unmatched:
        notes.append(
            f"{len(unmatched)} run(s) match no perturbation of the base and were not used: "
            + ", ".join(unmatched[:10])
            + (" ..." if len(unmatched) > 10 else "")
        )
    if joint and any(f.usable for f in fits.values()):
        notes.append(
            f"{design.kind} design: every perturbed run moves several domains, so the domains "
            "were fitted jointly by nonlinear least squares over all runs"
        )
        intercept = _fit_jointly(fits, table, y, unit, loss, f_scale, form, warm)
    else:
        intercept = float(y[base_rows].mean()) - sum(
            f.canonical(unit).value(np.array([f.base_tokens]))[0] for f in fits.values() if f.usable
        )
    result = FitResult(
        objective=objective.describe(),
        design=design.kind,
        base_runs=[table.run_ids[i] for i in base_rows],
        base_total_tokens=base_total,
        unit=unit,
        intercept=float(intercept),
        domains=fits,
        form_requested=form,
        loss=loss,
        notes=notes,
        unit_kind=unit_kind,
        objective_scale=scale,
        root=root,
        unmatched_runs=unmatched,
    )
    _add_model_diagnostics(result, table, y, design, groups)
    return result


def _objective_scale(y: np.ndarray, base_rows: list[int], source: str) -> float:
    """The base run's mean objective, by which a normalised fit divides every run's."""
    value = float(y[base_rows].mean())
    if not (math.isfinite(value) and value > 0):
        raise InputError(
            source, "base run", f"objective {value:g} cannot normalise", "fit without --normalise"
        )
    return value


def _observe(
    j: int,
    design: Design,
    table: RunTable,
    groups: list[list[int]],
    stats: tuple[list[float], list[float]],
) -> tuple[_Points, dict[str, Any], tuple[float, float, float, float] | None]:
    """One domain's points, their diagnostics, and the drops around the base (if both sides)."""
    points = _domain_points(j, design, table, groups, stats)
    diag = _points_diagnostics(points, table)
    drops = _drops(points)
    if drops is not None:
        d1, d2, lo, hi = drops
        diag.update({"drop_low": d1, "drop_high": d2, "factor_low": lo, "factor_high": hi})
    return points, diag, drops


def _insufficient(name: str, diag: dict[str, Any], what: str) -> DomainFit:
    return _insufficient_reason(name, diag, f"needs at least one run with {what} than the base")


def _joint_domain_start(
    j: int,
    name: str,
    table: RunTable,
    design: Design,
    groups: list[list[int]],
    stats: tuple[list[float], list[float]],
    form: str,
) -> DomainFit:
    """Diagnostics and a starting form for one domain of a joint (fixed-total) design.

    The raw drops around the base mix this domain's effect with the opposite moves of all the
    others, so they cannot classify the domain: the joint fit does (``_fit_jointly``).
    ``stats``: the plain (not robust) ``_group_stats``.
    """
    _, diag, drops = _observe(j, design, table, groups, stats)
    if drops is None:
        return _insufficient(name, diag, "a smaller and one with a larger share")
    diag["r_raw_note"] = "raw drops include the other domains' opposite moves; see r_model"
    start_form = {"paper": "paper", "algorithm1": "algorithm1"}.get(form, "power")
    fit = DomainFit(name, OK, "joint fit", form=start_form, method="joint_nls", diagnostics=diag)
    return fit


def _fit_jointly(
    fits: dict[str, DomainFit],
    table: RunTable,
    y: np.ndarray,
    unit: float,
    loss: str,
    f_scale: float,
    form: str,
    warm: FitResult | None = None,
) -> float:
    """Joint fit; under ``auto``, domains whose power law collapses to b -> 0 switch to Eq. 2.

    ``warm``: the fit of the full table, for a bootstrap replicate: each domain starts from
    its form and parameters there, in one start (a resampled table's optimum lies next to the
    full table's; the three cold starts and the form search would each find it again)."""
    if warm is not None and _warm_start(fits, warm):
        intercept, _ = _joint_nls(fits, table, y, unit, loss, f_scale)
        return _joint_statuses(fits, y, unit, intercept)
    for d in fits.values():
        if d.usable:
            d.params = _rescaled_start(d, d.form, 0.3, unit)  # type: ignore[arg-type]
    intercept, cost = _joint_nls(fits, table, y, unit, loss, f_scale, start_bs=(0.1, 1.0))
    if form == "auto":
        flat = [d for d in fits.values() if d.usable and d.params["b"] <= 2 * B_BOUNDS[0]]
        if flat:
            saved = {d.domain: (d.form, dict(d.params)) for d in flat}
            for d in flat:
                d.form, d.params = "paper", _rescaled_start(d, "paper", 0.3, unit)
            new_intercept, new_cost = _joint_nls(fits, table, y, unit, loss, f_scale, (0.1, 1.0))
            if new_cost < cost:
                intercept = new_intercept
                for d in flat:
                    d.reason = "joint fit: a power law collapsed to b -> 0; Eq. 2's shifted form"
            else:
                for d in flat:
                    d.form, d.params = saved[d.domain]
    return _joint_statuses(fits, y, unit, intercept)


def _warm_start(fits: dict[str, DomainFit], warm: FitResult) -> bool:
    """Each usable domain's form and parameters from the warm fit; False (start cold) when
    the two disagree on which domains are usable."""
    usable = {d for d, f in fits.items() if f.usable}
    fitted = {d for d, f in warm.domains.items() if f.method == "joint_nls" and f.params}
    if usable != fitted:
        return False
    for name in usable:
        fits[name].form = warm.domains[name].form
        fits[name].params = dict(warm.domains[name].params)
    return bool(usable)


def _joint_statuses(
    fits: dict[str, DomainFit], y: np.ndarray, unit: float, intercept: float
) -> float:
    """After a joint fit: a domain whose fitted curve does not move the objective over its
    perturbation range has no measurable effect (held at its base weight)."""
    for d in fits.values():
        if not d.usable:
            continue
        lo, hi = d.diagnostics["factor_low"], d.diagnostics["factor_high"]
        c = d.canonical(unit)
        effect = float(c.value(lo * d.base_tokens) - c.value(hi * d.base_tokens))
        if effect <= 1e-9 * max(1.0, float(np.abs(y).max())):
            d.status, d.fallback = "no_gain", FALLBACK
            d.reason = "joint fit: no measurable effect of this domain's share"
        elif d.reason == "joint fit":
            d.reason = f"joint fit of the {d.form} form over all runs"
    return intercept


def _points_diagnostics(points: _Points, table: RunTable) -> dict[str, Any]:
    return {
        "points": [
            {
                "factor": points.factors[i],
                "tokens": points.tokens[i],
                "objective_mean": points.means[i],
                "objective_sd": points.sds[i],
                "replicates": points.counts[i],
                "runs": [table.run_ids[r] for r in points.rows[i]],
            }
            for i in range(len(points.groups))
        ]
    }


def _fit_domain(
    j: int,
    name: str,
    table: RunTable,
    design: Design,
    groups: list[list[int]],
    y: np.ndarray,
    stats: tuple[list[float], list[float]],
    form: str,
    unit: float,
    loss: str,
    f_scale: float,
    root: str = "smallest_b",
    warm: DomainFit | None = None,
) -> DomainFit:
    """``stats``: ``_group_stats`` of the table, robust under the huber loss. ``warm``: the
    domain's fit on the full table (a bootstrap replicate's least squares start there)."""
    points, diag, drops = _observe(j, design, table, groups, stats)
    if drops is None:
        if len(points.groups) >= 2:  # perturbations on one side of the base only
            return _fit_one_sided(name, points, diag, y, unit, loss, f_scale, root)
        return _insufficient(name, diag, "fewer and one with more of this domain")
    d1, d2, lo, hi = drops
    diag["r"] = d1 / d2 if d2 != 0 else None
    status, chosen, reason = _classify(d1, d2, lo, hi, form)
    if status != OK or chosen is None:
        return DomainFit(name, status, reason, fallback=FALLBACK, diagnostics=diag)
    closed = design.kind == "algorithm1" and len(points.groups) == 3 and loss == "linear"
    if chosen == "power" and closed:
        params, method = _closed_form_power(points), "closed"
    elif chosen == "paper" and closed and (solutions := _paper_exact_solutions(points, unit)):
        params, method = _keep_root(solutions, root, diag), "closed"
        if len(solutions) > 1:
            reason += f"; {len(solutions)} exact Eq. 2 curves fit, the {_ROOT_WORDS[root]} kept"
    else:
        start = warm.params if warm is not None and warm.form == chosen and warm.params else None
        params = _marginal_nls(points, chosen, unit, loss, f_scale, y, start)
        method = "nls"
    return DomainFit(name, OK, reason, form=chosen, method=method, params=params, diagnostics=diag)


_ROOT_WORDS = {"smallest_b": "smallest b", "largest_b": "largest b"}


def _keep_root(solutions: list[dict[str, float]], root: str, diag: dict[str, Any]) -> dict:
    """The exact curve ``root`` names; every exact curve is kept in the diagnostics.

    smallest_b: the flattest tail, the most conservative extrapolation (mixscale's default);
    largest_b: the root the authors' fit converges to from its usual starting point.
    """
    solutions = sorted(solutions, key=lambda p: p["b"])
    kept = solutions[0] if root == "smallest_b" else solutions[-1]
    if len(solutions) > 1:
        diag["exact_fits"] = solutions
        diag["alternative_exact_fits"] = [p for p in solutions if p is not kept]
    return dict(kept)


def _fit_one_sided(
    name: str,
    points: _Points,
    diag: dict[str, Any],
    y: np.ndarray,
    unit: float,
    loss: str,
    f_scale: float,
    root: str,
) -> DomainFit:
    """Algorithm 1 with only the x k runs (the paper's optional /k run left out), or only the
    /k runs: the two-parameter form (n/u)^-b + c, exact through the base and one perturbation.
    Eq. 2 and the power law's three parameters are not identified by two points."""
    first, last = points.factors[0], points.factors[-1]
    drop = points.means[0] - points.means[-1]
    side = "more" if first == 1.0 else "less"
    key = "drop_high" if side == "more" else "drop_low"
    diag.update({key: drop, "factor_low": first, "factor_high": last, "one_sided": side})
    if drop <= 0:
        reason = f"objective does not fall with more of this domain (runs with {side} only)"
        return DomainFit(name, "no_gain", reason, fallback=FALLBACK, diagnostics=diag)
    reason = (
        f"runs with {side} of this domain only: two-parameter Algorithm 1 form (n/u)^-b + c "
        "(three-parameter forms need runs on both sides)"
    )
    if len(points.groups) == 2 and loss == "linear":
        solutions = _two_point_solutions(points, unit)
        if not solutions:
            reason = f"no exponent b in {B_BOUNDS} of (n/u)^-b + c gives the observed drop"
            return _insufficient_reason(name, diag, reason)
        params = _keep_root(solutions, root, diag)
        if len(solutions) > 1:
            reason += f"; {len(solutions)} exact curves fit, the {_ROOT_WORDS[root]} kept"
        method = "closed"
    else:
        params, method = _marginal_nls(points, "algorithm1", unit, loss, f_scale, y), "nls"
    return DomainFit(
        name, OK, reason, form="algorithm1", method=method, params=params, diagnostics=diag
    )


def _two_point_solutions(points: _Points, unit: float) -> list[dict[str, float]]:
    """Every b with t1^-b - t2^-b = y1 - y2 (t = tokens / unit): the exact (n/u)^-b + c."""
    t1, t2 = points.tokens[0] / unit, points.tokens[-1] / unit
    drop = points.means[0] - points.means[-1]

    def mismatch(log_b: float) -> float:
        b = math.exp(log_b)
        with np.errstate(over="ignore"):
            gap = t1**-b - t2**-b
        return math.log(gap) - math.log(drop) if 0 < gap < math.inf else math.nan

    grid = np.linspace(math.log(B_BOUNDS[0]), math.log(B_BOUNDS[1]), 400)
    values = [mismatch(x) for x in grid]
    out = []
    for (x0, v0), (x1, v1) in itertools.pairwise(zip(grid, values, strict=True)):
        if math.isfinite(v0) and math.isfinite(v1) and v0 * v1 <= 0 and v0 != v1:
            b = math.exp(brentq(mismatch, x0, x1, xtol=1e-15))
            base = points.factors.index(1.0)
            out.append({"b": b, "c": points.means[base] - (points.tokens[base] / unit) ** -b})
    return out


def _insufficient_reason(name: str, diag: dict[str, Any], reason: str) -> DomainFit:
    return DomainFit(name, "insufficient_data", reason, fallback=FALLBACK, diagnostics=diag)


def _add_noise_diagnostics(fit: DomainFit, noise: float | None) -> None:
    fit.diagnostics["seed_sd"] = noise
    if noise and "drop_high" in fit.diagnostics and "drop_low" in fit.diagnostics:
        pts = fit.diagnostics["points"]
        base_n = next(p["replicates"] for p in pts if p["factor"] == 1.0)
        hi_n, lo_n = pts[-1]["replicates"], pts[0]["replicates"]
        se_hi = noise * math.sqrt(1 / base_n + 1 / hi_n)
        se_lo = noise * math.sqrt(1 / base_n + 1 / lo_n)
        fit.diagnostics["effect_high_over_se"] = fit.diagnostics["drop_high"] / se_hi
        fit.diagnostics["effect_low_over_se"] = fit.diagnostics["drop_low"] / se_lo


def _first_index(items: list[str]) -> dict[str, int]:
    """item -> position of its first occurrence: ``list.index`` for many look-ups."""
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        index.setdefault(item, i)
    return index


def _add_model_diagnostics(
    result: FitResult, table: RunTable, y: np.ndarray, design: Design, groups: list[list[int]]
) -> None:
    """Residuals of the fitted model at each domain's points, R^2 where it is defined."""
    joint = result.design != "algorithm1"
    row_of = _first_index(table.run_ids)  # list.index per run made this O(runs^2)
    col_of = _first_index(table.train_domains)
    for name, fit in result.domains.items():
        if not fit.usable:
            continue
        j = col_of[name]
        c = fit.canonical(result.unit)
        lo, hi = fit.diagnostics["factor_low"], fit.diagnostics["factor_high"]
        n0 = fit.base_tokens
        if lo < 1.0 < hi:  # the drop ratio needs points on both sides of the base
            f_lo, f0, f_hi = c.value(np.array([lo * n0, n0, hi * n0]))
            fit.diagnostics["r_model"] = float((f_lo - f0) / (f0 - f_hi))
        fit.diagnostics["b"] = c.b
        rows = [r for p in fit.diagnostics["points"] for r in p["runs"]]
        idx = [row_of[r] for r in rows]
        if joint:
            pred = result.predict(table.tokens[idx], table.train_domains)
        else:
            unit = fit.unit_or(result.unit)
            pred = form_value(fit.form, fit.params, unit, table.tokens[idx, j])  # type: ignore[arg-type]
        resid = y[idx] - pred
        fit.diagnostics["residuals"] = resid.tolist()
        fit.diagnostics["max_abs_residual"] = float(np.abs(resid).max())
        n_params = len(_pack(fit.form, fit.params)) + 1  # type: ignore[arg-type]
        distinct = len(fit.diagnostics["points"])
        if distinct > n_params:
            ss_res = float((resid**2).sum())
            ss_tot = float(((y[idx] - y[idx].mean()) ** 2).sum())
            fit.diagnostics["r2"] = 1 - ss_res / ss_tot if ss_tot > 0 else None
        else:
            fit.diagnostics["r2"] = None
            fit.diagnostics["r2_note"] = (
                f"{distinct} distinct points for {n_params} parameters: exactly identified, "
                "R^2 undefined; residuals show replicate spread only"
            )


def bootstrap_fits(
    table: RunTable,
    n_boot: int,
    seed: int = 0,
    base_run: str | None = None,
    warm: FitResult | None = None,
    **kwargs: Any,
) -> list[FitResult]:
    """Refit on tables whose replicate seeds are resampled with replacement per mixture.

    Empty when no mixture has replicates: a bootstrap over one seed says nothing. ``warm``:
    the full table's fit; a joint (fixed-total) replicate starts from it (``_fit_jointly``).
    """
    rng = np.random.default_rng(seed)
    groups = table.mixture_groups()
    if all(len(g) == 1 for g in groups):
        return []
    base_group = None
    if base_run is not None:
        row = table.run_ids.index(base_run)
        base_group = next(i for i, g in enumerate(groups) if row in g)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    flat = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups])
    offsets, highs = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    run_ids = [f"boot{k}" for k in range(len(flat))]
    boot_base = None if base_group is None else run_ids[starts[base_group]]
    # A resampled table lists each mixture's draws together, in the original's group order.
    # So its groups are these consecutive blocks, its mixtures (hence its design) are the
    # original's, and so is its token matrix, whichever seeds are drawn: all are built once
    # here, not per replicate. Only where equal tokens are equal bits (positive, finite);
    # anything else is refitted from scratch, as before.
    boot_groups, design, tokens = None, None, None
    if n_boot > 0 and np.all(np.isfinite(table.tokens)) and np.all(table.tokens > 0):
        boot_groups = [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)]
        design = detect_design(table, base_run)
        tokens = table.tokens[flat]
    out = []
    with _gc_paused():
        for _ in range(n_boot):
            rows = flat[offsets + _draw_within_groups(rng, highs)]
            resampled = RunTable(
                source=table.source,
                train_domains=table.train_domains,
                eval_domains=table.eval_domains,
                tokens=table.tokens[rows] if tokens is None else tokens,
                losses=table.losses[rows],
                run_ids=run_ids,
                seeds=[table.seeds[r] for r in rows],
            )
            fit = _fit_runs(
                resampled,
                base_run=boot_base,
                groups=boot_groups,
                design=design,
                warm=warm,
                **kwargs,
            )
            out.append(fit)
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector. A bootstrap keeps every replicate's fit alive, millions of
    small acyclic containers at 1,000 domains, and each collection would rescan them all
    (a quarter of the bootstrap's time); reference counting still frees the rest."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _draw_within_groups(rng: np.random.Generator, highs: np.ndarray) -> np.ndarray:
    """Per row, a position in its group drawn with replacement (``highs``: the group's size).

    One call with per-element bounds draws exactly what ``rng.choice(g, size=len(g))`` per
    group drew (choice is ``integers(0, len(g), size=len(g))``, bounded draws consume the bit
    stream element by element either way; a group of one draws nothing), so the resampled
    tables and every bootstrap result are unchanged, without thousands of calls per replicate.
    """
    return rng.integers(0, highs, dtype=np.int64)


NOISE_SE = 2.0  # an effect below 2 standard errors of the seed noise is not evidence


def scale_verdict(fit: dict[str, Any]) -> str:
    """A scale's trust verdict from its fit (FIT.json's ``fit``, or ``FitResult.to_json()``):
    usable / noise-dominated / outside the power-law regime."""
    domains = fit["domains"].values()
    bad = [d["domain"] for d in domains if d["status"] != "ok"]
    if bad:
        return f"outside the power-law regime for {', '.join(bad)} (held at base weight)"
    effects = [d["diagnostics"].get("effect_high_over_se") for d in domains]
    if any(e is None for e in effects):
        return "usable (no replicate seeds: noise not measured)"
    weak = [d["domain"] for d, e in zip(domains, effects, strict=True) if abs(e) < NOISE_SE]
    if weak:
        return f"noise-dominated for {', '.join(weak)} (up-weighting effect < {NOISE_SE:g} SE)"
    return "usable"


__all__ = [
    "FORMS",
    "FORM_CHOICES",
    "DomainFit",
    "FitResult",
    "bootstrap_fits",
    "fit_runs",
    "scale_verdict",
]
