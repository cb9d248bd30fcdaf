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

# Until the training stages land (issues 3-5), the workflow's DDO sweeps are the run tables of
# the worked example: Snakemake runs DDO at 10M and 30M tokens, then AutoScale to 1B and 10B.
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile profiles/local
	$(PY) -c "import json; p = json.load(open('results/demo/autoscale/1e+09.json')); \
		print('AutoScale weights at 1B tokens:', {d: round(w, 4) for d, w in p['weights'].items()})"

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
