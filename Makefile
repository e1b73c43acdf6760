# salon: two commands matter. `make run` starts a server on its defaults; `make test` runs everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv deps lint typecheck pytest bench irctest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/salon serve

# System packages the tests use (irssi, weechat, chromium, ...); idempotent, skipped when present.
deps:
	bash scripts/install-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP)
	$(BIN)/pytest -n 2 tests

test: $(STAMP) deps lint typecheck pytest

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench

irctest: $(STAMP)
	bash scripts/irctest.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
