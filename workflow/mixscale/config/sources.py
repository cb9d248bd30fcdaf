"""Derived data sources (``data.sources.<name>: {derive: <domain>, kind: ...}``): candidate
sources of the data-source utility experiment made from a domain's own text
(``mixscale.data.derived`` builds them). They are annealing sources, not training domains of
the mixture: ``config_domains`` leaves them out unless ``domains:`` names them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mixscale.errors import InputError

KINDS = ("curated", "pool", "rephrased")


@dataclass(frozen=True)
class Derivation:
    """How one derived source is made (``data.sources.<name>`` with ``derive``)."""

    name: str
    parent: str  # the domain whose training documents it is made from
    kind: str
    bytes: float  # of the parent's text
    noise: tuple[str, ...] = ()  # pool: the domains mixed in
    noise_share: float = 0.5  # pool: fraction of the pool's bytes from the noise domains

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any], domains: list[str]) -> Derivation:
        where = f"data.sources.{name}"
        kind = spec.get("kind")
        if kind not in KINDS:
            raise InputError("config", f"{where}.kind", f"{kind!r}", f"one of {', '.join(KINDS)}")
        parent = spec.get("derive")
        if parent not in domains:
            raise InputError(
                "config", f"{where}.derive", f"{parent!r} is not a domain", f"one of {domains}"
            )
        noise = tuple(spec.get("noise") or ())
        unknown = [d for d in noise if d not in domains or d == parent]
        if unknown:
            raise InputError(
                "config",
                f"{where}.noise",
                f"{unknown[0]!r} is not another domain",
                f"domains other than {parent}",
            )
        if kind == "pool" and not noise:
            raise InputError("config", f"{where}.noise", "missing", "e.g. noise: [reviews, legal]")
        share = float(spec.get("noise_share", 0.5))
        if not 0 <= share < 1:
            raise InputError("config", f"{where}.noise_share", f"{share}", "a fraction in [0, 1)")
        return cls(name, parent, kind, float(spec.get("bytes", 0) or 0), noise, share)


def is_derived(spec: Any) -> bool:
    return isinstance(spec, dict) and "derive" in spec
