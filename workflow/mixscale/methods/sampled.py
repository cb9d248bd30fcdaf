"""Methods that train their own proxy runs over sampled mixtures at one scale, then learn the
best mixture from them: RegMix (``regmix``) and Data Mixing Laws (``dml``).

Both sample their proxy mixtures with RegMix's generator (Dirichlet draws around a prior; see
``mixscale.core.regmix``), each with its own seed, so their runs are their own and their compute
is counted apart. The weights at a target come from ``python -m mixscale regmix|dml`` on the
table of those runs; both transfer the weights found at the proxy scale unchanged (their laws
are in proportions).
"""

from __future__ import annotations

import numpy as np

from mixscale.config.domains import config_domains
from mixscale.config.typed import Config, DMLSettings, RegMixSettings
from mixscale.core.mixlaws import check_sampled_design, dml_parameters
from mixscale.core.regmix import regmix_parameters, sample_mixtures
from mixscale.errors import InputError
from mixscale.methods.base import Layout, Method, ProxyRun
from mixscale.methods.fixed import Natural, Reference


class SampledMixtures(Method):
    needs_ddo = True  # the targets (autoscale.targets) and the default proxy scale

    def settings(self, config: Config) -> RegMixSettings | DMLSettings:
        return getattr(config.methods, self.name)

    def proxy_tokens(self, config: Config) -> float:
        own = self.settings(config).tokens
        return float(own) if own is not None else float(config.ddo.scales[0].tokens)

    def prior(self, config: Config, domains: list[str]) -> np.ndarray:
        settings = self.settings(config)
        if settings.prior == "uniform":
            return np.full(len(domains), 1 / len(domains))
        natural = config.verify.natural
        if not natural:
            raise InputError(
                "config",
                f"methods.{self.name}.prior",
                "natural needs the natural proportions in verify.natural",
                f"give verify.natural, or set methods.{self.name}.prior: uniform",
            )
        weights = np.array([float(natural.get(d, 0.0)) for d in domains])
        if weights.sum() <= 0:
            raise InputError("config", "verify.natural", "no weight on the domains", "give them")
        return weights / weights.sum()

    def parameters(self, config: Config, domains: int) -> int:
        """Distinct mixtures the method needs to learn anything."""
        raise NotImplementedError

    def check(self, config: Config, domains: list[str]) -> None:
        """The sampled proxy mixtures are a design the method can learn from (the same check
        ``mixscale regmix|dml`` makes on the finished runs), and vary every domain: one the
        prior gives no weight is at 0 in every run, and the method could never choose it."""
        runs = self.proxy_runs(config, domains)
        tokens = np.array([[run.tokens[d] for d in domains] for run in runs])
        weights = tokens / tokens.sum(axis=1, keepdims=True)
        parameters = self.parameters(config, len(domains))
        try:
            design = check_sampled_design(weights, domains, "config", self.name, parameters)
        except InputError as exc:
            raise InputError("config", f"methods.{self.name}.runs", exc.problem, exc.fix) from exc
        for domain, weight in design.held.items():
            raise InputError(
                "config",
                f"methods.{self.name}.prior",
                f"domain '{domain}' has weight {weight:.4g} in every proxy run: "
                f"{self.name} could never move it",
                f"give {domain} a weight in verify.natural, or set "
                f"methods.{self.name}.prior: uniform",
            )

    def weights_file(self, layout: Layout, target: str) -> str:
        return f"{layout.out}/methods/{self.name}/{target}.json"

    def run_count(self, config: Config, budget: float | None) -> int:
        """Proxy mixtures: the configured number, or as many as the budget pays for."""
        settings = self.settings(config)
        if budget is None:
            return settings.runs
        count = int(budget // (self.proxy_tokens(config) * settings.seeds))
        if count < 4:
            raise InputError(
                "config",
                "methods.proxy_tokens",
                f"{budget:.3g} tokens pay for {count} {self.name} runs of "
                f"{self.proxy_tokens(config):.3g} tokens",
                f"raise the budget or lower methods.{self.name}.tokens",
            )
        return count

    def proxy_runs(
        self, config: Config, domains: list[str], budget: float | None = None
    ) -> list[ProxyRun]:
        settings = self.settings(config)
        total = self.proxy_tokens(config)
        prior = self.prior(config, domains)
        count = self.run_count(config, budget)
        try:
            mixtures = sample_mixtures(prior, count, settings.seed, None, settings.temperature)
        except InputError as exc:
            raise InputError("config", f"methods.{self.name}.runs", exc.problem, exc.fix) from exc
        runs = []
        for i, weights in enumerate(mixtures):
            tokens = {d: float(round(w * total)) for d, w in zip(domains, weights, strict=True)}
            for seed in range(settings.seeds):
                runs.append(ProxyRun(f"m{i:03d}", tokens, seed))
        return runs


class RegMix(SampledMixtures):
    name = "regmix"
    summary = "RegMix: a regressor on sampled proxy mixtures, top-k simulated (arXiv 2407.01492)"

    def parameters(self, config: Config, domains: int) -> int:
        return regmix_parameters(config.methods.regmix.regressor, domains)


class DataMixingLaws(SampledMixtures):
    name = "dml"
    summary = "Data Mixing Laws: an exponential law per domain on sampled mixtures (2403.16952)"

    def parameters(self, config: Config, domains: int) -> int:
        return dml_parameters(domains)

    def run_count(self, config: Config, budget: float | None) -> int:
        runs = super().run_count(config, budget)
        domains = len(config_domains(config))
        if runs < dml_parameters(domains):
            field = "methods.dml.runs" if budget is None else "methods.proxy_tokens"
            raise InputError(
                "config",
                field,
                f"{runs} proxy runs for {domains} domains: the law has "
                f"{dml_parameters(domains)} parameters per evaluation domain",
                f"at least {dml_parameters(domains)} runs (the authors used 20 for 5 domains)",
            )
        return runs


class DoReMiMethod(Method):
    """DoReMi: a reference run at the reference mixture, then proxy runs (one per seed) on the
    same mixture whose domain weights Group DRO learns online against the reference model
    (``mixscale.train.doremi``); the weights are their average over steps and seeds."""

    name = "doremi"
    summary = "DoReMi: Group DRO domain weights against a reference model (arXiv 2305.10429)"
    needs_ddo = True  # the targets, and the default proxy scale
    REFERENCE = "reference"

    def check(self, config: Config, domains: list[str]) -> None:
        if config.backend != "torch":
            raise InputError(
                "config",
                "verify.methods",
                "doremi learns its weights while a real model trains: backend torch only",
                "drop doremi from verify.methods for a simulated world",
            )
        self.reference_weights(config, domains)

    def reference_weights(self, config: Config, domains: list[str]) -> dict[str, float]:
        kind = config.methods.doremi.reference
        if kind == "uniform":
            return {d: 1 / len(domains) for d in domains}
        source = Natural() if kind == "natural" else Reference()
        try:
            return source.fixed_weights(config, domains)
        except InputError as exc:
            raise InputError(
                "config", "methods.doremi.reference", f"{kind}: {exc.problem}", exc.fix
            ) from exc

    def weights_file(self, layout: Layout, target: str) -> str:
        return f"{layout.out}/methods/{self.name}/{target}.json"

    # a proxy run also runs the reference forward: 8 N FLOPs per token against a plain 6 N
    PROXY_COST = 8 / 6

    def proxy_runs(
        self, config: Config, domains: list[str], budget: float | None = None
    ) -> list[ProxyRun]:
        settings = config.methods.doremi
        total = float(settings.tokens or config.ddo.scales[0].tokens)
        if budget is not None:  # one reference run and the proxy runs, all of one length
            total = budget / (1 + settings.seeds * self.PROXY_COST)
        weights = self.reference_weights(config, domains)
        tokens = {d: float(round(weights[d] * total)) for d in domains}
        reference = f"{self.name}-{self.REFERENCE}-s0"  # the id plan.mixture gives it
        learned = {
            "reference_run": reference,
            "reference_model": f"{config.out}/runs/{reference}/model",
            "eta": settings.eta,
            "smoothing": settings.smoothing,
        }
        runs = [ProxyRun(self.REFERENCE, tokens, 0)]
        runs += [ProxyRun("proxy", tokens, seed, doremi=learned) for seed in range(settings.seeds)]
        return runs
