# salon: two commands matter. `make run` starts a server on its defaults; `make test` runs everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs only what the server needs, `make test` adds the test tools.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-test
# `make test-min`: the lowest allowed version of every runtime dependency, in a venv of its own.
VENV_MIN ?= .venv-min
BIN_MIN := $(VENV_MIN)/bin
MIN_STAMP := $(VENV_MIN)/.installed

.PHONY: run test test-fast test-min venv deps lint typecheck pytest bench bench-history irctest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/salon serve

# System packages the tests use (irssi, weechat, chromium, ...); idempotent, skipped when present.
deps:
	bash scripts/install-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) deps
	$(BIN)/pytest -n 2 tests

test: $(STAMP) deps lint typecheck pytest

# The in-process suite alone (no salon process, browser or real client: not the e2e marker),
# for a quick look after a change to the core, the store or the client.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not e2e" -n 0 tests

$(BIN_MIN)/python:
	$(PYTHON) -m venv $(VENV_MIN)
	$(BIN_MIN)/pip install -q --upgrade pip

# The floors from pyproject.toml pinned with ==, resolved together with the test tools so that a
# test tool needing a newer runtime dependency fails the install instead of upgrading it.
$(MIN_STAMP): $(BIN_MIN)/python pyproject.toml scripts/min-requirements.py
	$(PYTHON) scripts/min-requirements.py > $(VENV_MIN)/min-requirements.txt
	$(BIN_MIN)/pip install -q -r $(VENV_MIN)/min-requirements.txt -e '.[test]'
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP) deps
	@echo "runtime dependencies at their floors:"; cat $(VENV_MIN)/min-requirements.txt
	$(BIN_MIN)/pytest -n 2 tests

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench

# History at scale (issue 17): SIZE=1m (default) or 10m; data sets are cached outside the repo.
bench-history: $(STAMP)
	$(BIN)/python -m bench.history --size $(or $(SIZE),1m) --retention

irctest: $(STAMP)
	bash scripts/irctest.sh

clean:
	rm -rf $(VENV) $(VENV_MIN) .mypy_cache .ruff_cache .pytest_cache
