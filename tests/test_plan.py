import pytest

from mixscale.config.check import validate_schema
from mixscale.config.load import load_yaml_config
from mixscale.config.typed import Config
from mixscale.errors import InputError
from mixscale.evaluate.verify import steps_to_reach
from mixscale.plan.check import check_config
from mixscale.plan.mixture import perturb
from mixscale.plan.specs import make_plan

DOMAINS = ["a", "b", "c"]


def checked(path):
    return check_config(load_yaml_config(str(path)), str(path))


def config(**ddo):
    return {
        "experiment": "plan",
        "ddo": {"scales": [{"name": "s1", "tokens": 3e6}, {"name": "s2", "tokens": 9e6}], **ddo},
        "autoscale": {"targets": [1e8]},
        "verify": {"methods": ["uniform"], "seeds": 2},
    }


def with_defaults(cfg):
    """As every stage sees a config: validated, the schema's defaults filled in, typed."""
    return Config.from_dict(validate_schema(cfg, "test"))


def test_designs_keep_what_they_should():
    base = {"a": 1e6, "b": 1e6, "c": 1e6}
    up = perturb(base, "a", 3, "algorithm1")
    assert up == {"a": 3e6, "b": 1e6, "c": 1e6}
    fixed = perturb({"a": 1e6, "b": 2e6, "c": 2e6}, "a", 3, "fixed_total")
    assert fixed == pytest.approx({"a": 3e6, "b": 1e6, "c": 1e6})  # share 0.2 -> 0.6, total kept
    with pytest.raises(InputError, match="exceeds the whole mixture"):
        perturb({"a": 2e6, "b": 1e6}, "a", 3, "fixed_total")


def test_plan_counts_and_ids_are_unique():
    runs = make_plan(with_defaults(config(seeds=3)), DOMAINS)
    ddo = [r for r in runs if r.stage == "ddo"]
    assert len(ddo) == 2 * (1 + 2 * 3) * 3
    assert len([r for r in runs if r.stage == "verify"]) == 2
    assert len({r.id for r in runs}) == len(runs)
    assert all("/" not in r.id and " " not in r.id for r in runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"ddo": {"scales": [{"name": "s1", "tokens": 9e6}, {"name": "s2", "tokens": 3e6}]}},
            "scales must increase",
        ),
        (
            {"ddo": {"scales": [{"name": "s", "tokens": 3e6}, {"name": "s", "tokens": 9e6}]}},
            "duplicate scale names",
        ),
        (
            {"autoscale": {"targets": [5e6], "discrete": True}},
            "not above the largest DDO scale",
        ),
        (
            {"verify": {"methods": ["reference"], "reference": {"a": 0.5, "b": 0.2, "c": 0.2}}},
            "sum to 1",
        ),
        ({"verify": {"methods": ["reference"], "reference": {"z": 1.0}}}, "unknown domain"),
    ],
)
def test_config_checks(change, message):
    cfg = config()
    cfg.update(change)
    with pytest.raises(InputError, match=message):
        make_plan(with_defaults(cfg), DOMAINS)


def test_steps_to_reach_interpolates():
    curve = [{"fraction": 0.5, "objective": 3.0}, {"fraction": 1.0, "objective": 2.0}]
    assert steps_to_reach(curve, 2.5) == pytest.approx(0.75)
    assert steps_to_reach(curve, 3.5) == pytest.approx(0.5)
    assert steps_to_reach(curve, 1.0) is None


def test_budget_prices_the_plan_like_the_paper():
    from conftest import ROOT
    from mixscale.plan.budget import budget_table

    config = checked(ROOT / "config/examples/gpt2-large-redpajama.yaml")
    budget = budget_table(config)
    stages = budget["stages"]
    assert stages["ddo 120M"]["runs"] == 1 + 2 * 7
    assert stages["verify 3e+09"]["runs"] == 4
    # one 3B-token GPT-2 Large run: the paper's 15.5 h on 8 A100s = 124 GPU-hours
    one_run = stages["verify 3e+09"]["gpu_hours"] / 4
    assert 115 < one_run < 135
    expected_flops = 6 * 7.74e8 * 3e9
    assert stages["verify 3e+09"]["flops"] / 4 == pytest.approx(expected_flops, rel=0.01)
    ddo = sum(r["gpu_hours"] for s, r in stages.items() if s.startswith("ddo"))
    verify = sum(r["gpu_hours"] for s, r in stages.items() if s.startswith("verify"))
    assert budget["proxy_overhead_pct"] == pytest.approx(100 * ddo / verify)


def test_train_resources_come_from_the_cost_model():
    from conftest import ROOT
    from mixscale.plan.budget import train_resources
    from mixscale.plan.specs import run_specs

    config = checked(ROOT / "config/examples/gpt2-large-redpajama.yaml")
    spec = run_specs(config)["verify-3e+09-uniform-s0"]
    first = train_resources(config, spec, attempt=1)
    assert first["gpu"] == 8
    # 125 GPU-hours on 8 GPUs = 15.6 h, x1.5 safety
    assert 15.0 * 60 * 1.5 < first["runtime"] < 16.5 * 60 * 1.5
    assert train_resources(config, spec, attempt=2)["runtime"] == pytest.approx(
        2 * first["runtime"], abs=1
    )
    simulated = checked(ROOT / "config/examples/simulated-demo.yaml")
    assert train_resources(simulated, spec, 1)["gpu"] == 0


def sampled_methods_config(**methods):
    import yaml

    from conftest import ROOT

    config = yaml.safe_load((ROOT / "tests/configs/torch-tiny.yaml").read_text())
    config["verify"]["methods"] = ["autoscale", "regmix", "dml", "doremi", "uniform"]
    config["methods"] = {"regmix": {"prior": "uniform"}, **methods}
    return check_config(config, "config.yaml")


def proxy_tokens(specs, method):
    return sum(
        s["total_tokens"] for s in specs.values() if s["stage"] == "proxy" and s["scale"] == method
    )


def test_compute_matched_methods_spend_the_ddo_sweeps_tokens():
    from mixscale.plan.specs import run_specs

    own = run_specs(sampled_methods_config())
    assert sum(1 for s in own.values() if s["scale"] == "regmix") == 32  # methods.regmix.runs
    specs = run_specs(sampled_methods_config(proxy_tokens="ddo"))
    ddo = sum(s["total_tokens"] for s in specs.values() if s["stage"] == "ddo")
    per_run = 15_000  # the smallest DDO scale: each sampled method's run length
    for method in ("regmix", "dml"):
        spent = proxy_tokens(specs, method)
        assert ddo - per_run < spent <= ddo + 10, (method, spent, ddo)
    doremi = [s for s in specs.values() if s["scale"] == "doremi"]
    # a reference run plus a proxy run that costs 4/3 per token (its reference's forward)
    assert len(doremi) == 2 and doremi[0]["total_tokens"] * (1 + 4 / 3) == pytest.approx(
        ddo, rel=1e-3
    )
    assert "doremi" in doremi[1] and "doremi" not in doremi[0]


def test_compute_matched_budget_too_small_is_refused_in_one_line():
    with pytest.raises(
        InputError, match=r"methods.proxy_tokens: 3e\+04 tokens pay for 2 regmix runs"
    ):
        sampled_methods_config(proxy_tokens=3.0e4)


def test_parameter_counts_are_cached_on_disk_and_a_damaged_cache_is_ignored(tmp_path, monkeypatch):
    """Counting builds the model with transformers (seconds at every Snakemake start): the count
    is kept in the user's cache folder, keyed by the architecture, and recounted if damaged."""
    import json

    from mixscale.plan import budget

    monkeypatch.setenv("MIXSCALE_CACHE", str(tmp_path / "cache"))
    what = json.dumps(
        {"model": {"type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2}, "vocab": 512,
         "train": {"seq_len": 16}},
        sort_keys=True,
    )  # fmt: skip
    budget.architecture_params.cache_clear()
    counted = budget.architecture_params(what)
    saved = json.loads(budget.params_cache_file().read_text())
    assert list(saved.values()) == [counted]
    key = next(iter(saved))
    budget.params_cache_file().write_text(json.dumps({key: 123}))  # served from the file
    budget.architecture_params.cache_clear()
    assert budget.architecture_params(what) == 123
    budget.params_cache_file().write_text("{not json")
    budget.architecture_params.cache_clear()
    assert budget.architecture_params(what) == counted
    budget.architecture_params.cache_clear()
