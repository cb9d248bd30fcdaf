"""Mixture methods behind one interface (``base.Method``), found by name in ``REGISTRY``.

``verify.methods`` in a config names registry entries; a new method is a class registered here.
"""

from __future__ import annotations

from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.methods.base import Layout, Method, ProxyRun
from mixscale.methods.ddo import AutoScale, DDOAtScale
from mixscale.methods.fixed import Natural, Reference, Uniform
from mixscale.methods.sampled import DataMixingLaws, DoReMiMethod, RegMix

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name} registered twice")
    REGISTRY[method.name] = method
    return method


for _method in (
    AutoScale(),
    DDOAtScale("ddo_largest", "the DDO optimum of the largest proxy scale", -1),
    DDOAtScale("ddo_smallest", "the DDO optimum of the smallest proxy scale", 0),
    RegMix(),
    DataMixingLaws(),
    DoReMiMethod(),
    Uniform(),
    Natural(),
    Reference(),
):
    register(_method)


def method(name: str, field: str = "verify.methods") -> Method:
    """The registry entry of ``name``; an unknown name fails with the list of known ones."""
    if name not in REGISTRY:
        raise InputError(
            "config", field, f"unknown method '{name}'", f"use one of {', '.join(REGISTRY)}"
        )
    return REGISTRY[name]


def check_methods(config: Config, domains: list[str]) -> None:
    """Every configured method exists and finds what it needs in the config."""
    for i, name in enumerate(config.verify.methods):
        entry = method(name, f"verify.methods[{i}]")
        if entry.needs_ddo and not config.mixture:
            raise InputError("config", "verify.methods", f"{name} needs ddo", "add ddo scales")
        entry.check(config, domains)


__all__ = ["REGISTRY", "Layout", "Method", "ProxyRun", "check_methods", "method", "register"]
