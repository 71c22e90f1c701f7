# One command to start the server, one to pass the tests; both build .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 11300
HTTP ?= 127.0.0.1:11301
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit unit-interpreted clean fuzz

# The modules setup.py compiles with mypyc: editing one rebuilds the venv's install (an
# extension older than its source is never run: tubeserver/__init__.py falls back to it).
CORE := $(shell sed -n 's/^    "\(tubeserver\/[a-z_]*\.py\)",$$/\1/p' setup.py)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py $(CORE) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[http]'
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py $(CORE) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# The protocol on PORT; metrics, the JSON API and the dashboard on http://$(HTTP)/.
run: $(VENV)/.installed
	$(BIN)/tubeserver --port $(PORT) --http $(HTTP)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The whole suite, against the compiled build when a C compiler was there to make it.
unit: $(VENV)/.installed-test
	$(BIN)/tubeserver --version
	$(BIN)/pytest

# The core's own tests again with every module interpreted (CI runs this too), so the
# sources stay correct without mypyc.
unit-interpreted: $(VENV)/.installed-test
	TUBESERVER_PURE=1 $(BIN)/tubeserver --version
	TUBESERVER_PURE=1 $(BIN)/pytest -q tests/test_engine.py tests/test_engine_state.py tests/test_tracking.py \
		tests/test_parser.py tests/test_parser_tracking.py tests/test_dispatch.py tests/test_walrecords.py tests/test_wal.py \
		tests/test_differential.py tests/test_build.py tests/test_tube.py

test: lint typecheck unit

# The fuzzer (tests/fuzz/run.py, atheris) for FUZZ_SECONDS over the interpreted core: new
# inputs go to $(FUZZ_DIR)/corpus, crashes to $(FUZZ_DIR)/crashes/ (reproduce one with
# `$(BIN)/python tests/fuzz/run.py FILE`); tests/fuzz/corpus is read, never written.
# `make test` runs it for about a minute (tests/test_fuzz.py).
FUZZ_SECONDS ?= 600
FUZZ_DIR ?= .fuzz
FUZZ_ARGS ?=

fuzz: $(VENV)/.installed-test
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/crashes
	$(BIN)/python tests/fuzz/run.py -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=30 \
		-dict=tests/fuzz/protocol.dict -artifact_prefix=$(FUZZ_DIR)/crashes/ \
		-print_final_stats=1 $(FUZZ_ARGS) $(FUZZ_DIR)/corpus tests/fuzz/corpus

clean:
	rm -rf $(VENV) build $(FUZZ_DIR) *.egg-info .mypy_cache .pytest_cache .ruff_cache *__mypyc*.so \
		tubeserver/*.so tubeserver/_build.json

# tubebench: tubeserver next to beanstalkd (apt-get install beanstalkd), the load from
# bench/gen.c, built with $CC or cc on first use into ~/.cache/tubebench; JSON + PNG land in
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
