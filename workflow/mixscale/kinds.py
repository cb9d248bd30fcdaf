"""Every JSON and TSV file mixscale writes and reads back, as a kind (``mixscale.shapes``):
the fields its readers use, what its writer always writes, how to regenerate it; and each
reader's view of it. ``REGISTRY`` lists them all: tests/test_damaged.py damages a real file of
every kind and checks that each view refuses it in one line."""

from __future__ import annotations

from typing import Any

from mixscale.shapes import (
    BOOL,
    INTEGER,
    NAME,
    NUMBER,
    NUMERIC,
    NUMERIC_TEXT,
    RUN_ID,
    TEXT,
    Kind,
    List,
    Map,
    Nullable,
    TsvKind,
    Where,
)

REGISTRY: dict[str, Kind | TsvKind] = {}


def _register(kind: Any) -> Any:
    assert kind.name not in REGISTRY, kind.name
    REGISTRY[kind.name] = kind
    return kind


def _view(kind: Kind, reader: str, *needs: str) -> Kind:
    return _register(kind.view(reader, *needs))


# --- JSON ------------------------------------------------------------------------------


def _rerun(again: str) -> dict[str, str]:
    """The fix of a file the workflow writes. Deleting it is not enough: Snakemake does not
    remake a missing file whose readers' outputs are up to date, so it must be asked for."""
    return {"fix": f"delete it and ask snakemake for it (give its path as the target): {again}",
            "again": again}  # fmt: skip


LOSSES = Map(NUMBER, keyset="eval")
MIXTURE_FIELDS = {
    "total_tokens?": NUMBER,
    "weights?": Map(NUMBER, keyset="train"),
    "tokens?": Map(NUMBER, keyset="train"),
}

METRICS = _register(
    Kind(
        "metrics.json",
        {
            "run?": RUN_ID,
            "seed?": INTEGER,
            "stage?": TEXT,
            "method?": Nullable(NAME),
            "source?": NAME,
            **MIXTURE_FIELDS,
            "requested_tokens?": Map(NUMBER),
            "final_losses": LOSSES,
            "curve?": List({"fraction": NUMBER, "losses": LOSSES}, empty_ok=False),
            "hardware?": {"precision?": Nullable(TEXT)},
            "metric?": TEXT,
            "doremi?": {"weights": Map(NUMBER)},
        },
        written=("run", "seed", "stage", "total_tokens", "weights", "tokens", "curve"),
        **_rerun("trains the run again"),
    )
)
METRICS_FOR_TABLE = _view(METRICS, "table", "run", "seed", "tokens")
METRICS_FOR_COMPARE = _view(METRICS, "compare", "method", "weights", "curve")
METRICS_FOR_ANNEAL = _view(METRICS, "anneal-table", "run", "seed", "source", "total_tokens")

_DOMAIN_FIT = {
    "domain": NAME,
    "status": TEXT,
    "reason": TEXT,
    "form": Nullable(TEXT),
    "method": Nullable(TEXT),
    "params": Map(NUMBER, empty_ok=True, keys="text"),
    "base_tokens": NUMBER,
    "base_weight": NUMBER,
    "fallback": Nullable(TEXT),
    "diagnostics": {
        "r?": Nullable(NUMBER),
        "b?": Nullable(NUMBER),
        "effect_high_over_se?": Nullable(NUMBER),
    },
    "unit?": Nullable(NUMBER),
}
FIT_SHAPE = {
    "objective": TEXT,
    "design": TEXT,
    "base_runs": List(RUN_ID),
    "base_total_tokens": NUMBER,
    "unit": NUMBER,
    "intercept": NUMBER,
    "domains": Map(
        Where(
            _DOMAIN_FIT,
            lambda d: d["status"] != "ok" or d["form"] is not None,
            "status ok without a form",
        ),
        keyset="train",
    ),
    "form_requested?": TEXT,
    "loss?": TEXT,
    "notes?": List(TEXT),
    "unit_kind?": TEXT,
    "objective_scale?": NUMBER,
    "root?": TEXT,
    "unmatched_runs?": List(RUN_ID),
}
FIT = _register(Kind("FIT.json", FIT_SHAPE, (), "regenerate it with mixscale fit"))

_INTERVAL = {"low": NUMBER, "high": NUMBER}
_ROUND = {"round": INTEGER, "centre": Map(NUMBER), "weights": Map(NUMBER), "moved": NUMBER}
DDO_WEIGHTS = _register(
    Kind(
        "a DDO scale's weights.json",
        {
            **MIXTURE_FIELDS,
            "fit?": FIT_SHAPE,
            "trust_region?": BOOL,
            "weight_intervals_90?": Map(_INTERVAL, empty_ok=True),
            "at_bound?": Map(TEXT, empty_ok=True),
            "root_spread?": NUMBER,
            "warnings?": List(TEXT),
            "rounds?": List(_ROUND, empty_ok=False),
            "rounds_note?": TEXT,
            "round_tolerance?": NUMBER,
        },
        written=("total_tokens", "weights", "tokens", "fit"),
        **_rerun("fits the scale again from its run table"),
    )
)
WEIGHTS_FOR_ROUNDS = _view(DDO_WEIGHTS, "rounds", "weights", "fit")
WEIGHTS_FOR_REPORT = _view(DDO_WEIGHTS, "report", "total_tokens", "weights", "fit")

MIXTURE = _register(
    Kind(
        "a weights file",
        {**MIXTURE_FIELDS, "method?": TEXT},
        written=("total_tokens", "weights", "tokens"),
        **_rerun("computes those weights again"),
    )
)
MIXTURE_TO_TRAIN = _view(MIXTURE, "train", "weights")
OPTIMUM = _view(MIXTURE, "predict", "tokens")
MIXTURE_TO_SCORE = _view(MIXTURE, "world score", "weights")

_CHECK = {"held_out_total": NUMBER, "from_totals": List(NUMBER), "max_abs_weight_error": NUMBER}
PREDICTION = _register(
    Kind(
        "an AutoScale prediction",
        {
            "target_tokens": NUMBER,
            **MIXTURE_FIELDS,
            "method?": TEXT,
            "interpolation_checks?": List(_CHECK),
        },
        written=("total_tokens", "weights", "tokens"),
        **_rerun("predicts it again from the DDO optima"),
    )
)
PREDICTION_FOR_REPORT = _view(PREDICTION, "report", "weights")

_DIFFERENCE = {"n": INTEGER, "mean": NUMBER, "interval?": Nullable(List(NUMBER))}
_METHOD_RESULT = {
    "weights": Map(NUMBER, keyset="train"),
    "seeds": INTEGER,
    "objective": NUMBER,
    "perplexity": Map(NUMBER, keyset="eval"),
    "mean_perplexity": NUMBER,
    "worst_perplexity": NUMBER,
    "curve": List({"fraction": NUMBER, "objective": NUMBER}),
    "objective_by_seed?": Map(NUMBER, keys="text"),
    "objective_interval?": Nullable(_DIFFERENCE),
    "steps_saved_pct?": Nullable(NUMBER),
    "steps_saved_by_seed?": Map(Nullable(NUMBER), empty_ok=True, keys="text"),
    "steps_saved_never?": INTEGER,
    "steps_saved_interval?": Nullable(_DIFFERENCE),
    "vs_uniform?": _DIFFERENCE,
    "vs_best_other?": {"other": NAME, **_DIFFERENCE},
    "world_score?": {"excess_loss": NUMBER, "captured_gain": NUMBER},
}
COMPARISON = _register(
    Kind(
        "a verification (compare) result",
        {
            "target_tokens": NUMBER,
            "objective?": TEXT,
            "metric?": TEXT,
            "precision?": List(TEXT),
            "methods": Map(_METHOD_RESULT),
        },
        written=("objective", "metric", "precision"),
        **_rerun("compares the verification runs again"),
    )
)

_CURVE = Where(
    {
        "status": TEXT,
        "G": Nullable(NUMBER),
        "D0": Nullable(NUMBER),
        "alpha": Nullable(NUMBER),
        "reason?": Nullable(TEXT),
        "intervals_90?": Map(List(NUMBER), empty_ok=True, keys="text"),
    },
    lambda c: c["status"] != "ok" or None not in (c["G"], c["D0"], c["alpha"]),
    "status ok without G, D0 and alpha",
)
_OBSERVED = {"gain_mean": NUMBER, "gain_interval_90?": Nullable(List(NUMBER))}
_PAIRS = List(List(NAME))
_RANKS = {"rank_by_gain": List(NAME), "rank_by_gain_per_cost": List(NAME)}
_RANKING = {
    "budget_tokens": NUMBER,
    "kind": TEXT,
    **_RANKS,
    "flips_vs_smallest_gain?": Nullable({"flipped_pairs": _PAIRS}),
    "flips_vs_smallest_gain_per_cost?": Nullable({"flipped_pairs": _PAIRS}),
}
_BOUGHT = {"tokens?": Map(NUMBER, empty_ok=True), "gain?": NUMBER}
_ALLOCATION = Where(
    {
        "budget": NUMBER,
        "status": TEXT,
        **_BOUGHT,
        "cost?": Map(NUMBER, empty_ok=True),
        "gain_by_source?": Map(NUMBER, empty_ok=True),
    },
    lambda a: a["status"] != "ok" or all(k in a for k in ("tokens", "cost", "gain_by_source")),
    "status ok without tokens, cost and gain_by_source",
)
_RECOMMENDATIONS = {
    "micro_budget_tokens": NUMBER,
    "plan_budget_tokens": NUMBER,
    "micro": {
        "best_by_gain": Nullable(NAME),
        "best_by_gain_per_cost": Nullable(NAME),
        **_RANKS,
    },
    "fitted_at_plan": _RANKS,
    "agree_by_gain": BOOL,
    "agree_by_gain_per_cost": BOOL,
    "micro_allocation?": _BOUGHT,
    "fitted_allocation?": _BOUGHT,
}
_CROSSING = {
    "pair": List(NAME),
    "budget_tokens": Nullable(NUMBER),
    "leads_first": NAME,
    "leads_after": NAME,
    "bootstrap_share_crossing?": NUMBER,
    "interval_90?": Nullable(List(NUMBER)),
}
UTILITY = _register(
    Kind(
        "UTILITY.json",
        {
            "direction": TEXT,
            "curve_form": TEXT,
            "assumption": TEXT,
            "micro_annealing_budget": NUMBER,
            "sources": Map(
                {
                    "curve": _CURVE,
                    "cost_per_token": NUMBER,
                    "fixed_cost": NUMBER,
                    "observed": Map(_OBSERVED, keys=NUMERIC),
                }
            ),
            "rankings": List(_RANKING),
            "rank_flips?": List(
                {
                    "budget_tokens": NUMBER,
                    "kind": TEXT,
                    "by_gain": _PAIRS,
                    "by_gain_per_cost": _PAIRS,
                }
            ),
            "crossings?": Nullable(List(_CROSSING)),
            "recommendations?": _RECOMMENDATIONS,
            "allocation?": _ALLOCATION,
            "cost_unit?": TEXT,  # mixscale utility --unit: what anneal-report labels costs with
        },
        (),
        **_rerun("fits the annealing curves again"),
    )
)

_TASK_SCORES = Map(Map(Nullable(NUMBER), empty_ok=True, keys="text"), keys="text")
DOWNSTREAM = _register(
    Kind(
        "a downstream (lm-eval) result",
        {
            "task?": TEXT,
            "shots": INTEGER,
            "metric": TEXT,
            "tasks": _TASK_SCORES,
            "label?": Nullable(TEXT),
            "target?": Nullable(NUMERIC_TEXT),
            "run_seed?": Nullable(INTEGER),
        },
        # target and run_seed are null for the untrained model (the floor of every task)
        written=("task", "label"),
        **_rerun("scores the model on the task again"),
    )
)
DOWNSTREAM_FOR_ANNEAL = _view(DOWNSTREAM, "anneal-table", "label", "target", "run_seed")

FINETUNE_SCORE = _register(
    Kind(
        "a fine-tuning result",
        {
            "name": TEXT,
            "metric": TEXT,
            "value": Nullable(NUMBER),  # None: undefined (a correlation of constant predictions)
            "majority?": Nullable(NUMBER),
            "label?": Nullable(TEXT),
            "target?": Nullable(NUMERIC_TEXT),
        },
        written=("label",),  # target: null for the untrained model
        **_rerun("fine-tunes the model on the task again"),
    )
)

TASKS = _register(
    Kind(
        "the embedded tasks' tasks.json",
        {"tasks": Map({"chance": NUMBER}, keys="text")},
        (),
        **_rerun("builds the tasks again"),
    )
)

FINETUNE_TASK = _register(
    Kind(
        "a fine-tuning task's task.json",
        {
            "kind": TEXT,
            "metric": TEXT,
            "fields": List(TEXT),
            "num_labels?": Nullable(INTEGER),
            "label?": TEXT,
            "name?": TEXT,
        },
        (),
        fix="regenerate the task folder (mixscale finetune-tasks or prepare-finetune)",
    )
)

TOKEN_STORE = _register(
    Kind(
        "a token store's meta.json",
        {
            "domain": NAME,
            "dtype": Where(TEXT, lambda t: t in ("uint16", "uint32"), "not uint16 or uint32"),
            "vocab_size": INTEGER,
            "eos_id?": Nullable(INTEGER),
            "corpus?": TEXT,
        },
        (),
        **_rerun("builds the store again"),
    )
)

DOCUMENT = _register(
    Kind(
        "a corpus file's line",
        {"text": TEXT},
        (),
        **_rerun("builds the corpus file again"),
    )
)

# --- tables ---------------------------------------------------------------------------------

RUN_TABLE = _register(
    TsvKind(
        "run table",
        required=(),  # tokens.<d> and loss.<d>: the reader says which are missing
        optional=("run", "seed", "step"),
        name_columns=(),
        id_columns=("run", "seed", "step"),
        prefixes=("tokens.", "loss."),
        reader="mixscale.core.runtable:load_run_table",
        **_rerun("gathers it again from the runs' metrics.json"),
    )
)
MIXTURES = _register(
    TsvKind(
        "mixtures table",
        required=(),
        optional=("run", "seed", "step"),
        name_columns=(),
        id_columns=("run", "seed", "step"),
        prefixes=("tokens.", "loss."),
        reader="mixscale.core.runtable:load_mixtures",
        fix="regenerate it with mixscale mixtures",
        workflow_output=False,
    )
)
ANNEAL_RUNS = _register(
    TsvKind(
        "annealing runs table",
        required=("source", "budget_tokens", "metric"),
        optional=("seed", "run"),
        name_columns=("source",),
        id_columns=("seed", "run"),
        prefixes=(),
        reader="mixscale.core.utility:load_anneal_table",
        **_rerun("gathers it again from the annealing runs"),
    )
)
ANNEAL_COSTS = _register(
    TsvKind(
        "annealing costs table",
        required=("source", "acquisition_cost_per_token"),
        optional=("training_cost_per_token", "share", "fixed_cost", "max_tokens"),
        name_columns=("source",),
        id_columns=(),
        prefixes=(),
        reader="mixscale.core.utility:load_costs",
        **_rerun("writes it again from anneal.sources"),
    )
)
