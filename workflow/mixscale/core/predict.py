"""AutoScale: predict the optimal token vector at a larger scale from DDO optima.

Theorem 1 of the paper: with separable power laws each domain's optimal tokens satisfy
log N_i = alpha_i + beta_i * k for one shared latent k, so from two scales
N_i(k) = N_i(1) * (N_i(2) / N_i(1)) ** (k - 1).

* ``discrete``  : the paper's Algorithm 2, k = 3, 4, ... until the total reaches the target.
                  It overshoots: the result's ``total_tokens`` is where the iteration stopped.
* ``continuous``: the real k at which sum_i N_i(k) equals the target exactly: above the DDO
                  scales (extrapolation), between them (interpolation: the authors validate
                  AutoScale by predicting an intermediate scale and comparing with DDO run
                  there) or below them.
* 3+ scales     : log N_i fitted linear in a shared k by least squares (rank-one model), plus
                  leave-one-scale-out prediction errors, and each inner scale interpolated
                  from its two neighbours.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from mixscale.errors import InputError

MAX_DISCRETE_STEPS = 10_000

# AutoScale extrapolates log tokens over the span of the DDO scales (largest / smallest): an
# error in the optima grows with the number of spans between the scales and the target. The
# paper's settings reach 4 to 7 spans (GPT-2 Large: 30M, 60M -> 1.2B); beyond MAX_SPANS the
# prediction is mostly the optima's noise. Below MIN_SPAN the optima differ by little more
# than their own error (token counts rounded to whole sequences, up to 2%; the seeds' noise).
MAX_SPANS = 10.0
MIN_SPAN = 1.5


@dataclass(frozen=True)
class Optimum:
    source: str
    domains: list[str]
    tokens: np.ndarray

    @property
    def total(self) -> float:
        return float(self.tokens.sum())


def optimum_from_json(data: dict[str, Any], source: str) -> Optimum:
    if "tokens" in data and isinstance(data["tokens"], dict):
        tokens = data["tokens"]
    elif "weights" in data and "total_tokens" in data:
        tokens = {d: w * float(data["total_tokens"]) for d, w in data["weights"].items()}
    else:
        raise InputError(source, "tokens", "missing", "give 'tokens' or 'weights' + 'total_tokens'")
    domains = list(tokens)
    try:
        values = np.array([float(tokens[d]) for d in domains])
    except (TypeError, ValueError) as exc:
        raise InputError(
            source, "tokens", "values must be numbers", "rerun the DDO step that wrote it"
        ) from exc
    if not domains:
        raise InputError(source, "tokens", "no domains", "rerun the DDO step that wrote it")
    bad = [d for d, v in zip(domains, values, strict=True) if not np.isfinite(v) or v < 0]
    if bad:
        raise InputError(
            source,
            f"tokens.{bad[0]}",
            "must be a finite number >= 0",
            "rerun the DDO step that wrote it",
        )
    if values.sum() <= 0:
        raise InputError(source, "tokens", "all zero", "rerun the DDO step that wrote it")
    return Optimum(source, domains, values)


def _aligned(optima: list[Optimum]) -> tuple[list[str], np.ndarray]:
    domains = optima[0].domains
    for opt in optima[1:]:
        if set(opt.domains) != set(domains):
            missing = sorted(set(domains) ^ set(opt.domains))
            raise InputError(
                opt.source, f"tokens.{missing[0]}", "domains differ between optima", "align them"
            )
    matrix = np.array([[opt.tokens[opt.domains.index(d)] for d in domains] for opt in optima])
    return domains, matrix


def _check_order(optima: list[Optimum], target: float, upward: bool = True) -> list[Optimum]:
    """The optima by scale; ``upward``: the target must lie above them (Algorithm 2)."""
    optima = sorted(optima, key=lambda o: o.total)
    totals = [o.total for o in optima]
    if any(np.isclose(a, b, rtol=1e-12) for a, b in itertools.pairwise(totals)):
        raise InputError(
            "--optimum",
            "total_tokens",
            "two optima at the same scale",
            "give optima of two different scales",
        )
    if upward and target <= totals[-1]:
        raise InputError(
            "--target",
            f"{target:g}",
            f"the discrete iteration only goes up from the largest DDO scale ({totals[-1]:g})",
            "drop --discrete: the continuous path interpolates between scales",
        )
    return optima


def extrapolation_spans(low: float, high: float, target: float) -> float:
    """How many spans (high / low) the target lies beyond the scales; 0 between them."""
    beyond = target / high if target > high else max(low / target, 1.0)
    return math.log(beyond) / math.log(high / low)


def span_needed(low: float, high: float, target: float) -> float:
    """The smallest span (high / low, the smallest scale kept) that puts the target at most
    MAX_SPANS spans away, and at least MIN_SPAN."""
    reach = (
        (target / low) ** (1 / (MAX_SPANS + 1))
        if target > high
        else (low / target) ** (1 / MAX_SPANS)
    )
    return max(MIN_SPAN, reach)


def check_span(optima: list[Optimum], target: float, discrete: bool) -> list[str]:
    """Scales too close to extrapolate from: refused when they span less than MIN_SPAN (the
    prediction would be the optima's error, multiplied), a warning when the target lies more
    than MAX_SPANS spans away. Between the scales (interpolation) nothing is amplified."""
    totals = sorted(o.total for o in optima)
    scales = totals[-2:] if discrete else totals  # Algorithm 2 steps by the two largest
    low, high = scales[0], scales[-1]
    if low <= target <= high or high <= low:
        return []
    span = high / low
    spans = extrapolation_spans(low, high, target)
    which = "the two largest optima's scales" if discrete else "the optima's scales"
    where = f"{target:.3g} lies {spans:.3g} spans {'above' if target > high else 'below'} them"
    needed = f"scales at least {span_needed(low, high, target):.3g}x apart"
    if span < MIN_SPAN:
        raise InputError(
            "--optimum",
            "total_tokens",
            f"{which} span {span:.4g}x ({low:.4g} to {high:.4g}) and --target {where}: the "
            f"optima differ by little more than their own error, which AutoScale multiplies "
            f"~{spans + 1:.3g}x",
            f"give optima of {needed}",
        )
    if spans <= MAX_SPANS:
        return []
    return [
        f"{which} span {span:.3g}x ({low:.3g} to {high:.3g}) and the target {where}: an error "
        f"in the optima grows ~{spans + 1:.3g}x, so the prediction is mostly their noise "
        f"(optima of {needed} keep it within {MAX_SPANS:g} spans)"
    ]


def regime(totals: list[float], target: float) -> str:
    if target > totals[-1]:
        return "extrapolation"
    if target < totals[0]:
        return "extrapolation_below"
    return "interpolation"


@dataclass(frozen=True)
class LogLinear:
    """log N_i(k) = alpha_i + beta_i * k, with k = 1 and 2 at the two smallest scales."""

    alpha: np.ndarray
    beta: np.ndarray
    ks: np.ndarray  # latent k of each input scale

    def tokens(self, k: float) -> np.ndarray:
        return np.exp(self.alpha + self.beta * k)

    def k_for_total(self, target: float) -> float:
        k_lo = float(self.ks.max())
        if not np.any(self.beta > 0):
            raise InputError(
                "--optimum",
                "tokens",
                "no domain grows with scale",
                "check the DDO optima (see their fits)",
            )
        k_hi = k_lo + 1.0
        while self.tokens(k_hi).sum() < target:
            k_hi = k_lo + 2.0 * (k_hi - k_lo)
            if k_hi > 1e6:
                raise InputError(
                    "--target",
                    f"{target:g}",
                    "unreachable",
                    "use a target the iteration reaches (above the DDO scales)",
                )
        # sum_i exp(alpha_i + beta_i k) is convex in k and increasing past the input scales,
        # so the crossing above them is unique.
        return brentq(
            lambda k: np.log(self.tokens(k).sum()) - np.log(target), k_lo, k_hi, xtol=1e-15
        )


def fit_loglinear(matrix: np.ndarray) -> LogLinear:
    """Least-squares rank-one fit of log N (scales x domains) = alpha + k beta^T.

    Normalised so the two smallest scales sit at k = 1 and k = 2; exact for two scales.
    """
    logs = np.log(matrix)
    if len(logs) == 2:
        beta = logs[1] - logs[0]
        return LogLinear(alpha=logs[0] - beta, beta=beta, ks=np.array([1.0, 2.0]))
    mean = logs.mean(axis=0)
    u, s, vt = np.linalg.svd(logs - mean, full_matrices=False)
    score = u[:, 0] * s[0]  # latent position of each scale, up to an affine map
    direction = vt[0]
    # Affine re-normalisation: k = (score - score[0]) / (score[1] - score[0]) + 1
    span = score[1] - score[0]
    ks = (score - score[0]) / span + 1.0
    beta = direction * span
    alpha = mean - beta * ks.mean()
    return LogLinear(alpha=alpha, beta=beta, ks=ks)


def _result(domains: list[str], tokens: np.ndarray, target: float, method: str) -> dict[str, Any]:
    total = float(tokens.sum())
    return {
        "target_tokens": target,
        "total_tokens": total,
        "weights": {d: float(v / total) for d, v in zip(domains, tokens, strict=True)},
        "tokens": {d: float(v) for d, v in zip(domains, tokens, strict=True)},
        "method": method,
    }


def predict_discrete(optima: list[Optimum], target: float) -> dict[str, Any]:
    """Algorithm 2: N(x+1) = N(x) * N(2) / N(1), from the two largest scales, until >= target."""
    optima = _check_order(optima, target)
    domains, matrix = _aligned(optima[-2:])
    keep, zero = _split_zero(domains, matrix)
    ratio = np.where(keep, matrix[1] / np.where(keep, matrix[0], 1.0), 0.0)
    current = matrix[1].copy()
    path = [float(current.sum())]
    for _ in range(MAX_DISCRETE_STEPS):
        if current.sum() >= target:
            break
        current = current * ratio
        path.append(float(current.sum()))
    else:
        raise InputError(
            "--target",
            f"{target:g}",
            "not reached by the iteration",
            "use a target above the DDO scales",
        )
    out = _result(domains, current, target, "discrete")
    out["steps"] = len(path) - 1
    out["path_totals"] = path
    out["overshoot"] = float(current.sum() / target - 1.0)
    out["zero_domains"] = zero
    return out


def _split_zero(domains: list[str], matrix: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Columns with tokens > 0 at every scale, and the names of the others.

    log N cannot be extrapolated through zero: a domain the optimum drops at any input scale is
    predicted at 0 and listed under ``zero_domains``.
    """
    keep = np.all(matrix > 0, axis=0)
    if not np.any(keep):
        raise InputError(
            "--optimum", "tokens", "no domain is positive at every scale", "check the DDO optima"
        )
    return keep, [d for d, k in zip(domains, keep, strict=True) if not k]


def predict_continuous(optima: list[Optimum], target: float) -> dict[str, Any]:
    optima = _check_order(optima, target, upward=False)
    domains, matrix = _aligned(optima)
    keep, zero = _split_zero(domains, matrix)
    model = fit_loglinear(matrix[:, keep])
    where = regime([o.total for o in optima], target)
    k = model.k_for_total(target) if where == "extrapolation" else _k_for_total_any(model, target)
    tokens = np.zeros(len(domains))
    tokens[keep] = model.tokens(k)
    tokens *= target / tokens.sum()  # remove the last ulp of the root search
    out = _result(domains, tokens, target, "continuous")
    out["zero_domains"] = zero
    out["regime"] = where
    out["k"] = float(k)
    out["scales"] = [float(t) for t in matrix.sum(axis=1)]
    out["latent_k_of_scales"] = [float(v) for v in model.ks]
    if len(optima) >= 3:
        fitted = model.alpha + np.outer(model.ks, model.beta)
        out["fit_rmse_log_tokens"] = float(
            np.sqrt(np.mean((np.log(matrix[:, keep]) - fitted) ** 2))
        )
        out["leave_one_out"] = leave_one_scale_out(optima)
        out["interpolation_checks"] = interpolate_inner_scales(optima)
    return out


def interpolate_inner_scales(optima: list[Optimum]) -> list[dict[str, Any]]:
    """Each inner scale predicted from its two neighbours alone (the authors' validation):
    the weight error of AutoScale where DDO was also run."""
    domains, matrix = _aligned(optima)
    cols, _ = _split_zero(domains, matrix)
    rows = []
    for inner in range(1, len(optima) - 1):
        model = fit_loglinear(matrix[[inner - 1, inner + 1]][:, cols])
        rows.append(_held_out_row(domains, cols, model, matrix[inner]))
        rows[-1]["from_totals"] = [float(matrix[i].sum()) for i in (inner - 1, inner + 1)]
    return rows


def _held_out_row(
    domains: list[str], cols: np.ndarray, model: LogLinear, observed: np.ndarray
) -> dict[str, Any]:
    target = float(observed.sum())
    pred = np.zeros(len(domains))
    pred[cols] = model.tokens(_k_for_total_any(model, target))
    pred_w, true_w = pred / pred.sum(), observed / observed.sum()
    return {
        "held_out_total": target,
        "max_abs_weight_error": float(np.max(np.abs(pred_w - true_w))),
        "l1_weight_error": float(np.abs(pred_w - true_w).sum()),
        "predicted_weights": dict(zip(domains, map(float, pred_w), strict=True)),
        "observed_weights": dict(zip(domains, map(float, true_w), strict=True)),
    }


def leave_one_scale_out(optima: list[Optimum]) -> list[dict[str, Any]]:
    """Predict each scale above the two smallest from the others; report the weight error."""
    domains, matrix = _aligned(optima)
    cols, _ = _split_zero(domains, matrix)
    rows = []
    for held in range(2, len(optima)):
        keep = [i for i in range(len(optima)) if i != held]
        model = fit_loglinear(matrix[keep][:, cols])
        rows.append(_held_out_row(domains, cols, model, matrix[held]))
    return rows


def _k_for_total_any(model: LogLinear, target: float) -> float:
    """k with total = target anywhere (interpolation allowed)."""
    f = lambda k: np.log(model.tokens(k).sum()) - np.log(target)  # noqa: E731
    ks = np.sort(model.ks)
    for k0, k1 in itertools.pairwise(ks):  # between two input scales: the root in that span
        if f(k0) <= 0 <= f(k1):
            return brentq(f, k0, k1, xtol=1e-15)
    lo, hi = float(model.ks.min()) - 1.0, float(model.ks.max()) + 1.0
    while f(hi) < 0:
        hi += 2 * (hi - lo)
    while f(lo) > 0:
        lo -= 2 * (hi - lo)
    return brentq(f, lo, hi, xtol=1e-15)
