"""A simulated world with known optimal mixtures (AutoScale paper, Appendix C.2).

Evaluation loss is a sum of latent skills, each a power law in its equivalent data
K_k = sum_i A_ki N_i:

    L(N) = L0 + sum_k beta_k * K_k ** -gamma_k

Each evaluation domain e sees the skills with weights E_ek (default: a skill's loss is spread
over the domains that feed it, E_ek = m * A_ke / sum_e A_ke, so the mean over evaluation domains
is exactly L(N)). Seed-dependent noise makes replicates and robust fits matter.

The true optimum is computed here with scipy on the exact loss, then polished on its KKT system:
independent of mixscale's DDO solver, so it can score it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mixscale.core.runtable import LOSS_RANGE, RunTable
from mixscale.core.safe_yaml import load_bounded
from mixscale.errors import InputError

SHIPPED = Path(__file__).with_name("worlds")


@dataclass(frozen=True)
class World:
    name: str
    domains: list[str]
    skills: list[str]
    beta: np.ndarray  # (skills,)
    gamma: np.ndarray  # (skills,)
    A: np.ndarray  # (skills, domains): equivalent data of each skill per domain token
    E: np.ndarray  # (eval domains, skills)
    eval_domains: list[str]
    irreducible: float
    sigma: float  # seed noise shared by all evaluation domains of a run
    sigma_domain: float  # independent noise per evaluation domain

    @property
    def max_loss(self) -> float:
        """The largest noise-free evaluation loss: every skill at its floor of one token."""
        return self.irreducible + float((self.E @ self.beta).max())

    def skill_data(self, tokens: np.ndarray) -> np.ndarray:
        # at least one token's worth of every skill: a mixture that leaves out the only domain
        # teaching a skill (sampled mixtures of RegMix and DML do) has a large, finite loss
        return np.maximum(tokens @ self.A.T, 1.0)  # (..., skills)

    def skill_loss(self, tokens: np.ndarray) -> np.ndarray:
        return self.beta * np.power(self.skill_data(tokens), -self.gamma)

    def loss(self, tokens: np.ndarray) -> float:
        """The true objective: mean evaluation loss, noise-free."""
        return float(self.irreducible + self.skill_loss(np.asarray(tokens, float)).sum())

    def eval_losses(self, tokens: np.ndarray, seed: int | None = None) -> dict[str, float]:
        """Per evaluation domain losses of a run; with a seed, seed-dependent noise is added."""
        tokens = np.asarray(tokens, float)
        losses = self.irreducible + self.E @ self.skill_loss(tokens)
        if seed is not None and (self.sigma or self.sigma_domain):
            rng = np.random.default_rng(_noise_key(tokens, seed))
            losses = (
                losses
                + self.sigma * rng.normal()
                + self.sigma_domain * rng.normal(size=len(losses))
            )
        return dict(zip(self.eval_domains, map(float, losses), strict=True))

    def gradient(self, tokens: np.ndarray) -> np.ndarray:
        K = self.skill_data(tokens)
        return -(self.beta * self.gamma * np.power(K, -self.gamma - 1)) @ self.A

    def optimum(self, total: float) -> np.ndarray:
        """True optimal tokens per domain at ``total`` (scipy SLSQP, then a KKT polish)."""
        from scipy.optimize import minimize  # lazily: simulated training jobs never need scipy

        m = len(self.domains)

        def f(w):
            return self.loss(np.maximum(w, 1e-300) * total)

        def g(w):
            return self.gradient(np.maximum(w, 1e-300) * total) * total

        res = minimize(
            f,
            np.full(m, 1 / m),
            jac=g,
            method="SLSQP",
            bounds=[(1e-12, 1.0)] * m,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}],
            options={"ftol": 1e-16, "maxiter": 2000},
        )
        w = np.clip(res.x, 0, None)
        w /= w.sum()
        return self._polish(w * total, total)

    def _polish(self, n: np.ndarray, total: float) -> np.ndarray:
        """Newton on the KKT system of the support: grad_i = -mu for active i, sum n = total."""
        from scipy.optimize import root

        active = n > 1e-7 * total
        idx = np.flatnonzero(active)

        def eqs(x):
            full = np.zeros_like(n)
            full[idx] = np.exp(x[:-1])
            grad = self.gradient(np.maximum(full, 1e-300))[idx]
            kkt = np.log(-grad) - x[-1]
            return np.append(kkt, np.log(full.sum() / total))

        mu = np.log(-self.gradient(n)[idx]).mean()
        sol = root(eqs, np.append(np.log(n[idx]), mu), method="hybr", tol=1e-15)
        if np.max(np.abs(eqs(sol.x))) < 1e-10:
            out = np.zeros_like(n)
            out[idx] = np.exp(sol.x[:-1])
            out *= total / out.sum()
            if np.all(np.isfinite(out)) and self.loss(out) <= self.loss(n) + 1e-12:
                return out
        return n


def _noise_key(tokens: np.ndarray, seed: int) -> int:
    digest = hashlib.sha256(np.round(tokens, 6).tobytes() + str(seed).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _matrix(data: Any, shape: tuple[int, int], source: str, field: str) -> np.ndarray:
    try:
        arr = np.array(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(
            source, field, "must be a matrix of numbers", "see workflow/mixscale/core/worlds/"
        ) from exc
    if arr.shape != shape:
        raise InputError(
            source,
            field,
            f"shape {arr.shape}, expected {shape}",
            "one row per skill, one column per domain",
        )
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise InputError(source, field, "entries must be finite and >= 0", "correct the entries")
    return arr


def world_from_dict(data: dict[str, Any], source: str = "world") -> World:
    if not isinstance(data, dict):
        raise InputError(source, "", "a world is a mapping", "see workflow/mixscale/core/worlds/")
    for key in ("domains", "skills"):
        if key not in data:
            raise InputError(source, key, "missing", "see workflow/mixscale/core/worlds/")
    domains = _names(data["domains"], source, "domains")
    if len(set(domains)) != len(domains):
        raise InputError(source, "domains", "duplicate names", "list each domain once")
    skills = data["skills"]
    if not isinstance(skills, list) or not skills or not all(isinstance(s, dict) for s in skills):
        raise InputError(
            source, "skills", "a world needs a list of skills", "e.g. [{beta: 40, gamma: 0.3}]"
        )
    names = [str(s.get("name", f"skill{k}")) for k, s in enumerate(skills)]
    try:
        beta = np.array([float(s["beta"]) for s in skills])
        gamma = np.array([float(s["gamma"]) for s in skills])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            source,
            "skills",
            "each skill needs numeric beta and gamma",
            "e.g. {beta: 40, gamma: 0.3}",
        ) from exc
    # NaN passes every comparison: finite first
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(gamma))):
        raise InputError(
            source, "skills", "beta and gamma must be finite", "e.g. {beta: 40, gamma: 0.3}"
        )
    if np.any(beta <= 0) or np.any(gamma <= 0):
        raise InputError(
            source, "skills", "beta and gamma must be > 0", "e.g. {beta: 40, gamma: 0.3}"
        )
    A = _matrix(
        data.get("A", np.eye(len(skills), len(domains))), (len(skills), len(domains)), source, "A"
    )
    if np.any(A.sum(axis=0) == 0):
        raise InputError(
            source, "A", "a domain feeds no skill", "give every column a positive entry"
        )
    if np.any(A.sum(axis=1) == 0):
        raise InputError(source, "A", "a skill gets no data", "give every row a positive entry")
    eval_domains = _names(data.get("eval_domains", domains), source, "eval_domains")
    if len(set(eval_domains)) != len(eval_domains):
        raise InputError(source, "eval_domains", "duplicate names", "list each domain once")
    if "E" in data:
        E = _matrix(data["E"], (len(eval_domains), len(skills)), source, "E")
    else:
        if eval_domains != domains:
            raise InputError(
                source,
                "E",
                "needed when eval_domains differ from domains",
                "give E (eval_domains x skills)",
            )
        E = len(domains) * A.T / A.sum(axis=1)
    noise = data.get("noise", {}) or {}
    if not isinstance(noise, dict):
        raise InputError(source, "noise", "not a mapping", "e.g. noise: {sigma: 0.01}")
    irreducible = _scalar(data, "irreducible", source)
    sigma = _scalar(noise, "sigma", source, "noise.")
    sigma_domain = _scalar(noise, "sigma_domain", source, "noise.")
    world = World(
        name=str(data.get("name", Path(source).stem)),
        domains=domains,
        skills=names,
        beta=beta,
        gamma=gamma,
        A=A,
        E=E,
        eval_domains=eval_domains,
        irreducible=irreducible,
        sigma=sigma,
        sigma_domain=sigma_domain,
    )
    # a run table holds losses up to LOSS_RANGE[1] (beyond: a diverged run): a world above it
    # would fail every table job after its runs
    if world.max_loss > LOSS_RANGE[1]:
        raise InputError(
            source,
            "skills",
            f"losses reach {world.max_loss:.3g}, above the {LOSS_RANGE[1]:g} a run table holds",
            "lower beta or irreducible",
        )
    return world


def _names(values: Any, source: str, field: str) -> list[str]:
    """A non-empty list of domain names (the config checks their spelling: they become run-table
    columns and file names)."""
    if not isinstance(values, list) or not values:
        raise InputError(source, field, "a world needs a list of domains", "e.g. [web, code]")
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        raise InputError(source, field, "domain names are text", "e.g. [web, code]")
    return [str(v) for v in values]


def _scalar(data: dict[str, Any], key: str, source: str, prefix: str = "") -> float:
    """A finite number >= 0 (0 when not given)."""
    try:
        value = float(data.get(key) or 0.0)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InputError(
            source, f"{prefix}{key}", f"{data.get(key)!r} is not a finite number >= 0", "e.g. 0.01"
        )
    return value


def world_file(path: str | Path) -> Path:
    """The YAML of a world given as a file or as a shipped world's name."""
    p = Path(path)
    if not p.is_file() and (SHIPPED / f"{path}.yaml").is_file():
        p = SHIPPED / f"{path}.yaml"  # a shipped world by name
    if not p.is_file():
        raise InputError(
            str(path),
            "world",
            "no such world file and no shipped world of that name",
            f"give a world YAML path or one of {', '.join(shipped_worlds())}",
        )
    return p


def load_world(path: str | Path) -> World:
    p = world_file(path)
    try:
        data = load_bounded(p.read_text(encoding="utf-8-sig"), str(p))
    except yaml.YAMLError as exc:
        raise InputError(
            str(p), "", f"malformed YAML ({exc.__class__.__name__})", "fix the YAML syntax"
        ) from exc
    return world_from_dict(data, str(p))


def shipped_worlds() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def simulate_run_table(
    world: World, mixtures: list[tuple[str, np.ndarray]], seeds: int = 1, noisy: bool = True
):
    """A run table of the world's per-domain losses for each (mixture, seed)."""

    tokens, losses, ids, seed_ids = [], [], [], []
    for name, n in mixtures:
        for s in range(seeds):
            evals = world.eval_losses(n, seed=s if noisy else None)
            tokens.append(np.asarray(n, float))
            losses.append([evals[e] for e in world.eval_domains])
            ids.append(f"{name}_s{s}")
            seed_ids.append(str(s))
    return RunTable(
        source=f"world:{world.name}",
        train_domains=list(world.domains),
        eval_domains=list(world.eval_domains),
        tokens=np.array(tokens),
        losses=np.array(losses),
        run_ids=ids,
        seeds=seed_ids,
    )


def score(world: World, weights: dict[str, float], total: float, optimum: np.ndarray | None = None):
    """Excess loss over the world's optimum and the share of the optimum's gain over uniform
    that these weights capture (1 = optimal, 0 = no better than uniform, < 0 = worse)."""
    missing = [d for d in world.domains if d not in weights]
    if missing:
        raise InputError(
            "weights", missing[0], "domain of the world missing", "give a weight for every domain"
        )
    w = np.array([weights[d] for d in world.domains], float)
    w = w / w.sum()
    best = world.optimum(total) if optimum is None else optimum
    m = len(world.domains)
    loss = world.loss(w * total)
    best_loss = world.loss(best)
    uniform_loss = world.loss(np.full(m, total / m))
    gain = uniform_loss - best_loss
    return {
        "loss": loss,
        "optimum_loss": best_loss,
        "uniform_loss": uniform_loss,
        "excess_loss": loss - best_loss,
        "captured_gain": (uniform_loss - loss) / gain if gain > 0 else None,
    }
