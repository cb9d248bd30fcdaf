# The two commands of the README. Everything else is set up by them on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-fast demo lint format bench clean

# Reinstall when the pins change; pip reuses the local torch CPU wheel (see pyproject.toml).
# pip byte-compiles every installed module on one core; compileall does the same on all cores
# (measured on 2 cores: 98 s -> 77 s). The compiled files are needed: where
# PYTHONDONTWRITEBYTECODE is set, nothing is cached at import and every process would compile
# torch again. Files that are not valid Python 3.11 (torch's py312 test helpers) are skipped,
# as pip skips them. mixscale's own modules too (an editable install is not compiled).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	$(PY) -m compileall -q -j 0 workflow/mixscale \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs -n 3 --dist loadgroup --durations=12  # SLURM tests mostly wait

# Math, config, CLI, bad inputs, writers, escaping and shell quoting: no training, no SLURM.
FAST := tests/test_architecture.py tests/test_fit.py tests/test_solve.py tests/test_predict.py \
	tests/test_world.py tests/test_utility.py tests/test_cli.py tests/test_plan.py \
	tests/test_status.py tests/test_bad_inputs.py tests/test_hardening.py tests/test_paper_choices.py \
	tests/test_intervals.py tests/test_study.py tests/test_advise.py tests/test_methods_study.py \
	tests/test_compile.py tests/test_cli_numbers.py tests/test_writers.py tests/test_escaping.py \
	tests/test_odd_inputs.py
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 -m "not slow" $(FAST)

# The embedded default (config/config.yaml): the embedded corpus, a tiny GPT-2 trained on CPU,
# DDO at two scales, AutoScale, verification, lm-eval downstream tasks, the annealing
# (data-source utility) experiment and the reports (resumes if stopped).
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile profiles/local
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" snakemake --profile profiles/local --report results/demo/report.html
	@echo "report: results/demo/report/summary.md, anneal.md and results/demo/report.html"
	@sed -n '/^Signal/p; /## Verification at/,$$p' results/demo/report/summary.md
	@sed -n '/## Rankings per budget/,$$p' results/demo/report/anneal.md

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
	$(PY) benchmarks/compile_breakeven.py | tee benchmarks/results/compile_breakeven.txt
	$(PY) benchmarks/joint_bootstrap.py | tee benchmarks/results/joint_bootstrap.txt
	$(PY) benchmarks/dry_run.py | tee benchmarks/results/dry_run.txt
	$(PY) benchmarks/job_startup.py | tee benchmarks/results/job_startup.txt
	$(PY) benchmarks/cpu_memory.py | tee benchmarks/results/cpu_memory.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
