"""Methods built on the experiment's DDO sweep: the optimum found at one proxy scale, reused at
the target (``ddo_largest``, ``ddo_smallest``), and AutoScale's extrapolation of the optima to
the target scale (``autoscale``)."""

from __future__ import annotations

from typing import Any

from mixscale.methods.base import Layout, Method


class DDOAtScale(Method):
    """The DDO optimum of one proxy scale, transferred unchanged to the target."""

    needs_ddo = True

    def __init__(self, name: str, summary: str, pick: int) -> None:
        self.name = name
        self.summary = summary
        self.pick = pick  # index into the scales, smallest first

    def weights_file(self, layout: Layout, target: str) -> str:
        return f"{layout.out}/ddo/{layout.scales[self.pick]}/weights.json"

    def uses_run(self, spec: dict[str, Any], layout: Layout) -> bool:
        return spec["stage"] == "ddo" and spec["scale"] == layout.scales[self.pick]


class AutoScale(Method):
    name = "autoscale"
    summary = "AutoScale: the DDO optima extrapolated to the target scale (arXiv 2407.20177)"
    needs_ddo = True

    def weights_file(self, layout: Layout, target: str) -> str:
        return f"{layout.out}/autoscale/{target}.json"

    def uses_run(self, spec: dict[str, Any], layout: Layout) -> bool:
        return spec["stage"] == "ddo"  # every scale's sweep
