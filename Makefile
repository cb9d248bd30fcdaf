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

# Until the Snakemake workflow lands (issue 5), the demo runs the math core end to end on the
# worked example: DDO at two scales, then AutoScale to 1B tokens.
EX := examples
OUT := results/demo
demo: $(STAMP)
	$(PY) -m mixscale ddo --runs $(EX)/runs_10M.tsv --tokens 1e7 --out $(OUT)/ddo_10M.json
	$(PY) -m mixscale ddo --runs $(EX)/runs_30M.tsv --tokens 3e7 --out $(OUT)/ddo_30M.json
	$(PY) -m mixscale predict --optimum $(OUT)/ddo_10M.json --optimum $(OUT)/ddo_30M.json \
		--target 1e9 --out $(OUT)/autoscale_1B.json
	$(PY) -c "import json; p = json.load(open('$(OUT)/autoscale_1B.json')); \
		print('AutoScale weights at 1B tokens:', {d: round(w, 4) for d, w in p['weights'].items()})"

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
