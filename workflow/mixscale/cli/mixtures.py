"""Methods that learn the best mixture from proxy runs at one scale over sampled mixtures:
Data Mixing Laws (``dml``) and RegMix (``regmix``); and RegMix's generator of those mixtures
(``mixtures``). Their WEIGHTS.json has the shape ``ddo`` writes."""

from __future__ import annotations

import argparse
from typing import Any

from mixscale.cli.args import (
    EPOCHS,
    SEED,
    TOKENS,
    Number,
    Pairs,
    add_constraint_args,
    add_objective_args,
    constraints_from,
)
from mixscale.cli.paths import input_path, output_file
from mixscale.config.check import schema_default
from mixscale.errors import InputError, say

# proportions or token counts (normalised): verify.natural may hold a 0
PRIOR = Pairs(Number(0, 1e18))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dml", help="Data Mixing Laws: exponential law per domain, its optimum")
    _add_common(p)
    p.add_argument(
        "--huber-delta",
        type=Number.schema("methods.dml.huber_delta"),
        default=schema_default("methods.dml.huber_delta"),
        help="Huber loss threshold",
    )
    p.set_defaults(handler=cmd_dml)

    p = sub.add_parser("regmix", help="RegMix: regressor from mixture to objective, top-k mean")
    _add_common(p)
    p.add_argument("--regressor", default="lightgbm", choices=["lightgbm", "linear"])
    p.add_argument(
        "--prior",
        type=PRIOR,
        help="natural proportions d=w,... (default: the mean mixture of the runs)",
    )
    p.add_argument(
        "--candidates",
        type=Number.schema("methods.regmix.candidates"),
        default=schema_default("methods.regmix.candidates"),
        help="simulated mixtures",
    )
    p.add_argument(
        "--top-k",
        type=Number.schema("methods.regmix.top_k"),
        default=schema_default("methods.regmix.top_k"),
        help="best simulated mixtures averaged",
    )
    p.add_argument("--seed", type=SEED, default=schema_default("methods.regmix.seed"))
    p.set_defaults(handler=cmd_regmix)

    p = sub.add_parser("doremi", help="DoReMi: the learned weights of its proxy runs")
    p.add_argument(
        "--metrics", type=input_path, nargs="+", required=True, help="proxy runs' metrics.json"
    )
    p.add_argument("--tokens", type=TOKENS, required=True, help="target total tokens")
    p.add_argument("--out", type=output_file, required=True, help="WEIGHTS.json")
    p.set_defaults(handler=cmd_doremi)

    p = sub.add_parser("mixtures", help="RegMix's proxy mixtures around natural proportions")
    p.add_argument(
        "--prior", type=PRIOR, required=True, help="natural proportions or token counts d=w,..."
    )
    p.add_argument(
        "--count",
        type=Number.schema("methods.regmix.runs", lo=1),
        required=True,
        help="number of proxy runs",
    )
    p.add_argument("--tokens", type=TOKENS, required=True, help="total tokens of each run")
    p.add_argument(
        "--available",
        type=Pairs(Number(0, TOKENS.hi, lo_open=True)),  # a domain without data: leave it out
        help="tokens each domain holds d=N,... (with --max-epochs)",
    )
    p.add_argument("--max-epochs", type=EPOCHS, default=15.0, help="RegMix's repetition cap")
    p.add_argument(
        "--temperature",
        type=Number.schema("methods.regmix.temperature"),
        default=schema_default("methods.regmix.temperature"),
    )
    p.add_argument("--seed", type=SEED, default=schema_default("methods.regmix.seed"))
    p.add_argument("--out", type=output_file, required=True, help="MIXTURES.tsv: run, tokens.<d>")
    p.set_defaults(handler=cmd_mixtures)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs", type=input_path, required=True, help="run table of one scale (0 tokens allowed)"
    )
    add_objective_args(p)
    p.add_argument("--tokens", type=TOKENS, help="target total tokens (default: the runs' total)")
    add_constraint_args(p, with_cost=False)
    p.add_argument(
        "--score", type=input_path, help="also predict the objective of every mixture of this table"
    )
    p.add_argument(
        "--scores-out", type=output_file, help="SCORES.tsv (run, predicted_objective[, objective])"
    )
    p.add_argument("--out", type=output_file, required=True, help="WEIGHTS.json")


def _table_and_objective(args: argparse.Namespace):
    from mixscale.core.objective import parse_objective
    from mixscale.core.runtable import load_run_table

    if bool(args.score) != bool(args.scores_out):
        raise InputError("--score/--scores-out", "", "give both or neither", "add the other")
    table = load_run_table(args.runs, zero_tokens=True)
    objective = parse_objective(args.objective, args.eval_weights, args.eval_domains)
    return table, objective


def cmd_dml(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.core.mixlaws import dml_optimum, weights_result

    table, objective = _table_and_objective(args)
    fit, weights = dml_optimum(
        table, objective, args.tokens, constraints_from(args), args.huber_delta
    )
    total = fit.total_tokens if args.tokens is None else args.tokens
    predicted = fit.predict(weights)[0]
    out = weights_result("dml", fit.train_domains, weights, total, predicted, objective)
    out["fit"] = fit.to_json()
    _write_scores(args, fit.train_domains, fit.predict, objective)
    return _with_warnings(args.command, out, fit.warnings)


def cmd_regmix(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.core.mixlaws import run_weights, weights_result
    from mixscale.core.regmix import regmix_optimum

    table, objective = _table_and_objective(args)
    prior = _prior(args.prior, table.train_domains) if args.prior else None
    fit, best, predicted, prior = regmix_optimum(
        table,
        objective,
        args.tokens,
        prior,
        constraints_from(args),
        args.regressor,
        args.seed,
        args.candidates,
        args.top_k,
    )
    _, scale = run_weights(table)
    total = args.tokens if args.tokens is not None else scale
    out = weights_result("regmix", table.train_domains, best, total, predicted, objective)
    prior_json = {d: float(w) for d, w in zip(table.train_domains, prior, strict=True)}
    out["fit"] = {**fit.to_json(), "prior": prior_json, "total_tokens": scale}
    _write_scores(args, table.train_domains, fit.predict, objective)
    return _with_warnings(args.command, out, fit.warnings)


def _with_warnings(command: str, out: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """What the runs could not tell the method: in WEIGHTS.json and on stderr."""
    out["warnings"] = list(warnings)
    for warning in warnings:
        say(f"mixscale {command}: warning: {warning}")
    return out


def cmd_doremi(args: argparse.Namespace) -> dict[str, Any]:
    """The domain weights averaged over steps (by the trainer) and over the proxy runs."""
    import numpy as np

    from mixscale.core.mixlaws import weights_result
    from mixscale.core.objective import Objective
    from mixscale.kinds import METRICS
    from mixscale.shapes import read_kind

    learned = []
    for path in args.metrics:
        run = read_kind(path, METRICS)
        if "doremi" not in run:
            raise InputError(path, "doremi", "not a DoReMi proxy run", "give its metrics.json")
        learned.append(run["doremi"]["weights"])
    domains = list(learned[0])
    if any(sorted(w) != sorted(domains) for w in learned):
        raise InputError("--metrics", "doremi.weights", "runs of other domains", "one method's")
    mean = np.mean([[w[d] for d in domains] for w in learned], axis=0)
    out = weights_result("doremi", domains, mean, args.tokens, float("nan"), Objective())
    del out["predicted_objective"], out["fit_objective"]  # DoReMi predicts no objective
    out["runs"] = len(learned)
    return out


def _prior(given: dict[str, float], domains: list[str]):
    import numpy as np

    missing = [d for d in domains if d not in given]
    unknown = [d for d in given if d not in domains]
    if missing or unknown:
        raise InputError(
            "--prior",
            ", ".join(missing or unknown),
            "missing" if missing else "not a domain of the runs",
            f"give d=w for each of {', '.join(domains)}",
        )
    prior = np.array([given[d] for d in domains])
    if prior.sum() <= 0:
        raise InputError("--prior", "", "all zero", "give a positive sum, e.g. a=3,b=1")
    return prior / prior.sum()


def _write_scores(args, domains: list[str], predict, objective) -> None:
    """SCORES.tsv: the fitted model's objective for every mixture of args.score (and the
    observed objective, when that table has losses)."""
    if not args.score:
        return
    from mixscale.core.runtable import load_mixtures, load_run_table
    from mixscale.fileio import write_tsv
    from mixscale.kinds import MIXTURES
    from mixscale.shapes import read_tsv_kind

    ids, weights = load_mixtures(args.score, domains)
    predicted = predict(weights)
    header, _ = read_tsv_kind(args.score, MIXTURES)
    columns = ["run", "predicted_objective"]
    rows = [[run, float(p)] for run, p in zip(ids, predicted, strict=True)]
    if any(h.startswith("loss.") for h in header):
        table = load_run_table(args.score, zero_tokens=True)
        observed = objective.evaluate(table.eval_domains, table.losses, table.source)
        columns.append("objective")
        rows = [[*row, float(o)] for row, o in zip(rows, observed, strict=True)]
    write_tsv(args.scores_out, columns, rows)


def cmd_mixtures(args: argparse.Namespace) -> None:
    import numpy as np

    from mixscale.core.regmix import sample_mixtures
    from mixscale.fileio import write_tsv

    domains = list(args.prior)
    prior = np.array([args.prior[d] for d in domains])
    if prior.sum() <= 0:
        raise InputError("--prior", "", "all zero", "give a positive sum, e.g. a=3,b=1")
    caps = None
    if args.available:
        available = args.available
        caps = np.array([args.max_epochs * available.get(d, np.inf) / args.tokens for d in domains])
    mixtures = sample_mixtures(prior, args.count, args.seed, caps, args.temperature)
    tokens = np.rint(mixtures * args.tokens).astype(np.int64)  # whole tokens
    rows = [[f"regmix-{i:04d}", *map(int, row)] for i, row in enumerate(tokens)]
    write_tsv(args.out, ["run", *(f"tokens.{d}" for d in domains)], rows)
