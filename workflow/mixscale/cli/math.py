"""The math core on your own run tables: fit, solve, ddo, predict, utility, world."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mixscale.cli.args import (
    SEED,
    TOKENS,
    Number,
    Numbers,
    add_constraint_args,
    add_objective_args,
    constraints_from,
)
from mixscale.cli.paths import input_path, output_file
from mixscale.config.check import schema_default
from mixscale.errors import InputError, say
from mixscale.shapes import read_kind


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit per-domain scaling laws to a run table")
    _add_fit_args(p)
    p.add_argument("--out", type=output_file, required=True, help="FIT.json")
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser("solve", help="optimal weights at a scale from FIT.json (DDO)")
    p.add_argument("--fit", type=input_path, required=True)
    p.add_argument("--tokens", type=TOKENS, help="total training tokens N")
    p.add_argument(
        "--budget",
        type=Number(0, 1e30, lo_open=True),
        help="instead of --tokens: a cost budget (needs --cost)",
    )
    add_constraint_args(p)
    _add_trust_region_arg(p)
    p.add_argument("--out", type=output_file, required=True, help="WEIGHTS.json")
    p.set_defaults(handler=cmd_solve)

    p = sub.add_parser("ddo", help="fit + solve in one step, with bootstrap intervals")
    _add_fit_args(p)
    p.add_argument("--tokens", type=TOKENS, required=True)
    add_constraint_args(p)
    _add_trust_region_arg(p)
    p.add_argument(
        "--bootstrap",
        type=Number.schema("fit.bootstrap"),
        default=schema_default("fit.bootstrap"),
        help="0: off",
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--figure", type=output_file, help="also draw the per-domain fits (PNG)")
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_ddo)

    p = sub.add_parser(
        "rounds", help="iterated DDO: a scale's final WEIGHTS.json from its rounds' WEIGHTS.json"
    )
    p.add_argument(
        "--weights",
        type=input_path,
        nargs="+",
        required=True,
        help="each round's WEIGHTS.json, in order",
    )
    p.add_argument(
        "--figures", type=input_path, nargs="*", default=[], help="each round's fits PNG, in order"
    )
    p.add_argument("--planned", type=Number.schema("ddo.rounds"), required=True, help="ddo.rounds")
    p.add_argument(
        "--tolerance",
        type=Number.schema("ddo.round_tolerance"),
        required=True,
        help="ddo.round_tolerance",
    )
    p.add_argument("--figure", type=output_file, help="copy the last round's fits PNG here")
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_rounds)

    p = sub.add_parser(
        "study",
        help="the method studies in simulated worlds: AutoScale vs transferring the DDO optimum "
        "(vary:), or every method against the true optimum (methods:)",
    )
    p.add_argument(
        "--config",
        type=input_path,
        required=True,
        help="study YAML (config/examples/method-study.yaml or methods-study.yaml)",
    )
    p.add_argument(
        "--trials",
        type=Number(2, 10_000, integer=True),  # a study file's own range
        help="override the file's trials (a quick look)",
    )
    p.add_argument("--markdown", type=output_file, help="also write the tables (Markdown)")
    p.add_argument("--figure", type=output_file, help="also draw captured gain per factor (PNG)")
    p.add_argument("--out", type=output_file, required=True, help="STUDY.json")
    p.set_defaults(handler=cmd_study)

    p = sub.add_parser(
        "advise",
        help="design advisor: seeds, factor and scales for a stated weight error, from a pilot",
    )
    add_advise_args(p, with_config=True)
    p.add_argument("--out", type=output_file, help="also write the advice as JSON")
    p.set_defaults(handler=cmd_advise)

    p = sub.add_parser("predict", help="AutoScale: optimal mixture at a larger scale")
    p.add_argument(
        "--optimum",
        type=input_path,
        action="append",
        required=True,
        help="WEIGHTS.json (repeat, 2+)",
    )
    p.add_argument("--target", type=TOKENS, required=True, help="target total tokens")
    p.add_argument("--discrete", action="store_true", help="the paper's Algorithm 2 (overshoots)")
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("utility", help="data-source utility from annealing runs")
    p.add_argument(
        "--runs", type=input_path, required=True, help="TSV: source, budget_tokens, metric, seed"
    )
    p.add_argument(
        "--costs",
        type=input_path,
        required=True,
        help="TSV: source, acquisition_cost_per_token, ...",
    )
    p.add_argument(
        "--train-cost-per-token",
        type=Number.schema("anneal.training_cost_per_token"),
        help="default training cost per token",
    )
    p.add_argument(
        "--direction",
        default="lower",
        choices=["lower", "higher"],
        help="lower: metric is a loss; higher: a score",
    )
    p.add_argument(
        "--budget",
        type=Number.schema("anneal.allocate"),
        help="total cost budget to allocate across sources",
    )
    p.add_argument(
        "--plan-budget",
        type=Number.schema("anneal.plan_budget"),
        help="annealing tokens you plan: the fitted recommendation there against the "
        "micro-annealing one (default: the largest budget run)",
    )
    p.add_argument(
        "--extrapolate",
        type=Numbers(Number.schema("anneal.extrapolate[]"), example="10,100"),
        default=tuple(schema_default("anneal.extrapolate")),
        help="multiples of the largest budget, e.g. 10,100",
    )
    p.add_argument(
        "--bootstrap",
        type=Number.schema("anneal.bootstrap"),
        default=schema_default("anneal.bootstrap"),
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--unit", help="the unit of the costs, recorded for anneal-report (e.g. $)")
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_utility)

    p = sub.add_parser("world", help="a simulated world: true optimum, and scores of weights")
    p.add_argument("action", choices=["optimum", "score"])
    p.add_argument(
        "--world",
        type=input_path,
        required=True,
        help="world YAML or a shipped name (separable, ...)",
    )
    p.add_argument("--tokens", type=TOKENS, required=True, help="total tokens")
    p.add_argument(
        "--weights", type=input_path, action="append", help="score: WEIGHTS.json (repeatable)"
    )
    p.add_argument("--out", type=output_file, required=True)
    p.set_defaults(handler=cmd_world)


def _add_fit_args(p: argparse.ArgumentParser) -> None:

    from mixscale.core.forms import FORM_CHOICES

    p.add_argument(
        "--runs",
        type=input_path,
        required=True,
        help="run table (TSV): tokens.<d>, loss.<d>, run, seed",
    )
    p.add_argument("--base", help="run id of the base run (default: found from the design)")
    p.add_argument(
        "--form",
        default=schema_default("fit.form"),
        choices=FORM_CHOICES,
        help="auto: power law where the drop ratio r > 1, Eq. 2's shifted form where "
        "1/k < r <= 1 (k: the perturbation factor; 1/3 for the default x3 and /3)",
    )
    p.add_argument(
        "--loss",
        default=schema_default("fit.loss"),
        choices=["linear", "huber"],
        help="least-squares loss; huber down-weights outlier seeds",
    )
    p.add_argument(
        "--unit",
        type=Number.schema("fit.unit", words=("base_total", "base_domain")),
        default=schema_default("fit.unit"),
        help="token unit of the paper's forms: base_total (default; x/u = the domain's base "
        "weight), base_domain (x = 1 at the base run, the authors' choice) or a token count",
    )
    p.add_argument(
        "--normalise",
        action="store_true",
        help="fit the objective divided by its base-run value (the authors' choice)",
    )
    p.add_argument(
        "--root",
        default=schema_default("fit.root"),
        choices=["smallest_b", "largest_b"],
        help="which exact Eq. 2 curve to keep when three points give two (both are reported)",
    )
    add_objective_args(p)


def _add_trust_region_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-trust-region",
        dest="trust_region",
        action="store_false",
        help="let fitted domains leave the range their runs observed ([w/k, k w] by default)",
    )


def _fit_from_args(args: argparse.Namespace):

    from mixscale.core.fit import fit_runs
    from mixscale.core.objective import parse_objective
    from mixscale.core.runtable import load_run_table

    table = load_run_table(args.runs)
    objective = parse_objective(args.objective, args.eval_weights, args.eval_domains)
    fit = fit_runs(table, objective, base_run=args.base, **_fit_options(args))
    for note in fit.notes:
        if "match no perturbation" in note:
            say(f"mixscale {args.command}: warning: {note}")
    return table, objective, fit


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "form": args.form,
        "loss": args.loss,
        "unit": args.unit,
        "normalise": args.normalise,
        "root": args.root,
    }


def _constraints(args: argparse.Namespace):
    constraints = constraints_from(args)
    constraints.trust_region = args.trust_region
    return constraints


def _warn(command: str, result: dict[str, Any]) -> dict[str, Any]:
    for warning in result.get("warnings", []):
        say(f"mixscale {command}: warning: {warning}")
    return result


def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    _, _, fit = _fit_from_args(args)
    return fit.to_json()


def cmd_solve(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.core.ddo import optimize
    from mixscale.core.fit import FitResult

    if args.budget is not None and not args.cost:
        # a budget is in cost units: without costs it would silently mean 1 per token
        raise InputError("--budget", "--cost", "missing", "give each domain's --cost D=C")
    from mixscale.kinds import FIT

    fit = FitResult.from_json(read_kind(args.fit, FIT), args.fit)
    return _warn(args.command, optimize(fit, args.tokens, _constraints(args), args.budget))


def cmd_ddo(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.core.ddo import optimize, weight_intervals
    from mixscale.core.fit import bootstrap_fits
    from mixscale.report.summary import plot_fits

    table, objective, fit = _fit_from_args(args)
    constraints = _constraints(args)
    out = _warn(args.command, optimize(fit, args.tokens, constraints))
    boots = (
        bootstrap_fits(
            table,
            args.bootstrap,
            seed=args.seed,
            base_run=args.base,
            warm=fit,
            objective=objective,
            **_fit_options(args),
        )
        if args.bootstrap
        else []
    )
    out["weight_intervals_90"] = weight_intervals(boots, args.tokens, constraints) if boots else {}
    if args.bootstrap and not boots:
        out["weight_intervals_note"] = "no replicate seeds: bootstrap over seeds not possible"
    out["fit"] = fit.to_json()
    if args.figure:
        from pathlib import Path

        plot_fits(table, objective, fit, Path(args.figure))
    return out


def cmd_rounds(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from mixscale.core.rounds import combine_rounds
    from mixscale.fileio import atomic_write_bytes
    from mixscale.kinds import WEIGHTS_FOR_ROUNDS

    if len(args.weights) > args.planned:
        raise InputError(
            "--weights",
            "count",
            f"{len(args.weights)} rounds > --planned {args.planned}",
            "give at most the planned rounds",
        )
    rounds = [read_kind(p, WEIGHTS_FOR_ROUNDS) for p in args.weights]
    result = combine_rounds(rounds, args.planned, args.tolerance)
    if args.figure and args.figures:
        atomic_write_bytes(args.figure, Path(args.figures[-1]).read_bytes())
    return result


def cmd_study(args: argparse.Namespace) -> dict[str, Any]:
    """The method study (``vary:``), or every method against the optimum (``methods:``)."""
    from mixscale.config.load import load_yaml_config

    data = load_yaml_config(args.config)
    if args.trials is not None:
        data = {**data, "trials": args.trials}
    if isinstance(data, dict) and "methods" in data:
        return _methods_study(data, args)
    from mixscale.core.study import run_study, study_from_dict

    spec = study_from_dict(data, args.config)
    result = run_study(spec["worlds"], spec["baseline"], spec["vary"], spec["trials"])
    if args.markdown or args.figure:
        from mixscale.report.study import plot_study, study_markdown

        if args.markdown:
            study_markdown(result, args.markdown)
        if args.figure:
            plot_study(result, args.figure)
    return result


def _methods_study(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.core.methods_study import methods_study_from_dict, run_methods_study

    result = run_methods_study(methods_study_from_dict(data, args.config))
    if args.markdown or args.figure:
        from mixscale.report.study import methods_study_markdown, plot_methods_study

        if args.markdown:
            methods_study_markdown(result, args.markdown)
        if args.figure:
            plot_methods_study(result, args.figure)
    return result


def add_advise_args(p: argparse.ArgumentParser, with_config: bool) -> None:
    """The advisor's options (``advise``, and ``budget --pilot`` where the config gives the
    scales, target and objective)."""
    p.add_argument(
        "--pilot",
        type=input_path,
        required=with_config,  # optional in ``budget``: advice only when a pilot is given
        help="run table (TSV) of a pilot sweep with replicate seeds, e.g. results/<exp>/tables/"
        "<scale>.tsv",
    )
    if with_config:
        p.add_argument(
            "--configfile",
            type=input_path,
            action="append",
            help="take scales, target, objective, trust region and the cost model from a config",
        )
        p.add_argument("--scales", type=Numbers(TOKENS), help="DDO token totals, e.g. 1e5,3e5")
        p.add_argument("--target", type=TOKENS, help="AutoScale's target token total")
        add_objective_args(p)
    # the advisor's own ranges (mixscale.core.advise)
    p.add_argument(
        "--error",
        type=Number(0, 2, lo_open=True, hi_open=True),
        default=0.2,
        help="L1 weight error to reach",
    )
    p.add_argument(
        "--confidence",
        type=Number(0.5, 1, hi_open=True),
        default=0.8,
        help="share of trials that must",
    )
    p.add_argument(
        "--noise", type=Number(0, 1e6), help="seed sd of the objective, instead of measuring it"
    )
    p.add_argument(
        "--trials",
        type=Number(1, 5000, integer=True),
        default=40,
        help="simulated trials per design",
    )
    p.add_argument(
        "--factors",
        type=Numbers(Number.schema("ddo.factor"), example="2,3,5"),
        help="perturbation factors to try (default 2,3,5)",
    )
    p.add_argument(
        "--max-seeds",
        type=Number(1, 64, integer=True),
        default=8,
        help="most seeds per mixture to try",
    )


def advice(args: argparse.Namespace, config=None) -> dict[str, Any]:
    """Run the advisor from parsed options and, if given, a checked config."""
    from mixscale.core.advise import FACTORS, advise
    from mixscale.core.objective import Objective, parse_objective
    from mixscale.core.runtable import load_run_table

    pilot = load_run_table(args.pilot)
    cost, trust_region = None, True
    if config is not None:
        from mixscale.plan.budget import flops_per_gpu_hour, model_params

        scales = tuple(s.tokens for s in config.ddo.scales)
        target = max(config.autoscale.targets) if config.autoscale else None
        objective = Objective(config.objective.kind, domains=config.objective.eval_domains or [])
        _check_pilot_domains(pilot.train_domains, config)
        trust_region = config.ddo.trust_region
        try:
            cost = 6 * model_params(config, "proxy_params") / flops_per_gpu_hour(config)
        except InputError:
            cost = None  # no model size (a simulated world): the advice is priced in tokens
        factors = args.factors or tuple(sorted({*FACTORS, float(config.ddo.factor)}))
    else:
        if not args.scales:
            raise InputError("advise", "--scales", "missing", "give --scales 1e5,3e5 or a config")
        scales, target = tuple(sorted(args.scales)), args.target
        objective = parse_objective(args.objective, args.eval_weights, args.eval_domains)
        factors = args.factors or FACTORS
    return advise(
        pilot, scales, target, args.error, args.confidence, objective, args.noise,
        args.trials, tuple(factors), args.max_seeds, cost_per_token=cost,
        trust_region=trust_region,
    )  # fmt: skip


def _check_pilot_domains(domains: list[str], config) -> None:
    from mixscale.config.domains import config_domains

    wanted = list(config_domains(config))
    if sorted(domains) != sorted(wanted):
        raise InputError(
            "--pilot",
            "tokens.*",
            f"its domains ({', '.join(domains)}) are not the config's ({', '.join(wanted)})",
            "give a pilot run table of this config's domains",
        )


def cmd_advise(args: argparse.Namespace) -> dict[str, Any] | None:
    from mixscale.core.advise import format_advice

    config = None
    if args.configfile:
        from mixscale.cli.args import checked_config

        config = checked_config(args.configfile)
    result = advice(args, config)
    say(format_advice(result), sys.stdout)
    return result if args.out else None


def cmd_predict(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.core.predict import (
        check_span,
        optimum_from_json,
        predict_continuous,
        predict_discrete,
    )
    from mixscale.kinds import OPTIMUM

    if len(args.optimum) < 2:
        raise InputError("--optimum", "count", "needs at least two DDO optima", "repeat --optimum")
    optima = [optimum_from_json(read_kind(p, OPTIMUM), p) for p in args.optimum]
    if args.target <= 0:
        raise InputError("--target", f"{args.target:g}", "must be > 0", "give a token count")
    warnings = check_span(optima, args.target, args.discrete)
    predict = predict_discrete if args.discrete else predict_continuous
    return _warn(args.command, {**predict(optima, args.target), "warnings": warnings})


def cmd_utility(args: argparse.Namespace) -> dict[str, Any]:

    from mixscale.core.utility import analyse, load_anneal_table, load_costs

    table = load_anneal_table(args.runs)
    costs = load_costs(args.costs, args.train_cost_per_token)
    result = analyse(
        table,
        costs,
        args.budget,
        args.direction,
        args.extrapolate,
        args.bootstrap,
        args.seed,
        args.plan_budget,
    )
    return {**result, "cost_unit": args.unit} if args.unit else result


def cmd_world(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from mixscale.core.world import load_world, score
    from mixscale.kinds import MIXTURE_TO_SCORE

    world = load_world(args.world)
    if args.tokens <= 0:
        raise InputError("--tokens", f"{args.tokens:g}", "must be > 0", "give a token count")
    optimum = world.optimum(args.tokens)
    out: dict[str, Any] = {
        "world": world.name,
        "total_tokens": args.tokens,
        "weights": dict(zip(world.domains, map(float, optimum / args.tokens), strict=True)),
        "tokens": dict(zip(world.domains, map(float, optimum), strict=True)),
        "loss": world.loss(optimum),
        "uniform_loss": world.loss(np.full(len(world.domains), args.tokens / len(world.domains))),
    }
    if args.action == "score":
        if not args.weights:
            raise InputError("world score", "--weights", "missing", "pass WEIGHTS.json files")
        out["scores"] = {
            path: score(world, read_kind(path, MIXTURE_TO_SCORE)["weights"], args.tokens, optimum)
            for path in args.weights
        }
    return out
