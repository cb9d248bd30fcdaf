"""The config as typed, read-only objects, built once from a validated mapping.

Every default lives in the schema (``schema.yaml``): ``validate_schema`` fills them in, and these
classes declare no default of their own; ``None`` only means "not given" for fields that have
no default (a checkpoint, a cap, a pretrained tokenizer). Free-form sections (``model``, the
transformers fields; ``train``, whose defaults are ``TrainSettings``'s) stay mappings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from mixscale.errors import InputError


@dataclass(frozen=True)
class Tokenizer:
    vocab_size: int
    pretrained: str | None = None


@dataclass(frozen=True)
class Data:
    validation_bytes: int
    seed: int
    downloads: str
    tokenizer: Tokenizer
    sources: dict[str, Any] = field(default_factory=dict)
    max_bytes: float | None = None


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_tflops: float
    utilisation: float
    gpus_per_run: int
    runtime_safety: float
    mem_mb: int
    price_per_gpu_hour: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Objective:
    kind: str
    eval_domains: list[str] | None = None


@dataclass(frozen=True)
class Fit:
    form: str
    loss: str
    bootstrap: int
    unit: str | float
    normalise: bool
    root: str


@dataclass(frozen=True)
class Scale:
    name: str
    tokens: float
    runs: str | None = None  # a run table of the user's own sweep (backend tables)


@dataclass(frozen=True)
class DDO:
    design: str
    factor: float
    trust_region: bool
    seeds: int
    base_weights: str | dict[str, float]
    scales: list[Scale]
    eval_points: int | None = None  # None: the experiment's eval_points
    rounds: int = 1  # iterated DDO: round r+1 re-centred on round r's optimum
    round_tolerance: float = 0.01  # stop early when a round moves no weight by more


@dataclass(frozen=True)
class AutoScale:
    targets: list[float]
    discrete: bool


@dataclass(frozen=True)
class Verify:
    methods: list[str]
    seeds: int
    natural: dict[str, float] | None = None
    reference: dict[str, float] | None = None


@dataclass(frozen=True)
class RegMixSettings:
    """methods.regmix: proxy runs over sampled mixtures, a regressor, simulated mixtures."""

    runs: int
    seeds: int
    prior: str  # natural | uniform
    temperature: float
    regressor: str
    candidates: int
    top_k: int
    seed: int
    tokens: float | None = None  # per proxy run; None: the smallest DDO scale's


@dataclass(frozen=True)
class DMLSettings:
    """methods.dml: proxy runs over sampled mixtures, an exponential law per domain."""

    runs: int
    seeds: int
    prior: str
    temperature: float
    huber_delta: float
    seed: int
    tokens: float | None = None


@dataclass(frozen=True)
class DoReMiSettings:
    """methods.doremi: a reference run, then proxy runs learning the weights online."""

    reference: str  # uniform | natural | reference
    eta: float
    smoothing: float
    seeds: int
    tokens: float | None = None


@dataclass(frozen=True)
class Methods:
    regmix: RegMixSettings
    dml: DMLSettings
    doremi: DoReMiSettings
    proxy_tokens: float | str | None = None  # compute-matched: a budget, or "ddo"


@dataclass(frozen=True)
class Downstream:
    tasks: list[Any]
    untrained: bool
    batch_size: int
    device: str
    offline: bool
    embedded: dict[str, Any] | None = None
    limit: float | None = None
    datasets_cache: str | None = None
    include_path: str | None = None


@dataclass(frozen=True)
class Finetune:
    tasks: list[str | dict[str, Any]]
    untrained: bool
    prepared: str
    embedded: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnnealBase:
    seed: int
    checkpoint: str | None = None
    tokens: float | None = None
    weights: str | dict[str, float] | None = None


@dataclass(frozen=True)
class AnnealTarget:
    domains: list[str] = field(default_factory=list)
    task: str | dict[str, Any] | None = None


@dataclass(frozen=True)
class Schedule:
    warmup: float
    lr: float | None = None


@dataclass(frozen=True)
class Anneal:
    target: AnnealTarget
    sources: dict[str, dict[str, Any]]
    budgets: list[float]
    share: float
    seeds: int
    eval_points: int
    schedule: Schedule
    extrapolate: list[float]
    bootstrap: int
    cost_unit: str
    base: AnnealBase
    replay: str | dict[str, float] | None = None
    training_cost_per_token: float | None = None
    allocate: float | None = None
    plan_budget: float | None = None


@dataclass(frozen=True)
class Config:
    experiment: str
    backend: str
    eval_points: int
    data: Data
    accelerator: Accelerator
    objective: Objective
    fit: Fit
    verify: Verify
    methods: Methods
    downstream: Downstream
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    domains: list[str] | None = None
    world: str | None = None
    evaluation: dict[str, Any] | None = None
    ddo: DDO | None = None
    autoscale: AutoScale | None = None
    anneal: Anneal | None = None
    finetune: Finetune | None = None
    tracking: list[str] = field(default_factory=lambda: ["tensorboard"])
    # the validated mapping it was built from: what Snakemake params and fingerprints serialise
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, validated: dict[str, Any]) -> Config:
        """From a mapping that ``validate_schema`` has checked and filled with defaults."""
        config = _build(cls, {k: v for k, v in validated.items() if k != "raw"}, "")
        return dataclasses.replace(config, raw=validated)

    @property
    def mixture(self) -> bool:
        """A mixture experiment (DDO + AutoScale); an annealing-only config has none."""
        return self.ddo is not None

    @property
    def out(self) -> str:
        return f"results/{self.experiment}"


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a mapping, nested dataclasses (and lists of them) included."""
    if not isinstance(data, dict):
        raise InputError("config", where or "(top level)", "expected a mapping", "see the schema")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:  # the schema rejects these first; a config built in code may still carry them
        raise InputError("config", _join(where, unknown[0]), "unknown key", "remove it")
    values = {name: _value(hints[name], value, _join(where, name)) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a field without a default is missing: not filled by the schema
        raise InputError("config", where or "(top level)", str(exc), "validate it first") from exc


def _value(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    for kind in _kinds(hint):
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            return _build(kind, value, where)
        item = _list_item(kind)
        if item is not None and dataclasses.is_dataclass(item) and isinstance(value, list):
            return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _kinds(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _list_item(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
