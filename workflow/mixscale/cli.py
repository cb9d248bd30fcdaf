"""``python -m mixscale``: the stable command-line interface of the math core.

Every command reads files, writes one JSON output atomically, and on bad input prints one
line naming the input and the field, exiting with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mixscale.errors import InputError
from mixscale.fileio import read_json, write_json

Handler = Callable[[argparse.Namespace], dict[str, Any]]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from exc


def _count(text: str) -> int:
    """An integer that may be written 2.0e+7 (YAML configs)."""
    return int(_float(text))


def _pairs(
    values: Sequence[str] | None, flag: str, default_key: str | None = None
) -> dict[str, float]:
    """'domain=value' items (or a bare value for all domains when default_key is given)."""
    out: dict[str, float] = {}
    for item in values or []:
        name, sep, value = item.rpartition("=")
        if not sep:
            if default_key is None:
                raise InputError(flag, item, "expected domain=value", f"e.g. {flag} wiki=1e9")
            name = default_key
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise InputError(
                flag, item, f"'{value}' is not a number", f"e.g. {flag} wiki=1e9"
            ) from exc
    return out


def _add_objective_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--objective",
        default="mean",
        choices=["mean", "perplexity"],
        help="mean validation loss (default) or mean perplexity exp(loss)",
    )
    p.add_argument("--eval-weights", help="weighted mean over evaluation domains: a=0.5,b=0.5")
    p.add_argument("--eval-domains", help="use only these evaluation domains: a,b")


def _add_fit_args(p: argparse.ArgumentParser) -> None:
    from mixscale.forms import FORM_CHOICES

    p.add_argument("--runs", required=True, help="run table (TSV): tokens.<d>, loss.<d>, run, seed")
    p.add_argument("--base", help="run id of the base run (default: found from the design)")
    p.add_argument(
        "--form",
        default="auto",
        choices=FORM_CHOICES,
        help="auto: power law where r > 1, Eq. 2's shifted form where 1/3 < r <= 1",
    )
    p.add_argument(
        "--loss",
        default="linear",
        choices=["linear", "huber"],
        help="least-squares loss; huber down-weights outlier seeds",
    )
    p.add_argument(
        "--unit", type=_float, help="token unit of the paper's forms (default: base total)"
    )
    _add_objective_args(p)


def _add_constraint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-weight",
        action="append",
        metavar="[DOMAIN=]W",
        help="minimum weight, for all domains or one (repeatable)",
    )
    p.add_argument("--max-weight", action="append", metavar="[DOMAIN=]W")
    p.add_argument("--max-tokens", action="append", metavar="DOMAIN=N", help="cap in tokens")
    p.add_argument(
        "--available",
        action="append",
        metavar="DOMAIN=N",
        help="tokens the domain holds (with --max-epochs)",
    )
    p.add_argument("--max-epochs", type=_float, help="cap each domain at this many passes")
    p.add_argument("--cost", action="append", metavar="DOMAIN=C", help="cost per token")


def _constraints(args: argparse.Namespace):
    from mixscale.ddo import Constraints

    return Constraints(
        min_weight=_pairs(args.min_weight, "--min-weight", "*"),
        max_weight=_pairs(args.max_weight, "--max-weight", "*"),
        max_tokens=_pairs(args.max_tokens, "--max-tokens"),
        available=_pairs(args.available, "--available"),
        max_epochs=args.max_epochs,
        cost=_pairs(args.cost, "--cost"),
    )


def _fit_from_args(args: argparse.Namespace):
    from mixscale.fit import fit_runs
    from mixscale.objective import parse_objective
    from mixscale.runtable import load_run_table

    table = load_run_table(args.runs)
    objective = parse_objective(args.objective, args.eval_weights, args.eval_domains)
    fit = fit_runs(
        table, objective, form=args.form, base_run=args.base, loss=args.loss, unit=args.unit
    )
    return table, objective, fit


def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    _, _, fit = _fit_from_args(args)
    return fit.to_json()


def cmd_solve(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.ddo import optimize
    from mixscale.fit import FitResult

    fit = FitResult.from_json(read_json(args.fit), args.fit)
    return optimize(fit, args.tokens, _constraints(args), args.budget)


def cmd_ddo(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.ddo import optimize, weight_intervals
    from mixscale.fit import bootstrap_fits

    table, objective, fit = _fit_from_args(args)
    constraints = _constraints(args)
    out = optimize(fit, args.tokens, constraints)
    boots = (
        bootstrap_fits(
            table,
            args.bootstrap,
            seed=args.seed,
            base_run=args.base,
            objective=objective,
            form=args.form,
            loss=args.loss,
            unit=args.unit,
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

        from mixscale.report import plot_fits

        plot_fits(table, objective, fit, Path(args.figure))
    return out


def cmd_predict(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.predict import optimum_from_json, predict_continuous, predict_discrete

    if len(args.optimum) < 2:
        raise InputError("--optimum", "count", "needs at least two DDO optima", "repeat --optimum")
    optima = [optimum_from_json(read_json(p), p) for p in args.optimum]
    if args.target <= 0:
        raise InputError("--target", f"{args.target:g}", "must be > 0", "give a token count")
    if args.discrete:
        return predict_discrete(optima, args.target)
    return predict_continuous(optima, args.target)


def cmd_utility(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.utility import analyse, load_anneal_table, load_costs

    table = load_anneal_table(args.runs)
    costs = load_costs(args.costs, args.train_cost_per_token)
    extrapolate = _multiples(args.extrapolate)
    return analyse(
        table, costs, args.budget, args.direction, extrapolate, args.bootstrap, args.seed
    )


def cmd_world(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from mixscale.world import load_world, score

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
            path: score(world, read_json(path).get("weights", {}), args.tokens, optimum)
            for path in args.weights
        }
    return out


def _spec(text: str) -> dict[str, Any]:
    import json

    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            "--spec", "", f"invalid JSON ({exc.msg})", "pass the run's plan entry"
        ) from exc
    for key in ("id", "stage", "seed", "total_tokens"):
        if key not in spec:
            raise InputError("--spec", key, "missing", "pass the run's plan entry")
    return spec


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.experiment import train

    settings = _settings(args.settings) if args.settings else None
    if settings is not None and args.threads:
        settings.setdefault("train", {})["threads"] = args.threads
    return train(
        _spec(args.spec),
        args.backend,
        args.world,
        args.eval_points,
        args.weights,
        settings,
        args.out,
    )


def _settings(text: str) -> dict[str, Any]:
    """Training settings as JSON text, or a JSON/YAML file holding them."""
    import json
    from pathlib import Path

    import yaml

    source = "--settings"
    if not text.lstrip().startswith("{"):
        if not Path(text).is_file():
            raise InputError(text, "", "settings file not found", "pass JSON or a file path")
        source, text = text, Path(text).read_text(encoding="utf-8")
    try:  # JSON first: YAML 1.1 would read 1e+30 as a string
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(source, "", "invalid JSON/YAML", "fix the settings") from exc
    if not isinstance(data, dict):
        raise InputError(source, "", "settings are a mapping", "see config/README.md")
    return data


def cmd_corpus(args: argparse.Namespace) -> None:
    """Build domains as JSONL documents; print what was built and how long it took."""
    import time

    from mixscale.corpus import BUILTINS, build_domain

    # --domains picks built-ins; without it, all built-ins unless --source names the domains
    default = [] if args.source else list(BUILTINS)
    sources = dict.fromkeys(args.domains.split(",") if args.domains else default)
    for item in args.source or []:
        name, _, spec = item.partition("=")
        sources[name] = _settings(spec) if spec.lstrip().startswith("{") else spec
    rows = []
    for domain, spec in sources.items():
        start = time.perf_counter()
        built = build_domain(domain, spec, args.out, args.cache, args.max_bytes, args.seed)
        rows.append((domain, built.documents, built.bytes, time.perf_counter() - start))
        print(
            f"{domain:14s} {built.documents:8d} docs {built.bytes / 1e6:8.2f} MB "
            f"{rows[-1][3]:6.1f} s",
            file=sys.stderr,
        )


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.tokens import pretrained_tokenizer, train_tokenizer

    if args.pretrained:
        info = pretrained_tokenizer(args.pretrained, args.out)
    elif not args.corpus:
        raise InputError(
            "tokenizer", "--corpus", "no files", "give <domain>.jsonl files or --pretrained"
        )
    else:
        files = {Path(f).name.removesuffix(".jsonl"): f for f in args.corpus}
        info = train_tokenizer(files, args.out, args.vocab_size, args.seed, args.validation_bytes)
    print(f"tokenizer: {info['kind']}, vocabulary {info['vocab_size']}", file=sys.stderr)


def cmd_tokens(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.tokens import build_store

    domain = args.domain or Path(args.corpus).name.removesuffix(".jsonl")
    meta = build_store(
        domain, args.corpus, args.tokenizer, args.out, args.seed, args.validation_bytes
    )
    print(
        f"{domain}: {meta['train_tokens']} training + {meta['val_tokens']} held-out tokens "
        f"({meta['bytes_per_token']:.2f} bytes/token)",
        file=sys.stderr,
    )


def cmd_status(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mixscale.experiment import load_config
    from mixscale.status import experiment_status, format_status

    config: dict[str, Any] = {}
    for path in args.configfile or [str(Path(args.directory) / "config/config.yaml")]:
        _merge(config, load_config(path))
    status = experiment_status(config, args.directory)
    print(format_status(status, args.verbose))
    if args.out:
        write_json(args.out, status)


def cmd_tasks(args: argparse.Namespace) -> None:
    from mixscale.downstream import TaskBuild, build_tasks

    build = TaskBuild.from_dict(_settings(args.build) if args.build else None)
    manifest = build_tasks(args.corpus, args.out, build, args.seed, args.validation_bytes)
    for name, task in manifest["tasks"].items():
        print(f"{name:32s} {task['items']:5d} items", file=sys.stderr)


def cmd_init_model(args: argparse.Namespace) -> None:
    from mixscale.trainer import save_initial_model

    settings = _settings(args.settings)
    for key in ("stores", "tokenizer", "model"):
        if not settings.get(key):
            raise InputError("--settings", key, "missing", "pass the experiment's settings")
    seq_len = int(settings.get("train", {}).get("seq_len", 128))
    params = save_initial_model(
        settings["stores"], settings["tokenizer"], settings["model"], seq_len, args.seed, args.out
    )
    print(f"untrained model: {params} parameters, seed {args.seed} -> {args.out}", file=sys.stderr)


def cmd_downstream(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.downstream import TaskEntry, evaluate

    entry = TaskEntry(args.task, args.shots, args.metric)
    result = evaluate(
        args.model,
        entry,
        include_path=args.include_path,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        offline=not args.online,
        datasets_cache=args.datasets_cache,
        seed=args.seed,
    )
    result.update({"label": args.label, "target": args.target, "run_seed": args.run_seed})
    for name, scores in result["tasks"].items():
        value = scores.get(args.metric, scores.get("acc"))
        print(f"{name:32s} {args.metric} {value}", file=sys.stderr)
    return result


def cmd_anneal_table(args: argparse.Namespace) -> None:
    from mixscale.anneal import anneal_table

    if not args.target and not args.task_metric:
        raise InputError("anneal-table", "--target", "missing", "give --target or --task-metric")
    target = args.target.split(",") if args.target else []
    rows = anneal_table(args.metrics, target, args.out, args.task_metric)
    print(f"{rows} annealing runs -> {args.out}", file=sys.stderr)


def cmd_anneal_costs(args: argparse.Namespace) -> None:
    from mixscale.anneal import costs_table

    costs_table(_settings(args.sources), args.share, args.training_cost, args.out)


def cmd_anneal_report(args: argparse.Namespace) -> None:
    from mixscale.anneal import write_anneal_report

    write_anneal_report(args.utility, args.runs, args.out, args.unit)


def cmd_table(args: argparse.Namespace) -> None:
    from mixscale.experiment import run_table

    run_table(args.metrics, args.out)


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.experiment import compare

    return compare(args.metrics, args.target, args.world)


def cmd_report(args: argparse.Namespace) -> None:
    from mixscale.report import write_summary

    write_summary(
        args.experiment,
        args.ddo,
        args.autoscale,
        args.compare,
        args.out,
        args.world,
        args.downstream,
    )


def checked_config(paths: list[str]) -> dict[str, Any]:
    """The merged config files (later ones override earlier ones, as in Snakemake), checked
    as the Snakefile checks them."""
    from mixscale.config_check import check_config
    from mixscale.experiment import load_config

    config: dict[str, Any] = {}
    for path in paths:
        _merge(config, load_config(path))
    return check_config(config, ", ".join(paths))


def cmd_check(args: argparse.Namespace) -> None:
    from mixscale.experiment import run_specs

    config = checked_config(args.configfile)
    kinds = [k for k in ("ddo", "anneal") if config.get(k)]
    print(
        f"{', '.join(args.configfile)}: ok ({config['experiment']}: {' + '.join(kinds)}, "
        f"{len(run_specs(config))} runs, backend {config['backend']})"
    )


def cmd_budget(args: argparse.Namespace) -> dict[str, Any]:
    from mixscale.budget import budget_table, format_table

    config = checked_config(args.configfile)
    result = budget_table(config)
    print(format_table(result))
    return result


def add_configfiles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        action="append",
        required=True,
        help="config YAML (repeat to merge several files in order)",
    )


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _multiples(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise InputError(
            "--extrapolate", text, "expected numbers like 10,100", "e.g. --extrapolate 10,100"
        ) from exc
    if any(v <= 1 for v in values):
        raise InputError(
            "--extrapolate", text, "multiples must be > 1", "e.g. --extrapolate 10,100"
        )
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit per-domain scaling laws to a run table")
    _add_fit_args(p)
    p.add_argument("--out", required=True, help="FIT.json")
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser("solve", help="optimal weights at a scale from FIT.json (DDO)")
    p.add_argument("--fit", required=True)
    p.add_argument("--tokens", type=_float, help="total training tokens N")
    p.add_argument(
        "--budget", type=_float, help="instead of --tokens: a cost budget (needs --cost)"
    )
    _add_constraint_args(p)
    p.add_argument("--out", required=True, help="WEIGHTS.json")
    p.set_defaults(handler=cmd_solve)

    p = sub.add_parser("ddo", help="fit + solve in one step, with bootstrap intervals")
    _add_fit_args(p)
    p.add_argument("--tokens", type=_float, required=True)
    _add_constraint_args(p)
    p.add_argument("--bootstrap", type=int, default=200, help="resamples over seeds (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", help="also draw the per-domain fits (PNG)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_ddo)

    p = sub.add_parser("predict", help="AutoScale: optimal mixture at a larger scale")
    p.add_argument("--optimum", action="append", required=True, help="WEIGHTS.json (repeat, 2+)")
    p.add_argument("--target", type=_float, required=True, help="target total tokens")
    p.add_argument("--discrete", action="store_true", help="the paper's Algorithm 2 (overshoots)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("utility", help="data-source utility from annealing runs")
    p.add_argument("--runs", required=True, help="TSV: source, budget_tokens, metric, seed")
    p.add_argument("--costs", required=True, help="TSV: source, acquisition_cost_per_token, ...")
    p.add_argument("--train-cost-per-token", type=_float, help="default training cost per token")
    p.add_argument(
        "--direction",
        default="lower",
        choices=["lower", "higher"],
        help="lower: metric is a loss; higher: a score",
    )
    p.add_argument("--budget", type=_float, help="total cost budget to allocate across sources")
    p.add_argument("--extrapolate", default="10,100", help="multiples of the largest budget")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_utility)

    p = sub.add_parser("world", help="a simulated world: true optimum, and scores of weights")
    p.add_argument("action", choices=["optimum", "score"])
    p.add_argument("--world", required=True, help="world YAML or a shipped name (separable, ...)")
    p.add_argument("--tokens", type=_float, required=True, help="total tokens")
    p.add_argument("--weights", action="append", help="score: WEIGHTS.json (repeatable)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_world)

    p = sub.add_parser("train", help="one training run of the plan (backend torch or simulate)")
    p.add_argument("--spec", required=True, help="the run's plan entry as JSON")
    p.add_argument("--backend", default="simulate")
    p.add_argument("--world", help="world YAML or shipped name (backend simulate)")
    p.add_argument("--eval-points", type=int, default=10, help="evaluations along the run")
    p.add_argument("--weights", help="WEIGHTS.json giving the mixture (verification runs)")
    p.add_argument(
        "--settings",
        help="backend torch: JSON (or a JSON/YAML file) with stores, tokenizer, model, train",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads per process")
    p.add_argument("--out", required=True, help="metrics.json (model/ and checkpoints/ beside)")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("corpus", help="real text domains as JSONL (embedded or your own)")
    p.add_argument("--out", required=True, help="folder for <domain>.jsonl + provenance")
    p.add_argument("--domains", help="comma-separated built-in domains (default: all six)")
    p.add_argument(
        "--source",
        action="append",
        help="DOMAIN=SPEC: a built-in name, or JSON {path: ...} / {hf: ...} (repeatable)",
    )
    p.add_argument("--max-bytes", type=_float, help="cap per domain (seeded document subset)")
    p.add_argument("--cache", default="resources/downloads", help="pinned package downloads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_corpus)

    p = sub.add_parser("tokenizer", help="train a byte-level BPE, or save a pretrained one")
    p.add_argument("--corpus", nargs="*", default=[], help="<domain>.jsonl files to train on")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--pretrained", help="a named tokenizer instead (cluster)")
    p.add_argument("--seed", type=int, default=0, help="document shuffle (held-out split)")
    p.add_argument("--validation-bytes", type=_count, default=200000)
    p.add_argument("--out", required=True, help="tokenizer folder")
    p.set_defaults(handler=cmd_tokenizer)

    p = sub.add_parser("tokens", help="one domain's token store (train.bin, val.bin)")
    p.add_argument("--corpus", required=True, help="<domain>.jsonl")
    p.add_argument("--domain", help="domain name (default: from the file name)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-bytes", type=_count, default=200000)
    p.add_argument("--out", required=True, help="store folder")
    p.set_defaults(handler=cmd_tokens)

    p = sub.add_parser("tasks", help="embedded lm-eval tasks from each domain's held-out text")
    p.add_argument("--corpus", nargs="+", required=True, help="<domain>.jsonl files")
    p.add_argument("--seed", type=int, default=0, help="data seed (the held-out split)")
    p.add_argument("--validation-bytes", type=_count, default=200000)
    p.add_argument("--build", help="JSON: items, choices, context_words, continuation_words, seed")
    p.add_argument("--out", required=True, help="task folder (JSONL + YAML + tasks.json)")
    p.set_defaults(handler=cmd_tasks)

    p = sub.add_parser("init-model", help="save the configured model as initialised (step 0)")
    p.add_argument("--settings", required=True, help="JSON with stores, tokenizer, model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="model folder")
    p.set_defaults(handler=cmd_init_model)

    p = sub.add_parser("downstream", help="score a saved model on an lm-eval task")
    p.add_argument("--model", required=True, help="saved model folder (transformers)")
    p.add_argument("--task", required=True, help="lm-eval task or group, or 'embedded'")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--metric", default="acc", help="the metric the report shows")
    p.add_argument("--include-path", help="folder of task YAMLs (the embedded tasks)")
    p.add_argument("--limit", type=_float, help="items per task (a fraction if < 1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ...")
    p.add_argument("--cache-dir", help="HF_HOME for this job (default: beside the model)")
    p.add_argument("--datasets-cache", help="a prepared datasets cache (cluster)")
    p.add_argument("--online", action="store_true", help="allow the Hugging Face hub")
    p.add_argument("--seed", type=int, default=0, help="few-shot sampling seed")
    p.add_argument("--label", help="row label in the report (the method)")
    p.add_argument("--target", help="target scale label the model was trained for")
    p.add_argument("--run-seed", type=int, help="training seed of the run")
    p.add_argument("--out", required=True, help="results JSON")
    p.set_defaults(handler=cmd_downstream)

    p = sub.add_parser("anneal-table", help="annealing runs' target metric as utility's TSV")
    p.add_argument("--metrics", nargs="+", required=True, help="annealing runs' metrics.json")
    p.add_argument("--target", help="target domains: a,b (mean held-out loss)")
    p.add_argument("--task-metric", help="or: downstream result files, mean of this metric")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_anneal_table)

    p = sub.add_parser("anneal-costs", help="utility's costs TSV from anneal.sources")
    p.add_argument("--sources", required=True, help="JSON: {source: {acquisition_cost, ...}}")
    p.add_argument("--share", type=_float, required=True, help="source share of the mix")
    p.add_argument("--training-cost", type=_float, required=True, help="per annealing token")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_anneal_costs)

    p = sub.add_parser("anneal-report", help="anneal.md + gain curves from UTILITY.json")
    p.add_argument("--utility", required=True)
    p.add_argument("--runs", required=True, help="the annealing TSV the utility was fitted on")
    p.add_argument("--unit", default="$", help="cost unit")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_anneal_report)

    p = sub.add_parser("table", help="gather runs' metrics.json into a run table (TSV)")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_table)

    p = sub.add_parser("compare", help="verification runs at one target scale")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--target", type=_float, required=True)
    p.add_argument("--world", help="score against this world's optimum (backend simulate)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("budget", help="tokens, FLOPs and GPU-hours per stage of a config")
    add_configfiles(p)
    p.add_argument("--out", required=True, help="budget JSON")
    p.set_defaults(handler=cmd_budget)

    p = sub.add_parser("check", help="check a config (YAML, schema, names, scales) without running")
    add_configfiles(p)
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("status", help="finished, running, interrupted and missing runs")
    p.add_argument(
        "--configfile",
        action="append",
        default=None,
        help="the experiment's config (default: config/config.yaml)",
    )
    p.add_argument("--directory", default=".", help="the workflow's working directory")
    p.add_argument("--verbose", action="store_true", help="list finished runs too")
    p.add_argument("--out", help="also write the status as JSON")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("report", help="summary.md of an experiment")
    p.add_argument("--experiment", required=True)
    p.add_argument("--ddo", nargs="+", required=True, help="DDO WEIGHTS.json per scale")
    p.add_argument("--autoscale", nargs="*", default=[], help="PRED.json per target")
    p.add_argument("--compare", nargs="*", default=[], help="compare JSON per target")
    p.add_argument("--world", help="draw this world's true optimum (backend simulate)")
    p.add_argument("--downstream", nargs="*", default=[], help="downstream results JSONs")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
        if result is not None:  # commands that write their own format return None
            write_json(args.out, result)
    except InputError as exc:
        print(f"mixscale {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return 2
    if getattr(args, "out", None):
        print(f"mixscale {args.command}: wrote {args.out}", file=sys.stderr)
    return 0
