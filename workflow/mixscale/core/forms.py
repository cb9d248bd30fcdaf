"""Per-domain response functions, all reduced to one canonical shape for the solver.

Every supported form is, up to an additive constant, f(n) = A * (S + n) ** (-b) with
A > 0, S >= 0, b > 0 and n in tokens. This is convex and decreasing in n, so the DDO problem
sum_j f_j(w_j N) on the simplex is convex and separable.

* ``power``      f(n) = a * n**-b                     -> A = a, S = 0
* ``paper``      f(n) = (N0 + n/u)**-b + c  (Eq. 2)   -> A = u**b, S = N0 * u
* ``algorithm1`` f(n) = (n/u)**-b + c  (Algorithm 1)  -> A = u**b, S = 0

``u`` is the unit in which the paper's forms measure tokens. Eq. 2 and Algorithm 1 have no
scale coefficient, so they are not scale-free: changing u changes which curves the form can
express. mixscale takes u = the base run's total tokens by default, so x/u is the domain's
weight in the base mixture and the curve's values are O(1), like losses; with u = 1 token the
largest loss drop Eq. 2 can express at 1e8 tokens is about 0.02 nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMS = ("power", "paper", "algorithm1")
FORM_CHOICES = ("auto", "closed", "power", "paper", "algorithm1")


@dataclass(frozen=True)
class Canonical:
    """f(n) = A * (S + n) ** (-b), up to a constant."""

    A: float
    S: float
    b: float

    def value(self, n: np.ndarray | float) -> np.ndarray:
        return self.A * np.power(self.S + np.asarray(n, dtype=float), -self.b)

    def derivative(self, n: np.ndarray | float) -> np.ndarray:
        return -self.A * self.b * np.power(self.S + np.asarray(n, dtype=float), -self.b - 1.0)


def canonical(form: str, params: dict[str, float], unit: float) -> Canonical:
    if form == "power":
        return Canonical(A=params["a"], S=0.0, b=params["b"])
    if form == "paper":
        return Canonical(A=unit ** params["b"], S=params["N0"] * unit, b=params["b"])
    if form == "algorithm1":
        return Canonical(A=unit ** params["b"], S=0.0, b=params["b"])
    raise ValueError(f"unknown form {form}")


def form_value(form: str, params: dict[str, float], unit: float, n: np.ndarray) -> np.ndarray:
    """The form's own value including its constant c (0 for ``power``)."""
    return canonical(form, params, unit).value(n) + params.get("c", 0.0)


def drop_ratio_power(lo: float, hi: float, b: float) -> float:
    """r = (f(lo x) - f(x)) / (f(x) - f(hi x)) of a pure power law with exponent b."""
    if abs(b) < 1e-12:
        return float(np.log(1.0 / lo) / np.log(hi))
    return float((lo**-b - 1.0) / (1.0 - hi**-b))


def linear_ratio(lo: float, hi: float) -> float:
    """r of a straight-line response: the boundary below which returns accelerate."""
    return (1.0 - lo) / (hi - 1.0)
