# One command to start the server, one to pass the tests; both build .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 11300
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/tubeserver --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache

# tubebench: tubeserver next to beanstalkd (apt-get install beanstalkd); JSON + PNG land in
# bench/results/. BENCH_ARGS passes more flags, e.g. BENCH_ARGS='--only put,drain'.
.PHONY: bench bench-quick
BENCH_ARGS ?=

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-bench
	$(BIN)/tubebench --out bench/results $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-bench
	$(BIN)/tubebench --quick --out bench/results $(BENCH_ARGS)
