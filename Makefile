# The two commands of the README. Everything else is set up by them on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint format bench clean

# Reinstall when the pins change; pip reuses the local torch CPU wheel (see pyproject.toml).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Until the corpus and trainer land (issue 3), the embedded default is the simulated RedPajama
# world: the full DAG in about a minute on 2 cores.
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile profiles/local
	@echo "report: results/demo/report/summary.md"
	@sed -n '/## Verification at 1e+10/,$$p' results/demo/report/summary.md

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules/
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --lint

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/solve_speed.py | tee benchmarks/results/solve_speed.txt
	$(PY) benchmarks/trainer_throughput.py | tee benchmarks/results/trainer_throughput.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
