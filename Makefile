# Two commands on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test test-clock test-faults test-ui lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

## Temporal dev server + UI (:8233), store, worker, HTTP API (:8000), demo shop.
dev: $(VENV)/.installed
	$(BIN)/triggermail dev

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

## The whole suite: lint, types, then every test (time-skipping Temporal, SQLite, PostgreSQL).
test: lint
	$(BIN)/pytest

## The suite again with this process's clock a year ahead and in UTC+14 (Kiritimati): a test
## that passes only on the day or in the timezone it was written fails here.
test-clock: $(VENV)/.installed-dev
	TRIGGERMAIL_TEST_CLOCK_SHIFT_DAYS=365 TZ=Pacific/Kiritimati $(BIN)/pytest -q

## Fault injection against real processes (Temporal dev server on a db file, worker and API
## processes, a private PostgreSQL cluster, fake SendGrid); ends with the table. 6-9 min.
test-faults: $(VENV)/.installed-dev
	TRIGGERMAIL_FAULT_TESTS=1 $(BIN)/pytest -q tests/faults

## Browser check of the Temporal UI (headless Chromium); refreshes docs/ui-*.png.
test-ui: $(VENV)/.installed-dev
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	TRIGGERMAIL_UI_TESTS=1 $(BIN)/pytest tests/ui

clean:
	rm -rf .triggermail .pytest_cache .mypy_cache .ruff_cache
