# One entry point for the two set-up commands (demo, test) and the checks around them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint types fast slow bench compat clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[job,test]'
	touch $(BIN)/activate

## Build sample partitions, train a first model, land new data, update it, show the result.
demo: $(BIN)/activate
	$(BIN)/python -m jobs.demo --workdir demo

## Everything CI runs: the checks below, then the integration and end-to-end tiers (a real Ray cluster, ray job
## submit, several nodes).
test: check slow

## Lint, types, the docstrings' examples and the fast tiers (unit, component): what to run before a commit.
check: lint types fast

lint: $(BIN)/activate
	$(BIN)/ruff check jobs shards tests
	$(BIN)/ruff format --check jobs shards tests

types: $(BIN)/activate
	$(BIN)/mypy

# Two test processes (TEST_PROCESSES=1 for one): each has its own moto server and Ray cluster, and a module's
# tests stay in one process, so module-wide clusters are started once.
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

fast: $(BIN)/activate
	$(PYTEST) --doctest-modules jobs shards tests/support tests/unit tests/component

slow: $(BIN)/activate
	$(PYTEST) tests/integration tests/e2e

## Benchmarks, by hand (not in CI): the refresh against gensim, then metadata over 100,000 partitions.
bench: $(BIN)/activate
	$(BIN)/python -m tests.benchmarks
	$(BIN)/python -m tests.benchmarks.history

## The job against the oldest and newest gensim and Ray it supports, by hand (not in CI).
compat:
	PYTHON=$(PYTHON) tests/compat/run.sh

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
