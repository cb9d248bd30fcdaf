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

demo: $(STAMP)
	@echo "make demo: the Snakemake workflow arrives with issue 5; until then this runs the math core"
	$(PY) -m mixscale fit --runs tests/data/demo_runs.tsv --out results/demo/fit.json
	$(PY) -m mixscale solve --fit results/demo/fit.json --tokens 3e6 --out results/demo/weights.json
	@cat results/demo/weights.json

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/solve_speed.py | tee benchmarks/results/solve_speed.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
