"""The encoder demo's shape through Snakemake at test size: a BERT pretrained with masked LM,
a non-training domain in the objective, DDO, AutoScale, verification and fine-tuning."""

from __future__ import annotations

import json
import re

from conftest import job_counts, run_snakemake, suite_config


def test_encoder_dag_pretrains_verifies_and_fine_tunes(tmp_path):
    config = suite_config("bert-tiny", tmp_path)
    dry = run_snakemake(tmp_path, "-n", "-c1", "--configfile", str(config))
    counts = job_counts(dry.stdout)
    assert counts["train"] == 2 * (1 + 2 * 2) + 2  # two scales of DDO, two verified methods
    assert counts["tokens"] == 3  # the evaluation-only domain has a store too
    assert counts["finetune"] == 3 * 2 and counts["embedded_finetune_tasks"] == 1
    assert "downstream" not in counts  # lm-eval scores causal LMs only
    budget = (dry.stdout + dry.stderr).split("mixscale budget of this plan")[1]
    assert re.search(r"^finetune\s+6\s+\S+\s+\S+\s+\S+$", budget, re.M)  # priced

    res = run_snakemake(tmp_path, "-c2", "--configfile", str(config))
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/bert-tiny"
    tokenizer = json.loads((out / "data/tokenizer/tokenizer_config.json").read_text())
    assert tokenizer["mask_token"] == "<mask>"
    for run in ("ddo-45k-base-s0", "verify-135000-autoscale-s0"):
        m = json.loads((out / f"runs/{run}/metrics.json").read_text())
        assert m["training_objective"] == "masked"
        assert set(m["final_losses"]) == {"books", "code", "legal"}
        assert set(m["tokens"]) == {"books", "code"}
        assert m["curve"][-1]["losses"]["legal"] < m["curve"][0]["losses"]["legal"]
    summary = (out / "report/summary.md").read_text()
    assert "Per-domain exp(MLM loss) at 1.35e+05 tokens" in summary
    assert "## Fine-tuned tasks at 1.35e+05 tokens" in summary
    for model in ("untrained", "verify-135000-uniform-s0"):
        score = json.loads((out / f"finetune/scores/{model}/domain.json").read_text())
        assert score["metric"] == "accuracy" and score["eval_items"] == 45
        assert score["value"] > score["majority"] + 0.2  # it learnt the task

    again = run_snakemake(tmp_path, "-c1", "--configfile", str(config))
    assert "Nothing to be done" in again.stdout + again.stderr
