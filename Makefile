# The two commands the README starts with:
#   make demo   set up and run an example module under the embedded dev orchestrator
#   make test   set up and run the whole test suite
#
# Both create .venv with the first python3 >= 3.11 on PATH (override with PYTHON=...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JOBS ?= 2
TESTS ?= tests examples
DEMO_PORT ?= 8080
BENCH ?=

.PHONY: setup test demo lint format typecheck docs bench bench-check tox clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pywatt_twisted needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e '.[test,dev]'
	@touch $@

test: setup
	@bash tools/run-tests $(BIN)/python $(JOBS) $(TESTS)

demo: setup
	$(BIN)/pywatt dev --module=examples.counter.module --secrets-file=examples/counter/secrets.json --port=$(DEMO_PORT) --demo

lint: setup
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/ruff format --check src tests bench examples tools

format: setup
	$(BIN)/ruff format src tests bench examples tools
	$(BIN)/ruff check --fix src tests bench examples tools

typecheck: setup
	$(BIN)/mypy src/pywatt_twisted

# Every bench, 1 to 3 runs each (RUNS in bench/__main__.py), medians; rewrites the table
# in bench/README.md.
bench: setup
	$(BIN)/python -m bench --record $(BENCH)

# Quick runs; fails when a ratio is more than 20% worse than the recorded one.
bench-check: setup
	$(BIN)/python -m bench --check --quick $(BENCH)

# The API docs (pydoctor, in tox's docs environment); the HTML lands in .tox/docs/tmp/html.
docs: setup
	$(BIN)/tox -e docs

tox: setup
	$(BIN)/tox

clean:
	rm -rf $(VENV) .tox build dist _trial_temp* src/*.egg-info
