"""Numbers quoted in the docs come from files: a stale number fails here."""

from __future__ import annotations

import json
import re

from conftest import ROOT

CLASSES = ("security", "data loss", "hang", "traceback", "silent wrong", "unclear / late", "clean")


def test_hardening_page_quotes_the_hostile_pass_files():
    """docs/hardening.md's before/after table is the counts of tests/hostile/{before,after}.json."""
    page = (ROOT / "docs/hardening.md").read_text(encoding="utf-8")
    before = json.loads((ROOT / "tests/hostile/before.json").read_text())["counts"]
    after = json.loads((ROOT / "tests/hostile/after.json").read_text())["counts"]
    for outcome in CLASSES:
        row = re.search(rf"^\| {re.escape(outcome)} \| (\d+) \| (\d+) \|$", page, re.M)
        assert row, f"no row for {outcome}"
        assert (int(row[1]), int(row[2])) == (before[outcome], after[outcome]), outcome
    total = re.search(r"^\| cases \| (\d+) \| (\d+) \|$", page, re.M)
    assert total and int(total[1]) == sum(before[c] for c in CLASSES)
    assert int(total[2]) == sum(after[c] for c in CLASSES)


def test_hostile_pass_files_count_their_cases():
    """Each file's counts are the outcomes of its cases (no hand-edited count)."""
    for name in ("before", "after"):
        data = json.loads((ROOT / f"tests/hostile/{name}.json").read_text())
        outcomes = [case["outcome"] for case in data["cases"]]
        assert {c: outcomes.count(c) for c in CLASSES} == {c: data["counts"][c] for c in CLASSES}
